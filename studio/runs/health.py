"""Run health from its events: NaN or exploding loss, a throughput collapse,
thermal throttling and a stalled GPU. Pure functions over a Timeline."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from studio.runs.events import Step, Timeline

THROTTLE_C = 85.0


@dataclass(frozen=True)
class Alert:
    kind: str      # loss | speed | throttle | thermal | stall | preference
    message: str


STUCK_STEPS = 20  # logged steps of a preference run whose reward accuracy hovers at chance before it is said


def preference_alerts(steps: list[Step]) -> list[Alert]:
    """Preference tuning going nowhere or too far: the reward accuracy stuck at chance (the model does not
    tell the chosen answer from the rejected one), or KTO's KL running away from the reference."""
    alerts = []
    accuracy = [s.reward_accuracy for s in steps if s.reward_accuracy is not None]
    margins = [s.reward_margin for s in steps if s.reward_margin is not None]
    recent_acc, recent_margin = accuracy[-STUCK_STEPS:], margins[-STUCK_STEPS:]
    if len(recent_acc) >= STUCK_STEPS and all(0.4 <= a <= 0.6 for a in recent_acc) and recent_margin and \
            abs(sum(recent_margin) / len(recent_margin)) < 0.05:
        alerts.append(Alert("preference", f"reward accuracy stuck near 50% for {len(recent_acc)} logged steps "
                                          "(margin about 0): the model does not tell chosen from rejected; raise "
                                          "train.learning_rate, or check that the pairs differ in what you prefer"))
    kls = [s.kl for s in steps if s.kl is not None and math.isfinite(s.kl)]
    if len(kls) >= 5 and kls[-1] > 1.0 and kls[-1] > 10 * max(min(kls[: len(kls) // 2]), 0.01):
        alerts.append(Alert("preference", f"KL from the reference is running away ({kls[-1]:.3g}, from "
                                          f"{min(kls[: len(kls) // 2]):.3g}): lower train.learning_rate or raise "
                                          "preference.beta"))
    return alerts


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
    alerts += preference_alerts(steps)
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
