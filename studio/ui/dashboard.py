"""The home screen: GPUs, profiles (bundled and yours), runs (from any studio).

The run list is read by a worker thread (a folder of many runs must not stall the
keyboard) and arrives as a message.
"""

from __future__ import annotations

import time
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label

from studio.hardware import Inventory
from studio.profiles.library import all_profiles
from studio.profiles.profile import ProfileError, load_profile
from studio.runs.folder import Run, list_runs
from studio.runs.state import RunSummary, summarize
from studio.ui.actions import run_bindings
from studio.ui.widgets import GpuPanel

RUNS_REFRESH_S = 2.0


def age(seconds_ago: float | None) -> str:
    if seconds_ago is None:
        return "?"
    s = max(0, int(seconds_ago))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


class RunsRead(Message):
    """The runs on disk, newest first, as a worker read them."""

    def __init__(self, summaries: list[RunSummary]):
        super().__init__()
        self.summaries = summaries


class Dashboard(Screen):
    clock = staticmethod(time.time)  # tests pin it for stable ages
    BINDINGS = [
        Binding("n", "app.new_profile", "New"),
        Binding("e", "edit", "Edit"),
        Binding("r", "run", "Run"),
        Binding("enter", "open", "Open", show=False),
        Binding("o", "open", "Open run"),
        *run_bindings(shown=("s", "c")),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.profile_paths: dict[str, Path] = {}
        self.run_dirs: dict[str, Path] = {}
        self._summaries: dict[str, tuple[tuple[int, int, int], RunSummary]] = {}  # run id -> (file state, summary)

    def compose(self) -> ComposeResult:
        yield Header()
        yield GpuPanel(id="gpus")
        with Horizontal(id="lists"):
            with Vertical(id="profiles-box"):
                yield Label("Profiles", classes="section")
                yield DataTable(id="profiles", cursor_type="row", zebra_stripes=True)
            with Vertical(id="runs-box"):
                yield Label("Runs", classes="section")
                yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.title = "studio"
        profiles = self.query_one("#profiles", DataTable)
        profiles.add_columns("profile", "method", "model")
        runs = self.query_one("#runs", DataTable)
        runs.add_columns("run", "status", "progress", "loss", "age")
        self.reload_profiles()
        self.show_runs(self.read_runs_now())
        self.watch(self.app, "inventory", self.show_gpus)
        self.set_interval(RUNS_REFRESH_S, self.reload_runs)

    def show_gpus(self, inv: Inventory) -> None:
        self.query_one(GpuPanel).show(inv)

    def reload_profiles(self) -> None:
        table = self.query_one("#profiles", DataTable)
        table.clear()
        self.profile_paths.clear()
        for entry in all_profiles():
            if entry.key in self.profile_paths:
                continue
            self.profile_paths[entry.key] = entry.path
            try:
                p = load_profile(entry.path)
                method, model = p.method.type, p.model.name.split("/")[-1]
            except ProfileError:
                method, model = "!", "invalid: press e to fix"
            label = entry.name if entry.origin == "user" else f"{entry.name} ·"
            table.add_row(label, method, model, key=entry.key)

    def _summary(self, run: Run) -> RunSummary:
        """A run's summary, re-read only when its events or status file changed."""
        try:
            events = run.events_path.stat()
            state = (events.st_size, events.st_mtime_ns, (run.dir / "status.json").stat().st_mtime_ns)
        except OSError:
            state = (-1, 0, 0)
        cached = self._summaries.get(run.id)
        if cached and cached[0] == state and cached[1].status != "running":
            return cached[1]
        summary = summarize(run)
        self._summaries[run.id] = (state, summary)
        return summary

    def read_runs_now(self) -> list[RunSummary]:
        return [self._summary(run) for run in reversed(list_runs())]

    @work(thread=True, exclusive=True, group="runs")
    def reload_runs(self) -> None:
        if self.is_current or not self.run_dirs:
            self.post_message(RunsRead(self.read_runs_now()))

    @on(RunsRead)
    def runs_read(self, message: RunsRead) -> None:
        self.show_runs(message.summaries)

    def show_runs(self, summaries: list[RunSummary]) -> None:
        table = self.query_one("#runs", DataTable)
        selected = self.selected_run_id()
        table.clear()
        self.run_dirs.clear()
        now = self.clock()
        for s in summaries:
            self.run_dirs[s.id] = Path(s.dir)
            progress = f"{s.step}/{s.max_steps}" if s.max_steps else str(s.step or "-")
            loss = f"{s.loss:.3f}" if s.loss is not None else "-"
            table.add_row(s.id, s.status, progress, loss, age(now - s.started_at if s.started_at else None), key=s.id)
        if selected in self.run_dirs:
            table.move_cursor(row=table.get_row_index(selected))

    def _selected(self, table_id: str) -> str | None:
        table = self.query_one(table_id, DataTable)
        if table.row_count == 0:
            return None
        try:
            return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        except Exception:  # an empty or refreshing table
            return None

    def selected_run_id(self) -> str | None:
        return self._selected("#runs")

    def selected_run(self) -> Run | None:
        run_id = self.selected_run_id()
        return Run(self.run_dirs[run_id]) if run_id in self.run_dirs else None

    def selected_profile(self) -> Path | None:
        key = self._selected("#profiles")
        return self.profile_paths.get(key) if key else None

    def _need_run(self) -> Run | None:
        run = self.selected_run()
        if run is None:
            self.notify("no run selected: pick one in the Runs list (tab moves between lists)", severity="warning")
        return run

    def action_edit(self) -> None:
        path = self.selected_profile()
        if path is None:
            self.notify("no profile selected", severity="warning")
            return
        self.app.edit_profile(path)

    def action_run(self) -> None:
        path = self.selected_profile()
        if path is None:
            self.notify("no profile selected", severity="warning")
            return
        self.app.start_profile(path)

    def action_open(self) -> None:
        if self.focused is self.query_one("#profiles", DataTable):
            self.action_edit()
            return
        run = self._need_run()
        if run:
            self.app.open_run(run)

    def action_stop(self) -> None:
        if run := self._need_run():
            self.app.confirm_run_action(run, "stop")

    def action_kill(self) -> None:
        if run := self._need_run():
            self.app.confirm_run_action(run, "kill")

    def action_resume(self) -> None:
        if run := self._need_run():
            self.app.resume_run(run)

    def action_export(self) -> None:
        if run := self._need_run():
            self.app.export_run(run)

    def action_chat(self) -> None:
        if run := self._need_run():
            self.app.open_chat(run)
