"""The run monitor: loss chart, throughput, memory, progress, log, status and errors.

Everything comes from the run folder: events.jsonl is tailed and folded into a
Timeline a few times a second; trainer.log is tailed into a capped Log.
"""

from __future__ import annotations

import difflib
import time
from pathlib import Path

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Log, ProgressBar, Sparkline, Static

from studio import display
from studio.advisor import revised_for_oom
from studio.events import EventTail, Timeline
from studio.health import health_alerts
from studio.hardware import Inventory
from studio.profile import ProfileError, load_profile, save_profile
from studio.runs import Run
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


class FileTail:
    """New text appended to a file since the last read (the trainer's log)."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0

    def read_new(self, limit: int = 256 * 1024) -> str:
        try:
            size = self.path.stat().st_size
            if size - self.offset > limit:  # far behind: skip to the recent part
                self.offset = size - limit
            with self.path.open("rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return ""
        self.offset += len(chunk)
        return chunk.decode("utf-8", errors="replace")


class RunMonitor(Screen):
    """Watch one run; stop, kill, resume or export it from the keyboard."""

    BINDINGS = [
        Binding("s", "stop", "Stop"),
        Binding("k", "kill", "Kill"),
        Binding("u", "resume", "Resume"),
        Binding("x", "export", "Export"),
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
        self.show_gpus(self.app.inventory)
        self.refresh_from_files()
        self.set_interval(REFRESH_S, self.refresh_from_files)

    def show_gpus(self, inv: Inventory) -> None:
        self.gpu_totals = [g.memory_total_gib for g in inv.gpus]

    def refresh_from_files(self) -> None:
        """Fold new events and log lines in; repaint only what changed."""
        try:
            records = self.events.read_new()
            text = self.log_tail.read_new()
            status = self.run.status(self.timeline.extend(records))
        except OSError as e:  # the run folder was deleted or is unreadable
            self.query_one("#run-status", Static).update(Text(f"cannot read the run: {e}", style="bold red"))
            return
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
            head.append(f"  ·  {tl.start.get('config', {}).get('method', {}).get('type', '?')} on "
                        f"{', '.join(tl.start.get('devices') or ['?'])} ({tl.start.get('dtype', '?')}), "
                        f"{display.count(tl.start.get('trainable_params'))} trainable")
        elif tl.download and not tl.download.get("done"):
            head.append(f"  ·  downloading {tl.download.get('name')}: {display.size_bytes(tl.download.get('bytes'))}"
                        f" of {display.size_bytes(tl.download.get('total_bytes'))}")
        elif status == "running":
            head.append("  ·  preparing (data, tokenizer, model)")
        self._show("#run-status", head)

        bar = self.query_one("#progress", ProgressBar)
        max_steps = (last or {}).get("max_steps") or (tl.start or {}).get("max_steps")
        if max_steps:
            bar.update(total=max_steps, progress=(last or {}).get("step", 0))
        if last:
            lr, gn = last.get("learning_rate"), last.get("grad_norm")
            self._show("#progress-text", f" step {last['step']}/{max_steps or '?'} · epoch {last.get('epoch', 0):.2f}"
                                         f" · ETA {display.duration(last.get('eta_s'))}")
        steps = [tl.steps[s] for s in sorted(tl.steps)]
        now = time.monotonic()
        if now - self._charted_at >= CHART_EVERY_S or status != "running":
            self._charted_at = now
            self.query_one(LossChart).plot(thin([(s["step"], s.get("loss")) for s in steps]),
                                           thin([(e["step"], e["eval_loss"]) for e in (tl.evals[k] for k in sorted(tl.evals))]))
        rates = [s.get("tokens_per_s") or 0 for s in steps]
        if rates:
            avg = sum(rates) / len(rates)
            speed = Text.assemble(("tokens/s ", "bold"), f"{rates[-1]:,.0f} now · {avg:,.0f} avg")
            lr, gn = (last or {}).get("learning_rate"), (last or {}).get("grad_norm")
            if isinstance(lr, (int, float)):
                speed.append(f"\nlr {lr:.2e}")
            if isinstance(gn, (int, float)):
                speed.append(f" · grad norm {gn:.2f}")
            if isinstance((last or {}).get("loss"), (int, float)):
                speed.append(f"\nloss {last['loss']:.4f}", style="bold")
            if last and last.get("energy_kwh") is not None:
                speed.append(f"\nenergy {last['energy_kwh']:.4f} kWh")
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
        if not end or end.get("status") != "failed":
            if end and end.get("message"):
                return Text(f"{end['message']}. {end.get('advice', '')}", style="yellow")
            return Text("")
        text = Text.assemble((f"failed ({end.get('error_kind')}): ", "bold red"), end.get("message", ""),
                             "\nwhat to do: ", (end.get("advice", ""), "bold"))
        if end.get("error_kind") == "oom":
            diff = self.oom_diff()
            if diff:
                text.append("\nrevised profile (press f to save it and resume from the last checkpoint):\n")
                text.append(diff, style="cyan")
        return text

    def oom_diff(self) -> str:
        try:
            profile = load_profile(self.run.profile_path)
        except ProfileError:
            return ""
        revised = revised_for_oom(profile)
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

    def action_fix_oom(self) -> None:
        end = self.timeline.end
        if not end or end.get("error_kind") != "oom":
            self.notify("f applies a fix after an out-of-memory failure; this run did not run out of memory")
            return
        profile = load_profile(self.run.profile_path)
        backup = self.run.dir / "profile.orig.toml"
        if not backup.exists():
            backup.write_text(self.run.profile_path.read_text())
        save_profile(revised_for_oom(profile), self.run.profile_path)
        self.notify("saved the revised profile (the original is profile.orig.toml); resuming")
        self.action_resume()

