"""A FAKE of E2B's control-plane REST API (``https://api.e2b.app``), for tests only.

The unmodified ``e2b`` SDK talks to it when given ``api_url=api.url`` and the fake's key: it answers the calls
``AsyncSandbox`` makes to create, connect (resume), pause, kill, set the timeout of, describe (``get_info``) and
list sandboxes, from an in-memory registry, and logs every request, so a test can check what the code under test
asked E2B to do ("every sandbox created was killed", "created with this metadata", "paused, then resumed").
Routes, status codes and JSON fields follow the SDK's generated client (``e2b/api/client/api/sandboxes``,
``e2b/api/client/models``, e2b 2.63). A route the SDK may call but the fake does not know answers 501, which the
SDK raises as ``SandboxException("501: ...")``: an unfaked call fails loudly instead of passing for a 404.

It is only the control plane. envd (the in-sandbox daemon: commands, files, and ``is_running``, a GET of
``/health``) is faked separately, by ``tests/support/fake_envd.py``. With ``sandbox_url="http://127.0.0.1:PORT"``
the SDK sends every sandbox's envd traffic to that one address and tells sandboxes apart only by the
``E2b-Sandbox-Id`` header (plus ``X-Access-Token``, the ``envd_access_token`` handed out here). Creating or
connecting a sandbox makes no envd call at all.

    async with serve_fake_e2b_api("e2b_test") as api:
        sbx = await AsyncSandbox.create(api_key="e2b_test", api_url=api.url, sandbox_url=envd_url)
        ...
    assert not api.alive()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import parse_qs, parse_qsl, unquote

import uvicorn
from e2b.envd import versions
from packaging.version import Version

#: The newest envd version the SDK knows a feature gate for, so every SDK feature is switched on.
ENVD_VERSION = str(max(v for n, v in vars(versions).items() if isinstance(v, Version) and n != "ENVD_DEBUG_FALLBACK"))
#: The sandbox lifetime E2B applies when create or connect sends no ``timeout``.
DEFAULT_TIMEOUT_S = 15
CLIENT_ID = "fake-client"

State = Literal["running", "paused", "killed"]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass
class FakeSandbox:
    """One sandbox in the registry. Killed ones stay, with ``state="killed"``, so tests can check they were."""

    sandbox_id: str
    template_id: str
    metadata: dict[str, str]
    envs: dict[str, str]
    on_timeout: Literal["kill", "pause"]
    envd_access_token: str
    started_at: datetime
    end_at: datetime
    state: State = "running"


@dataclass(frozen=True)
class ApiCall:
    """One request as the fake received it, rejected ones included."""

    method: str
    path: str
    api_key: str | None  # the X-API-Key header, None when missing
    query: dict[str, list[str]] = field(default_factory=dict)
    body: Any = None


class _Reply(Exception):
    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def _error(status: int, message: str) -> _Reply:
    """An error in E2B's shape (``{"code", "message"}``): the SDK maps 401 to AuthenticationException."""
    return _Reply(status, {"code": status, "message": message})


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class FakeE2BApi:
    """The fake REST API as an ASGI app, with its registry (``sandboxes``) and request log (``calls``).

    ``clock`` is read for start and end times and for expiry: a running sandbox whose end time has passed is
    killed (or paused, when created with ``lifecycle={"on_timeout": "pause"}``) at the next request, as E2B does.
    """

    def __init__(
        self,
        api_key: str,
        *,
        domain: str | None = None,
        envd_version: str = ENVD_VERSION,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api_key, self.domain, self.envd_version, self.clock = api_key, domain, envd_version, clock
        self.url = ""  # set by serve_fake_e2b_api
        self.sandboxes: dict[str, FakeSandbox] = {}
        self.calls: list[ApiCall] = []
        #: Seconds a create takes (E2B boots a micro-VM): the sandbox exists once the request arrives, the answer
        #: comes after this, so a client that gives up meanwhile has made a sandbox it does not know of.
        self.create_delay_s = 0.0
        #: When set, creating a sandbox from any other template answers 404, as E2B does for an unknown template.
        self.known_templates: set[str] | None = None

    @property
    def routes(self) -> list[tuple[str, str]]:
        """``(method, path)`` of every request, in order, e.g. ``("POST", "/sandboxes/ID/pause")``."""
        return [(c.method, c.path) for c in self.calls]

    def alive(self) -> list[FakeSandbox]:
        """The sandboxes not killed (running or paused), after applying expiry."""
        self._expire()
        return [s for s in self.sandboxes.values() if s.state != "killed"]

    async def __call__(self, scope: MutableMapping[str, Any], receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        method, path = scope["method"], scope["path"]
        query = parse_qs(scope["query_string"].decode("latin-1"))
        key = headers.get("x-api-key")
        try:
            body, bad_json = (json.loads(raw) if raw else None), False
        except ValueError:
            body, bad_json = raw.decode("utf-8", "replace"), True
        self.calls.append(ApiCall(method, path, key, query, body))
        try:
            if key is None:
                raise _error(401, "missing X-API-Key header")
            if key != self.api_key:
                raise _error(401, "invalid API key")
            if bad_json:
                raise _error(400, "the request body is not JSON")
            self._expire()
            reply = self._route(method, path.strip("/").split("/"), query, body)
        except _Reply as raised:
            reply = raised
        if self.create_delay_s and (method, path.rstrip("/")) == ("POST", "/v2/sandboxes"):
            await asyncio.sleep(self.create_delay_s)
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        out = [(b"content-length", str(len(payload)).encode())]
        if payload:
            out.append((b"content-type", b"application/json"))
        out += [(k.lower().encode(), v.encode()) for k, v in reply.headers.items()]
        await send({"type": "http.response.start", "status": reply.status, "headers": out})
        await send({"type": "http.response.body", "body": payload})

    def _route(self, method: str, parts: list[str], query: dict[str, list[str]], body: Any) -> _Reply:
        match method, parts:
            case "POST", ["v2", "sandboxes"]:
                return self._create(body if isinstance(body, dict) else {})
            case "GET", ["v2", "sandboxes"]:
                return self._list(query)
            case "GET", ["sandboxes", sandbox_id]:
                return _Reply(200, self._detail(self._find(sandbox_id)))
            case "DELETE", ["sandboxes", sandbox_id]:
                self._find(sandbox_id).state = "killed"
                return _Reply(204)
            case "POST", ["sandboxes", sandbox_id, "pause"]:
                sandbox = self._find(sandbox_id)
                if sandbox.state == "paused":
                    raise _error(409, f"sandbox {sandbox_id} is already paused")
                sandbox.state = "paused"
                return _Reply(204)
            case "POST", ["sandboxes", sandbox_id, "timeout"]:
                sandbox = self._find(sandbox_id)
                timeout = body.get("timeout") if isinstance(body, dict) else None
                if not isinstance(timeout, int) or sandbox.state != "running":
                    raise _error(400, "timeout (int) is required, for a running sandbox")
                sandbox.end_at = self.clock() + timedelta(seconds=timeout)
                return _Reply(204)
            case "POST", ["v2", "sandboxes", sandbox_id, "connect"]:
                return self._connect(self._find(sandbox_id), body if isinstance(body, dict) else {})
        raise _error(501, f"the fake E2B API does not implement {method} /{'/'.join(parts)}")

    def _find(self, sandbox_id: str) -> FakeSandbox:
        sandbox = self.sandboxes.get(sandbox_id)
        if sandbox is None or sandbox.state == "killed":
            raise _error(404, f"sandbox {sandbox_id} not found")
        return sandbox

    def _expire(self) -> None:
        now = self.clock()
        for sandbox in self.sandboxes.values():
            if sandbox.state == "running" and sandbox.end_at <= now:
                sandbox.state = "paused" if sandbox.on_timeout == "pause" else "killed"

    def _create(self, body: dict[str, Any]) -> _Reply:
        template, timeout = body.get("templateID"), body.get("timeout", DEFAULT_TIMEOUT_S)
        if not isinstance(template, str) or not isinstance(timeout, int):
            raise _error(400, "templateID (str) is required and timeout must be an int")
        if self.known_templates is not None and template not in self.known_templates:
            raise _error(404, f"template '{template}' not found")
        now = self.clock()
        sandbox = FakeSandbox(
            sandbox_id=secrets.token_hex(10),
            template_id=template,
            metadata=dict(body.get("metadata") or {}),
            envs=dict(body.get("envVars") or {}),
            on_timeout="pause" if body.get("autoPause") else "kill",
            envd_access_token=secrets.token_hex(16),
            started_at=now,
            end_at=now + timedelta(seconds=timeout),
        )
        self.sandboxes[sandbox.sandbox_id] = sandbox
        return _Reply(201, self._created(sandbox))

    def _connect(self, sandbox: FakeSandbox, body: dict[str, Any]) -> _Reply:
        """Resume a paused sandbox (201), or keep a running one (200; its end moves only later, never earlier)."""
        end_at = self.clock() + timedelta(seconds=int(body.get("timeout", DEFAULT_TIMEOUT_S)))
        if sandbox.state == "running":
            sandbox.end_at = max(sandbox.end_at, end_at)
            return _Reply(200, self._created(sandbox))
        sandbox.state, sandbox.end_at = "running", end_at
        return _Reply(201, self._created(sandbox))

    def _list(self, query: dict[str, list[str]]) -> _Reply:
        # The SDK quotes each metadata key and value, urlencodes the pairs, and sends that as one parameter.
        wanted = {unquote(k): unquote(v) for k, v in parse_qsl(query.get("metadata", [""])[0])}
        states = set(",".join(query.get("state", [])).split(",")) - {""} or {"running", "paused"}
        template = query.get("template", [None])[0]
        found = [
            s
            for s in self.sandboxes.values()
            if s.state in states
            and (template is None or s.template_id == template)
            and all(s.metadata.get(k) == v for k, v in wanted.items())
        ]
        found.sort(key=lambda s: s.started_at, reverse=query.get("order") == ["desc"])
        start, limit = int(query.get("nextToken", ["0"])[0]), int(query.get("limit", ["100"])[0])
        page = found[start : start + limit]
        more = {"x-next-token": str(start + limit)} if start + limit < len(found) else {}
        return _Reply(200, [self._listed(s) for s in page], more)

    def _created(self, sandbox: FakeSandbox) -> dict[str, Any]:
        """The ``Sandbox`` model (create and connect answers)."""
        return {
            "templateID": sandbox.template_id,
            "sandboxID": sandbox.sandbox_id,
            "alias": sandbox.template_id,
            "clientID": CLIENT_ID,
            "envdVersion": self.envd_version,
            "envdAccessToken": sandbox.envd_access_token,
            "trafficAccessToken": None,
            "domain": self.domain,
        }

    def _listed(self, sandbox: FakeSandbox) -> dict[str, Any]:
        """The ``ListedSandbox`` model (list answers)."""
        return {
            "templateID": sandbox.template_id,
            "alias": sandbox.template_id,
            "sandboxID": sandbox.sandbox_id,
            "clientID": CLIENT_ID,
            "startedAt": _iso(sandbox.started_at),
            "endAt": _iso(sandbox.end_at),
            "cpuCount": 2,
            "memoryMB": 512,
            "diskSizeMB": 512,
            "metadata": sandbox.metadata,
            "state": sandbox.state,
            "envdVersion": self.envd_version,
        }

    def _detail(self, sandbox: FakeSandbox) -> dict[str, Any]:
        """The ``SandboxDetail`` model (``get_info`` answers)."""
        lifecycle = {"onTimeout": sandbox.on_timeout, "autoResume": False}
        extra = {"envdAccessToken": sandbox.envd_access_token, "domain": self.domain, "lifecycle": lifecycle}
        return self._listed(sandbox) | extra


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers (they belong to the test runner), and telling when it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


@contextlib.asynccontextmanager
async def serve_fake_e2b_api(
    api_key: str,
    *,
    domain: str | None = None,
    envd_version: str = ENVD_VERSION,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> AsyncIterator[FakeE2BApi]:
    """Serve a :class:`FakeE2BApi` with uvicorn on 127.0.0.1 (an ephemeral port) in this event loop.

    Yields the fake once it accepts connections; its ``url`` is the SDK's ``api_url``. The server stops on exit.
    """
    api = FakeE2BApi(api_key, domain=domain, envd_version=envd_version, clock=clock)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    api.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        api, lifespan="off", log_config=None, log_level="warning", access_log=False, timeout_graceful_shutdown=5
    )
    server = _Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        ready = asyncio.create_task(server.ready.wait())
        await asyncio.wait({serving, ready}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            await serving  # re-raises why uvicorn stopped
            raise RuntimeError("uvicorn stopped before it served the fake E2B API")
        yield api
    finally:
        server.should_exit = True
        await serving
        sock.close()
