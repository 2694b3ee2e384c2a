"""One resume for a whole multi-machine job: every rank continues from the same checkpoint step.

Each machine keeps its own run folder, and every machine saves each checkpoint whole in it (the model, the
optimizer, the scheduler and its own processes' RNG state: `save_on_each_node`), so a machine needs nothing
from another's disk. On a resume the ranks tell each other which complete checkpoints they hold and take
the main machine's newest, or else the newest one every machine holds (a machine killed while saving step
40 resumes the job from step 35, and says so). A job whose machines hold no step in common refuses to start
on every machine, naming the machine and what to copy: no rank ever trains from step 0 beside ranks at
step 40.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from studio.runs.folder import Run


class JobResumeError(Exception):
    """The machines of a job cannot continue from one step; the message says which and what to do."""


@dataclass(frozen=True)
class Holding:
    machine: int
    resume: bool            # was this machine's trainer started as a resume
    steps: tuple[int, ...]  # its complete checkpoints, oldest first
    folder: str             # its run folder, for the message


def agreed_step(holdings: list[Holding]) -> tuple[int | None, str]:
    """The step every machine resumes from (None: the start), and what to tell the user when it is not simply
    the main machine's newest. The main machine decides whether this is a resume at all."""
    main = next(h for h in holdings if h.machine == 0)
    if not main.resume or not main.steps:
        return None, ""
    newest = main.steps[-1]
    lacking = [h for h in holdings if newest not in h.steps]
    if not lacking:
        return newest, ""
    common = set(main.steps).intersection(*(h.steps for h in holdings))
    names = ", ".join(f"machine {h.machine} ({h.folder}) has {', '.join(map(str, h.steps[-3:])) or 'none'}"
                      for h in _unique(lacking))
    if common:
        step = max(common)
        return step, (f"machine 0's newest checkpoint is step {newest}, but {names}: the job resumes from step "
                      f"{step}, the newest every machine holds")
    raise JobResumeError(
        f"the machines of this job hold no checkpoint in common: machine 0 resumes from step {newest}, but "
        f"{names}. Copy machine 0's checkpoints/checkpoint-{newest} folder into the checkpoints/ folder of each "
        "machine named, then resume on every machine; or start a new run")


def _unique(holdings: list[Holding]) -> list[Holding]:
    """One entry per machine (its processes share the folder)."""
    seen: dict[int, Holding] = {}
    for h in holdings:
        seen.setdefault(h.machine, h)
    return list(seen.values())


def job_checkpoint(run: Run, resume: bool, machine: int) -> tuple[Path | None, str]:
    """This rank's checkpoint to resume from, agreed with every other rank of the job (a collective: every
    rank calls it), and a note when the step is not the main machine's newest."""
    import torch.distributed as dist

    mine = Holding(machine, resume, tuple(run.complete_checkpoints()) if resume else (), str(run.dir))
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        step, note = agreed_step([mine])
    else:
        everyone: list[Holding | None] = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, mine)
        step, note = agreed_step([h for h in everyone if h is not None])
    if step is None:
        return None, note
    return run.checkpoints_dir / f"checkpoint-{step}", note
