"""The run monitor: loss chart, throughput, memory, progress, log, status and errors.

Everything comes from the run folder: a worker thread tails events.jsonl and
trainer.log a few times a second and posts what it read; the screen folds the
records into a Timeline and repaints what changed.
"""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Log, ProgressBar, Sparkline, Static

from studio import display
from studio.hardware import Inventory
from studio.planning.fixes import revised_for_oom
from studio.planning.plan import apply_decisions
from studio.profiles.profile import Profile, ProfileError, load_profile, save_profile
from studio.runs.events import Event, EventTail, Timeline
from studio.runs.folder import Run
from studio.runs.health import health_alerts
from studio.runs.liveness import is_alive
from studio.runs.state import status_from
from studio.runs.tail import FileTail
from studio.ui.actions import run_bindings
from studio.ui.widgets import LossChart, memory_lines

LOG_LINES = 500
REFRESH_S = 0.5
CHART_EVERY_S = 1.0   # plotting is the costly part of a repaint
LOG_EVERY_S = 1.0     # the log pane re-lays out on every write: batch them
CHART_POINTS = 300    # longer histories are thinned to this many points


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
    stop_requested_at: float
    error: str = ""


class RunFilesRead(Message):
    def __init__(self, files: RunFiles):
        super().__init__()
        self.files = files


