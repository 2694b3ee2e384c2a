"""Run health from its events: NaN or exploding loss, a throughput collapse,
thermal throttling and a stalled GPU. Pure functions over a Timeline."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from studio.runs.events import Timeline

THROTTLE_C = 85.0


@dataclass(frozen=True)
class Alert:
    kind: str      # loss | speed | throttle | thermal | stall
    message: str


def health_alerts(tl: Timeline, running: bool, now: float | None = None, recent: int | None = None) -> list[Alert]:
    """Alerts from the last `recent` steps (all when None)."""
    now = time.time() if now is None else now
    steps = tl.recent_steps(recent)
    alerts: list[Alert] = []
    if not steps:
        return alerts
    last = steps[-1]
    losses = [s.loss for s in steps if s.loss is not None]
    if losses and not math.isfinite(losses[-1]):
        alerts.append(Alert("loss", f"loss is {losses[-1]} at step {last.step}: lower train.learning_rate "
                                    "or check the data; stopping keeps the last good checkpoint"))
    elif len(losses) >= 5:
        best = min(losses[:-1])
        if losses[-1] > 3 * max(best, 1e-3) and losses[-1] > losses[0]:
            alerts.append(Alert("loss", f"loss is exploding ({losses[-1]:.3g}, best {best:.3g}): lower "
                                        "train.learning_rate or raise warmup"))
    rates = [s.tokens_per_s for s in steps if s.tokens_per_s]
    if len(rates) >= 6 and running:
        typical = sorted(rates[:-3])[len(rates[:-3]) // 2]
        if max(rates[-3:]) < 0.3 * typical:
            alerts.append(Alert("speed", f"tokens/s fell to {rates[-1]:,.0f} from a typical {typical:,.0f}: "
                                         "another process on the GPU, swapping, or throttling"))
    temps = [t for t in last.nvml_temp_c if t is not None]
    throttled = {f"GPU{i}: {', '.join(r)}" for i, r in enumerate(last.nvml_throttle) if r}
    if throttled:
        alerts.append(Alert("throttle", "clocks throttled (" + "; ".join(sorted(throttled)) + "): check cooling "
                                        "and the power limit (nvidia-smi -q -d PERFORMANCE)"))
    elif temps and max(temps) >= THROTTLE_C:
        alerts.append(Alert("thermal", f"GPU at {max(temps):.0f} C: it throttles its clocks; check cooling"))
    if running and len(steps) >= 3:
        gaps = [b.time - a.time for a, b in zip(steps, steps[1:]) if a.time and b.time]
        typical_gap = sorted(gaps)[len(gaps) // 2] if gaps else 0
        # Counted from the latest sign of life: a resumed run starts again, its old steps are history.
        idle = now - max(last.time or now, tl.start.time if tl.start else 0.0)
        utils = [u for u in last.nvml_util_pct if u is not None]
        if typical_gap > 0 and utils and max(utils) < 5 and gaps and gaps[-1] > 3 * typical_gap:
            alerts.append(Alert("stall", f"the GPU sat idle ({max(utils):.0f}% busy) while the last step took "
                                         f"{gaps[-1]:.1f} s (usually {typical_gap:.1f} s): a data-loading stall; "
                                         "faster storage or pre-tokenized data helps"))
        elif typical_gap > 0 and idle > max(30.0, 10 * typical_gap):
            alerts.append(Alert("stall", f"no step for {idle:.0f} s (usually every {typical_gap:.1f} s): "
                                         "the GPU may sit idle in a data-loading stall or the run hangs"))
    return alerts
