"""The run directory's event log, `events.jsonl`: one JSON object per line.

The trainer writes it and everything else reads it, so both sides use this
module. Every record has `event` and `time` (unix seconds). Kinds:

  download    what: model|dataset, name, bytes, total_bytes, rate_bytes_s, done
  preflight   rows, tokens, truncated_rows, max_length, format, bad_rows, ...
  start       config, total_params, trainable_params, dataset, devices, max_steps, resumed_from
  step        step, max_steps, epoch, loss, learning_rate, grad_norm, tokens, tokens_per_s,
              elapsed_s, eta_s, gpu_mem_*_gib (lists, one per device), nvml_*, energy_kwh, rss_gib
  eval        step, eval_loss
  checkpoint  step, path
  stopping    why the trainer was asked to stop
  end         status: completed|stopped|failed; on failure error_kind, message, advice

After a crash and resume, steps replay from the checkpoint: a repeated `step`
replaces the earlier record. A corrupt line (a crash mid-write) is skipped.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

EVENTS_FILE = "events.jsonl"
END_STATUSES = ("completed", "stopped", "failed")
DURABLE = ("start", "checkpoint", "end")


class EventWriter:
    """Append events to a run's log, one flushed line each."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._file: IO[str] = self.path.open("a", encoding="utf-8")

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"event": event, "time": round(time.time(), 3), **fields}
        self._file.write(json.dumps(record, default=str, allow_nan=True) + "\n")
        self._file.flush()  # readers see the line at once; fsync only where losing it would matter
        if event in DURABLE:
            os.fsync(self._file.fileno())
        return record

    def close(self) -> None:
        self._file.close()


def parse_line(line: str) -> dict[str, Any] | None:
    """A record from one line, or None for a blank, partial or corrupt line."""
    line = line.strip()
    if not line:
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict) or "event" not in record:
        return None
    return record


class EventTail:
    """Reads new complete lines from an events file, remembering where it stopped."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.offset = 0
        self._partial = b""

    def read_new(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # an unterminated line is still being written
        records = []
        for raw in lines:
            record = parse_line(raw.decode("utf-8", errors="replace"))
            if record is not None:
                records.append(record)
        return records


def read_events(path: Path) -> list[dict[str, Any]]:
    return EventTail(path).read_new()


@dataclass
class Timeline:
    """What a run's events add up to; steps keyed by step number, last write wins."""

    steps: dict[int, dict[str, Any]] = field(default_factory=dict)
    evals: dict[int, dict[str, Any]] = field(default_factory=dict)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    start: dict[str, Any] | None = None
    preflight: dict[str, Any] | None = None
    download: dict[str, Any] | None = None
    end: dict[str, Any] | None = None
    stopping: dict[str, Any] | None = None

    def add(self, record: dict[str, Any]) -> None:
        kind = record.get("event")
        if kind == "step" and isinstance(record.get("step"), int):
            self.steps[record["step"]] = record
        elif kind == "eval" and isinstance(record.get("step"), int):
            self.evals[record["step"]] = record
        elif kind == "checkpoint":
            self.checkpoints.append(record)
        elif kind == "start":
            # A resumed run starts again: its end (if any) belongs to the earlier attempt.
            self.start, self.end, self.stopping = record, None, None
        elif kind == "end":
            self.end = record
        elif kind in ("preflight", "download", "stopping"):
            setattr(self, kind, record)

    def extend(self, records: list[dict[str, Any]]) -> Timeline:
        for r in records:
            self.add(r)
        return self

    @property
    def last_step(self) -> dict[str, Any] | None:
        return self.steps[max(self.steps)] if self.steps else None


def load_timeline(run_dir: Path) -> Timeline:
    return Timeline().extend(read_events(Path(run_dir) / EVENTS_FILE))
