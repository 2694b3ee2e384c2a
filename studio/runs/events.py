"""The run folder's event log, `events.jsonl`: one JSON object per line, typed on both sides.

Every kind of record is a frozen dataclass below; writers build one and pass it to
`EventWriter.write`, readers get them back from `parse_record`, `EventTail` and
`Timeline`. The trainer writes every kind; `studio stop --force` writes the `end` of
a run it killed, since that trainer cannot.

A reader trusts no line: a blank, partial, corrupt or absurdly nested line is
skipped, and a field of the wrong type reads as its default (None for most), so
a damaged file shows as missing numbers, never as a crash. NaN and infinities are
not JSON: they are written as the strings "NaN", "Infinity" and "-Infinity" and
read back as floats.

After a crash and resume, steps replay from the checkpoint: a repeated `step`
replaces the earlier record in the Timeline.
"""

from __future__ import annotations

import json
import math
import os
import time
import types
import typing
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from collections.abc import Callable
from typing import IO, Any, ClassVar, Union

from studio.runs.files import EVENTS_FILE
from studio.safeopen import append_regular, open_regular
from studio.runs.tail import FileTail

MAX_LINE_BYTES = 1 << 20  # a longer line is not one of ours
MAX_NUMBER = 1e15          # no loss, rate, byte count or time studio records is larger: beyond it, a number is absurd
PerGpu = tuple[float | None, ...]  # one entry per GPU of the job, in rank order; None where unreadable


@dataclass(frozen=True, slots=True)
class Event:
    KIND: ClassVar[str] = ""
    DURABLE: ClassVar[bool] = False  # fsync'd: losing it would lose the story of the run
    REQUIRED: ClassVar[tuple[str, ...]] = ()  # a record without these is dropped
    time: float = 0.0


@dataclass(frozen=True, slots=True)
class Download(Event):
    KIND = "download"
    what: str = ""            # model | dataset
    name: str = ""
    bytes: int | None = None
    total_bytes: int | None = None
    rate_bytes_s: float | None = None
    done: bool = False


@dataclass(frozen=True, slots=True)
class Preflight(Event):
    KIND = "preflight"
    format: str = ""
    rows: int | None = None
    train_rows: int | None = None
    eval_rows: int | None = None
    tokens: int | None = None
    tokens_trained: int | None = None
    mean_tokens: float | None = None
    p95_tokens: int | None = None
    max_tokens: int | None = None
    max_length: int | None = None
    truncated_rows: int | None = None
    truncated_row_numbers: tuple[int, ...] = ()
    bad_rows: tuple[dict[str, Any], ...] = ()
    bad_rows_count: int | None = None
    loss_on: str | None = None
    rows_without_loss: int | None = None   # prompts that fill max_length: nothing to learn from them
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Start(Event):
    KIND = "start"
    DURABLE = True
    step: int = 0
    max_steps: int | None = None
    method: str | None = None              # lora, qlora, full (what was trained, whole: plan.json's `trained`)
    model: str | None = None               # the base model as the profile names it
    total_params: int | None = None
    trainable_params: int | None = None
    dataset: dict[str, Any] = field(default_factory=dict)
    devices: tuple[str, ...] = ()
    device: str | None = None
    dtype: str | None = None
    optimizer: str | None = None
    resumed_from: str | None = None
    pid: int | None = None
    torch: str | None = None
    node_rank: int | None = None           # this machine's rank in a multi-machine job
    job: str | None = None                 # the job a multi-machine run belongs to (machines, main address)


