"""Which workers there are: each worker says so in Redis at every heartbeat, ``agentdeck workers`` reads it.

One hash, ``{prefix}:worker-roster``: a field per worker (its ``host:pid``) holding what it last said — how many
commands it may run at once, which it runs now, how many it has taken, when it started — and when Redis last heard
it (Redis's own clock, so machines' clocks need not agree). A worker that stops says goodbye (its field goes); one
that dies stops being heard: it is *lost* once three of its leases pass, and other workers drop it from the hash
after an hour, so the roster does not grow with restarts.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from engine.workers.protocol import Keys

#: A worker not heard for this many of its leases is shown as lost.
LOST_AFTER_LEASES = 3
#: Seconds after which a lost worker is dropped from the roster by the others.
FORGET_LOST_S = 3600.0

# KEYS[1]: the roster. ARGV: name, what it says (JSON, "heard" left out), seconds after which silent ones go.
# Stamps "heard" with Redis's clock (milliseconds), and drops the workers silent for longer than that.
_ANNOUNCE_LUA = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local said = cjson.decode(ARGV[2])
said['heard'] = ms
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(said))
local limit = ms - tonumber(ARGV[3]) * 1000
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local ok, other = pcall(cjson.decode, all[i + 1])
  if not ok or type(other) ~= 'table' or tonumber(other['heard'] or 0) < limit then
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return ms
"""

# KEYS[1]: the roster. Returns Redis's clock in milliseconds and every worker's field, in one step.
_READ_LUA = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
return {ms, redis.call('HGETALL', KEYS[1])}
"""


@dataclass
class WorkerInfo:
    """What one worker last said of itself, and how long ago (``seen_s``) Redis heard it."""

    name: str
    concurrency: int
    lease: float
    started: float  #: its start, seconds since the epoch (its own clock)
    taken: int  #: commands it has taken since it started, new or taken over
    running: list[str] = field(default_factory=list)  #: ``workflow/task`` of each command it runs now
    seen_s: float = 0.0

    @property
    def lost(self) -> bool:
        """Not heard for three of its leases: it died, or cannot reach Redis."""
        return self.seen_s > LOST_AFTER_LEASES * self.lease

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"state": "lost" if self.lost else "up"}


class Roster:
    """The roster in Redis at ``client``, for the names in ``keys``."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._announce = client.register_script(_ANNOUNCE_LUA)
        self._read = client.register_script(_READ_LUA)

    async def announce(self, info: WorkerInfo) -> None:
        """Say ``info`` now (and drop the workers silent for an hour)."""
        said = {k: v for k, v in asdict(info).items() if k not in ("name", "seen_s")}
        await self._announce(keys=[self.keys.roster], args=[info.name, json.dumps(said), FORGET_LOST_S])

    async def leave(self, name: str) -> None:
        await self.client.hdel(self.keys.roster, name)

    async def read(self) -> list[WorkerInfo]:
        """Every worker in the roster, up ones first, then by name."""
        now_ms, flat = await self._read(keys=[self.keys.roster])
        found = []
        for name, raw in zip(flat[::2], flat[1::2], strict=True):
            try:
                said = json.loads(raw)
                info = WorkerInfo(
                    name=str(name),
                    concurrency=int(said["concurrency"]),
                    lease=float(said["lease"]),
                    started=float(said["started"]),
                    taken=int(said["taken"]),
                    running=[str(run) for run in said.get("running") or []],
                    seen_s=max(0.0, (int(now_ms) - int(said["heard"])) / 1000),
                )
            except (KeyError, TypeError, ValueError):
                continue  # written by something else: not a worker's
            found.append(info)
        return sorted(found, key=lambda info: (info.lost, info.name))


async def read_roster(url: str, keys: Keys | None = None) -> list[WorkerInfo]:
    """The roster in the Redis at ``url``, on a connection of its own.

    Raises:
        BadRedisUrl: the URL cannot be used (bad input).
        BusUnavailable: Redis cannot be reached, or refused us (what and why, the password hidden).
    """
    from engine.bus._redis_publisher import CONNECTION_ERRORS
    from engine.bus.redis_url import check, unreachable
    from engine.workers.dispatcher import redis_client

    check(url)
    client = redis_client(url, "agentdeck:roster")
    try:
        return await Roster(client, keys or Keys()).read()
    except (*CONNECTION_ERRORS, redis.exceptions.AuthenticationError) as exc:
        raise unreachable(url, exc) from exc
    finally:
        await client.aclose()
