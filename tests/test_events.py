from __future__ import annotations

import json
import math
from pathlib import Path

from studio.runs.events import (End, EventTail, EventWriter, Start, Step, Timeline, parse_line, parse_record,
                                read_events)


def test_writer_and_tail_handle_partial_and_corrupt_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    w = EventWriter(path)
    w.write(Step(step=1, loss=2.0))
    tail = EventTail(path)
    assert [r.step for r in tail.read_new()] == [1]
    with path.open("a") as f:
        f.write("{garbage\n")          # a corrupt line is skipped
        f.write('{"event": "step", "st')  # a line still being written waits
    assert tail.read_new() == []
    with path.open("a") as f:
        f.write('ep": 2, "time": 1}\n')
    assert [r.step for r in tail.read_new()] == [2]
    assert all(r.time > 0 for r in read_events(path))


def records(*raw: dict) -> list:
    return [parse_record(r) for r in raw]


def test_repeated_step_replaces_the_earlier_record() -> None:
    recs = records(*({"event": "step", "step": s, "loss": float(s)} for s in (1, 2, 3)))
    recs += records({"event": "end", "status": "failed"}, {"event": "start"},
                    {"event": "step", "step": 2, "loss": 20.0}, {"event": "step", "step": 3, "loss": 30.0})
    tl = Timeline().extend(recs)
    assert sorted(tl.steps) == [1, 2, 3]
    assert tl.steps[2].loss == 20.0 and tl.last_step == Step(step=3, loss=30.0)
    assert tl.end is None  # the resumed attempt has not ended


def test_non_finite_numbers_are_written_as_json_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    w = EventWriter(path)
    w.write(Step(step=1, loss=math.nan, grad_norm=math.inf))
    text = path.read_text()
    json.loads(text)  # strict JSON: no bare NaN
    assert "NaN" in text and "Infinity" in text
    (step,) = read_events(path)
    assert math.isnan(step.loss) and step.grad_norm == math.inf


def test_wrong_types_read_as_missing_never_crash() -> None:
    step = parse_record({"event": "step", "step": 3, "tokens_per_s": "fast", "loss": [1], "max_steps": True,
                         "gpu_mem_peak_gib": [1.5, "x", None], "nvml_throttle": "hot"})
    assert step == Step(step=3, gpu_mem_peak_gib=(1.5, None, None))
    assert parse_record({"event": "step", "step": "three"}) is None  # a step without its number is no step
    assert parse_record({"event": "end"}) is None and parse_record({"event": "nope"}) is None
    assert parse_record(["event", "step"]) is None
    start = parse_record({"event": "start", "method": {"type": "lora"}, "devices": ["cpu", 3]})
    assert start == Start(devices=("cpu",)) and start.method is None


def test_hostile_lines_are_skipped() -> None:
    assert parse_line("[" * 100_000 + "]" * 100_000) is None   # would overflow the parser's recursion
    assert parse_line('{"event": "step", "step": 1, "x": "' + "a" * (2 << 20) + '"}') is None
    assert parse_line(b"\xff\xfe garbage") is None
    assert parse_line('{"event": "end", "status": "completed", "time": "noon"}') == End(status="completed")


def test_writer_values_are_json(tmp_path: Path) -> None:
    w = EventWriter(tmp_path / "e.jsonl")
    w.write(Start(model=tmp_path))  # type: ignore[arg-type]
    assert json.loads((tmp_path / "e.jsonl").read_text())["model"] == str(tmp_path)


def test_steady_tokens_per_s_leaves_out_the_warm_up() -> None:
    # Warm-up steps take 10 s each, then 1 s per step of 100 tokens.
    elapsed, tokens = 0.0, 0
    records = []
    for step in range(1, 11):
        elapsed += 10.0 if step <= 3 else 1.0
        tokens += 100
        records.append(Step(step=step, elapsed_s=elapsed, tokens=tokens))
    tl = Timeline().extend(records)
    assert tl.steady_tokens_per_s(warmup=3) == (100.0, 6)
    assert tl.steady_tokens_per_s(warmup=0)[0] < 50  # nearly the naive average the probe used to report
    assert Timeline().extend(records[:3]).steady_tokens_per_s(warmup=3) == (None, 0)


def test_steps_stay_in_order_when_a_resumed_run_replays_some() -> None:
    from studio.runs.events import Step, Timeline

    tl = Timeline().extend([Step(step=s, time=float(s), loss=1.0) for s in (1, 2, 3, 5, 4)])
    tl.extend([Step(step=3, time=9.0, loss=0.5), Step(step=6, time=10.0)])
    assert [s.step for s in tl.ordered_steps()] == [1, 2, 3, 4, 5, 6]
    assert tl.steps[3].loss == 0.5 and tl.ordered_steps()[2].loss == 0.5 and tl.last_step.step == 6
    assert [s.step for s in tl.recent_steps(2)] == [5, 6]


def test_a_timeline_followed_for_days_holds_a_bounded_number_of_steps() -> None:
    """The monitor thins what it holds: the latest half whole, the older steps evenly spaced, the first kept."""
    tl = Timeline()
    for step in range(1, 50_001):
        tl.add(Step(step=step, max_steps=100_000, loss=1.0))
        tl.thin(1000)
    steps = [s.step for s in tl.ordered_steps()]
    assert len(steps) <= 2000 and steps[0] == 1 and steps[-500:] == list(range(49_501, 50_001))
    assert steps == sorted(steps) and set(tl.steps) == set(steps)


def test_a_tail_far_behind_skips_to_the_latest_records(tmp_path) -> None:
    """A reader given a limit reads at most that much of what was appended since it last looked: the latest
    records, whole, and never the line the cut fell in."""
    from studio.runs.events import to_record

    path = tmp_path / "events.jsonl"
    tail = EventTail(path)
    with path.open("w") as f:
        for step in range(1, 20_001):
            f.write(json.dumps(to_record(Step(step=step, max_steps=20_000, loss=1.0))) + "\n")
    records = tail.read_new(limit=64 << 10)
    assert 0 < len(records) < 2000 and records[-1].step == 20_000
    assert [r.step for r in records] == list(range(records[0].step, 20_001))


def test_a_resumed_runs_eta_does_not_count_the_attempts_warm_up() -> None:
    """Defect (issue 36 #15): after a resume the ETA jumped 1:54 -> 0:49 -> 1:17 within seconds: the attempt's
    first step, which carries its warm-up, was in the pace until it left the 30 s window."""
    from types import SimpleNamespace

    from transformers import TrainerControl, TrainerState

    from studio.trainer.stop import StopRequest
    from studio.trainer.telemetry import Telemetry

    written: list = []
    now = [1000.0]
    telemetry = Telemetry(SimpleNamespace(write=written.append), StopRequest(), clock=lambda: now[0])
    state = TrainerState(global_step=100, max_steps=200, is_world_process_zero=True)
    args = SimpleNamespace(device="cpu")
    telemetry.on_train_begin(args, state, TrainerControl())
    for step, at in [(101, 60.0)] + [(101 + i, 60.0 + i) for i in range(1, 40)]:  # 60 s warm-up, then 1 s a step
        now[0], state.global_step = 1000.0 + at, step
        telemetry.on_log(args, state, TrainerControl(), logs={"loss": 1.0, "num_tokens": 100 * (step - 100)})
    etas = [(e.step, e.eta_s) for e in written if getattr(e, "eta_s", None) is not None]
    assert etas and all(abs(eta - (200 - step)) <= 0.1 * (200 - step) for step, eta in etas), etas
