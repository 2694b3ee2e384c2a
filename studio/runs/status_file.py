"""status.json: a run's typed record of its processes, read and written only through `Run` (runs/folder.py).

It holds what the files of events cannot: who the trainer is (to tell it from another process that took its
pid), when it was last launched and asked to stop (so that an `end` from an earlier attempt is not taken for
this one's), and, for a Slurm run, its job and what was asked of Slurm. Every field is read by something;
a run's status itself is never stored, it is worked out (runs/state.py).

status.json is read like any file studio did not write this minute: a field of the wrong type reads as its
default, and keys of older versions (state, host, trainer_pid, world_size, node_rank) are ignored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

MAX_PID = 1 << 22  # Linux's pid_max ceiling; anything above is not a pid


def valid_pid(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 1 < value < MAX_PID else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class StatusFile:
    profile: str = ""                   # the profile's name: the listings' "profile" column
    created_at: float | None = None     # when the run folder was made: the listings' start time
    kind: str = "train"                 # train | probe (`studio probe` runs are kept out of the history)
    attempts: int = 0                   # launches so far: the next launch is attempt attempts + 1
    launched_at: float = 0.0            # the latest launch: an `end` older than this belongs to an earlier attempt
    stop_requested_at: float = 0.0      # the latest stop request: a trainer gone after it counts as stopped
    stop_reason: str = ""               # why, when the user did not ask (Slurm's time limit, a requeue): its `end` says
    pid: int | None = None              # the trainer (or its launcher), the leader of the job's processes
    pid_started_at: float | None = None  # that process's start time: the same pid later is another process
    pgid: int | None = None             # the process group studio created for it (kill reaches all of it)
    slurm_job: str = ""                 # the Slurm job of the latest submission ("" for a run on this machine)
    slurm_request: dict[str, Any] | None = None  # what was asked of Slurm (partition, nodes, time...)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}

    @property
    def is_probe(self) -> bool:
        return self.kind == "probe"

    @property
    def slurm_job_id(self) -> str | None:
        """The Slurm job id when it is one (digits, as sbatch prints it)."""
        return self.slurm_job if self.slurm_job.isdigit() else None


FIELDS = frozenset(f.name for f in fields(StatusFile))


def status_from_dict(raw: Any) -> StatusFile:
    """The record in status.json's object; anything unreadable reads as the default (an empty record)."""
    if not isinstance(raw, dict):
        return StatusFile()

    def text(key: str) -> str:
        return raw[key] if isinstance(raw.get(key), str) else ""

    attempts = raw.get("attempts")
    return StatusFile(
        profile=text("profile"), created_at=_number(raw.get("created_at")), kind=text("kind") or "train",
        attempts=attempts if isinstance(attempts, int) and not isinstance(attempts, bool) and attempts >= 0 else 0,
        launched_at=_number(raw.get("launched_at")) or 0.0,
        stop_requested_at=_number(raw.get("stop_requested_at")) or 0.0, stop_reason=text("stop_reason"),
        pid=valid_pid(raw.get("pid")), pid_started_at=_number(raw.get("pid_started_at")),
        pgid=valid_pid(raw.get("pgid")), slurm_job=text("slurm_job"),
        slurm_request=raw["slurm_request"] if isinstance(raw.get("slurm_request"), dict) else None)
