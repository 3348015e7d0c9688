"""A FAKE of E2B's envd (the agent inside every E2B sandbox), so the unmodified e2b SDK can be tested without the cloud.

E2B sandboxes are micro-VMs we cannot reach from here. What the SDK talks to inside one is *envd*: a Connect RPC
``process.Process`` service (start a process and stream its output, re-attach to it, signal it, list processes)
and an HTTP ``/files`` endpoint. This module serves both on 127.0.0.1 with the SDK's **own generated Connect server
stubs** (``e2b.envd.process.process_connect.ProcessASGIApplication``) under uvicorn, and runs the processes on this
machine, so ``engine.sandbox.e2b`` drives real processes through the real SDK, its real wire protocol and its real
error mapping. Point the SDK at it with ``debug=True`` (no REST API: the sandbox id is ``debug_sandbox_id``) and
``sandbox_url=server.url`` (instead of ``localhost:49983``, so tests can run in parallel).

What it copies from envd (``packages/envd/internal/services/process`` in e2b-dev/infra), because the backend
relies on it:

- a process runs as ``cmd args...`` (the SDK sends ``/bin/bash -l -c COMMAND``) in ``cwd`` with ``PATH``, ``HOME``,
  ``USER``, ``LOGNAME`` and the request's ``envs`` only; it stays in envd's process group (no new session);
- output is sent in chunks of up to 32 KiB as it is read, to every stream attached to the process; a slow stream
  holds the reader back (envd's channels are bounded), so the process blocks once its pipe is full;
- ``SendSignal`` knows only SIGTERM and SIGKILL and signals the process alone, not its group or children;
- the end event has Go's ``exec.ProcessState`` fields: ``exit_code`` (-1 when killed by a signal), ``exited``,
  ``status`` and ``error`` (``"signal: killed"``, ``"exit status 3"``).

Where it differs: the end event is sent once the pipes reach end-of-file or stay idle for :data:`DRAIN_IDLE_S`
after the process exited (envd closes them at exit), and there is one filesystem and process table for every
sandbox id (the machine's).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs

import uvicorn
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from e2b.envd.process import process_pb
from e2b.envd.process.process_connect import Process, ProcessASGIApplication
from protobuf import Oneof

#: envd's read size for a process's stdout and stderr.
CHUNK = 32 * 1024
#: Events a stream may fall behind before the process's output reader waits for it (envd: 64).
STREAM_BUFFER = 64
#: After the process exited, how long its pipes may stay silent (held open by a background child) before the end.
DRAIN_IDLE_S = 0.5

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _event(**kwargs: Any) -> process_pb.ProcessEvent:
    ((name, value),) = kwargs.items()
    return process_pb.ProcessEvent(event=Oneof(name, value))  # type: ignore[arg-type]


@dataclass
class _Process:
    config: process_pb.ProcessConfig
    proc: asyncio.subprocess.Process
    tag: str | None
    streams: list[asyncio.Queue[process_pb.ProcessEvent | None]] = field(default_factory=list)
    ended: process_pb.ProcessEvent | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def attach(self) -> asyncio.Queue[process_pb.ProcessEvent | None]:
        queue: asyncio.Queue[process_pb.ProcessEvent | None] = asyncio.Queue(STREAM_BUFFER)
        self.streams.append(queue)
        return queue

    async def publish(self, event: process_pb.ProcessEvent | None) -> None:
        for queue in list(self.streams):
            await queue.put(event)


async def _exited(pid: int) -> None:
    """Wait until process ``pid`` has exited (its pidfd becomes readable), whoever holds its pipes."""
    loop = asyncio.get_running_loop()
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    done = loop.create_future()

    def fired() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, fired)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def _end_event(returncode: int) -> process_pb.ProcessEvent:
    """Go's ``ProcessState`` for an exit status or a death by signal, as envd reports it."""
    if returncode < 0:
        name = signal.strsignal(-returncode) or f"signal {-returncode}"
        text = f"signal: {name.lower()}"
        end = process_pb.ProcessEvent.EndEvent(exit_code=-1, exited=False, status=text, error=text)
    else:
        text = f"exit status {returncode}"
        end = process_pb.ProcessEvent.EndEvent(
            exit_code=returncode, exited=True, status=text, error=text if returncode else None
        )
    return _event(end=end)


