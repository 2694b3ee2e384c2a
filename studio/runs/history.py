"""Closing the loop: each run keeps its plan (plan.json) beside what it measured (its
`end` event). Finished GPU runs become evidence for machine corrections
(studio.planning.corrections), keyed to the GPU the run actually used."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from studio.planning.corrections import Corrections, Evidence
from studio.runs.files import PLAN_FILE
from studio.runs.folder import Run, list_runs
from studio.runs.status import RunStatus

OLD_ESTIMATE_FILE = "estimate.json"  # what runs kept before plan.json (same keys)


@dataclass(frozen=True)
class Comparison:
    """Estimated against measured, for one finished GPU run."""

    run: str
    gpu: str
    method: str
    estimated_reserved_gib: float
    measured_reserved_gib: float
    estimated_tokens_per_s: float | None
    measured_tokens_per_s: float | None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def comparison(run: Run) -> Comparison | None:
    """Estimated vs measured peak memory and tokens/s of a finished GPU run, or None."""
    record = run.plan()
    if record is not None:
        estimated, gpu, method, rate = record.peak_reserved_gib, record.gpu, record.method, record.tokens_per_s
    else:  # a run folder of an older studio: its plan.json (or estimate.json) as it wrote it
        plan = run.read_json(PLAN_FILE) or run.read_json(OLD_ESTIMATE_FILE)
        estimated, gpu, method = _number(plan.get("peak_reserved_gib")), plan.get("gpu"), plan.get("method")
        rate = _number(plan.get("tokens_per_s"))
    if estimated is None or not isinstance(gpu, str) or not isinstance(method, str):
        return None
    try:
        end = run.timeline().end
    except OSError:
        return None
    if not end or end.status not in (RunStatus.COMPLETED, RunStatus.STOPPED) or end.forced:
        return None
    measured = [m for m in end.gpu_mem_peak_reserved_gib if m is not None and m > 0]
    if not measured:
        return None
    # The plan is per GPU for the job's layout, so it compares with the busiest rank.
    return Comparison(run.id, gpu, method, estimated, max(measured), rate, end.train_tokens_per_s)


def machine_corrections(runs_base: Path | None = None) -> Corrections:
    """Every finished GPU run's estimate and measurement on this machine."""
    evidence = []
    for run in list_runs(runs_base):
        c = comparison(run)
        if c is not None:
            evidence.append(Evidence(c.run, c.gpu, c.method, c.estimated_reserved_gib, c.measured_reserved_gib))
    return Corrections(tuple(evidence))