@dataclass(frozen=True, slots=True)
class Step(Event):
    KIND = "step"
    REQUIRED = ("step",)
    step: int = 0
    max_steps: int | None = None
    epoch: float | None = None
    loss: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    tokens: int | None = None
    tokens_per_s: float | None = None
    elapsed_s: float | None = None
    eta_s: float | None = None
    mean_token_accuracy: float | None = None
    entropy: float | None = None
    # preference tuning (DPO, ORPO, KTO): the implicit rewards of the chosen and rejected answers, their
    # margin, the share of pairs ranked right, and KTO's KL estimate
    reward_chosen: float | None = None
    reward_rejected: float | None = None
    reward_margin: float | None = None
    reward_accuracy: float | None = None
    kl: float | None = None
    # GRPO: the mean reward of the sampled answers, each reward function's mean, their length, the clip ratio
    reward: float | None = None
    rewards: dict[str, Any] | None = None
    completion_length: float | None = None
    clip_ratio: float | None = None
    rss_gib: float | None = None
    gpu_mem_allocated_gib: PerGpu = ()
    gpu_mem_reserved_gib: PerGpu = ()
    gpu_mem_peak_gib: PerGpu = ()
    gpu_mem_peak_reserved_gib: PerGpu = ()
    nvml_mem_used_gib: PerGpu = ()
    nvml_power_w: PerGpu = ()
    nvml_temp_c: PerGpu = ()
    nvml_util_pct: PerGpu = ()
    nvml_throttle: tuple[tuple[str, ...], ...] = ()
    energy_kwh: float | None = None

    def preference_figures(self) -> list[str]:
        """Preference and reward tuning's figures for a step's line: the reward margin and accuracy (the share
        of pairs the implicit reward ranks right), GRPO's mean reward and answer length, the KL. Short: they
        share a narrow pane at 80 columns."""
        figures = []
        if self.reward_margin is not None:
            figures.append(f"margin {self.reward_margin:+.2f}")
        if self.reward_accuracy is not None:
            figures.append(f"acc {self.reward_accuracy:.0%}")
        if self.reward is not None:
            figures.append(f"reward {self.reward:.2f}")
        if self.kl is not None:
            figures.append(f"KL {self.kl:.3f}")
        if self.completion_length is not None:
            figures.append(f"len {self.completion_length:.0f}")
        return figures


@dataclass(frozen=True, slots=True)
class Eval(Event):
    KIND = "eval"
    REQUIRED = ("step", "eval_loss")
    step: int = 0
    eval_loss: float | None = None
    epoch: float | None = None


@dataclass(frozen=True, slots=True)
class Checkpoint(Event):
    KIND = "checkpoint"
    DURABLE = True
    REQUIRED = ("step",)
    step: int = 0
    path: str = ""


@dataclass(frozen=True, slots=True)
class Stopping(Event):
    KIND = "stopping"
    step: int | None = None
    signal: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class End(Event):
    KIND = "end"
    DURABLE = True
    REQUIRED = ("status",)
    status: str = ""          # completed | stopped | failed
    step: int | None = None
    max_steps: int | None = None
    final: str | None = None
    rss_peak_gib: float | None = None
    train_runtime_s: float | None = None
    train_tokens: int | None = None
    train_tokens_per_s: float | None = None
    train_loss: float | None = None
    gpu_mem_peak_gib: PerGpu = ()
    gpu_mem_peak_reserved_gib: PerGpu = ()
    error_kind: str | None = None   # oom | data | config | download | disk | diverged | crash
    message: str | None = None
    advice: str | None = None
    rows: tuple[int, ...] = ()
    forced: bool = False


KINDS: dict[str, type[Event]] = {cls.KIND: cls for cls in (Download, Preflight, Start, Step, Eval, Checkpoint,
                                                           Stopping, End)}
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_BAD = object()  # a value that does not fit its field


# ---------------------------------------------------------------- reading

