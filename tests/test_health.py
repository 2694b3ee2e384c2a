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
