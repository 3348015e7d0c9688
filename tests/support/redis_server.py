"""A ``redis-server`` of a test's own: temp dir, free port, a password, nothing persisted; it can be killed and
started again on the same port (an outage), and no other test sees its keys."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

PASSWORD = "s3cret-outage-pw"
LIMIT_S = 60.0  # generous: only ever hit when something is broken


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A ``redis-server`` process of the test's own, which the test can kill and start again on the same port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = unused_port()
        self.url = f"redis://:{PASSWORD}@127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        options = {"port": str(self.port), "bind": "127.0.0.1", "save": "", "appendonly": "no", "daemonize": "no"}
        options |= {"requirepass": PASSWORD, "dir": str(self.directory)}
        # Starting a process does not block; its readiness is awaited below.
        self.process = subprocess.Popen(  # noqa: ASYNC220
            [binary, *(part for key, value in options.items() for part in (f"--{key}", value))],
            cwd=self.directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = aioredis.Redis.from_url(self.url)
        try:
            async with asyncio.timeout(LIMIT_S):
                while True:
                    assert self.process.poll() is None, "redis-server exited at start"
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
async def own_redis(directory: Path) -> AsyncIterator[RedisServer]:
    """A started ``RedisServer`` in ``directory``, killed afterwards (the test is skipped without redis-server)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    directory.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a test fixture's setup
    server = RedisServer(directory)
    await server.start()
    try:
        yield server
    finally:
        server.kill()
