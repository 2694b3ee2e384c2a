"""Runs side by side: their loss curves overlaid, their figures, and the profile keys that differ
(the same comparison as `studio compare`)."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Header, Static

from studio import display
from studio.runs.compare import RunComparison, compare_runs, short_labels
from studio.runs.folder import Run
from studio.ui.charts import TIME_STEPS, LossChart
from studio.ui.screens import StudioScreen
from studio.ui.widgets import fill_table

RUN_COLUMNS = ("run", "status", "steps", "loss", "best eval", "tok/s", "train time")
WATCH_S = 2.0   # how often the runs' event files are looked at (a stat each); a change reads them again
# a runs' curves against steps, tokens seen or time trained (a: the next); how the axis labels its ticks
ALIGNMENTS = {"step": ("step", lambda x: str(round(x))), "tokens": ("tokens seen", display.count),
              "time": ("time trained", display.duration)}


class Comparison(StudioScreen):
    HELP_TITLE = "Comparison"

    BINDINGS = [
        Binding("e", "toggle_eval", "Eval/train"),
        Binding("a", "align", "Align", tooltip="the curves against steps, tokens seen or time trained"),
        Binding("u", "reload", "Reload", show=False),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self, runs: list[Run]):
        super().__init__()
        self.runs = runs
        self.result: RunComparison | None = None
        self.show_eval = False
        self.align = "step"
        self._seen: list[tuple[int, int]] = []   # each run's events file (size, mtime) when last read

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
        self.set_interval(WATCH_S, self.watch_runs)

    @work(thread=True, exclusive=True, group="compare")
    def load(self) -> None:
        self._seen = self.events_state()  # before reading: a write during the read is read next time
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

    def events_state(self) -> list[tuple[int, int]]:
        out = []
        for run in self.runs:
            try:
                st = run.events_path.stat()
                out.append((st.st_size, st.st_mtime_ns))
            except OSError:
                out.append((-1, 0))
        return out

    def watch_runs(self) -> None:
        """Live: a run that trains (or is resumed) while it is compared shows its new steps."""
        if self.events_state() != self._seen:
            self.load()

    def plot(self) -> None:
        if self.result is None:
            return
        labels = short_labels([f.summary.id for f in self.result.runs])
        series = {label: f.aligned(f.evals if self.show_eval else f.train, self.align)
                  for label, f in zip(labels, self.result.runs)}
        xlabel, tick = ALIGNMENTS[self.align]
        self.query_one(LossChart).plot([], [], series=series, title="eval loss" if self.show_eval else "train loss",
                                       xlabel=xlabel, tick=tick, steps=TIME_STEPS if self.align == "time" else ())

    def action_toggle_eval(self) -> None:
        self.show_eval = not self.show_eval
        self.plot()

    def action_align(self) -> None:
        names = list(ALIGNMENTS)
        self.align = names[(names.index(self.align) + 1) % len(names)]
        self.plot()

    def action_reload(self) -> None:
        self.load()
