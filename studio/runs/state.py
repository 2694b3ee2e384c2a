"""What state a run is in, from its files, its process and Slurm: `run_status` is the one answer, for the CLI,
the dashboard, the monitor and the launcher alike. The statuses and their meanings: runs/status.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from studio.runs.events import End, Start, Timeline, load_summary_timeline
from studio.runs.folder import Run
from studio.runs.health import health_alerts
from studio.runs.liveness import is_alive
from studio.runs.status import END_STATUSES, RunStatus

STATUSES = tuple(RunStatus)


def run_status(run: Run, timeline: Timeline | None = None, alive: bool | None = None) -> RunStatus:
    """The run's status, reading what the caller has not (its events, its process): `status_of` decides."""
    if timeline is None:
        try:
            timeline = run.timeline()
        except PermissionError:
            return RunStatus.UNREADABLE if run.unreadable() else RunStatus.DAMAGED
        except OSError:
            return RunStatus.DAMAGED
    return status_of(run, timeline.end, is_alive(run) if alive is None else alive)


def status_of(run: Run, end: End | None, alive: bool) -> RunStatus:
    """The one rule, from the run's latest `end` record and whether its trainer lives (plus status.json's times
    and, for a Slurm run, Slurm itself).

    An `end` written after the latest launch counts even while the process is still exiting; an older one
    (the attempt before a resume) does not. A trainer that dies after a stop request (before it could save
    anything) counts as stopped, not crashed. A Slurm run is queued while Slurm holds it, and when its trainer
    could write no `end` (a time limit, a dead node), Slurm's ending says what happened.
    """
    record = run.status_file()
    ended = RunStatus.of(end.status) if end else None
    if end and ended in END_STATUSES and (not alive or end.time >= record.launched_at):
        status = ended
    elif alive:
        status = RunStatus.RUNNING
    elif record.launched_at and record.stop_requested_at >= record.launched_at:
        status = RunStatus.STOPPED
    else:
        status = RunStatus.CRASHED
    slurm = slurm_word(run, status)
    return slurm[0] if slurm else status


def slurm_word(run: Run, status: RunStatus) -> tuple[RunStatus, str] | None:
    """For a run submitted to Slurm: queued (and why) or running as Slurm sees it, or Slurm's own ending."""
    if not run.status_file().slurm_job or status == RunStatus.RUNNING:
        return None
    from studio.runs.slurm import slurm_status

    return slurm_status(run, status if status in END_STATUSES else None)


@dataclass(frozen=True)
class RunSummary:
    id: str
    profile: str
    status: RunStatus
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
    slurm_job: str = ""          # the Slurm job of its latest submission ("" for a run on this machine)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def trained_by(run: Run, start: Start | None) -> dict[str, str | None]:
    """The method and model of a run that started training: its `start` record says (a run started by an
    older studio says so only in plan.json, read then)."""
    if start is None:
        return {"method": None, "model": None}
    if start.method is None:
        plan = run.plan()
        return {"method": plan.final.profile.method.type if plan else None, "model": plan.model if plan else None}
    return {"method": start.method, "model": start.model}


def summarize(run: Run) -> RunSummary:
    """A run's line in a listing; a damaged run gets one too, with the reason."""
    record = run.status_file()
    profile, started, job = record.profile, record.created_at, record.slurm_job
    unreadable = run.unreadable()
    if unreadable:
        return RunSummary(run.id, profile, RunStatus.UNREADABLE, str(run.dir), 0, None, None, started, None, None,
                          problem=unreadable)
    problems = run.entry_problems()
    if problems:
        return RunSummary(run.id, profile, RunStatus.DAMAGED, str(run.dir), 0, None, None, started, None, None,
                          problem="; ".join(problems))
    try:
        tl = load_summary_timeline(run.dir)  # bounded: a huge events file lists as fast as a small one
    except OSError as e:
        return RunSummary(run.id, profile, RunStatus.DAMAGED, str(run.dir), 0, None, None, started, None, None,
                          problem=f"cannot read {run.events_path.name}: {e.strerror or e}")
    last, start, end = tl.last_step, tl.start, tl.end
    last_eval = tl.evals[max(tl.evals)] if tl.evals else None
    status = run_status(run, tl)
    slurm = slurm_word(run, status) if status in (RunStatus.QUEUED, RunStatus.FAILED, RunStatus.STOPPED) else None
    return RunSummary(
        id=run.id, profile=profile, status=status, dir=str(run.dir),
        problem=slurm[1] if slurm and status == RunStatus.QUEUED else None,
        step=last.step if last else 0,
        max_steps=(last.max_steps if last else None) or (start.max_steps if start else None),
        loss=last.loss if last else None, started_at=started, ended_at=end.time if end else None,
        error_kind=end.error_kind if end else None,
        tokens_per_s=(end.train_tokens_per_s if end and end.train_tokens_per_s else
                      (last.tokens_per_s if last else None)),
        eval_loss=last_eval.eval_loss if last_eval else None,
        train_s=last.elapsed_s if last else None,
        **trained_by(run, start), note=run.note(), slurm_job=job,
        alert=next((a.message for a in health_alerts(tl, running=True, recent=50) if a.kind == "stall"), None)
        if status == RunStatus.RUNNING else None)
