"""Fit the estimator's few constants on one part of the measurements; report the error on the rest.

    python bench/calibrate_estimator.py [--write]

The split is fixed (studio.planning.reference.held_out): studio's stack is fitted on its
Llama-3.2-1B runs and judged on Qwen2.5-1.5B, Llama-3.2-3B and the Liger runs; the older
HF stack is fitted without the fms-acceleration benchmark and judged on it. Speed constants
are fitted on the fit rows of both stacks. Then, for the older stack, leave-one-source-out:
each source held out in turn.

Errors are (estimate - measured) / measured; memory compares like with like (allocated with
allocated, reserved with reserved, nvidia-smi with peak VRAM). Fitting penalises
underestimates (an underestimate is an out-of-memory crash). --write stores the constants
in studio/planning/estimate.py and studio/planning/speed.py.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from studio.planning import estimate, speed
from studio.planning.reference import (Measurement, SpeedMeasurement, all_measurements, all_speeds, error_summary,
                                       held_out, relative_error, speed_error)

MEMORY_BOUNDS = {
    "studio": {"bwd_workspace": (0.0, 3.0), "allocator_slack": (0.0, 0.5)},
    "hf-legacy": {"activation_scale": (0.5, 1.5), "ckpt_workspace": (0.0, 4.0), "logits_scale": (0.5, 1.5),
                  "allocator_slack": (0.0, 1.0), "cuda_context_gib": (0.3, 3.0), "comm_gib": (0.0, 8.0)},
}
SPEED_BOUNDS = {
    "studio": {"matmul_utilisation": (0.15, 0.95), "adapter_bytes": (0.0, 200.0)},
    "hf-legacy": {"matmul_utilisation": (0.15, 0.95), "activation_passes": (0.0, 10.0),
                  "adapter_bytes": (0.0, 200.0), "launch_us": (0.0, 40.0), "qlora_dequant": (0.0, 3.0)},
}
SHARED_FROM_LEGACY = ("activation_passes", "launch_us", "qlora_dequant")  # studio's runs do not pin these down


def memory_objective(errors: list[float]) -> float:
    s = error_summary(errors)
    under = max(0.0, -min(errors, default=0.0))
    return s["median_abs"] + 0.5 * s["p90_abs"] + 10.0 * under


def speed_objective(errors: list[float]) -> float:
    s = error_summary(errors)
    return s["median_abs"] + 0.5 * s["p90_abs"]


def coordinate_descent(values: dict, bounds: dict, score: Callable[[], float], rounds: int = 5) -> float:
    """Minimise score() over values[key] within bounds, one constant at a time, on a shrinking grid."""
    best = score()
    for r in range(rounds):
        for key, (lo, hi) in bounds.items():
            span = (hi - lo) / (4 ** r)
            center = best_value = values[key]
            for step in range(-8, 9):
                values[key] = min(hi, max(lo, center + span * step / 8))
                value = score()
                if value < best - 1e-9:
                    best, best_value = value, values[key]
            values[key] = best_value
    return best


def fit_memory(stack: str, rows: list[Measurement]) -> None:
    coordinate_descent(estimate.CALIBRATION[stack], MEMORY_BOUNDS[stack],
                       lambda: memory_objective([relative_error(m) for m in rows]))


def fit_speed(stack: str, rows: list[SpeedMeasurement]) -> None:
    coordinate_descent(speed.SPEED_CALIBRATION[stack], SPEED_BOUNDS[stack],
                       lambda: speed_objective([speed_error(m) for m in rows]))


def line(label: str, errors: list[float]) -> str:
    s = error_summary(errors)
    worst = min(errors, default=0.0)
    return (f"{label:34} n={s['n']:3}  median |err| {s['median_abs'] * 100:5.1f}%  p90 {s['p90_abs'] * 100:5.1f}%  "
            f"worst {max(errors, key=abs, default=0.0) * 100:+6.1f}%  lowest {worst * 100:+6.1f}%")


def worst_rows(rows: list, errors: list[float], n: int = 5) -> None:
    for e, m in sorted(zip(errors, rows), key=lambda x: -abs(x[0]))[:n]:
        what = f"{m.kind:18} {m.value_gib:6.2f} GiB" if isinstance(m, Measurement) else f"{m.tokens_per_s:8,.0f} tok/s"
        print(f"    {e * 100:+6.1f}%  {m.spec.id:32} {m.setup.method:5} b{m.setup.batch} x {m.setup.seq_len:<5} "
              f"ckpt {'on ' if m.setup.grad_ckpt else 'off'} {what}  [{m.id}]")


def report(ms: list[Measurement], sp: list[SpeedMeasurement]) -> None:
    for what, measurements, error in (("memory", ms, relative_error), ("tokens/s", sp, speed_error)):
        for stack in ("studio", "hf-legacy"):
            for part, label in ((False, "fit"), (True, "held out")):
                rows = [m for m in measurements if m.setup.stack == stack and held_out(m.row) == part]
                errors = [error(m) for m in rows]
                print(line(f"{what}, {stack}, {label}", errors))
                if part:
                    worst_rows(rows, errors)


def leave_one_source_out(ms: list[Measurement]) -> None:
    legacy = [m for m in ms if m.setup.stack == "hf-legacy"]
    saved = dict(estimate.CALIBRATION["hf-legacy"])
    errors: list[float] = []
    for source in sorted({m.row["source"] for m in legacy}):
        fit = [m for m in legacy if m.row["source"] != source]
        fit_memory("hf-legacy", fit)
        errors += [relative_error(m) for m in legacy if m.row["source"] == source]
        estimate.CALIBRATION["hf-legacy"].update(saved)
    print(line("memory, hf-legacy, leave-one-source-out", errors))


def write(path: Path, per_stack: dict[str, dict[str, float]]) -> None:
    """Rewrite each stack's block of constants in the module's source."""
    text = path.read_text()
    for stack, values in per_stack.items():
        block = re.search(rf'"{stack}": \{{.*?\n    \}}', text, re.S)
        assert block, f"{stack} in {path}"
        new = block.group(0)
        for k, v in values.items():
            new = re.sub(rf'("{k}": )[0-9.]+', rf"\g<1>{v:.3f}", new, count=1)
        text = text.replace(block.group(0), new)
    path.write_text(text)
    print(f"wrote {path}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    ms, sp = all_measurements(), all_speeds()
    print("before fitting:")
    report(ms, sp)
    for stack in ("studio", "hf-legacy"):
        fit_memory(stack, [m for m in ms if m.setup.stack == stack and not held_out(m.row)])
    fit_speed("hf-legacy", [m for m in sp if m.setup.stack == "hf-legacy" and not held_out(m.row)])
    for key in SHARED_FROM_LEGACY:
        speed.SPEED_CALIBRATION["studio"][key] = speed.SPEED_CALIBRATION["hf-legacy"][key]
    fit_speed("studio", [m for m in sp if m.setup.stack == "studio" and not held_out(m.row)])
    print("\nafter fitting on the fit rows:")
    report(ms, sp)
    leave_one_source_out(ms)
    for stack, values in estimate.CALIBRATION.items():
        print(f"{stack}: " + ", ".join(f"{k} {v:.3f}" for k, v in values.items()))
    for stack, values in speed.SPEED_CALIBRATION.items():
        print(f"speed {stack}: " + ", ".join(f"{k} {v:.3f}" for k, v in values.items()))
    if args.write:
        write(Path(estimate.__file__), estimate.CALIBRATION)
        write(Path(speed.__file__), speed.SPEED_CALIBRATION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