@lru_cache(maxsize=None)
def _hints(cls: type[Event]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@lru_cache(maxsize=None)
def _field_converters(cls: type[Event]) -> tuple[tuple[str, Callable[[Any], Any]], ...]:
    hints = _hints(cls)
    return tuple((f.name, _converter(hints[f.name])) for f in fields(cls))


@lru_cache(maxsize=None)
def _converter(hint: Any) -> Callable[[Any], Any]:
    """The function that reads a JSON value as type `hint` (or gives _BAD): built once per type, since a
    listing reads thousands of records."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        options = [_converter(a) for a in args if a is not type(None)]

        def union(value: Any) -> Any:
            if value is None:
                return None
            for option in options:
                out = option(value)
                if out is not _BAD:
                    return out
            return _BAD
        return union
    if origin is tuple:
        item, keep_missing = _converter(args[0]), type(None) in typing.get_args(args[0])

        def sequence(value: Any) -> Any:
            if not isinstance(value, list):
                return _BAD
            items = [item(v) for v in value]
            return tuple(None if v is _BAD else v for v in items) if keep_missing else \
                tuple(v for v in items if v is not _BAD)
        return sequence
    if origin is dict or hint is dict:
        return lambda value: value if isinstance(value, dict) else _BAD
    if hint is Any:
        return lambda value: value
    if hint is bool:
        return lambda value: value if isinstance(value, bool) else _BAD
    if hint is int:
        return _to_int
    if hint is float:
        return _to_float
    if hint is str:
        return lambda value: value if isinstance(value, str) else _BAD
    return lambda value: _BAD


def _to_int(value: Any) -> Any:
    if isinstance(value, bool):
        return _BAD
    if isinstance(value, int):
        return value if abs(value) <= MAX_NUMBER else _BAD
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return _BAD


def _to_float(value: Any) -> Any:
    if isinstance(value, bool):
        return _BAD
    if isinstance(value, (int, float)):
        value = float(value)
        # Non-finite numbers are real news (a NaN loss); a finite 1e308 is not: it reads as missing.
        return value if not math.isfinite(value) or abs(value) <= MAX_NUMBER else _BAD
    return _NONFINITE.get(value, _BAD) if isinstance(value, str) else _BAD


def parse_record(raw: Any) -> Event | None:
    """A typed record from a decoded JSON object, or None when it is not one of ours."""
    if not isinstance(raw, dict):
        return None
    cls = KINDS.get(raw.get("event"))  # type: ignore[arg-type]
    if cls is None:
        return None
    values: dict[str, Any] = {}
    for name, convert in _field_converters(cls):
        if name not in raw:
            continue
        value = convert(raw[name])
        if value is not _BAD:
            values[name] = value
    if any(values.get(name) is None for name in cls.REQUIRED):
        return None
    return cls(**values)


def parse_line(line: str | bytes) -> Event | None:
    """A record from one line, or None for a blank, partial, corrupt or hostile one."""
    if len(line) > MAX_LINE_BYTES:
        return None
    line = line.strip()
    if not line:
        return None
    try:
        return parse_record(json.loads(line))
    except (ValueError, RecursionError, TypeError):
        return None


class EventTail:
    """Reads the records of new complete lines, remembering where it stopped."""

    def __init__(self, path: Path, from_end: bool = False):
        self.file = FileTail(Path(path), from_end=from_end)

    @property
    def path(self) -> Path:
        return self.file.path

    def read_new(self, limit: int | None = None) -> list[Event]:
        """New records (with `limit`, those of the last `limit` new bytes at most); raises OSError when the file
        cannot be read (a folder, no permission)."""
        return [r for r in (parse_line(line) for line in self.file.read_lines(limit)) if r is not None]


def read_events(path: Path) -> list[Event]:
    try:
        return EventTail(path).read_new()
    except OSError:
        return []


# ---------------------------------------------------------------- writing

def to_record(event: Event) -> dict[str, Any]:
    """The JSON object of a record: None fields left out, non-finite floats as strings."""
    out: dict[str, Any] = {"event": event.KIND}
    for f in fields(event):
        value = getattr(event, f.name)
        if value is None or value == () or value == {}:
            continue
        out[f.name] = _jsonable(value)
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class EventWriter:
    """Appends records to a run's log, one flushed line each (fsync'd for the durable kinds)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        fd = append_regular(self.path)  # never through a link, never into a FIFO
        self._file: IO[str] | None = os.fdopen(fd, "a", encoding="utf-8")

    def write(self, event: Event) -> Event:
        if not event.time:
            event = replace(event, time=round(time.time(), 3))
        if self._file is None:
            return event
        self._file.write(json.dumps(to_record(event), allow_nan=False) + "\n")
        self._file.flush()  # readers see the line at once; fsync only where losing it would matter
        if event.DURABLE:
            os.fsync(self._file.fileno())
        return event

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class NullWriter(EventWriter):
    """What ranks other than 0 write with: nothing, so the log has one writer."""

    def __init__(self) -> None:  # noqa: D107 - no file
        self.path = Path(os.devnull)
        self._file = None


def append_event(path: Path, event: Event) -> Event:
    """Write one record and close the file (for writers that are not the trainer)."""
    writer = EventWriter(path)
    try:
        return writer.write(event)
    finally:
        writer.close()


# ---------------------------------------------------------------- folding

