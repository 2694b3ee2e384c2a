"""Runs side by side: their loss curves overlaid, their figures, and the profile keys that differ
(the same comparison as `studio compare`)."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from studio import display
from studio.runs.compare import RunComparison, compare_runs, short_labels
from studio.runs.folder import Run
from studio.ui.charts import LossChart
from studio.ui.widgets import fill_table

RUN_COLUMNS = ("run", "status", "steps", "loss", "best eval", "tok/s", "train time")


class Comparison(Screen):
    BINDINGS = [
        Binding("e", "toggle_eval", "Eval/train"),
        Binding("u", "reload", "Reload", show=False),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self, runs: list[Run]):
        super().__init__()
        self.runs = runs
        self.result: RunComparison | None = None
        self.show_eval = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield LossChart(id="compare-chart")
        with Vertical(id="compare-tables"):
            yield DataTable(id="compare-runs", cursor_type="row", zebra_stripes=True)
            yield Static(id="compare-diff-title", classes="section")
            yield DataTable(id="compare-diff", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"comparing {len(self.runs)} runs"
        self.load()

    @work(thread=True, exclusive=True, group="compare")
    def load(self) -> None:
        result = compare_runs(self.runs)
        self.app.call_from_thread(self.show, result)

    def show(self, result: RunComparison) -> None:
        self.result = result
        rows = []
        for f in result.runs:
            s = f.summary
            rows.append((s.id, (s.id, s.status, f"{s.step}/{s.max_steps or '?'}", display.number(s.loss, ".4f"),
                                display.number(f.best_eval, ".4f"), display.number(s.tokens_per_s, ",.0f"),
                                display.duration(f.duration_s) if f.duration_s else "-")))
        fill_table(self.query_one("#compare-runs", DataTable), RUN_COLUMNS, rows, fit_height=True)
        labels = short_labels([f.summary.id for f in result.runs])
        diff = self.query_one("#compare-diff", DataTable)
        fill_table(diff, ("profile key", *labels), [(key, (key, *values)) for key, values in result.profile_diff],
                   fit_height=True)
        diff.display = bool(result.profile_diff)
        title = "profiles differ in:" if result.profile_diff else "the profiles are the same"
        if result.unreadable:
            title += "  (left out: " + "; ".join(result.unreadable) + ")"
        self.query_one("#compare-diff-title", Static).update(title)
        self.plot()

    def plot(self) -> None:
        if self.result is None:
            return
        labels = short_labels([f.summary.id for f in self.result.runs])
        series = {label: (f.evals if self.show_eval else f.train) for label, f in zip(labels, self.result.runs)}
        self.query_one(LossChart).plot([], [], series=series, title="eval loss" if self.show_eval else "train loss")

    def action_toggle_eval(self) -> None:
        self.show_eval = not self.show_eval
        self.plot()

    def action_reload(self) -> None:
        self.load()
