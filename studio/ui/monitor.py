"""The run monitor: loss (raw, smoothed, eval), throughput and GPUs over time, memory against the
estimate, the preflight, progress with the finish time, studio's log, status and what to do.

Everything comes from the run folder: a worker thread tails events.jsonl and trainer.log
a few times a second and posts what it read; the screen folds the records into a
Timeline and repaints what changed.
"""

from __future__ import annotations

import difflib
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Header, Input, RichLog, Static

from studio import display
from studio.hardware import Inventory
from studio.planning.fixes import revised_for_oom
from studio.profiles.profile import Profile, ProfileError, load_profile
from studio.runs.files import EVAL_FILE
from studio.runs.events import End, Event, EventTail, Timeline
from studio.runs.folder import Run
from studio.runs.health import health_alerts
from studio.runs.liveness import is_alive
from studio.runs.state import status_of
from studio.runs.tail import FileTail
from studio.ui.actions import RunActions, run_action_commands, run_bindings
from studio.ui.charts import LossChart
from studio.ui.logs import LogView
from studio.ui.screens import StudioScreen
from studio.ui.widgets import StepBar, memory_lines, spark, update_in_place
from studio.runs.status import ENDED, RunStatus

FIRST_READ_HEAD = 256 << 10  # a long run's events as the monitor first reads them: the start of its story...
FIRST_READ_TAIL = 8 << 20    # ...and its latest steps, evals and end
MONITOR_STEPS = 10_000       # steps the monitor holds of a run it follows for days (older ones thinned)
REFRESH_S = 1.0     # a step a second is as live as a person reads; less wakes the CPU less
CHART_EVERY_S = 3.0   # plotting is the costly part of a repaint
HEALTH_EVERY_S = 5.0  # how often a live run's alerts are judged again when no record arrives
CHART_POINTS = 300    # longer histories are thinned to this many points (to twice the chart's width once known)
WINDOW_STEPS = 200    # w narrows the chart to the latest steps
CHART_VIEWS = ("loss", "learning rate", "tokens/s")  # v goes round them
SMOOTHING = (0.0, 0.6, 0.8, 0.9, 0.95, 0.98, 0.99)  # the chart's smoothing weights, + and - step through them
SPARK_WIDTH = 28      # the side pane is 30 columns at 80x24
STATUS_COLOUR = {RunStatus.RUNNING: "green", RunStatus.COMPLETED: "cyan", RunStatus.STOPPED: "yellow"}
KEY_HINT = {"oom": "f saves the revised profile below and resumes", "data": "u resumes the run",
            "download": "u resumes the run", "disk": "u resumes the run",
            "crash": "u resumes from the last checkpoint",
            "lost_machine": "u resumes once every machine of the job is back (resume on each)",
            "config": "the profile's editor (e on the dashboard) changes it; r there starts a new run"}


def average_rate(steps: list[Any]) -> float | None:
    """Tokens per second over the whole run so far: tokens and seconds between the first and last step."""
    timed = [s for s in (steps[0], steps[-1]) if s.tokens is not None and s.elapsed_s is not None] if steps else []
    if len(timed) < 2 or timed[1].elapsed_s <= timed[0].elapsed_s:
        return None
    return (timed[1].tokens - timed[0].tokens) / (timed[1].elapsed_s - timed[0].elapsed_s)