class FakeProcessService(Process):
    """The ``process.Process`` service, over processes of this machine (what it leaves out answers UNIMPLEMENTED)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.processes: dict[int, _Process] = {}
        self.started: list[process_pb.ProcessConfig] = []
        self.connects = 0  # Connect calls (a client re-attaching to a running process)

    def _find(self, selector: process_pb.ProcessSelector | None) -> _Process:
        chosen = selector.selector if selector is not None else None
        for process in self.processes.values():
            if chosen is not None and (
                (chosen.field == "pid" and process.pid == chosen.value)
                or (chosen.field == "tag" and process.tag == chosen.value)
            ):
                return process
        raise ConnectError(Code.NOT_FOUND, f"process with {chosen} not found")

    async def list(self, request: process_pb.ListRequest, ctx: Any, /) -> process_pb.ListResponse:
        infos = [process_pb.ProcessInfo(config=p.config, pid=p.pid, tag=p.tag) for p in self.processes.values()]
        return process_pb.ListResponse(processes=infos)

    async def start(self, request: process_pb.StartRequest, ctx: Any, /) -> AsyncIterator[process_pb.StartResponse]:
        config = request.process
        assert config is not None
        self.started.append(config)
        cwd = config.cwd or str(self.home)
        if not Path(cwd).is_dir():
            raise ConnectError(Code.INVALID_ARGUMENT, f"cwd '{cwd}' does not exist")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home), "USER": "user"}
        env["LOGNAME"] = "user"
        env.update(config.envs)
        proc = await asyncio.create_subprocess_exec(
            config.cmd,
            *config.args,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.PIPE if request.stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        process = _Process(config, proc, request.tag)
        self.processes[proc.pid] = process
        stream = process.attach()
        asyncio.get_running_loop().create_task(self._pump(process))
        yield process_pb.StartResponse(event=_event(start=process_pb.ProcessEvent.StartEvent(pid=proc.pid)))
        async for event in self._follow(process, stream):
            yield process_pb.StartResponse(event=event)

    async def connect(
        self, request: process_pb.ConnectRequest, ctx: Any, /
    ) -> AsyncIterator[process_pb.ConnectResponse]:
        self.connects += 1
        process = self._find(request.process)
        stream = process.attach()
        yield process_pb.ConnectResponse(event=_event(start=process_pb.ProcessEvent.StartEvent(pid=process.pid)))
        async for event in self._follow(process, stream):
            yield process_pb.ConnectResponse(event=event)

    async def _follow(
        self, process: _Process, stream: asyncio.Queue[process_pb.ProcessEvent | None]
    ) -> AsyncIterator[process_pb.ProcessEvent]:
        try:
            while (event := await stream.get()) is not None:
                yield event
        finally:
            with contextlib.suppress(ValueError):
                process.streams.remove(stream)
            # A stream that goes away must not hold the reader back: let a put waiting on it through.
            while not stream.empty():
                stream.get_nowait()

    async def _pump(self, process: _Process) -> None:
        """Read the process's output into its streams until it ends, then send the end event and forget it."""
        idle_since: dict[str, float] = {}  # stream -> when its reader began waiting on the pipe (absent: busy)
        loop = asyncio.get_running_loop()

        async def read(pipe: asyncio.StreamReader, name: Literal["stdout", "stderr"]) -> None:
            while True:
                idle_since[name] = loop.time()
                chunk = await pipe.read(CHUNK)
                idle_since.pop(name, None)
                if not chunk:
                    return
                output = Oneof[Literal["stdout", "stderr"], bytes](name, chunk)
                data = process_pb.ProcessEvent.DataEvent(output=output)  # type: ignore[arg-type]  # one of the two
                await process.publish(_event(data=data))

        assert process.proc.stdout is not None and process.proc.stderr is not None
        readers = {
            "stdout": asyncio.ensure_future(read(process.proc.stdout, "stdout")),
            "stderr": asyncio.ensure_future(read(process.proc.stderr, "stderr")),
        }
        await _exited(process.proc.pid)
        # asyncio's wait() would also wait for the pipes to close, which a background child may never do.
        # The child watcher records the status right after the pidfd fires; there is no event to wait on.
        while (returncode := process.proc.returncode) is None:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        # A background child may hold the pipes open: stop reading one once it has been silent a while (envd closes
        # them at exit), but never while its reader is handing data to a slow stream.
        while pending := [task for task in readers.values() if not task.done()]:
            await asyncio.wait(pending, timeout=DRAIN_IDLE_S / 5)
            for name, task in readers.items():
                waiting = idle_since.get(name)
                if not task.done() and waiting is not None and loop.time() - waiting >= DRAIN_IDLE_S:
                    task.cancel()
        await asyncio.gather(*readers.values(), return_exceptions=True)
        process.ended = _end_event(returncode)
        self.processes.pop(process.pid, None)
        await process.publish(process.ended)
        await process.publish(None)

    async def send_signal(self, request: process_pb.SendSignalRequest, ctx: Any, /) -> process_pb.SendSignalResponse:
        process = self._find(request.process)
        if request.signal == process_pb.Signal.SIGKILL:
            chosen = signal.SIGKILL
        elif request.signal == process_pb.Signal.SIGTERM:
            chosen = signal.SIGTERM
        else:
            raise ConnectError(Code.UNIMPLEMENTED, f"invalid signal: {request.signal}")
        with contextlib.suppress(ProcessLookupError):
            process.proc.send_signal(chosen)
        return process_pb.SendSignalResponse()

    async def send_input(self, request: process_pb.SendInputRequest, ctx: Any, /) -> process_pb.SendInputResponse:
        process = self._find(request.process)
        if process.proc.stdin is None or request.input is None:
            raise ConnectError(Code.FAILED_PRECONDITION, "stdin not enabled or closed")
        chosen = request.input.input
        if chosen is not None:
            process.proc.stdin.write(chosen.value)
            await process.proc.stdin.drain()
        return process_pb.SendInputResponse()

    async def close(self) -> None:
        """Kill what still runs (the test is over) and wait for it."""
        for process in list(self.processes.values()):
            with contextlib.suppress(ProcessLookupError):
                process.proc.kill()
        for process in list(self.processes.values()):
            with contextlib.suppress(Exception):
                await process.proc.wait()


