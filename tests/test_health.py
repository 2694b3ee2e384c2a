from __future__ import annotations

from dataclasses import replace

from studio.runs.events import Timeline, parse_record
from studio.runs.health import health_alerts


def steps(losses, rates=None, t0=1000.0, dt=1.0, **extra):
    rates = rates or [1000.0] * len(losses)
    return Timeline().extend([parse_record({"event": "step", "step": i + 1, "loss": loss, "tokens_per_s": rate,
                                            "time": t0 + i * dt, **extra})
                              for i, (loss, rate) in enumerate(zip(losses, rates))])


def kinds(tl, running=True, now=None):
    return {a.kind for a in health_alerts(tl, running=running, now=now if now is not None else 1000.0 + len(tl.steps))}


def test_healthy_run_has_no_alerts() -> None:
    assert kinds(steps([3.0, 2.8, 2.5, 2.3, 2.2, 2.1, 2.0])) == set()


def test_nan_and_exploding_loss() -> None:
    assert "loss" in kinds(steps([3.0, 2.5, float("nan")]))
    assert "loss" in kinds(steps([3.0, 2.0, 1.5, 1.2, 1.0, 9.0]))


def test_throughput_collapse_and_stall() -> None:
    assert "speed" in kinds(steps([2.0] * 9, rates=[1000.0] * 6 + [100.0] * 3))
    tl = steps([2.0] * 5)
    assert "stall" in kinds(tl, now=1000.0 + 500)
    assert "stall" not in kinds(tl, running=False, now=1000.0 + 500)


def test_throttling_and_heat() -> None:
    assert "throttle" in kinds(steps([2.0] * 3, nvml_throttle=[[], ["power cap"]]))
    assert "thermal" in kinds(steps([2.0] * 3, nvml_temp_c=[88]))


def test_idle_gpu_during_a_slow_step_is_a_data_stall() -> None:
    tl = steps([2.0] * 6, nvml_util_pct=[1.0])
    last = replace(tl.steps[6], time=tl.steps[6].time + 20.0)
    tl.add(last)  # 21 s instead of 1 s, GPU idle
    alerts = health_alerts(tl, running=True, now=last.time + 1)
    assert any(a.kind == "stall" and "data-loading stall" in a.message for a in alerts)


def preference_steps(accuracy: list[float], margin: list[float], kl: list[float] | None = None) -> Timeline:
    kl = kl or [None] * len(accuracy)
    return Timeline().extend([parse_record({"event": "step", "step": i + 1, "loss": 0.69, "time": 1000.0 + i,
                                            "tokens_per_s": 1000.0, "reward_accuracy": a, "reward_margin": m,
                                            **({"kl": k} if k is not None else {})})
                              for i, (a, m, k) in enumerate(zip(accuracy, margin, kl))])


def test_a_preference_run_stuck_at_chance_or_running_from_its_reference_is_said() -> None:
    learning = preference_steps([0.5 + i / 60 for i in range(30)], [0.02 * i for i in range(30)])
    assert "preference" not in kinds(learning)
    stuck = preference_steps([0.5, 0.45, 0.55] * 10, [0.01, -0.01, 0.0] * 10)
    alert = next(a for a in health_alerts(stuck, running=True, now=1030.0) if a.kind == "preference")
    assert "stuck near 50%" in alert.message and "learning_rate" in alert.message
    assert "preference" not in kinds(preference_steps([0.5] * 10, [0.0] * 10))  # too soon to say
    runaway = preference_steps([0.9] * 8, [1.0] * 8, kl=[0.05, 0.06, 0.08, 0.1, 0.4, 1.2, 3.0, 6.0])
    message = next(a.message for a in health_alerts(runaway, running=True, now=1008.0) if a.kind == "preference")
    assert "KL" in message and "preference.beta" in message
