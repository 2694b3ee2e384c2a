"""Does it fit: the one rule, asked by every judgement of memory (the layout's choice of GPUs and strategy,
checkpointing's `auto`, a plan's verdict, the advisor's candidates and the review's fixes).

A run fits a GPU when its estimated peak, times this machine's correction for that GPU model and method (at
least 3 earlier runs measured it: planning/corrections.py), is within SAFETY of the GPU's free memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from studio.planning.corrections import NONE, Corrections

SAFETY = 0.90  # studio never plans a run above this share of a GPU's free memory


@dataclass(frozen=True)
class FitRule:
    """The rule for one method, with this machine's corrections (none: the estimate as it is)."""

    method: str
    corrections: Corrections = NONE

    def factor(self, gpu: str | None) -> float:
        correction = self.corrections.lookup(gpu, self.method)
        return correction.vram_factor if correction else 1.0

    def expected_gib(self, peak_gib: float, gpu: str | None) -> float:
        """The peak this machine is expected to reach on `gpu`: the estimate, corrected."""
        return round(peak_gib * self.factor(gpu), 3)

    def limit_gib(self, free_gib: float) -> float:
        return SAFETY * free_gib

    def fits(self, peak_gib: float | None, gpu: str | None, free_gib: float | None) -> bool | None:
        """None when there is nothing to compare (no estimate, or no GPU)."""
        if peak_gib is None or free_gib is None:
            return None
        return self.expected_gib(peak_gib, gpu) <= self.limit_gib(free_gib)

    def estimate_limit_gib(self, gpu: str | None, free_gib: float) -> float:
        """The most the estimate itself may say on `gpu` (the limit, divided by the correction)."""
        return self.limit_gib(free_gib) / self.factor(gpu)