class FakeEnvd:
    """envd's HTTP surface: the Connect process service, ``/files`` and ``/health``; see the module docstring."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.process = FakeProcessService(home)
        self._rpc = ProcessASGIApplication(self.process)
        self.url = ""

    def _path(self, query: dict[str, list[str]]) -> Path:
        raw = (query.get("path") or [""])[0]
        return Path(raw) if raw.startswith("/") else self.home / raw

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path.startswith("/process.Process/"):
            await self._rpc(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode())
        if path == "/health":
            await _respond(send, 204, b"")
        elif path == "/files" and scope["method"] == "GET":
            await self._read(send, self._path(query))
        elif path == "/files" and scope["method"] == "POST":
            await self._write(scope, receive, send, self._path(query))
        else:
            await _respond_json(send, 404, {"code": 404, "message": f"no route {path}"})

    async def _read(self, send: Send, target: Path) -> None:
        try:
            data = target.read_bytes()
        except FileNotFoundError:
            await _respond_json(send, 404, {"code": 404, "message": f"path '{target}' does not exist"})
        except IsADirectoryError:
            await _respond_json(send, 400, {"code": 400, "message": f"path '{target}' is a directory"})
        else:
            await _respond(send, 200, data, b"application/octet-stream")

    async def _write(self, scope: Scope, receive: Receive, send: Send, target: Path) -> None:
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        content_type = headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            data = _first_multipart_file(bytes(body), content_type)
        else:
            data = bytes(body)
            if headers.get("content-encoding") == "gzip":
                import gzip

                data = gzip.decompress(data)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        await _respond_json(send, 200, [{"name": target.name, "type": "file", "path": str(target)}])


def _first_multipart_file(body: bytes, content_type: str) -> bytes:
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    for part in body.split(b"--" + boundary):
        head, sep, content = part.partition(b"\r\n\r\n")
        if sep and b"filename=" in head:
            return content[:-2] if content.endswith(b"\r\n") else content
    return b""


async def _respond(send: Send, status: int, body: bytes, content_type: bytes = b"text/plain") -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": body})


async def _respond_json(send: Send, status: int, payload: object) -> None:
    await _respond(send, status, json.dumps(payload).encode(), b"application/json")


@contextlib.asynccontextmanager
async def serve_fake_envd(home: Path) -> AsyncIterator[FakeEnvd]:
    """Serve a :class:`FakeEnvd` on an ephemeral port of 127.0.0.1 while the block runs; ``envd.url`` is its URL."""
    home.mkdir(parents=True, exist_ok=True)
    envd = FakeEnvd(home)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    envd.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(envd, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if serving.done():
                serving.result()
            await asyncio.sleep(0.01)
        yield envd
    finally:
        await envd.process.close()
        server.should_exit = True
        with contextlib.suppress(Exception):
            await serving
        sock.close()
