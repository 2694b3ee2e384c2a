"""Where the benchmarks keep their figures: bench/results/<kind>-<device>-<time>.json (committed,
since a GPU machine is gone after its session)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def save_results(kind: str, device: str, results: Any) -> Path:
    """Write `results` as JSON and say where."""
    out = RESULTS / f"{kind}-{device}-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return out
