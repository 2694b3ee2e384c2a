"""The home screen: GPUs, profiles (bundled and yours), runs (from any studio)."""

from __future__ import annotations

import time
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label

from studio.hardware import Inventory
from studio.profile import ProfileError, load_profile
from studio.runs import Run, list_runs
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


class Dashboard(Screen):
    clock = staticmethod(time.time)  # tests pin it for stable ages
    BINDINGS = [
        Binding("n", "app.new_profile", "New"),
        Binding("e", "edit", "Edit"),
        Binding("r", "run", "Run"),
        Binding("enter", "open", "Open", show=False),
        Binding("o", "open", "Open run"),
        Binding("s", "stop", "Stop"),
        Binding("k", "kill", "Kill", show=False),
        Binding("u", "resume", "Resume", show=False),
        Binding("x", "export", "Export", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.profile_paths: dict[str, Path] = {}
        self.run_dirs: dict[str, Path] = {}
        self._summaries: dict[str, tuple[tuple[int, int, bool], dict]] = {}  # run id -> (file state, summary)
        self._shown_inventory: Inventory | None = None

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
        self.reload_runs()
        self.show_gpus(self.app.inventory)
        self.set_interval(RUNS_REFRESH_S, self.reload_runs)

    def show_gpus(self, inv: Inventory) -> None:
        if self.is_current or not self._shown_inventory:
            if inv != self._shown_inventory:
                self._shown_inventory = inv
                self.query_one(GpuPanel).show(inv)

    def reload_profiles(self) -> None:
        from studio.cli import all_profiles

        table = self.query_one("#profiles", DataTable)
        table.clear()
        self.profile_paths.clear()
        for name, origin, path in all_profiles():
            key = f"{origin}:{name}"
            if key in self.profile_paths:
                continue
            self.profile_paths[key] = path
            try:
                p = load_profile(path)
                method, model = p.method.type, p.model.name.split("/")[-1]
            except ProfileError:
                method, model = "!", "invalid: press e to fix"
            label = name if origin == "user" else f"{name} ·"
            table.add_row(label, method, model, key=key)

    def _summary(self, run: Run) -> dict:
        """A run's summary, re-read only when its events grew or its process came or went."""
        try:
            size = run.events_path.stat().st_size if run.events_path.exists() else -1
            state = (size, int((run.dir / "status.json").stat().st_mtime_ns), run.is_alive())
        except OSError:
            state = (-2, 0, False)
        cached = self._summaries.get(run.id)
        if cached and cached[0] == state:
            return cached[1]
        summary = run.summary()
        self._summaries[run.id] = (state, summary)
        return summary

    def reload_runs(self) -> None:
        if not self.is_current and self.run_dirs:
            return  # hidden behind another screen: nothing to show
        table = self.query_one("#runs", DataTable)
        selected = self.selected_run_id()
        table.clear()
        self.run_dirs.clear()
        now = self.clock()
        for run in reversed(list_runs()):
            try:
                s = self._summary(run)
            except OSError:
                continue  # deleted while listing
            self.run_dirs[s["id"]] = run.dir
            progress = f"{s['step']}/{s['max_steps']}" if s["max_steps"] else str(s["step"] or "-")
            loss = f"{s['loss']:.3f}" if isinstance(s["loss"], (int, float)) else "-"
            started = s["started_at"]
            table.add_row(s["id"], s["status"], progress, loss, age(now - started if started else None), key=s["id"])
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


