"""What an acknowledged write on embedded ``surrealkv://`` survives: a SIGKILL of the writing process.

The guarantee (issue 9; evidence in the README's "State (SurrealDB)" section): once ``await db.query(...)``
returns, the commit is in the write-ahead log — written to the OS before the commit returns and, with SurrealDB's
default ``sync=every``, fsynced too — so killing the process right after loses nothing. Power loss is not tested.

A child (``durability_child.py``) appends batches of 50 events through ``SurrealEventStore.append_many``. Either it
SIGKILLs itself the moment the k-th ``await`` returns (the store must then hold exactly k batches), or the parent
SIGKILLs it at an arbitrary point while the reopen-to-flush workaround (db/_memtable_flush.py) runs every few
hundred KB (the store must hold every batch the child reported, whole batches only, gap-free). The slow variants
repeat both many times with varied k.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from db import connect
from db.errors import DatabaseUnavailable
from db.stores.surreal_core import SurrealEventStore
from tests.integration.durability_child import BATCH, WORKFLOW

ROOT = Path(__file__).resolve().parents[2]
# Small enough that a few dozen batches cross it, so kills also land around a close-flush-reopen.
SMALL_FLUSH_BYTES = 256 * 1024


def child(url: str, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTDECK_")}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.durability_child", url, *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stored_seqs(url: str, attempts: int = 100) -> list[int]:
    """The event seqs the store holds, in order. Right after a SIGKILL the store's lock may take a moment to go."""

    async def read() -> list[int]:
        async with connect(url) as db:
            return [event.seq for event in await SurrealEventStore(db).list(WORKFLOW)]

    for _ in range(attempts - 1):
        try:
            return asyncio.run(read())
        except DatabaseUnavailable:
            time.sleep(0.1)
    return asyncio.run(read())


def self_kill_trial(tmp_path: Path, k: int) -> None:
    """The child kills itself right after its k-th acknowledged batch: exactly k batches must be stored."""
    url = f"surrealkv://{tmp_path / f'k{k}.db'}"
    proc = child(url, "--batches", str(k), "--self-kill")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, f"the child did not die by SIGKILL (rc {proc.returncode}): {stderr}"
    assert stored_seqs(url) == list(range(1, k * BATCH + 1)), f"after {k} acknowledged batches"


def parent_kill_trial(tmp_path: Path, name: str, acked_before_kill: int) -> None:
    """Kill the child at an arbitrary point after it reported ``acked_before_kill`` batches."""
    url = f"surrealkv://{tmp_path / f'{name}.db'}"
    proc = child(url, "--flush-bytes", str(SMALL_FLUSH_BYTES))
    acked = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("acked "):
                acked = int(line.split()[1])
                if acked >= acked_before_kill:
                    break
        else:
            pytest.fail(f"the child stopped before its kill point: {proc.wait(timeout=30)}, {proc.stderr}")
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    seqs = stored_seqs(url)
    assert seqs == list(range(1, len(seqs) + 1)), "the stored events have a gap"
    assert len(seqs) % BATCH == 0, f"a batch was stored in part: {len(seqs)} events"
    assert len(seqs) >= acked * BATCH, f"{acked} batches were acknowledged, {len(seqs) // BATCH} stored"
    # The trial covered the workaround: the engine was closed, flushed and reopened at least once.
    assert list((tmp_path / f"{name}.db" / "sstables").glob("*.sst")), "no memtable was flushed during the trial"


@pytest.mark.parametrize("k", [1, 25])
def test_an_acknowledged_batch_survives_sigkill_right_after_its_await(tmp_path: Path, k: int) -> None:
    self_kill_trial(tmp_path, k)


def test_a_sigkill_during_reopen_to_flush_loses_no_acknowledged_batch(tmp_path: Path) -> None:
    parent_kill_trial(tmp_path, "during-flush", acked_before_kill=40)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_fifty_self_kill_trials_lose_nothing(tmp_path: Path) -> None:
    rng = random.Random(9)
    for trial in range(50):
        self_kill_trial(tmp_path / f"t{trial}", rng.randint(1, 300))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_thirty_arbitrary_kills_around_flushes_lose_nothing(tmp_path: Path) -> None:
    rng = random.Random(10)
    for trial in range(30):
        parent_kill_trial(tmp_path, f"t{trial}", acked_before_kill=rng.randint(10, 400))
