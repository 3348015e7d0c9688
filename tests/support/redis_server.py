"""A ``redis-server`` of a test's own: temp dir, free port, a password, nothing persisted; it can be killed and
started again on the same port (an outage), and no other test sees its keys.

With ``tls=True`` it serves TLS only (``rediss://``), with a throwaway CA and a certificate for 127.0.0.1 made by
the ``openssl`` command; its URL names the CA as redis-py's ``ssl_ca_certs`` query parameter.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

PASSWORD = "s3cret-outage-pw"
LIMIT_S = 60.0  # generous: only ever hit when something is broken


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=LIMIT_S)


def make_ca(directory: Path, name: str = "ca") -> tuple[Path, Path]:
    """A self-signed CA (an EC key) in ``directory``: ``(name.pem, name.key)``."""
    directory.mkdir(parents=True, exist_ok=True)
    pem, key = directory / f"{name}.pem", directory / f"{name}.key"
    ext = directory / f"{name}.ext"
    # What a strict verifier (Python 3.13's default X509_STRICT) wants of a CA.
    ext.write_text("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                   "subjectKeyIdentifier=hash\n")  # fmt: skip
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    _openssl("req", "-x509", "-new", "-key", key, "-out", pem, "-days", "2", "-subj", f"/CN=agentdeck test {name}",
             "-extensions", "v3", "-config", _config(directory, ext))  # fmt: skip
    return pem, key


def _config(directory: Path, ext: Path) -> Path:
    """A minimal openssl config whose ``[v3]`` section is ``ext`` (``req -x509`` takes extensions from a config)."""
    config = directory / f"{ext.stem}.cnf"
    config.write_text("[req]\ndistinguished_name=dn\n[dn]\n[v3]\n" + ext.read_text())
    return config


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA and a server certificate it signed for 127.0.0.1."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def make(cls, directory: Path) -> TlsFiles:
        if shutil.which("openssl") is None:
            pytest.skip("the openssl command is not installed")
        ca, ca_key = make_ca(directory)
        key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
        ext = directory / "server.ext"
        ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
                       "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")  # fmt: skip
        _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
        _openssl("req", "-new", "-key", key, "-out", csr, "-subj", "/CN=127.0.0.1", "-config", _config(directory, ext))
        _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
                 "-days", "2", "-extfile", ext)  # fmt: skip
        return cls(ca, cert, key)


def tls_url(port: int, ca: Path, password: str = PASSWORD) -> str:
    """A ``rediss://`` URL for 127.0.0.1:``port`` that trusts the CA in ``ca`` (redis-py's ``ssl_ca_certs``)."""
    return f"rediss://:{password}@127.0.0.1:{port}/0?ssl_ca_certs={quote(str(ca), safe='/')}"


class RedisServer:
    """A ``redis-server`` process of the test's own, which the test can kill and start again on the same port.

    With ``tls=True`` the port speaks TLS only and ``url`` is a ``rediss://`` URL naming the CA (``tls.ca``).
    """

    def __init__(self, directory: Path, tls: bool = False) -> None:
        self.directory = directory
        self.port = unused_port()
        self.tls = TlsFiles.make(directory / "tls") if tls else None
        if self.tls is None:
            self.url = f"redis://:{PASSWORD}@127.0.0.1:{self.port}/0"
        else:
            self.url = tls_url(self.port, self.tls.ca)
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        options = {"port": str(self.port), "bind": "127.0.0.1", "save": "", "appendonly": "no", "daemonize": "no"}
        options |= {"requirepass": PASSWORD, "dir": str(self.directory)}
        if self.tls is not None:
            options |= {"port": "0", "tls-port": str(self.port), "tls-cert-file": str(self.tls.cert)}
            options |= {"tls-key-file": str(self.tls.key), "tls-ca-cert-file": str(self.tls.ca)}
            options |= {"tls-auth-clients": "no"}  # the server's certificate only: clients show a password
        log = self.directory / "redis-server.log"
        # Starting a process does not block; its readiness is awaited below.
        with log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: ASYNC220
                [binary, *(part for key, value in options.items() for part in (f"--{key}", value))],
                cwd=self.directory,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        client = aioredis.Redis.from_url(self.url)
        try:
            async with asyncio.timeout(LIMIT_S):
                while True:
                    assert self.process.poll() is None, f"redis-server exited at start: {log.read_text()[-2000:]}"
                    try:
                        await client.ping()
                        return
                    except (RedisConnectionError, OSError):
                        await asyncio.sleep(0.01)  # not listening yet
        finally:
            await client.aclose()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(LIMIT_S)
        self.process = None


@asynccontextmanager
async def own_redis(directory: Path, tls: bool = False) -> AsyncIterator[RedisServer]:
    """A started ``RedisServer`` in ``directory`` (serving TLS only with ``tls``), killed afterwards (the test is
    skipped without redis-server, or with ``tls`` without the openssl command)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    directory.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a test fixture's setup
    server = RedisServer(directory, tls)
    await server.start()
    try:
        yield server
    finally:
        server.kill()