@dataclass
class Timeline:
    """What a run's records add up to; steps keyed by step number, last write wins."""

    steps: dict[int, Step] = field(default_factory=dict)
    evals: dict[int, Eval] = field(default_factory=dict)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    start: Start | None = None
    starts: int = 0
    preflight: Preflight | None = None
    download: Download | None = None
    end: End | None = None
    stopping: Stopping | None = None
    current_step: Step | None = None   # the latest step written (while steps replay, not the highest)
    _ordered: list[Step] = field(default_factory=list, repr=False, compare=False)  # steps by number, kept sorted

    def add(self, record: Event) -> None:
        if isinstance(record, Step) and record.max_steps and record.step > record.max_steps:
            return  # a step past its own last step is not believed (a forged or corrupt record)
        if isinstance(record, Step):
            replaces = record.step in self.steps
            self.steps[record.step] = record
            self.current_step = record
            if not replaces and (not self._ordered or record.step > self._ordered[-1].step):
                self._ordered.append(record)   # the usual case: the next step; no re-sort of a long run
            else:
                self._ordered = [self.steps[s] for s in sorted(self.steps)]
        elif isinstance(record, Eval):
            self.evals[record.step] = record
        elif isinstance(record, Checkpoint):
            self.checkpoints.append(record)
        elif isinstance(record, Start):
            # A resumed run starts again: its end (if any) belongs to the earlier attempt.
            self.start, self.end, self.stopping = record, None, None
            self.starts += 1
        elif isinstance(record, End):
            self.end = record
        elif isinstance(record, Preflight):
            self.preflight = record
        elif isinstance(record, Download):
            self.download = record
        elif isinstance(record, Stopping):
            self.stopping = record

    def extend(self, records: list[Event]) -> Timeline:
        for r in records:
            self.add(r)
        return self

    @property
    def first_step(self) -> Step | None:
        return self._ordered[0] if self._ordered else None

    @property
    def last_step(self) -> Step | None:
        return self._ordered[-1] if self._ordered else None

    def ordered_steps(self) -> list[Step]:
        return list(self._ordered)

    def thin(self, keep: int) -> None:
        """At most about `keep` steps held, for a reader that follows a run for days: past 2 x `keep`, the
        latest `keep` // 2 stay whole and the older ones are thinned to evenly spaced ones (the first kept)."""
        if len(self._ordered) <= 2 * keep:
            return
        recent = self._ordered[-(keep // 2):]
        older = self._ordered[:-(keep // 2)]
        stride = max(1, len(older) // (keep - keep // 2))
        self._ordered = older[::stride] + recent
        self.steps = {s.step: s for s in self._ordered}

    def recent_steps(self, count: int | None) -> list[Step]:
        """The last `count` steps by number (all when None)."""
        return self._ordered[-count:] if count else list(self._ordered)

    def steady_tokens_per_s(self, warmup: int) -> tuple[float | None, int]:
        """Tokens/s over the steps after the first `warmup` (compilation, allocator growth, cold caches),
        and how many steps that average covers; (None, 0) when too few steps were logged."""
        steps = [s for s in self.ordered_steps() if s.tokens is not None and s.elapsed_s is not None]
        if len(steps) <= warmup + 1:
            return None, 0
        first, last = steps[warmup], steps[-1]
        seconds = (last.elapsed_s or 0.0) - (first.elapsed_s or 0.0)
        if seconds <= 0:
            return None, 0
        return ((last.tokens or 0) - (first.tokens or 0)) / seconds, last.step - first.step


SUMMARY_HEAD_BYTES = 256 << 10  # the start of a run's story: preflight, plan, start
SUMMARY_TAIL_BYTES = 1 << 20   # its latest steps (thousands), evals and its end; parsed records cost ~10x their bytes


SUMMARY_STEPS = 64  # the steps a listing parses: the latest (its health check looks at the last 50)
STEP_LINE = b'{"event": "step"'


def load_summary_timeline(run_dir: Path) -> Timeline:
    """The timeline a listing needs, in bounded time and memory whatever the file's size: the records of the
    whole events file when it is small, else of its first and last megabytes (the start, the latest steps and
    the end; the steps in between are left out), of which only the latest steps are parsed. Raises OSError
    when the file cannot be read."""
    path = Path(run_dir) / EVENTS_FILE
    if not path.exists():
        return Timeline()
    return Timeline().extend(read_head_and_tail(path, SUMMARY_HEAD_BYTES, SUMMARY_TAIL_BYTES,
                                                latest_steps=SUMMARY_STEPS))


def read_head_and_tail(path: Path, head_bytes: int, tail_bytes: int, end: int | None = None,
                       latest_steps: int | None = None) -> list[Event]:
    """The records of a file's first `head_bytes` and last `tail_bytes` (up to `end`, default its size): the
    whole file when it is that small; with `latest_steps`, only that many of the step records, the latest.
    Bounded time and memory whatever the file's size; raises OSError."""
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size if end is None else end
        if size <= head_bytes + tail_bytes:
            lines = os.pread(fd, size, 0).split(b"\n")[:-1]  # an unterminated last line is still being written
        else:
            head = os.pread(fd, head_bytes, 0).split(b"\n")[:-1]  # the cut last line dropped
            tail = os.pread(fd, tail_bytes, size - tail_bytes).split(b"\n")[1:-1]  # and the first
            lines = head + tail
    finally:
        os.close(fd)
    if latest_steps is not None:
        steps = [i for i, line in enumerate(lines) if line.startswith(STEP_LINE)]
        skipped = set(steps[:-latest_steps]) if latest_steps else set(steps)
        lines = [line for i, line in enumerate(lines) if i not in skipped]
    return [r for r in (parse_line(line) for line in lines) if r is not None]


WHOLE_FILE_BYTES = 4 << 20   # an events file up to this size is read whole
CURVE_POINTS = 2000          # steps sampled through a longer file, for curves
SCAN_CHUNK_BYTES = 16 << 20  # what a search through the file holds at a time
# The records other than steps that a reader needs from anywhere in the file: every eval (curves, the best and
# the last eval) and every start (a resumed run's settings). They are found by a byte search (C speed), not by
# parsing each line; the writer puts "event" first, as json.dumps writes it.
SEARCHED = (b'{"event": "eval"', b'{"event": "start"')


def load_bounded_timeline(run_dir: Path, points: int = CURVE_POINTS) -> Timeline:
    """A run's timeline in bounded time and memory, whatever the size of its events file: the whole file when
    it is small; else its first and last records (the start and the preflight, the latest steps, the end),
    every eval and start record, and `points` steps sampled at even offsets through the file (a thinned
    curve: the steps in between are left out). Raises OSError when the file cannot be read."""
    path = Path(run_dir) / EVENTS_FILE
    if not path.exists():
        return Timeline()
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        if size <= WHOLE_FILE_BYTES:
            return Timeline().extend(read_head_and_tail(path, WHOLE_FILE_BYTES, 0, size))
        found: dict[int, Event] = {}
        found.update(records_at(fd, 0, SUMMARY_HEAD_BYTES, first_line_whole=True))
        found.update(records_at(fd, size - SUMMARY_TAIL_BYTES, SUMMARY_TAIL_BYTES))
        for offset in searched_lines(fd, size):
            found.update(records_at(fd, offset, 4096, first_line_whole=True, first_only=True))
        for i in range(1, points):
            found.update(records_at(fd, size * i // points, 4096, first_only=True))
    finally:
        os.close(fd)
    return Timeline().extend([found[offset] for offset in sorted(found)])


def records_at(fd: int, offset: int, length: int, first_line_whole: bool = False,
               first_only: bool = False) -> dict[int, Event]:
    """The records of the complete lines in `length` bytes from `offset`, by the offset of each line (the
    first line is taken only when `first_line_whole`: the offset is a line's start)."""
    data = os.pread(fd, length, max(offset, 0))
    start = 0 if first_line_whole or offset <= 0 else data.find(b"\n") + 1
    if start <= 0 and not (first_line_whole or offset <= 0):
        return {}
    out: dict[int, Event] = {}
    while True:
        end = data.find(b"\n", start)
        if end == -1:
            return out  # the last line is cut (or still being written)
        record = parse_line(data[start:end])
        if record is not None:
            out[max(offset, 0) + start] = record
            if first_only:
                return out
        start = end + 1


def searched_lines(fd: int, size: int) -> list[int]:
    """Where the lines of the searched kinds start, found chunk by chunk."""
    offsets: list[int] = []
    overlap = max(len(s) for s in SEARCHED)
    position = 0
    while position < size:
        data = os.pread(fd, SCAN_CHUNK_BYTES + overlap, position)
        for needle in SEARCHED:
            at = data.find(needle)
            while at != -1 and at < SCAN_CHUNK_BYTES:
                offsets.append(position + at)
                at = data.find(needle, at + 1)
        position += SCAN_CHUNK_BYTES
    return offsets


def load_timeline(run_dir: Path) -> Timeline:
    """The timeline of a run folder, every record of it (the trainer's own reads); raises OSError when its
    events file cannot be read. Readers that show a run use load_bounded_timeline."""
    path = Path(run_dir) / EVENTS_FILE
    if not path.exists():
        return Timeline()
    return Timeline().extend(EventTail(path).read_new())
