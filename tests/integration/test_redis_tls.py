"""Redis over TLS (``rediss://``): the event bus, ``agentdeck worker`` and ``agentdeck run`` against a real
``redis-server`` that serves TLS only (``--port 0 --tls-port``), with a throwaway CA the URL names as
``?ssl_ca_certs=`` and a password. A handshake that cannot succeed (a CA that did not sign the server's
certificate, ``redis://`` against the TLS port, ``rediss://`` against a plain one) ends in exit 3 with a hint, and a
TLS setting that cannot work (a CA file that is not there) in exit 2; never a traceback, never the password.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from db import connect
from db.models import EventType, TaskStatus, WorkflowStatus
from db.stores import EventStore, Stores
from engine.bus import RedisBus
from tests.integration.test_redis_outage import emit, make_events, read, seqs
from tests.integration.test_workers import AGENTDECK, LEASE_S, coordinator, spec, workers
from tests.support.polling import until
from tests.support.redis_server import PASSWORD, RedisServer, make_ca, own_redis, tls_url

LIMIT_S = 120.0  # generous: only reached when something is broken


@pytest.fixture
async def store() -> AsyncIterator[EventStore]:
    async with connect("mem://") as db:
        yield Stores.over(db).events


@pytest.fixture
async def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RedisServer]:
    """A redis-server that serves TLS only; its ``url`` is ``rediss://:PASSWORD@127.0.0.1:PORT/0?ssl_ca_certs=…``."""
    monkeypatch.setenv("AGENTDECK_WORKER_LEASE", LEASE_S)  # the coordinator's side of the workers' lease
    async with own_redis(tmp_path / "redis", tls=True) as started:
        assert started.url.startswith("rediss://") and "?ssl_ca_certs=" in started.url
        yield started


def cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTDECK_")} | {"XDG_DATA_HOME": str(home)}
    return subprocess.run([AGENTDECK, *args], env=env, capture_output=True, text=True, timeout=LIMIT_S)


async def test_the_bus_publishes_and_another_bus_subscribes_over_tls(server: RedisServer, store: EventStore) -> None:
    """A dashboard's bus (its own connections) receives what the engine's bus publishes, both over rediss://."""
    async with RedisBus(server.url, store) as engine_bus, RedisBus(server.url, store) as watcher:
        async with watcher.subscribe("wf-tls") as sub:
            await sub.wait_ready()
            await emit(store, engine_bus, make_events("wf-tls", 1, 50))
            got = await read(sub, 50)
        assert engine_bus.reachable is True and engine_bus.dropped == 0
    assert seqs(got) == list(range(1, 51))
    assert {event.data["n"] for event in got} == set(range(1, 51))


async def test_a_worker_process_runs_a_task_for_the_coordinator_over_tls(server: RedisServer, tmp_path: Path) -> None:
    task = {"id": "hello", "agent": "sh", "run": "echo over tls; echo done"}
    async with coordinator(server, tmp_path) as engine:
        with workers(server, tmp_path, count=1, concurrency=1) as started:
            await until(lambda: started[0].ready(), limit_s=LIMIT_S)
            wf = await engine.submit(spec([task]))
            async with asyncio.timeout(LIMIT_S):
                assert await engine.wait(wf) is WorkflowStatus.COMPLETED
            events = await engine.stores.events.list(wf)
            rows = await engine.stores.tasks.list(wf)
            log = started[0].log.read_text()
    assert [row.status for row in rows] == [TaskStatus.COMPLETED]
    lines = [line for e in events if e.type == EventType.TASK_OUTPUT for line in e.data["lines"]]
    assert lines == ["over tls", "done"]
    assert PASSWORD not in log and "Traceback" not in log, log


async def test_a_run_with_its_events_over_tls_completes(server: RedisServer, tmp_path: Path) -> None:
    """``agentdeck run --redis rediss://…``: the engine's bus reaches Redis over TLS (it exits 3 if it cannot)."""
    flow = tmp_path / "flow.yaml"
    flow.write_text("name: tls\nagents: {sh: {kind: shell}}\ntasks: [{id: a, agent: sh, run: 'echo hi'}]\n")
    done = await asyncio.to_thread(cli, "run", str(flow), "--headless", "--db", "mem://", "--redis", server.url,
                                   home=tmp_path)  # fmt: skip
    assert done.returncode == 0 and "completed" in done.stderr, done.stderr


