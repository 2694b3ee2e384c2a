"""How long a planned run takes: its steps (max_steps, or the epochs over the data) times the real
tokens of a step, over the estimated tokens per second (which already counts padding as waste)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from studio.planning.plan import Plan


@dataclass(frozen=True)
class Duration:
    steps: int
    tokens: float          # real (not padding) tokens the run trains on
    seconds: float
    from_max_steps: bool   # True: train.max_steps; False: train.epochs over the data

    def describe(self) -> str:
        what = f"{self.steps:,} steps" + ("" if self.from_max_steps else " (epochs over the data)")
        return f"{what} ≈ {human_seconds(self.seconds)}"


def human_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def run_duration(plan: Plan) -> Duration | None:
    """None without a speed estimate, or without max_steps and a known dataset size."""
    if plan.speed is None or not plan.speed.tokens_per_s:
        return None
    profile = plan.resolved or plan.profile
    t, max_length = profile.train, profile.data.max_length
    shape = plan.data
    packed = profile.data.packing is True
    sequences_per_step = t.batch_size * t.grad_accum * plan.layout.world_size
    mean = min(shape.mean_tokens, max_length) if shape and shape.rows else float(max_length)
    tokens_per_sequence = max_length * 0.98 if packed else mean  # packed rows fill a sequence but for the tail
    if t.max_steps and t.max_steps > 0:
        steps, from_max = t.max_steps, True
    elif shape and shape.rows:
        sequences = shape.rows * mean / tokens_per_sequence if packed else shape.rows
        steps, from_max = max(1, math.ceil(sequences * t.epochs / sequences_per_step)), False
    else:
        return None
    tokens = steps * sequences_per_step * tokens_per_sequence
    return Duration(steps, tokens, tokens / plan.speed.tokens_per_s, from_max)