def thin(points: list[tuple[int, float]], limit: int = CHART_POINTS) -> list[tuple[int, float]]:
    """Every k-th point (keeping the last) so a long run plots as fast as a short one."""
    if len(points) <= limit:
        return points
    k = -(-len(points) // limit)
    return points[::k] + ([points[-1]] if (len(points) - 1) % k else [])


@dataclass(frozen=True)
class RunFiles:
    """What one poll of the run folder found."""

    records: list[Event]
    log_text: str
    alive: bool
    launched_at: float
    status: RunStatus | None = None            # runs/state.status_of, decided in the worker (Slurm asks squeue)
    slurm_job: str = ""                        # the run's Slurm job, when it was submitted to Slurm
    error: str = ""
    evaluation: dict[str, Any] | None = None   # eval.json: `studio eval`'s before/after numbers


class RunFilesRead(Message):
    def __init__(self, files: RunFiles):
        super().__init__()
        self.files = files


class RunMonitor(RunActions, StudioScreen):
    """Watch one run; stop, kill, resume, export or chat with it from the keyboard."""

    HELP_TITLE = "Monitor"

    BINDINGS = [
        *run_bindings(shown=("s", "u", "x", "c")),  # K (kill) in the help and the palette: it fits 80 columns
        Binding("f", "fix_oom", "Fix OOM", show=False),
        Binding("l", "toggle_raw_log", "Raw log", show=False),
        Binding("z", "zoom_log", "Log", show=False),
        Binding("slash", "search_log", "Search", show=False),
        Binding("n", "next_match(1)", "Next match", show=False),
        Binding("N", "next_match(-1)", "Previous match", show=False),
        Binding("G", "follow_log", "Log end", show=False),
        Binding("right_square_bracket", "next_problem(1)", "Log: next error or warning", show=False),
        Binding("left_square_bracket", "next_problem(-1)", "Log: previous error or warning", show=False),
        Binding("ctrl+s", "save_log", "Log: save what it shows to a file", show=False),
        Binding("W", "toggle_wrap", "Log: wrap long lines or scroll sideways", show=False),
        Binding("T", "toggle_log_times", "Log: each line's time on or off", show=False),
        Binding("v", "chart_view", "Chart", show=False),
        Binding("w", "chart_window", f"Chart: the last {WINDOW_STEPS} steps or all", show=False),
        Binding("Y", "chart_log_scale", "Chart: log scale on or off", show=False),
        Binding("left", "chart_cursor(-1)", "Chart: cursor a step back (its step, loss and lr read out)", show=False),
        Binding("right", "chart_cursor(1)", "Chart: cursor a step on", show=False),
        Binding("shift+left", "chart_cursor(-10)", "Chart: cursor 10 steps back", show=False),
        Binding("shift+right", "chart_cursor(10)", "Chart: cursor 10 steps on", show=False),
        Binding("plus", "chart_smoothing(1)", "Chart: smooth more", show=False),
        Binding("minus", "chart_smoothing(-1)", "Chart: smooth less (0: none)", show=False),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, run: Run):
        super().__init__()
        self.run = run
        self.timeline = Timeline()
        self.launched_at = 0.0  # when the latest trainer was launched (status.json)
        self._log_width = 0
        self.events = EventTail(run.events_path)
        self._loaded = False  # the first read is bounded (first_records)
        self.log_tail = FileTail(run.log_path)
        self.status: RunStatus | None = None  # as last read (runs/state.status_of)
        self.slurm_job = ""
        self.gpu_totals: list[float] = []
        self.plan = run.plan()
        self._dirty = True
        self._charted_at = 0.0
        self._health_at = 0.0
        self._shown: dict[str, Any] = {}
        self._util: dict[int, deque[float]] = {}
        self.peak_reserved = 0.0   # the highest peak any step reported, GiB
        self.folder_error = ""     # why the run folder can no longer be read, once it cannot
        self.evaluation: dict[str, Any] | None = None
        self.chart_view = CHART_VIEWS[0]
        self.chart_window = False   # the last WINDOW_STEPS steps only
        self.chart_log = False      # a log scale
        self.chart_cursor: int | None = None  # the step under the cursor (left/right), read out in the title
        self.smoothing = SMOOTHING.index(0.9)  # + and - step through SMOOTHING

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="run-status")
        with Horizontal(id="progress-row"):
            yield StepBar(id="progress")
            yield Static(id="progress-text")
        with Horizontal(id="main-row"):
            yield LossChart(id="loss-chart")
            with VerticalScroll(id="side"):
                yield Static(id="speed-text")
                yield Static(id="memory-text")
                yield Static(id="plan-text")
                yield Static(id="alerts")
        yield Static(id="error-panel")
        with Vertical(id="log-box"):
            yield Input(id="log-search", placeholder="search the log (enter keeps it, esc clears)", compact=True)
            yield RichLog(id="trainer-log", max_lines=2000, wrap=True, markup=False, auto_scroll=True)
        yield Footer()

    def training_run_id(self) -> str | None:
        return self.run.id if self.status == RunStatus.RUNNING else None

    def commands(self) -> Iterator[SystemCommand]:
        yield from run_action_commands(self, "this run")
        yield from super().commands()

    def on_mount(self) -> None:
        self.title = f"run {self.run.id}"
        self.set_class(self.app.size.height < 32, "short")
        self.log_view = LogView(self.query_one("#trainer-log", RichLog))
        self.query_one("#log-search", Input).display = False
        self.watch(self.app, "inventory", self.show_gpus)
        self.poll_files()  # the first read too: a long run's events take a while, never on the UI thread
        self.set_interval(REFRESH_S, self.poll_files)

    def show_gpus(self, inv: Inventory) -> None:
        self.gpu_totals = [g.memory_total_gib for g in inv.gpus]

    def on_resize(self) -> None:
        """A short terminal gives the charts the rows: the log and the error panel shrink (z zooms the log).
        The log's lines rewrap to the new width once it is laid out."""
        self.set_class(self.size.height < 32, "short")
        if self.size.width != self._log_width:
            self._log_width = self.size.width
            self.call_after_refresh(lambda: self.log_view.render())

    # ----------------------------------------------------------- reading (a worker thread)

    def read_files(self) -> RunFiles:
        """New events and log text, and whether the trainer lives (file and process reads only)."""
        if not self.run.dir.is_dir():  # open files of a deleted folder still read: ask for the folder itself
            return RunFiles([], "", False, 0.0, error=f"folder deleted: what is on screen is all there was; "
                                                           f"esc goes back ({self.run.dir})")
        try:
            # bounded too when the file grew a lot since the last read (the tail skips ahead)
            records = self.first_records() if not self._loaded else self.events.read_new(limit=FIRST_READ_TAIL)
            self._loaded = True
            text = self.log_tail.read_text()
        except OSError as e:  # the run folder is unreadable
            return RunFiles([], "", False, 0.0, error=f"cannot read the run: {e.strerror or e}")
        ends = [r for r in records if isinstance(r, End)]
        end = ends[-1] if ends else self.timeline.end  # the monitor's timeline is folded in the app's thread
        alive = is_alive(self.run)
        record = self.run.status_file()
        return RunFiles(records, text, alive, record.launched_at, status_of(self.run, end, alive),
                        slurm_job=record.slurm_job, evaluation=self.run.read_json(EVAL_FILE) or None)

    def first_records(self) -> list[Event]:
        """A long run's events, bounded: its first part (preflight, start) and its last 8 MiB (the latest
        tens of thousands of steps, the evals and the end); from there the tail follows the end."""
        from studio.runs.events import read_head_and_tail

        path = self.run.events_path
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return []
        if size <= FIRST_READ_HEAD + FIRST_READ_TAIL:
            return self.events.read_new()
        self.events = EventTail(path, from_end=True)
        return read_head_and_tail(path, FIRST_READ_HEAD, FIRST_READ_TAIL, end=self.events.file.offset)

    @work(thread=True, exclusive=True, group="run-files")
    def poll_files(self) -> None:
        self.post_message(RunFilesRead(self.read_files()))

    @on(RunFilesRead)
    def files_read(self, message: RunFilesRead) -> None:
        self.show_files(message.files)

    def show_files(self, files: RunFiles) -> None:
        """Fold new events and log lines in; repaint only what changed; tell when the run ends."""
        if files.error:
            if files.error != self.folder_error:  # said once, and kept on screen
                self.folder_error = files.error
                self.notify(files.error, severity="error", timeout=10)
            self._show("#run-status", Text(files.error, style="bold red"))
            return
        if files.records and any(r.KIND == "start" for r in files.records):
            self.plan = self.run.plan()
        if files.evaluation != self.evaluation:
            self.evaluation, self._dirty = files.evaluation, True
        self.launched_at = files.launched_at
        self.slurm_job = files.slurm_job
        self.timeline.extend(files.records)
        status = files.status
        self.timeline.thin(MONITOR_STEPS)
        for r in files.records:
            if r.KIND == "step":
                self.peak_reserved = max([self.peak_reserved, *(p for p in r.gpu_mem_peak_reserved_gib if p is not None)])
        if files.log_text:
            self.log_view.feed(files.log_text)
        if status == RunStatus.RUNNING and time.monotonic() - self._health_at >= HEALTH_EVERY_S:
            self._dirty = True  # a run that went quiet writes nothing: its health is judged on the clock too
        if status == RunStatus.RUNNING and self.preparing:
            self._dirty = True  # the seconds of preparation count up
        changed = status != self.status
        if files.records or changed or self._dirty:
            previous, self.status = self.status, status
            self._dirty = False
            self.repaint()
            if previous == RunStatus.RUNNING and status in ENDED:
                self.announce(status)
        if changed:
            self.refresh_bindings()  # the footer offers what applies to the new status

    def announce(self, status: str) -> None:
        """A toast, the terminal bell and a desktop notification when the run being watched ends."""
        end = self.timeline.end
        told = (self.run.id, end.time if end else None)
        if told in self.app.told_endings:  # the dashboard said it already
            return
        self.app.told_endings.add(told)
        text = f"run {self.run.id} {status}" + (f": {end.message}" if end and end.message else "")
        # the status line and the error panel keep saying it
        self.app.tell_ending(text, status, status in (RunStatus.FAILED, RunStatus.CRASHED))

    # ----------------------------------------------------------- painting

    def _show(self, selector: str, content: Any) -> None:
        """Update a Static only when what it shows changed."""
        if self._shown.get(selector) != content:
            self._shown[selector] = content
            update_in_place(self.query_one(selector, Static), content)

    def repaint(self) -> None:
        tl, status = self.timeline, self.status
        running = status == RunStatus.RUNNING
        current = tl.current_step
        colour = STATUS_COLOUR.get(status, "red")
        head = Text.assemble(("● ", colour), (status, f"bold {colour}"), f"  {self.run.id}")
        if tl.start:
            head.append(f"  ·  {tl.start.method or '?'} on {', '.join(tl.start.devices or ('?',))} "
                        f"({tl.start.dtype or '?'}), {display.count(tl.start.trainable_params)} trainable")
        elif tl.download and not tl.download.done:
            head.append(f"  ·  downloading {tl.download.name}: {display.size_bytes(tl.download.bytes)}"
                        f" of {display.size_bytes(tl.download.total_bytes)}")
        elif running:
            head.append(f"  ·  preparing (data, tokenizer, model) for {self.preparing_s():.0f} s")
        if self.slurm_job:
            head.append(f"  ·  Slurm job {self.slurm_job}")
        if running and tl.start and self.preparing:
            head = Text.assemble(("● ", colour), ("resuming", f"bold {colour}"), f"  {self.run.id}  ·  loading the "
                                 f"model and its last checkpoint for {self.preparing_s():.0f} s")
        self._show("#run-status", head)
        alerts = health_alerts(tl, running=running, recent=500)
        self.paint_progress(current, running, stalled=any(a.kind == "stall" for a in alerts))
        now = time.monotonic()
        if now - self._charted_at >= CHART_EVERY_S or not running:
            self._charted_at = now
            self.plot_chart()
        self._show("#speed-text", self.speed_text())
        self._show("#memory-text", self.memory_text(current))
        self._show("#plan-text", self.plan_text())
        self._health_at = time.monotonic()
        self._show("#alerts", Text("\n".join(f"⚠ {a.message}" for a in alerts), style="bold yellow") if alerts else "")
        self._show("#error-panel", self.error_text())

    def plot_chart(self) -> None:
        """The chart v picked (loss, learning rate or tokens/s), over every step or the last WINDOW_STEPS (w), on
        a linear or log scale (Y)."""
        steps = self.timeline.ordered_steps()
        if self.chart_window:
            steps = steps[-WINDOW_STEPS:]
        first = steps[0].step if steps else 0
        view = self.chart_view
        title = view + (f", last {WINDOW_STEPS} steps" if self.chart_window else "")
        chart = self.query_one(LossChart)
        limit = 2 * chart.size.width or CHART_POINTS  # braille draws two points a cell: more are never seen
        weight = SMOOTHING[self.smoothing]
        under = next((s for s in steps if s.step == self.chart_cursor), None)
        readout = "" if under is None else display.step_readout(under)
        shared = dict(log_y=self.chart_log, weight=weight, cursor=under.step if under else None, readout=readout)
        if view == "loss":
            evals = [(e.step, e.eval_loss) for e in (self.timeline.evals[k] for k in sorted(self.timeline.evals))]
            chart.plot(thin([(s.step, s.loss) for s in steps], limit),
                       thin([(x, y) for x, y in evals if x >= first], limit), title=title, **shared)
            return
        value = "learning_rate" if view == "learning rate" else "tokens_per_s"
        points = [(s.step, getattr(s, value)) for s in steps if getattr(s, value) is not None]
        chart.plot(thin(points, limit), [], title=title if points else f"{title}: none reported yet",
                   smooth=view == "tokens/s", raw="per step", **shared)

    def replot(self) -> None:
        self.plot_chart()
        self._charted_at = time.monotonic()

    def action_chart_view(self) -> None:
        self.chart_view = CHART_VIEWS[(CHART_VIEWS.index(self.chart_view) + 1) % len(CHART_VIEWS)]
        self.replot()

    def action_chart_window(self) -> None:
        self.chart_window = not self.chart_window
        self.replot()

    def action_chart_log_scale(self) -> None:
        self.chart_log = not self.chart_log
        self.replot()

    def action_chart_cursor(self, move: int) -> None:
        """The cursor to another logged step (it starts at the latest), its figures read out in the title."""
        steps = [s.step for s in self.timeline.ordered_steps()]
        if self.chart_window:
            steps = steps[-WINDOW_STEPS:]
        if not steps:
            return
        if self.chart_cursor in steps:
            at = steps.index(self.chart_cursor)
            self.chart_cursor = steps[max(0, min(len(steps) - 1, at + move))]
        else:
            self.chart_cursor = steps[-1]  # the first press: the latest step
        self.replot()

    def action_chart_smoothing(self, change: int) -> None:
        self.smoothing = max(0, min(len(SMOOTHING) - 1, self.smoothing + change))
        self.notify(f"chart smoothing {SMOOTHING[self.smoothing]:g}" + (" (none)" if not self.smoothing else ""))
        self.replot()

    @property
    def preparing(self) -> bool:
        """The trainer launched last has written no `start` yet (a resume shows the attempt before it)."""
        start = self.timeline.start
        return start is None or (self.launched_at > 0 and start.time < self.launched_at)

    def preparing_s(self) -> float:
        return max(0.0, time.time() - self.launched_at) if self.launched_at else 0.0

    def paint_progress(self, current: Any, running: bool, stalled: bool = False) -> None:
        tl = self.timeline
        bar = self.query_one("#progress", StepBar)
        max_steps = (current.max_steps if current else None) or (tl.start.max_steps if tl.start else None)
        bar.display = running and bool(max_steps)
        if max_steps:
            bar.show(current.step if current else 0, max_steps)
        if not current:
            self._show("#progress-text", " waiting for the first step" if running else " no step was logged")
            return
        epoch = f"{current.epoch:.2f}" if current.epoch is not None else "-"
        text = f" step {current.step}/{max_steps or '?'} · epoch {epoch}"
        if running and self.preparing:
            text += f" · resuming: no step of this attempt yet ({self.preparing_s():.0f} s)"
        elif running and stalled:  # a run gone quiet has no finish time to promise
            text += " · ETA unknown: no step lately (see the alert)"
        elif running and current.eta_s is not None:
            finish = datetime.fromtimestamp(time.time() + current.eta_s).strftime("%H:%M")
            text += f" · ETA {display.duration(current.eta_s)} (done ~{finish})"
        self._show("#progress-text", text)

    def speed_text(self) -> Text:
        tl = self.timeline
        rates = [s.tokens_per_s or 0 for s in tl.recent_steps(SPARK_WIDTH)]
        last = tl.current_step
        if not rates or not last:
            return Text("")
        out = Text.assemble(("tokens/s ", "bold"), f"{rates[-1]:,.0f}")
        avg = average_rate([tl.first_step, last]) if tl.first_step else None
        out.append(f" (avg {avg:,.0f})\n" if avg else "\n")
        out.append_text(spark(rates))
        timing = self.timing_text()
        if timing:
            out.append(f"\n{timing}")
        if last.loss is not None:
            out.append(f"\nloss {last.loss:.4f}", style="bold")
        if last.learning_rate is not None:
            out.append(f" · lr {last.learning_rate:.1e}")
        figures = last.preference_figures()
        for pair in (figures[i:i + 2] for i in range(0, len(figures), 2)):  # what it trains for, two a line
            out.append("\n" + " · ".join(pair), style="bold")
        if tl.evals:
            latest = tl.evals[max(tl.evals)]
            best = min((e for e in tl.evals.values() if e.eval_loss is not None), key=lambda e: e.eval_loss,
                       default=None)
            if latest.eval_loss is not None and best is not None:
                out.append(f"\neval loss {latest.eval_loss:.3f}", style="bold")
                out.append(f"\nbest eval {best.eval_loss:.3f} at step {best.step}")
        details = [f"grad {last.grad_norm:.2f}"] if last.grad_norm is not None else []
        if last.energy_kwh is not None:
            details.append(f"{last.energy_kwh:.3f} kWh")
        if details:
            out.append("\n" + " · ".join(details))
        return out

    def timing_text(self) -> str:
        """Training time so far, seconds per step, and the last checkpoint (what a kill would lose)."""
        tl, last = self.timeline, self.timeline.last_step
        parts = []
        if last and last.elapsed_s is not None:
            parts.append(f"elapsed {display.duration(last.elapsed_s)}")
            first = tl.first_step
            if first and first.elapsed_s is not None and last.step > first.step:
                parts.append(f"{(last.elapsed_s - first.elapsed_s) / (last.step - first.step):.2f} s/step")
        if tl.checkpoints:
            saved = tl.checkpoints[-1]
            ago = f", {display.duration(time.time() - saved.time)} ago" if self.status == RunStatus.RUNNING and saved.time else ""
            parts.append(f"checkpoint step {saved.step}{ago}")
        return " · ".join(parts[:2]) + ("\n" + parts[2] if len(parts) > 2 else "")

    def memory_text(self, current: Any) -> Text:
        if current is None:
            return Text("")
        for i, u in enumerate(current.nvml_util_pct):
            if u is not None:
                self._util.setdefault(i, deque(maxlen=SPARK_WIDTH)).append(u)
        out = memory_lines(current, self.gpu_totals)
        for i, history in sorted(self._util.items()):
            temps = current.nvml_temp_c[i] if i < len(current.nvml_temp_c) else None
            power = current.nvml_power_w[i] if i < len(current.nvml_power_w) else None
            out.append(f"GPU{i} util {history[-1]:.0f}%" + (f" · {temps:.0f}C" if temps is not None else "")
                       + (f" · {power:.0f}W" if power is not None else "") + "\n")
            out.append_text(spark(list(history)))
            out.append("\n")
        return out

    def config_line(self) -> str:
        """The run's settings in one line, from its plan (the resolved profile): what it trains and how."""
        if self.plan is None:
            return ""
        p = self.plan.final.profile
        parts = [self.plan.model.rsplit("/", 1)[-1]]
        if p.method.type != "full":
            parts.append(f"{p.method.type} r{p.method.rank}")
        start = self.timeline.start   # the optimizer the trainer made ("auto" picks per method)
        optimizer = start.optimizer if start and start.optimizer else p.train.optimizer
        parts += [f"batch {p.train.batch_size}x{p.train.grad_accum}", f"lr {p.train.learning_rate:g}",
                  f"len {p.data.max_length}"] + ([optimizer] if optimizer != "auto" else [])
        if p.train.gradient_checkpointing is True:
            parts.append("checkpointing")
        return " · ".join(parts)

    def plan_text(self) -> Text:
        """The run's settings in a line, the estimate next to the measured peak, and what the data looks like."""
        out = Text()
        if config := self.config_line():
            out.append(config + "\n", style="bold")
        estimate = self.plan.peak_reserved_gib if self.plan else None
        measured = self.peak_reserved
        if isinstance(estimate, (int, float)) and measured:
            out.append(f"peak {measured:.1f} GiB reserved\nestimate {estimate:.1f} GiB ({(estimate / measured - 1) * 100:+.0f}%)\n")
        tuned, base = (self.evaluation or {}).get("tuned"), (self.evaluation or {}).get("base")
        if isinstance(tuned, dict) and isinstance(tuned.get("loss"), (int, float)):
            out.append("eval ", style="bold")
            out.append(f"tuned {tuned['loss']:.3f}" + (f" · base {base['loss']:.3f}" if isinstance(base, dict) and
                                                        isinstance(base.get("loss"), (int, float)) else ""))
            if isinstance(tuned.get("exact"), (int, float)):
                out.append(f"\nexact tokens {tuned['exact']:.0%}")
            out.append("\n")
        p = self.timeline.preflight
        if p and p.rows:
            out.append(f"data {p.rows:,} rows, {display.count(p.tokens or 0)} tokens\nloss on {p.loss_on}", style="dim")
            if p.truncated_rows:
                out.append(f"; {p.truncated_rows} truncated", style="yellow")
        return out

    def error_text(self) -> Text:
        end, status = self.timeline.end, self.status
        if status == RunStatus.CRASHED:
            return Text("The trainer exited without a final event (killed or crashed). Press u to resume "
                        "from the last checkpoint; the log below shows what happened.", style="bold red")
        if not end or end.status != RunStatus.FAILED:
            if end and end.message and status != RunStatus.RUNNING:
                hint = " Press u to resume." if status == RunStatus.STOPPED else ""
                return Text(f"{end.message}.{hint}", style="yellow")
            return Text("")
        text = Text.assemble((f"failed ({end.error_kind}): ", "bold red"), end.message or "",
                             "\nwhat to do: ", (end.advice or "", "bold"))
        if end.error_kind in KEY_HINT:
            text.append(f"\nkeys: {KEY_HINT[end.error_kind]}")
        if end.error_kind == "oom":
            diff = self.oom_diff()
            if diff:
                text.append("\nrevised profile:\n")
                text.append(diff, style="cyan")
        return text

    def trained_profile(self, profile: Profile) -> Profile:
        """The profile as the run trained it, every auto settled (plan.json's `final`), else as written."""
        plan = self.run.plan()
        return plan.final.profile if plan else profile

    def oom_diff(self) -> str:
        try:
            profile = load_profile(self.run.profile_path)
        except ProfileError:
            return ""
        revised = revised_for_oom(profile, self.trained_profile(profile))
        if revised == profile:
            return ""
        lines = difflib.unified_diff(profile.to_toml().splitlines(), revised.to_toml().splitlines(), lineterm="", n=0)
        return "\n".join(line for line in lines if line[:1] in "+-" and not line.startswith(("+++", "---")))

    # ----------------------------------------------------------- the log

    def action_toggle_log_times(self) -> None:
        self.log_view.times = not self.log_view.times
        self.notify("log: the time of each line" if self.log_view.times else "log: times hidden (T shows them)")

    def action_toggle_raw_log(self) -> None:
        self.log_view.raw = not self.log_view.raw
        self.notify("log: every line" if self.log_view.raw else "log: studio's lines (l shows every line)")

    def action_toggle_wrap(self) -> None:
        log = self.query_one("#trainer-log", RichLog)
        log.wrap = not log.wrap
        self.log_view.render()
        self.notify("log: long lines wrap" if log.wrap else "log: long lines scroll sideways (W wraps them)")

    def action_zoom_log(self) -> None:
        self.toggle_class("log-zoomed")

    def action_search_log(self) -> None:
        box = self.query_one("#log-search", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#log-search")
    def search_changed(self, event: Input.Changed) -> None:
        self.log_view.search = event.value
        self.show_log_title()

    @on(Input.Submitted, "#log-search")
    def search_done(self, event: Input.Submitted) -> None:
        event.input.display = bool(event.value)
        self.query_one("#trainer-log", RichLog).focus()  # n and N step through the matches from here
        if event.value:
            self.action_next_match(1)

    def action_next_match(self, direction: int) -> None:
        if not self.log_view.search:
            self.notify("/ searches the log first; then n and N go from match to match")
            return
        self.log_view.step(direction)
        self.show_log_title()

    def action_next_problem(self, direction: int) -> None:
        if not self.log_view.step_problem(direction):
            self.notify("no error or warning in the log" + ("" if self.log_view.raw else " (l shows every line)"))
        self.show_log_title()

    def action_save_log(self) -> None:
        """The log as shown, into a file beside where the app was started (the run's own trainer.log is whole)."""
        from studio.atomic import write_text

        target = Path.cwd() / f"{self.run.id}-log.txt"
        try:
            write_text(target, self.log_view.text())
        except OSError as e:
            self.notify(f"cannot save the log to {target}: {e.strerror or e}", severity="error")
            return
        self.notify(f"saved {len(self.log_view.shown)} log lines to {target} (the whole log: {self.run.log_path})")

    def action_follow_log(self) -> None:
        self.log_view.follow()
        self.show_log_title()

    def show_log_title(self) -> None:
        self.query_one("#log-box").border_title = self.log_view.title()

    # ----------------------------------------------------------- actions

    def action_back(self) -> None:
        """Esc clears a search first (typing in it or not); then it leaves."""
        box = self.query_one("#log-search", Input)
        if box.display or self.log_view.search:
            box.value = ""
            box.display = False
            self.log_view.search = ""
            self.log_view.follow()
            self.show_log_title()
            return
        self.app.pop_screen()

    def acting_run(self) -> Run:
        return self.run

    def acting_status(self) -> RunStatus | None:
        return self.status

    def resumed(self) -> None:
        self._dirty = True

    @work(thread=True, group="resume")
    def revise_and_resume(self, revised: Profile) -> None:
        """After an out-of-memory failure: the revised profile planned like any start, then resumed."""
        from studio.runs.launcher import resume_run
        from studio.runs.start import START_ERRORS, revise_run

        try:
            revise_run(self.run, revised)
            resume_run(self.run)
        except START_ERRORS as e:
            self.app.call_from_thread(self.app.tell_start_failure, e, "cannot revise the run")
            return
        self.app.call_from_thread(self.notify, "saved the revised profile and planned it again (the original is "
                                               "profile.orig.toml); resuming")

    def action_fix_oom(self) -> None:
        end = self.timeline.end
        if not end or end.error_kind != "oom":
            self.notify("f applies a fix after an out-of-memory failure; this run did not run out of memory")
            return
        try:
            profile = load_profile(self.run.profile_path)
        except ProfileError as e:
            self.notify(f"the run's profile does not load: {'; '.join(e.problems)}", severity="error")
            return
        self.revise_and_resume(revised_for_oom(profile, self.trained_profile(profile)))
        self._dirty = True