class RunMonitor(Screen):
    """Watch one run; stop, kill, resume or export it from the keyboard."""

    BINDINGS = [
        *run_bindings(shown=("s", "k", "u", "x", "c")),
        Binding("f", "fix_oom", "Fix OOM", show=False),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self, run: Run):
        super().__init__()
        self.run = run
        self.timeline = Timeline()
        self.events = EventTail(run.events_path)
        self.log_tail = FileTail(run.log_path)
        self.status = "?"
        self.gpu_totals: list[float] = []
        self._dirty = True
        self._charted_at = 0.0
        self._shown: dict[str, Any] = {}
        self._log_pending = ""
        self._logged_at = 0.0

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="run-status")
        with Horizontal(id="progress-row"):
            yield ProgressBar(id="progress", show_eta=False)
            yield Static(id="progress-text")
        with Horizontal(id="main-row"):
            yield LossChart(id="loss-chart")
            with Vertical(id="side"):
                yield Static(id="speed-text")
                yield Sparkline([], id="speed-spark")
                yield Static(id="memory-text")
                yield Static(id="alerts")
        yield Static(id="error-panel")
        yield Log(id="trainer-log", max_lines=LOG_LINES, auto_scroll=True)
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"run {self.run.id}"
        self.watch(self.app, "inventory", self.show_gpus)
        self.show_files(self.read_files())
        self.set_interval(REFRESH_S, self.poll_files)

    def show_gpus(self, inv: Inventory) -> None:
        self.gpu_totals = [g.memory_total_gib for g in inv.gpus]

    def read_files(self) -> RunFiles:
        """New events and log text, and whether the trainer lives (file and process reads only)."""
        try:
            records = self.events.read_new()
            text = self.log_tail.read_text()
        except OSError as e:  # the run folder was deleted or is unreadable
            return RunFiles([], "", False, 0.0, 0.0, error=f"cannot read the run: {e.strerror or e}")
        return RunFiles(records, text, is_alive(self.run), self.run.status_number("launched_at"),
                        self.run.status_number("stop_requested_at"))

    @work(thread=True, exclusive=True, group="run-files")
    def poll_files(self) -> None:
        self.post_message(RunFilesRead(self.read_files()))

    @on(RunFilesRead)
    def files_read(self, message: RunFilesRead) -> None:
        self.show_files(message.files)

    def show_files(self, files: RunFiles) -> None:
        """Fold new events and log lines in; repaint only what changed."""
        if files.error:
            self.query_one("#run-status", Static).update(Text(files.error, style="bold red"))
            return
        status = status_from(self.timeline.extend(files.records), files.alive, files.launched_at,
                             files.stop_requested_at)
        records, text = files.records, files.log_text
        self._log_pending += text
        now = time.monotonic()
        if self._log_pending and (now - self._logged_at >= LOG_EVERY_S or status != "running"):
            self.query_one("#trainer-log", Log).write(self._log_pending)
            self._log_pending, self._logged_at = "", now
        if records or status != self.status or self._dirty:
            self.status = status
            self._dirty = False
            self.repaint()

    FIXED_SIZE = ("#run-status", "#progress-text", "#speed-text", "#memory-text")  # see studio.tcss

    def _show(self, selector: str, content: Any) -> None:
        """Update a Static only when what it shows changed; fixed-size ones skip the layout pass."""
        if self._shown.get(selector) != content:
            self._shown[selector] = content
            self.query_one(selector, Static).update(content, layout=selector not in self.FIXED_SIZE)

    def repaint(self) -> None:
        tl, status = self.timeline, self.status
        last = tl.last_step
        colour = {"running": "green", "completed": "cyan", "stopped": "yellow"}.get(status, "red")
        head = Text.assemble(("● ", colour), (status, f"bold {colour}"), f"  {self.run.id}")
        if tl.start:
            head.append(f"  ·  {tl.start.method} on {', '.join(tl.start.devices or ('?',))} ({tl.start.dtype or '?'}), "
                        f"{display.count(tl.start.trainable_params)} trainable")
        elif tl.download and not tl.download.done:
            head.append(f"  ·  downloading {tl.download.name}: {display.size_bytes(tl.download.bytes)}"
                        f" of {display.size_bytes(tl.download.total_bytes)}")
        elif status == "running":
            head.append("  ·  preparing (data, tokenizer, model)")
        self._show("#run-status", head)

        bar = self.query_one("#progress", ProgressBar)
        max_steps = (last.max_steps if last else None) or (tl.start.max_steps if tl.start else None)
        if max_steps:
            bar.update(total=max_steps, progress=last.step if last else 0)
        if last:
            self._show("#progress-text", f" step {last.step}/{max_steps or '?'} · epoch {last.epoch or 0:.2f}"
                                         f" · ETA {display.duration(last.eta_s)}")
        steps = tl.ordered_steps()
        now = time.monotonic()
        if now - self._charted_at >= CHART_EVERY_S or status != "running":
            self._charted_at = now
            self.query_one(LossChart).plot(thin([(s.step, s.loss) for s in steps]),
                                           thin([(e.step, e.eval_loss) for e in (tl.evals[k] for k in sorted(tl.evals))]))
        rates = [s.tokens_per_s or 0 for s in steps]
        if rates and last:
            avg = sum(rates) / len(rates)
            speed = Text.assemble(("tokens/s ", "bold"), f"{rates[-1]:,.0f} now · {avg:,.0f} avg")
            if last.learning_rate is not None:
                speed.append(f"\nlr {last.learning_rate:.2e}")
            if last.grad_norm is not None:
                speed.append(f" · grad norm {last.grad_norm:.2f}")
            if last.loss is not None:
                speed.append(f"\nloss {last.loss:.4f}", style="bold")
            if last.energy_kwh is not None:
                speed.append(f"\nenergy {last.energy_kwh:.4f} kWh")
            self._show("#speed-text", speed)
            self.query_one("#speed-spark", Sparkline).data = rates[-60:]
        self._show("#memory-text", memory_lines(last, self.gpu_totals))
        alerts = health_alerts(tl, running=status == "running", recent=500)
        self._show("#alerts", Text("\n".join(f"⚠ {a.message}" for a in alerts), style="bold yellow") if alerts else "")
        self._show("#error-panel", self.error_text())

    def error_text(self) -> Text:
        end, status = self.timeline.end, self.status
        if status == "crashed":
            return Text("The trainer exited without a final event (killed or crashed). Press u to resume "
                        "from the last checkpoint; the log below shows what happened.", style="bold red")
        if not end or end.status != "failed":
            if end and end.message:
                return Text(f"{end.message}. {end.advice or ''}", style="yellow")
            return Text("")
        text = Text.assemble((f"failed ({end.error_kind}): ", "bold red"), end.message or "",
                             "\nwhat to do: ", (end.advice or "", "bold"))
        if end.error_kind == "oom":
            diff = self.oom_diff()
            if diff:
                text.append("\nrevised profile (press f to save it and resume from the last checkpoint):\n")
                text.append(diff, style="cyan")
        return text

    def trained_profile(self, profile: Profile) -> Profile:
        """The profile as the run trained it: its autos as the plan settled them."""
        return apply_decisions(profile, list(self.timeline.start.decisions) if self.timeline.start else [])

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

    # ----------------------------------------------------------- actions

    def action_stop(self) -> None:
        self.app.confirm_run_action(self.run, "stop")

    def action_kill(self) -> None:
        self.app.confirm_run_action(self.run, "kill")

    def action_resume(self) -> None:
        self.app.resume_run(self.run)
        self._dirty = True

    def action_export(self) -> None:
        self.app.export_run(self.run)

    def action_chat(self) -> None:
        self.app.open_chat(self.run)

    def action_fix_oom(self) -> None:
        end = self.timeline.end
        if not end or end.error_kind != "oom":
            self.notify("f applies a fix after an out-of-memory failure; this run did not run out of memory")
            return
        profile = load_profile(self.run.profile_path)
        backup = self.run.dir / "profile.orig.toml"
        if not backup.exists():
            backup.write_text(self.run.profile_path.read_text())
        save_profile(revised_for_oom(profile, self.trained_profile(profile)), self.run.profile_path)
        self.notify("saved the revised profile (the original is profile.orig.toml); resuming")
        self.action_resume()

