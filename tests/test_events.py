from __future__ import annotations

import json
from pathlib import Path

from studio.events import EventTail, EventWriter, Timeline, read_events


def test_writer_and_tail_handle_partial_and_corrupt_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    w = EventWriter(path)
    w.write("step", step=1, loss=2.0)
    tail = EventTail(path)
    assert [r["step"] for r in tail.read_new()] == [1]
    with path.open("a") as f:
        f.write("{garbage\n")          # a corrupt line is skipped
        f.write('{"event": "step", "st')  # a line still being written waits
    assert tail.read_new() == []
    with path.open("a") as f:
        f.write('ep": 2, "time": 1}\n')
    assert [r["step"] for r in tail.read_new()] == [2]
    assert all("time" in r for r in read_events(path))


def test_repeated_step_replaces_the_earlier_record() -> None:
    records = [{"event": "step", "step": s, "loss": float(s)} for s in (1, 2, 3)]
    records += [{"event": "end", "status": "failed"}, {"event": "start"},
                {"event": "step", "step": 2, "loss": 20.0}, {"event": "step", "step": 3, "loss": 30.0}]
    tl = Timeline().extend(records)
    assert sorted(tl.steps) == [1, 2, 3]
    assert tl.steps[2]["loss"] == 20.0 and tl.last_step == {"event": "step", "step": 3, "loss": 30.0}
    assert tl.end is None  # the resumed attempt has not ended


def test_writer_values_are_json(tmp_path: Path) -> None:
    w = EventWriter(tmp_path / "e.jsonl")
    w.write("end", status="completed", path=tmp_path)
    assert json.loads((tmp_path / "e.jsonl").read_text())["path"] == str(tmp_path)
