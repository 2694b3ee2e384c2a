"""Fit the estimator's few calibration constants on the reference measurements.

    python bench/calibrate_estimator.py [--csv PATH] [--write]

Prints the error (median and 90th percentile of |estimate - measured| / measured)
before and after fitting, and the worst rows. Only the constants in
studio.estimate.CALIBRATION are fitted; the rest of the model is counted.
--write stores the fitted constants in studio/estimate.py.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from studio.planning import estimate
from studio.planning.catalog import lookup_gpu
from studio.planning.reference import default_reference_csv, error_summary, load_measurements, relative_error

BOUNDS = {"activation_scale": (0.5, 2.0), "ckpt_workspace": (0.0, 4.0), "logits_scale": (0.5, 1.5),
          "allocator_slack": (0.0, 1.0), "cuda_context_gib": (0.3, 3.0),
          "comm_gib": (0.0, 8.0)}


def objective(ms: list) -> float:
    s = error_summary([relative_error(m) for m in ms])
    return s["median_abs"] + 0.5 * s["p90_abs"]


def coordinate_descent(values: dict, bounds: dict, score, rounds: int = 6) -> float:
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
        print(f"round {r + 1}: objective {best:.4f}", file=sys.stderr)
    return best


def fit(ms: list) -> None:
    coordinate_descent(estimate.CALIBRATION, BOUNDS, lambda: objective(ms))


def speed_rows(ms: list) -> list:
    seen, out = set(), []
    for m in ms:
        if m.tokens_per_s and m.gpu and m.id not in seen:
            seen.add(m.id)
            out.append(m)
    return out


def speed_errors(rows: list) -> list[float]:
    return [estimate.estimate_speed(m.spec, m.setup, lookup_gpu(m.gpu)).tokens_per_s / m.tokens_per_s - 1
            for m in rows]


def fit_speed(rows: list) -> None:
    bounds = {"hfu_full": (0.1, 0.8), "hfu_lora": (0.1, 0.8), "hfu_qlora": (0.1, 0.8),
              "layer_overhead_ms": (0.0, 10.0)}

    def score() -> float:
        s = error_summary(speed_errors(rows))
        return s["median_abs"] + 0.5 * s["p90_abs"]

    coordinate_descent(estimate.SPEED_CALIBRATION, bounds, score)


def report_speed(rows: list, label: str) -> None:
    s = error_summary(speed_errors(rows))
    print(f"tokens/s {label}: n={s['n']} median |err| {s['median_abs'] * 100:.1f}%  p90 |err| {s['p90_abs'] * 100:.1f}%")


def report(ms: list, label: str, worst: int = 8) -> None:
    errs = [(relative_error(m), m) for m in ms]
    s = error_summary([e for e, _ in errs])
    print(f"{label}: n={s['n']} median |err| {s['median_abs'] * 100:.1f}%  p90 |err| {s['p90_abs'] * 100:.1f}%  "
          f"mean err {s['mean'] * 100:+.1f}%")
    for e, m in sorted(errs, key=lambda x: -abs(x[0]))[:worst]:
        print(f"  row {m.id:>4} {m.spec.id:38} {m.setup.method:5} b{m.setup.batch} x {m.setup.seq_len:<5} "
              f"{m.kind:18} measured {m.value_gib:6.2f} GiB  error {e * 100:+6.1f}%")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", type=Path, default=default_reference_csv())
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    ms, skipped = load_measurements(args.csv)
    print(f"{len(ms)} comparable measurements, {len(skipped)} rows skipped")
    report(ms, "before")
    fit(ms)
    report(ms, "after")
    rows = speed_rows(ms)
    report_speed(rows, "before")
    fit_speed(rows)
    report_speed(rows, "after")
    print("CALIBRATION = {" + ", ".join(f'"{k}": {v:.3f}' for k, v in estimate.CALIBRATION.items()) + "}")
    print("SPEED_CALIBRATION = {" + ", ".join(f'"{k}": {v:.3f}' for k, v in estimate.SPEED_CALIBRATION.items()) + "}")
    if args.write:
        path = Path(estimate.__file__)
        text = path.read_text()
        for k, v in {**estimate.CALIBRATION, **estimate.SPEED_CALIBRATION}.items():
            text = re.sub(rf'("{k}": )[0-9.]+', rf"\g<1>{v:.3f}", text, count=1)
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
