"""What a coordinator and its workers say to each other over Redis: key names, messages, settings.

- **Commands to run** go on one Redis Stream, ``{prefix}:tasks``, read by the consumer group ``{prefix}:workers``
  (``XREADGROUP``). Each entry is one run of one command (a ``RunRequest``): its run id
  (``{workflow}/{task}/{attempt}/{nonce}``, unique per dispatch), the coordinator's reply stream, the command, its
  variables, the names of its secrets (read from the worker's own environment: a secret never travels) and the
  files to put in its working directory first. A worker acknowledges (``XACK``) an entry once the run has ended
  and its end is on the reply stream.
- **Leases.** A worker holding an entry renews it every third of ``AGENTDECK_WORKER_LEASE`` (``XCLAIM ... JUSTID``
  resets its idle time). An entry idle for a whole lease belongs to a worker that died: any worker with a free slot
  takes it over (``XAUTOCLAIM``) and runs the command again. Execution is at least once; the coordinator records a
  run's end once (its run id), from the worker that holds the entry.
- **Replies** go on the coordinator's own stream, ``{prefix}:results:{coordinator}`` (one ``Reply`` per entry,
  in order per run): ``taken`` (which worker, and whether it took the entry over from another), ``lines``
  (output, already redacted), ``ended`` (how the command ended) or ``failed`` (the worker could not run it).
- **Controls** (pause, resume, kill) are published on ``{prefix}:worker-control`` and also kept in
  ``{prefix}:control:{run}`` for a worker that takes the entry later (a reclaim, a race with the publish).
- **Workers say they are there** in ``{prefix}:worker-roster`` at every heartbeat (``engine.workers.roster``).
- **The coordinator is alive** while ``{prefix}:alive:{coordinator}`` exists (it renews it every half lease; it
  lapses after two leases). A worker kills runs whose coordinator is gone, so no command outlives its engine.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from db.settings import SettingsError, explain_settings

PREFIX = "agentdeck"
#: A reply stream nobody reads (its coordinator died) is gone this long after its last reply.
REPLY_TTL_S = 3600
Control = Literal["pause", "resume", "kill"]
#: What XREAD and XREADGROUP answer: per stream, its entries (id, fields); None when the wait ran out.
StreamRead = list[tuple[str, list[tuple[str, dict[str, str]]]]] | None


class WorkerSettings(BaseSettings):
    """``AGENTDECK_WORKER_*``: how long a lease lasts, where workers keep task directories."""

    model_config = SettingsConfigDict(env_prefix="AGENTDECK_WORKER_", extra="ignore")

    lease: float = Field(default=15.0, gt=0.2, le=3600)  # AGENTDECK_WORKER_LEASE: seconds
    dir: str | None = None  # AGENTDECK_WORKER_DIR: task directories (default: $XDG_DATA_HOME/agentdeck/worker)
    secrets: str | None = None  # AGENTDECK_WORKER_SECRETS: comma-separated variables commands may ask for
    #: AGENTDECK_WORKER_REPLY_BYTES: output waiting on a coordinator's reply stream beyond which a command's output is
    #: held back (Redis's estimate; 2,000 waiting replies hold it back too, whatever their size)
    reply_bytes: int = Field(default=16 << 20, ge=64 << 10)

    @model_validator(mode="wrap")
    @classmethod
    def _one_line(cls, data: Any, handler: Any) -> Any:
        try:
            return handler(data)
        except ValidationError as exc:
            raise SettingsError(explain_settings(exc)) from None


@dataclass(frozen=True)
class Keys:
    """The Redis names one deployment (``prefix``) uses."""

    prefix: str = PREFIX

    @property
    def tasks(self) -> str:
        return f"{self.prefix}:tasks"

    @property
    def group(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def control_channel(self) -> str:
        return f"{self.prefix}:worker-control"

    @property
    def roster(self) -> str:
        return f"{self.prefix}:worker-roster"

    def results(self, coordinator: str) -> str:
        return f"{self.prefix}:results:{coordinator}"

    def alive(self, coordinator: str) -> str:
        return f"{self.prefix}:alive:{coordinator}"

    def control(self, run: str) -> str:
        return f"{self.prefix}:control:{run}"


def coordinator_token(owner: str) -> str:
    """A coordinator's name in Redis keys: its owner id (``host:pid:nonce``) with nothing a key pattern reads."""
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", owner)


@dataclass(frozen=True)
class RunRequest:
    """One command to run on a worker (an entry of the tasks stream)."""

    run: str
    reply: str
    coordinator: str
    workflow: str
    task: str
    command: str
    env: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)  # names: the worker reads their values from its environment
    network: bool = False
    timeout: float | None = None  # seconds the command may run, paused time excluded (the sandbox's own timeout)
    files: dict[str, str] = field(default_factory=dict)  # relative path -> text, written before the command starts

    def encode(self) -> dict[str, str]:
        return {"m": json.dumps(asdict(self))}

    @classmethod
    def decode(cls, fields: dict[str, str]) -> RunRequest:
        """Raises ``ValueError`` for an entry that is not a run request (written by something else)."""
        try:
            data = json.loads(fields["m"])
            return cls(**data)
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a run request: {exc}") from exc


@dataclass(frozen=True)
class Reply:
    """One message from a worker about one run (an entry of a coordinator's reply stream)."""

    run: str
    kind: Literal["taken", "lines", "ended", "failed"]
    worker: str
    data: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> dict[str, str]:
        return {"m": json.dumps(asdict(self))}

    @classmethod
    def decode(cls, fields: dict[str, str]) -> Reply | None:
        try:
            return cls(**json.loads(fields["m"]))
        except (KeyError, TypeError, json.JSONDecodeError):
            return None


def encode_control(run: str, action: Control) -> str:
    return json.dumps({"run": run, "action": action})


def decode_control(message: str) -> tuple[str, Control] | None:
    try:
        data = json.loads(message)
        action = data["action"]
        if action in ("pause", "resume", "kill"):
            return str(data["run"]), action
    except (KeyError, TypeError, json.JSONDecodeError):
        pass
    return None
