"""Two or more runs side by side: their loss curves, their figures, and where their profiles differ.

Shared by `studio compare` and the app's comparison screen; reads run folders only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from studio.profiles.profile import ProfileError, load_profile
from studio.runs.folder import Run
from studio.runs.state import RunSummary, summarize

Points = list[tuple[int, float]]


@dataclass
class RunFigures:
    summary: RunSummary
    train: Points
    evals: Points
    duration_s: float | None
    best_eval: float | None
    # where each step fell on the other axes a comparison can align runs by: tokens seen, seconds trained
    axes: dict[str, dict[int, float]] = field(default_factory=dict)
    margins: Points = field(default_factory=list)  # preference tuning: the reward margin, step by step
    reward_accuracy: float | None = None           # ...and the last step's reward accuracy

    def aligned(self, points: Points, axis: str) -> list[tuple[float, float]]:
        """`points` (step, value) against `axis` ("step", "tokens" or "time"); steps the axis lacks are left out."""
        if axis == "step":
            return list(points)
        at = self.axes.get(axis, {})
        return [(at[x], y) for x, y in points if x in at]


@dataclass
class RunComparison:
    runs: list[RunFigures]
    profile_diff: list[tuple[str, list[str]]] = field(default_factory=list)   # key, value per run
    unreadable: list[str] = field(default_factory=list)                      # why a profile was left out

    def to_dict(self) -> dict[str, Any]:
        return {"runs": [{**r.summary.to_dict(), "duration_s": r.duration_s, "best_eval_loss": r.best_eval,
                          "loss_curve": r.train, "eval_curve": r.evals, "margin_curve": r.margins,
                          "reward_accuracy": r.reward_accuracy} for r in self.runs],
                "profile_diff": {key: values for key, values in self.profile_diff},
                "unreadable_profiles": self.unreadable}


def short_labels(ids: list[str]) -> list[str]:
    """Run ids without the dash-separated parts they all share at the start and the end
    (20260911-090000-llama-qlora and 20260911-100000-llama-qlora: 090000 and 100000)."""
    parts = [i.split("-") for i in ids]
    if len(set(ids)) < 2:
        return list(ids)
    head = 0
    while all(len(p) > head + 1 for p in parts) and len({p[head] for p in parts}) == 1:
        head += 1
    tail = 0
    while all(len(p) > head + tail + 1 for p in parts) and len({p[-1 - tail] for p in parts}) == 1:
        tail += 1
    labels = ["-".join(p[head:len(p) - tail]) for p in parts]
    return labels if len(set(labels)) == len(labels) else list(ids)


def _finite(points: Points) -> Points:
    return [(x, y) for x, y in points if isinstance(y, (int, float)) and math.isfinite(y)]


def run_figures(run: Run) -> RunFigures:
    summary = summarize(run)
    try:
        tl = run.timeline()
    except OSError:
        return RunFigures(summary, [], [], None, None)
    train = _finite([(s.step, s.loss) for s in tl.ordered_steps()])  # type: ignore[misc]
    evals = _finite([(k, tl.evals[k].eval_loss) for k in sorted(tl.evals)])  # type: ignore[misc]
    steps = tl.ordered_steps()
    elapsed = [s.elapsed_s for s in steps if s.elapsed_s is not None]
    duration = max(elapsed) if elapsed else None
    axes = {"tokens": {s.step: float(s.tokens) for s in steps if s.tokens is not None},
            "time": {s.step: float(s.elapsed_s) for s in steps if s.elapsed_s is not None}}
    margins = _finite([(s.step, s.reward_margin) for s in steps])  # type: ignore[misc]
    accuracy = next((s.reward_accuracy for s in reversed(steps) if s.reward_accuracy is not None), None)
    return RunFigures(summary, train, evals, duration, min((y for _, y in evals), default=None), axes, margins,
                      accuracy)


def flat_profile(run: Run) -> dict[str, str]:
    """The run's profile as dotted keys and printable values."""
    profile = load_profile(run.profile_path)
    out: dict[str, str] = {}
    for section, values in profile.to_dict().items():
        if isinstance(values, dict):
            out.update({f"{section}.{k}": str(v) for k, v in values.items()})
        else:
            out[section] = str(values)
    return out


def compare_runs(runs: list[Run]) -> RunComparison:
    figures = [run_figures(r) for r in runs]
    flats: list[dict[str, str] | None] = []
    unreadable = []
    for r in runs:
        try:
            flats.append(flat_profile(r))
        except ProfileError as e:
            flats.append(None)
            unreadable.append(f"{r.id}: {e.problems[0]}")
    readable = [f for f in flats if f is not None]
    keys = sorted({k for f in readable for k in f})
    diff = []
    for key in keys:
        values = [f.get(key, "-") if f is not None else "?" for f in flats]
        if len({v for v, f in zip(values, flats) if f is not None}) > 1:
            diff.append((key, values))
    return RunComparison(figures, diff, unreadable)