def _other_ca(server: RedisServer) -> Path:
    """A CA that did not sign the server's certificate."""
    return make_ca(server.directory / "other-ca", "other")[0]


@pytest.mark.parametrize(
    ("case", "said", "hint"),
    [
        ("another CA", "the server's certificate was not accepted", "ssl_ca_certs="),
        ("no CA", "the server's certificate was not accepted", "ssl_ca_certs="),
        ("password as a parameter, another CA", "the server's certificate was not accepted", "ssl_ca_certs="),
        ("redis:// against the TLS port", "the server closed the connection at once", "rediss://"),
    ],
)
async def test_a_worker_that_cannot_complete_the_tls_handshake_exits_3_with_a_hint(
    server: RedisServer, tmp_path: Path, case: str, said: str, hint: str
) -> None:
    url = {
        "another CA": tls_url(server.port, _other_ca(server)),
        "no CA": f"rediss://:{PASSWORD}@127.0.0.1:{server.port}/0",  # the system's CAs did not sign it either
        "password as a parameter, another CA": f"rediss://127.0.0.1:{server.port}/0?password={PASSWORD}"
        f"&ssl_ca_certs={_other_ca(server)}",
        "redis:// against the TLS port": f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0",
    }[case]
    refused = await asyncio.to_thread(cli, "worker", "--redis", url, home=tmp_path)
    assert refused.returncode == 3, refused.stderr
    assert said in refused.stderr and "hint: " in refused.stderr and hint in refused.stderr, refused.stderr
    assert f"127.0.0.1:{server.port}" in refused.stderr, "says which server"
    assert PASSWORD not in refused.stderr and "***" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr


async def test_rediss_against_a_plain_redis_ends_in_exit_3_not_a_hang(tmp_path: Path, server: RedisServer) -> None:
    """A server without TLS never answers the handshake: the connect timeout ends it (a few retries of 5 s)."""
    assert server.tls is not None
    async with own_redis(tmp_path / "plain") as plain:
        url = tls_url(plain.port, server.tls.ca)
        refused = await asyncio.to_thread(cli, "worker", "--redis", url, home=tmp_path)
    assert refused.returncode == 3 and "no TLS handshake" in refused.stderr, refused.stderr
    assert "use redis://" in refused.stderr and PASSWORD not in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr


async def test_a_run_that_cannot_complete_the_tls_handshake_exits_3_before_it_starts(
    server: RedisServer, tmp_path: Path
) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text("name: tls\nagents: {sh: {kind: shell}}\ntasks: [{id: a, agent: sh, run: 'echo hi'}]\n")
    url = tls_url(server.port, _other_ca(server))
    refused = await asyncio.to_thread(cli, "run", str(flow), "--headless", "--db", "mem://", "--redis", url,
                                      home=tmp_path)  # fmt: skip
    assert refused.returncode == 3 and "the server's certificate was not accepted" in refused.stderr, refused.stderr
    assert "hi" not in refused.stdout and PASSWORD not in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("ssl_ca_certs={missing}", "which does not exist on this machine"),
        ("ssl_ca_certs={not_a_ca}", "bad Redis URL"),
        ("ssl_cert_reqs=sometimes", "Invalid SSL Certificate Requirements Flag"),
        ("no_such_parameter=1", "no_such_parameter"),
    ],
)
def test_tls_settings_that_cannot_work_are_bad_input_exit_2(tmp_path: Path, query: str, said: str) -> None:
    """Found before anything connects (no server needed): exit 2, the password not shown."""
    not_a_ca = tmp_path / "not-a-ca.pem"
    not_a_ca.write_text("not a certificate\n")
    filled = query.format(missing=tmp_path / "missing.pem", not_a_ca=not_a_ca)
    url = f"rediss://:{PASSWORD}@127.0.0.1:1/0?{filled}"
    for args in (["worker", "--redis", url], ["run", "flow.yaml", "--headless", "--db", "mem://", "--redis", url]):
        if args[0] == "run":
            (tmp_path / "flow.yaml").write_text("name: t\nagents: {sh: {kind: shell}}\ntasks: [{id: a, agent: sh, "
                                                "run: 'true'}]\n")  # fmt: skip
            args[1] = str(tmp_path / "flow.yaml")
        bad = cli(*args, home=tmp_path)
        assert bad.returncode == 2, (args[0], bad.stderr)
        assert said in bad.stderr and "hint: " in bad.stderr, bad.stderr
        assert PASSWORD not in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
