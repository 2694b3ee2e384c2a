"""Closing the loop: each run keeps the estimate made when it started (estimate.json)
beside what it measured (its `end` event); estimates on this machine are then
corrected by how far off they were for earlier runs on the same GPU and method."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from studio.advisor import setup_from_profile
from studio.atomic import write_json
from studio.catalog import CatalogError, lookup_model
from studio.estimate import EstimateError, estimate_memory, estimate_speed
from studio.events import load_timeline
from studio.inventory import current_inventory, spec_for
from studio.profile import Profile
from studio.runs import Run, list_runs

ESTIMATE_FILE = "estimate.json"
MIN_RUNS = 1


def save_estimate(run: Run, estimate: dict[str, Any]) -> None:
    write_json(run.dir / ESTIMATE_FILE, estimate)


def comparison(run: Run) -> dict[str, Any] | None:
    """Estimated vs measured peak memory and tokens/s of a finished GPU run, or None."""
    try:
        est = json.loads((run.dir / ESTIMATE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    end = load_timeline(run.dir).end
    if not end or end.get("status") not in ("completed", "stopped") or not end.get("gpu_mem_peak_reserved_gib"):
        return None
    measured_reserved = max(end["gpu_mem_peak_reserved_gib"])
    out = {"run": run.id, "gpu": est.get("gpu"), "method": est.get("method"),
           "estimated_reserved_gib": est.get("peak_reserved_gib"), "measured_reserved_gib": measured_reserved,
           "estimated_tokens_per_s": est.get("tokens_per_s"), "measured_tokens_per_s": end.get("train_tokens_per_s")}
    if est.get("peak_reserved_gib"):
        out["vram_factor"] = measured_reserved / est["peak_reserved_gib"]
    return out


def correction_for(gpu: str | None, method: str, runs_base: Path | None = None) -> dict[str, Any] | None:
    """The median measured/estimated ratio of earlier runs on this GPU with this method."""
    if not gpu:
        return None
    factors = []
    for run in list_runs(runs_base):
        c = comparison(run)
        if c and c.get("gpu") == gpu and c.get("method") == method and c.get("vram_factor"):
            factors.append(c["vram_factor"])
    if len(factors) < MIN_RUNS:
        return None
    return {"vram_factor": round(statistics.median(factors), 4), "runs": len(factors), "gpu": gpu, "method": method}


def run_estimate(profile: Profile) -> dict[str, Any] | None:
    """The estimate for a run about to start on this machine's first GPU (None on CPU or unknown models)."""
    inventory = current_inventory()
    if not inventory.gpus:
        return None
    gpu = inventory.gpus[0]
    target_spec = spec_for(gpu)
    try:
        spec = lookup_model(profile.model.name)
        setup = setup_from_profile(profile, gpu.bf16)
        mem = estimate_memory(spec, setup)
    except (CatalogError, EstimateError):
        return None
    speed = estimate_speed(spec, setup, target_spec) if target_spec else None
    return {"gpu": gpu.name, "method": setup.method, "model": spec.id,
            "peak_vram_gib": mem.peak_vram_gib, "peak_reserved_gib": mem.peak_reserved_gib,
            "peak_allocated_gib": mem.peak_allocated_gib, "breakdown": mem.breakdown,
            "tokens_per_s": speed.tokens_per_s if speed else None}
