"""A real SurrealDB server on a WebSocket, for integration tests.

``surreal_test_server()`` starts a SurrealDB server on ``127.0.0.1``, yields its URL in the form
``AsyncSurreal(url)`` accepts (``ws://127.0.0.1:PORT``; the SDK appends ``/rpc`` itself), and stops
it on exit. The server keeps its data in memory, so every ``with`` block starts from an empty
database, and it accepts ``signin({"username": "root", "password": "root"})``.

Two ways to get a server, chosen by the environment:

* ``SURREAL_BIN`` set: runs ``$SURREAL_BIN start --user root --pass root --bind 127.0.0.1:PORT memory``.
* otherwise: the SurrealDB engine embedded in npm's ``@surrealdb/node``, served over the RPC
  WebSocket protocol by ``tests/integration/surreal_server/bridge.mjs`` (no ``surreal`` binary can be
  installed from the registries this project uses). Its npm packages are installed once, from the
  committed ``package-lock.json``, into a cache directory keyed by a hash of ``package.json`` and the
  lock: ``$AGENTDECK_TEST_CACHE/surreal-node-<hash>`` (default root ``~/.cache/agentdeck-tests``),
  under a file lock so that parallel test processes do not race. That needs ``node`` (>= 20) and
  ``npm`` on ``PATH`` and the npm registry reachable the first time.

  Differences from ``surreal start``, all from the embedded engine (see bridge.mjs): it runs with
  authentication disabled, so signin works (the root user is defined) but unauthenticated requests
  are not refused, unless ``require_auth=True``: then the bridge refuses a session that has not
  signed in every query as ``surreal start`` does, with the same RPC error ("Anonymous access not
  allowed: Not enough permissions to perform this action"). Only the CBOR protocol is spoken.
  A ``SURREAL_BIN`` server requires credentials whatever ``require_auth`` says.

Engine behaviour (SurrealDB core 3.0.2, whichever way it is served): live notifications from
separate transactions may arrive out of commit order, even if each write was awaited (about one
round in five for CREATE/UPDATE/DELETE of one record in three queries); within one transaction
they arrive in order. And ``ORDER BY ... LIMIT`` on ``type::table($t)`` can return the wrong rows:
use literal table names.

``server_available()`` says, without starting anything, whether a server can be had here, so a
test can skip with the reason rather than fail where node is missing. Typical use::

    reason = server_available()
    pytestmark = pytest.mark.skipif(reason is not None, reason=f"no SurrealDB test server: {reason}")

    @pytest.fixture(scope="session")
    def surreal_url() -> Iterator[str]:
        with surreal_test_server() as url:
            yield url
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

SERVER_DIR = Path(__file__).resolve().parent.parent / "integration" / "surreal_server"
"""Where package.json, package-lock.json and bridge.mjs live."""

READY_TIMEOUT = 60.0
"""Seconds a server has to come up before the start counts as failed."""

STOP_GRACE = 5.0
"""Seconds between SIGTERM and SIGKILL when stopping a server."""

INSTALL_TIMEOUT = 600.0
"""Seconds ``npm ci`` may take."""

MIN_NODE_MAJOR = 20

_READY_LINE = re.compile(r"^READY (ws://\S+)\s*$")
_INSTALLED_MARKER = ".agentdeck-installed"


def server_available() -> str | None:
    """Return None if a test server can be started here, else the reason it cannot.

    Cheap: looks for the executables only. It installs nothing, so a failing ``npm ci`` (say, the
    registry unreachable) surfaces as an error from :func:`surreal_test_server`, not as a skip.
    """
    surreal_bin = os.environ.get("SURREAL_BIN")
    if surreal_bin:
        resolved = shutil.which(surreal_bin)
        if resolved is None:
            return f"SURREAL_BIN={surreal_bin!r} is not an executable file"
        return None
    node = shutil.which("node")
    if node is None:
        return "node not found on PATH (needed to run the @surrealdb/node test server; or set SURREAL_BIN)"
    if shutil.which("npm") is None and not _is_installed(_install_dir()):
        return "npm not found on PATH (needed to install @surrealdb/node; or set SURREAL_BIN)"
    major = _node_major(node)
    if major is None:
        return f"could not tell the version of {node}"
    if major < MIN_NODE_MAJOR:
        return f"node {major} is too old for the test server (need >= {MIN_NODE_MAJOR})"
    for name in ("package.json", "package-lock.json", "bridge.mjs"):
        if not (SERVER_DIR / name).is_file():
            return f"{SERVER_DIR / name} is missing"
    return None


@contextlib.contextmanager
def surreal_test_server(require_auth: bool = False) -> Iterator[str]:
    """Start a fresh in-memory SurrealDB server and yield its URL, ``ws://127.0.0.1:PORT``.

    ``require_auth``: the server refuses the queries of a session that has not signed in, as a real one does (the
    bridge's ``SURREAL_BRIDGE_REQUIRE_AUTH``); otherwise only a wrong signin is refused.

    Raises RuntimeError, carrying the server's stderr, if it cannot be installed or started or is
    not ready within :data:`READY_TIMEOUT` seconds. Stops the server on exit (SIGTERM, then SIGKILL
    after :data:`STOP_GRACE` seconds).
    """
    reason = server_available()
    if reason is not None:
        raise RuntimeError(f"no SurrealDB test server: {reason}")
    with tempfile.TemporaryFile(prefix="surreal-test-server-", suffix=".stderr") as stderr:
        surreal_bin = os.environ.get("SURREAL_BIN")
        if surreal_bin:
            process, url = _start_surreal_binary(surreal_bin, stderr)
        else:
            process, url = _start_bridge(stderr, require_auth=require_auth)
        try:
            yield url
        finally:
            _stop(process)


class RestartableServer:
    """A test server that keeps its data on disk (``surrealkv://``), so it can be stopped and started again on the
    same port, as a server restart does: every connection is cut and the server forgets sessions and live queries,
    but not what was committed. Made by :func:`restartable_test_server`."""

    def __init__(self, directory: Path, stderr: IO[bytes], require_auth: bool = False) -> None:
        self.store = f"surrealkv://{directory / 'data'}"
        self._stderr = stderr
        self._require_auth = require_auth
        self.process, self.url = _start_bridge(stderr, 0, self.store, require_auth)
        self.port = int(self.url.rsplit(":", 1)[1])
        self.restarts = 0

    def stop(self) -> None:
        """Stop the server as a service manager does (SIGTERM, then SIGKILL after :data:`STOP_GRACE` seconds)."""
        _stop(self.process)

    def start(self) -> None:
        """Start it again on the same port, over the same data."""
        assert self.process.poll() is not None, "stop() it first"
        deadline = time.monotonic() + READY_TIMEOUT
        while True:  # the port can stay taken for a moment after the old process exits
            try:
                self.process, url = _start_bridge(self._stderr, self.port, self.store, self._require_auth)
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert url == self.url, (url, self.url)
        self.restarts += 1


@contextlib.contextmanager
def restartable_test_server(directory: Path, require_auth: bool = False) -> Iterator[RestartableServer]:
    """A bridge server over ``surrealkv://`` files in ``directory``, for tests that restart it (the bridge only:
    a ``SURREAL_BIN`` server restarts the same way, but is not wired here). ``require_auth`` as for
    :func:`surreal_test_server`."""
    reason = server_available()
    if reason is not None:
        raise RuntimeError(f"no SurrealDB test server: {reason}")
    with tempfile.TemporaryFile(prefix="surreal-test-server-", suffix=".stderr") as stderr:
        server = RestartableServer(directory, stderr, require_auth)
        try:
            yield server
        finally:
            server.stop()


# --- the node bridge ------------------------------------------------------------------------------


def _start_bridge(
    stderr: IO[bytes], port: int = 0, store: str | None = None, require_auth: bool = False
) -> tuple[subprocess.Popen[bytes], str]:
    install_dir = _ensure_installed()
    node = shutil.which("node")
    assert node is not None  # checked by server_available()
    env = dict(os.environ)
    env["SURREAL_BRIDGE_NODE_MODULES"] = str(install_dir)
    if store is not None:
        env["SURREAL_BRIDGE_STORE"] = store
    if require_auth:
        env["SURREAL_BRIDGE_REQUIRE_AUTH"] = "1"
    else:  # not inherited from the test run's environment either
        env.pop("SURREAL_BRIDGE_REQUIRE_AUTH", None)
    # The bridge exits when its stdin closes, so it cannot outlive a test process that is killed.
    env["SURREAL_BRIDGE_WATCH_STDIN"] = "1"
    process = subprocess.Popen(
        [node, str(SERVER_DIR / "bridge.mjs"), str(port)],
        cwd=install_dir,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    assert process.stdout is not None
    # Drains stdout for the life of the process, so the bridge never blocks on a full pipe.
    threading.Thread(target=_pump_lines, args=(process.stdout, lines), daemon=True).start()
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            _stop(process)
            raise RuntimeError(_failure("did not print READY", READY_TIMEOUT, process, stderr))
        try:
            line = lines.get(timeout=min(remaining, 0.5))
        except queue.Empty:
            continue
        if line is None:
            _stop(process)
            raise RuntimeError(_failure("exited before it was ready", READY_TIMEOUT, process, stderr))
        match = _READY_LINE.match(line)
        if match:
            return process, match.group(1)


def _pump_lines(stream: IO[bytes], lines: queue.Queue[str | None]) -> None:
    try:
        with stream:
            for raw in stream:
                lines.put(raw.decode("utf-8", "replace"))
    except (OSError, ValueError):
        pass
    finally:
        lines.put(None)


def _ensure_installed() -> Path:
    """Install the bridge's npm packages into the cache, once per package.json/lock version."""
    target = _install_dir()
    if _is_installed(target):
        return target
    root = target.parent
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _is_installed(target):  # another process installed it meanwhile
                return target
            if target.exists():  # left half-made by an interrupted install
                shutil.rmtree(target)
            staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.tmp-", dir=root))
            staging.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
            try:
                _npm_install(staging)
                (staging / _INSTALLED_MARKER).write_text("")
                staging.rename(target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target


def _install_dir() -> Path:
    return _cache_root() / f"surreal-node-{_package_hash()}"


def _is_installed(directory: Path) -> bool:
    return (directory / _INSTALLED_MARKER).is_file()


def _npm_install(directory: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm not found on PATH, needed to install the test server's packages")
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(SERVER_DIR / name, directory / name)
    # `npm ci` installs exactly the lock. Peers are left out: `surrealdb` (a peer of
    # @surrealdb/node) is the JS SDK, which the bridge does not use, and it drags in TypeScript.
    command = [npm, "ci", "--omit=peer", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"]
    try:
        result = subprocess.run(
            command,
            cwd=directory,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(f"`{' '.join(command)}` took more than {INSTALL_TIMEOUT:.0f}s") from error
    if result.returncode != 0:
        output = (result.stdout + result.stderr).decode("utf-8", "replace")
        raise RuntimeError(
            f"`{' '.join(command)}` in {directory} failed with exit code {result.returncode}:\n{output[-4000:]}"
        )
    for required in ("node_modules/@surrealdb/node/package.json", "node_modules/ws/package.json"):
        if not (directory / required).is_file():
            raise RuntimeError(f"`{' '.join(command)}` succeeded but {required} is missing in {directory}")


def _cache_root() -> Path:
    configured = os.environ.get("AGENTDECK_TEST_CACHE")
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg) / "agentdeck-tests"
    try:
        return Path.home() / ".cache" / "agentdeck-tests"
    except RuntimeError:  # no home directory to be found
        return Path(tempfile.gettempdir()) / "agentdeck-tests"


def _package_hash() -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update(name.encode())
        digest.update((SERVER_DIR / name).read_bytes())
    return digest.hexdigest()[:16]


def _node_major(node: str) -> int | None:
    try:
        result = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.match(r"v(\d+)\.", result.stdout.strip())
    return int(match.group(1)) if match else None


# --- a real `surreal` binary ----------------------------------------------------------------------


def _start_surreal_binary(surreal_bin: str, stderr: IO[bytes]) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    command = [
        surreal_bin,
        "start",
        "--user",
        "root",
        "--pass",
        "root",
        "--bind",
        f"127.0.0.1:{port}",
        "memory",
    ]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(_failure("exited before it was ready", READY_TIMEOUT, process, stderr))
        if _healthy(port):
            return process, f"ws://127.0.0.1:{port}"
        time.sleep(0.1)
    _stop(process)
    raise RuntimeError(_failure("did not answer /health", READY_TIMEOUT, process, stderr))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


# --- both -----------------------------------------------------------------------------------------


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()
    # stdout belongs to the thread draining it, which closes it at end of file.
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()


def _failure(what: str, timeout: float, process: subprocess.Popen[bytes], stderr: IO[bytes]) -> str:
    stderr.flush()
    stderr.seek(0)
    output = stderr.read().decode("utf-8", "replace").strip()
    code = process.poll()
    status = f"exit code {code}" if code is not None else "still running"
    args = process.args if isinstance(process.args, list) else [process.args]
    return (
        f"SurrealDB test server {what} (timeout {timeout:.0f}s, {status}): {' '.join(map(str, args))}\n"
        f"stderr:\n{output[-4000:] or '(empty)'}"
    )
