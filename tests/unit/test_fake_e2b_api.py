"""The fake E2B REST API (tests/support/fake_e2b_api.py) answers the real, unmodified e2b SDK as E2B would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from e2b import AsyncSandbox, AuthenticationException, SandboxException, SandboxNotFoundException, SandboxQuery
from e2b.connection_config import ApiParams

from tests.support.fake_e2b_api import ENVD_VERSION, FakeE2BApi, serve_fake_e2b_api

KEY = "e2b_fake_key_for_tests"
#: Nothing listens here: none of these tests reaches envd (it has its own fake).
ENVD_URL = "http://127.0.0.1:9"


@pytest.fixture(autouse=True)
def _clean_e2b_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No E2B_* setting of the machine running the tests may steer the SDK (debug mode, a real API or key)."""
    for name in ("E2B_DEBUG", "E2B_API_KEY", "E2B_API_URL", "E2B_DOMAIN", "E2B_SANDBOX_URL", "E2B_HTTP_VERSION"):
        monkeypatch.delenv(name, raising=False)


def opts(api: FakeE2BApi, key: str = KEY) -> ApiParams:
    """Explicit connection options, as the engine passes them: the fake's URL and a key, envd elsewhere."""
    return ApiParams(api_key=key, api_url=api.url, sandbox_url=ENVD_URL)


async def test_create_list_pause_connect_set_timeout_kill() -> None:
    async with serve_fake_e2b_api(KEY) as api:
        meta = {"run": "r 1&2=3", "task": "t1"}
        sbx = await AsyncSandbox.create("base", timeout=60, metadata=meta, envs={"A": "1"}, **opts(api))
        other = await AsyncSandbox.create("base", timeout=60, metadata={"run": "r2"}, **opts(api))
        created = api.sandboxes[sbx.sandbox_id]
        assert (created.template_id, created.metadata, created.envs) == ("base", meta, {"A": "1"})
        assert str(sbx._envd_version) == ENVD_VERSION
        assert sbx.connection_config.sandbox_headers["X-Access-Token"] == created.envd_access_token

        paginator = AsyncSandbox.list(query=SandboxQuery(metadata={"run": "r 1&2=3"}), **opts(api))
        assert [s.sandbox_id for s in await paginator.next_items()] == [sbx.sandbox_id]
        assert not paginator.has_next

        assert await sbx.pause() is True
        assert await sbx.pause() is False  # already paused: 409
        assert (await sbx.get_info()).state == "paused"
        resumed = await AsyncSandbox.connect(sbx.sandbox_id, timeout=30, **opts(api))
        assert resumed.sandbox_id == sbx.sandbox_id
        assert (await resumed.get_info()).state == "running"

        await sbx.set_timeout(3600)
        assert created.end_at - datetime.now(UTC) > timedelta(minutes=59)
        info = await sbx.get_info()
        assert (info.metadata, info.template_id) == (meta, "base")

        assert await sbx.kill() is True
        assert await AsyncSandbox.kill(sbx.sandbox_id, **opts(api)) is False  # gone: 404
        with pytest.raises(SandboxNotFoundException):
            await sbx.get_info()
        assert await AsyncSandbox.list(query=SandboxQuery(metadata=meta), **opts(api)).next_items() == []
        await other.kill()

        assert not api.alive()
        assert {c.api_key for c in api.calls} == {KEY}
        assert api.routes[:2] == [("POST", "/v2/sandboxes")] * 2
        assert ("POST", f"/sandboxes/{sbx.sandbox_id}/pause") in api.routes
        assert ("POST", f"/v2/sandboxes/{sbx.sandbox_id}/connect") in api.routes
        assert ("POST", f"/sandboxes/{sbx.sandbox_id}/timeout") in api.routes


async def test_list_pages_with_the_next_token() -> None:
    async with serve_fake_e2b_api(KEY) as api:
        ids = {(await AsyncSandbox.create(metadata={"k": "v"}, **opts(api))).sandbox_id for _ in range(3)}
        paginator = AsyncSandbox.list(query=SandboxQuery(metadata={"k": "v"}), limit=2, **opts(api))
        pages = [await paginator.next_items()]
        assert paginator.has_next
        pages.append(await paginator.next_items())
        assert not paginator.has_next
        assert [len(p) for p in pages] == [2, 1]
        assert {s.sandbox_id for p in pages for s in p} == ids


async def test_a_wrong_or_missing_key_is_refused_as_the_sdk_expects() -> None:
    async with serve_fake_e2b_api(KEY) as api:
        with pytest.raises(AuthenticationException):
            await AsyncSandbox.create(**opts(api, key="e2b_wrong"))
        with pytest.raises(AuthenticationException):
            await AsyncSandbox.list(**opts(api, key="e2b_wrong")).next_items()
        async with httpx.AsyncClient(base_url=api.url) as client:  # the SDK never sends a request without a key
            answer = await client.get("/v2/sandboxes")
        assert (answer.status_code, answer.json()["code"]) == (401, 401)
        assert api.sandboxes == {}
        assert [c.api_key for c in api.calls] == ["e2b_wrong", "e2b_wrong", None]


async def test_a_running_sandbox_expires_at_its_end_time() -> None:
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    async with serve_fake_e2b_api(KEY, clock=lambda: now[0]) as api:
        killed = await AsyncSandbox.create(timeout=10, **opts(api))
        paused = await AsyncSandbox.create(timeout=10, lifecycle={"on_timeout": "pause"}, **opts(api))
        now[0] += timedelta(seconds=11)
        with pytest.raises(SandboxNotFoundException):
            await killed.get_info()
        assert (await paused.get_info()).state == "paused"
        assert [s.sandbox_id for s in api.alive()] == [paused.sandbox_id]


async def test_an_unfaked_route_fails_loudly() -> None:
    async with serve_fake_e2b_api(KEY) as api:
        sbx = await AsyncSandbox.create(**opts(api))
        with pytest.raises(SandboxException, match="501"):
            await sbx.get_metrics()
