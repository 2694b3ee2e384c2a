"""What state a run is in, from its files and its process: the one answer for every listing.

queued      submitted to Slurm and waiting (the summary says Slurm's reason)
running     the trainer process is alive
completed, stopped, failed
            its last attempt wrote that `end` (or was stopped before it could write one)
crashed     the process is gone without an `end`: killed, or died; resume continues it
damaged     its files cannot be read; the reason says which and why
unreadable  this user may not look into its folder (another owner's, or mode 0700); the reason says whose
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from studio.runs.events import END_STATUSES, Timeline, load_summary_timeline
from studio.runs.folder import Run
from studio.runs.health import health_alerts
from studio.runs.liveness import is_alive

STATUSES = ("queued", "running", "completed", "stopped", "failed", "crashed", "damaged", "unreadable")


def run_status(run: Run, timeline: Timeline | None = None, alive: bool | None = None) -> str:
    """running, completed, stopped, failed, crashed, damaged or unreadable.

    An `end` written after the latest launch counts even while the process is still
    exiting; an older one (the attempt before a resume) does not. A trainer that dies
    after a stop request (before it could save anything) counts as stopped, not crashed.
    """
    if timeline is None:
        try:
            timeline = run.timeline()
        except PermissionError:
            return "unreadable" if run.unreadable() else "damaged"
        except OSError:
            return "damaged"
    alive = is_alive(run) if alive is None else alive
    status = status_from(timeline, alive, run.status_number("launched_at"), run.status_number("stop_requested_at"))
    slurm = slurm_word(run, status)
    return slurm[0] if slurm else status


def slurm_word(run: Run, status: str) -> tuple[str, str] | None:
    """For a run submitted to Slurm: queued (and why) or running as Slurm sees it, or Slurm's own ending."""
    if "slurm_job" not in run.read_status_file() or status == "running":
        return None
    from studio.runs.slurm import slurm_status

    return slurm_status(run, status if status in END_STATUSES else None)


def status_from(timeline: Timeline, alive: bool, launched_at: float, stop_requested_at: float) -> str:
    """The status from what was read: the events, whether the process lives, and status.json's times."""
    end = timeline.end
    if end and end.status in END_STATUSES and (not alive or end.time >= launched_at):
        return end.status
    if alive:
        return "running"
    if launched_at and stop_requested_at >= launched_at:
        return "stopped"
    return "crashed"


@dataclass(frozen=True)
class RunSummary:
    id: str
    profile: str
    status: str
    dir: str
    step: int
    max_steps: int | None
    loss: float | None
    started_at: float | None
    ended_at: float | None
    error_kind: str | None
    tokens_per_s: float | None = None
    eval_loss: float | None = None
    alert: str | None = None  # a live run gone quiet: "no step for N s ..."
    train_s: float | None = None  # the training its logged steps took, every attempt (the "train time")
    method: str | None = None     # lora, qlora, full: from the trainer's start record
    model: str | None = None      # the base model's name, as its profile names it
    problem: str | None = None   # why a damaged or unreadable run cannot be read
    note: str = ""               # the user's own note on the run

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def start_model(start: Any) -> str | None:
    """The model a start record's profile names (None without one)."""
    model = start.config.get("model") if start else None
    name = model.get("name") if isinstance(model, dict) else None
    return name if isinstance(name, str) else None


def summarize(run: Run) -> RunSummary:
    """A run's line in a listing; a damaged run gets one too, with the reason."""
    status_file = run.read_status_file()
    profile = status_file.get("profile") if isinstance(status_file.get("profile"), str) else ""
    created = status_file.get("created_at")
    started = float(created) if isinstance(created, (int, float)) and not isinstance(created, bool) else None
    unreadable = run.unreadable()
    if unreadable:
        return RunSummary(run.id, profile, "unreadable", str(run.dir), 0, None, None, started, None, None,
                          problem=unreadable)
    problems = run.entry_problems()
    if problems:
        return RunSummary(run.id, profile, "damaged", str(run.dir), 0, None, None, started, None, None,
                          problem="; ".join(problems))
    try:
        tl = load_summary_timeline(run.dir)  # bounded: a huge events file lists as fast as a small one
    except OSError as e:
        return RunSummary(run.id, profile, "damaged", str(run.dir), 0, None, None, started, None, None,
                          problem=f"cannot read {run.events_path.name}: {e.strerror or e}")
    last, start, end = tl.last_step, tl.start, tl.end
    last_eval = tl.evals[max(tl.evals)] if tl.evals else None
    status = run_status(run, tl)
    slurm = slurm_word(run, status) if status in ("queued", "failed", "stopped") else None
    return RunSummary(
        id=run.id, profile=profile, status=status, dir=str(run.dir),
        problem=slurm[1] if slurm and status == "queued" else None,
        step=last.step if last else 0,
        max_steps=(last.max_steps if last else None) or (start.max_steps if start else None),
        loss=last.loss if last else None, started_at=started, ended_at=end.time if end else None,
        error_kind=end.error_kind if end else None,
        tokens_per_s=(end.train_tokens_per_s if end and end.train_tokens_per_s else
                      (last.tokens_per_s if last else None)),
        eval_loss=last_eval.eval_loss if last_eval else None,
        train_s=last.elapsed_s if last else None,
        method=start.method if start else None, model=start_model(start), note=run.note(),
        alert=next((a.message for a in health_alerts(tl, running=True, recent=50) if a.kind == "stall"), None)
        if status == "running" else None)
