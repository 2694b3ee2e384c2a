"""Machine corrections: how far earlier estimates were off on this machine's GPUs.

Each finished GPU run leaves its estimate beside what it measured (studio.runs.history
reads them). Once MIN_RUNS runs of a method on a GPU model agree, later estimates for
that GPU and method are scaled by their median measured/estimated ratio. The evidence
(which runs, what they measured) travels with the correction so it can be shown.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

MIN_RUNS = 3  # one run is an anecdote: a different batch or a fragmenting allocator moves it
FACTOR_LIMITS = (0.5, 2.0)  # a ratio outside this says the run measured something else; ignore it


@dataclass(frozen=True)
class Evidence:
    run: str
    gpu: str
    method: str
    estimated_gib: float
    measured_gib: float

    @property
    def factor(self) -> float:
        return self.measured_gib / self.estimated_gib


@dataclass(frozen=True)
class Correction:
    gpu: str
    method: str
    vram_factor: float
    evidence: tuple[Evidence, ...]

    @property
    def runs(self) -> int:
        return len(self.evidence)

    def describe(self) -> str:
        ids = ", ".join(e.run for e in self.evidence[:3]) + (" ..." if self.runs > 3 else "")
        return (f"x{self.vram_factor:.3f} from {self.runs} {self.method} run(s) measured on this machine's "
                f"{self.gpu} ({ids})")

    def to_dict(self) -> dict[str, Any]:
        return {"gpu": self.gpu, "method": self.method, "vram_factor": self.vram_factor, "runs": self.runs,
                "evidence": [{"run": e.run, "estimated_gib": e.estimated_gib, "measured_gib": e.measured_gib}
                             for e in self.evidence]}


@dataclass(frozen=True)
class Corrections:
    """Everything measured on this machine, grouped by (GPU, method)."""

    evidence: tuple[Evidence, ...] = field(default=())

    def lookup(self, gpu: str | None, method: str) -> Correction | None:
        if not gpu:
            return None
        rows = tuple(e for e in self.evidence if e.gpu == gpu and e.method == method and e.estimated_gib > 0
                     and FACTOR_LIMITS[0] <= e.factor <= FACTOR_LIMITS[1])
        if len(rows) < MIN_RUNS:
            return None
        return Correction(gpu, method, round(statistics.median(e.factor for e in rows), 4), rows)


NONE = Corrections()
