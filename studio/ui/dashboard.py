"""The home screen: GPUs, profiles (bundled and yours, with whether each fits this machine),
and runs (from any studio, with sorting, a filter and marks for comparing them).

Everything that reads the disk or estimates runs in worker threads and arrives as a
message; the lists refresh when files appear or change.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Input, Label

from studio.hardware import HostLoad, Inventory
from studio.profiles.library import ProfileEntry, all_profiles
from studio.profiles.profile import Profile, ProfileError, load_profile
from studio.runs.folder import Run, list_runs, runs_folder_problem
from studio.ui.actions import RunActions, run_action_commands, run_bindings
from studio.ui.screens import StudioScreen
from studio.paths import runs_dir
from studio.ui.glyphs import glyphs
from studio.ui.widgets import GpuPanel, cursor_key, fill_table, fit_label
from studio.runs.status import RunStatus

if TYPE_CHECKING:
    from studio.runs.state import RunSummary  # runs are read after the first frame, in a worker
    from studio.runs.summary_cache import SummaryCache

REFRESH_S = 2.0
DASHBOARD_RUNS = 500  # the newest runs the list shows and keeps read; the title says how many there are
NARROW = 160  # columns below which the Profiles and Runs lists stack (side by side they need about 160)
STATUS_STYLE = {RunStatus.RUNNING: "green", RunStatus.COMPLETED: "cyan", RunStatus.STOPPED: "yellow",
                **{s: "red" for s in RunStatus if s.bad}}
SORTS = ("newest", "status", "loss", "tokens/s")
PROFILE_COLUMNS = ("profile", "method", "model", "fit")
RUN_COLUMNS = ("run", "status", "method", "model", "steps", "loss", "tok/s", "train time", "age")
WIDE_ONLY = ("method", "model")  # shown when the Runs list has 100 columns or more


LOW_DISK_GIB = 10.0  # below this much free space in the studio home, the Runs title warns


def home_free_gib() -> float | None:
    """Free space on the filesystem of the studio home's runs, made yet or not (None when it cannot be read)."""
    from studio.runs.export import free_bytes

    free = free_bytes(runs_dir())
    return None if free is None else free / 2**30


def status_cell(s: RunSummary) -> Text:
    """A run's status in the list, saying what is wrong with a symbol and colour where something is: stalled
    (no step for much longer than usual), out of memory, a lost machine, queued with Slurm's reason."""
    g = glyphs()
    if s.alert:
        return Text(f"{g.warn} stalled", style="bold yellow")
    if s.status == RunStatus.FAILED and s.error_kind == "oom":
        return Text(f"{g.cross} out of memory", style="bold red")
    if s.status == RunStatus.FAILED and s.error_kind == "lost_machine":
        return Text(f"{g.cross} lost machine", style="bold red")
    if s.status == RunStatus.QUEUED and s.problem:
        reason = s.problem.removeprefix("waiting for Slurm: ").split(" (")[0]
        return Text(f"{g.wait} queued: {reason}", style="yellow")
    return Text(s.status, style=STATUS_STYLE.get(s.status, ""))


def age(seconds_ago: float | None) -> str:
    if seconds_ago is None:
        return "?"
    s = max(0, int(seconds_ago))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


@dataclass(frozen=True)
class ProfileRow:
    entry: ProfileEntry
    method: str
    model: str
    fit: str        # fits | tight | too big | cpu | ? | invalid
    fit_why: str


class ProfilesRead(Message):
    def __init__(self, rows: list[ProfileRow], stamp: tuple):
        super().__init__()
        self.rows, self.stamp = rows, stamp


class RunsRead(Message):
    """The runs on disk, newest first, as a worker read them."""

    def __init__(self, summaries: list[RunSummary], problem: str | None = None):
        super().__init__()
        self.summaries = summaries
        self.problem = problem  # why the runs folder cannot be read: its runs may be there, unseen


def profiles_stamp() -> tuple:
    """What the profile folders hold now (names and modification times): a change means re-read."""
    out = []
    for entry in all_profiles():
        try:
            out.append((entry.key, entry.path.stat().st_mtime_ns))
        except OSError:
            continue
    return tuple(out)


def gpus_stamp(inventory: Inventory) -> tuple:
    """Which GPUs the fits were judged for: the first read can come before NVML's first answer, and a GPU
    can go (a driver reset) or come back."""
    return inventory.source, tuple((g.index, g.name, round(g.memory_total_gib, 1)) for g in inventory.gpus)


def profile_row(entry: ProfileEntry, inventory: Inventory | None) -> ProfileRow:
    """A profile's line; `inventory` None leaves the fit for later (it needs an estimate)."""
    try:
        p = load_profile(entry.path)
    except ProfileError as e:
        return ProfileRow(entry, "!", "invalid: enter to fix", "invalid", e.problems[0])
    fit, why = fit_of(p, inventory) if inventory is not None else ("", "")
    return ProfileRow(entry, p.method.type, p.model.name.split("/")[-1], fit, why)


def fit_of(profile: Profile, inventory: Inventory) -> tuple[str, str]:
    """Whether the profile fits this machine's GPUs (fits, tight, too big), from the same plan a run would get."""
    from studio.planning.layout import LayoutError
    from studio.planning.plan import plan_run

    if not inventory.gpus:
        return "cpu", "no GPU here: it would train on the CPU"
    try:
        plan = plan_run(profile, inventory)
    except LayoutError as e:
        return "too big", str(e)
    if plan.peak_vram_gib is None or plan.free_gib is None:
        return "?", plan.no_estimate or "no estimate"
    share = plan.peak_vram_gib / plan.free_gib
    label = "fits" if share <= 0.75 else "tight" if share <= 0.9 else "too big"
    return label, f"~{plan.peak_vram_gib:.1f} of {plan.free_gib:.1f} GiB free on {plan.gpu.name if plan.gpu else '?'}"


class Dashboard(RunActions, StudioScreen):
    HELP_TITLE = "Dashboard"
    LEGEND = (
        ("name ·", "a bundled template (read-only)"),
        ("fits / tight / too big", "peak <=75% / <=90% / >90% of free"),
        ("cpu", "no GPU here: it trains on the CPU"),
        ("invalid", "does not load: enter shows why"),
        ("4.525 (4.577)", "train loss (eval loss)"),
    )

    clock = staticmethod(time.time)  # tests pin it for stable ages
    free_space = staticmethod(home_free_gib)  # and this, for a stable title
    BINDINGS = [
        Binding("n", "app.new_profile", "New"),
        Binding("e", "edit", "Edit"),
        Binding("r", "run", "Run"),
        Binding("o", "open", "Open run", show=False),
        *run_bindings(shown=("s", "c")),  # and d describe, y copy id, D delete (in the help)
        Binding("m", "mark", "Mark", show=False),
        Binding("C", "compare", "Compare", show=False),
        Binding("a", "archived", "Archived runs", show=False, tooltip="the archive: u brings a run back"),
        Binding("slash", "filter", "Filter", show=False),
        Binding("S", "sort", "Sort", show=False),
        Binding("p", "app.gpu_processes", "GPU processes", show=False),
        Binding("j", "cursor(1)", "Down", show=False),
        Binding("k", "cursor(-1)", "Up", show=False),
        Binding("g,home", "cursor_edge(0)", "First", show=False),
        Binding("G,end", "cursor_edge(1)", "Last", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.profile_paths: dict[str, Path] = {}
        self.run_dirs: dict[str, Path] = {}
        self.all_run_dirs: dict[str, Path] = {}
        self.profile_fits: dict[Path, tuple[str, str]] = {}
        self.marked: set[str] = set()
        self.sort = SORTS[0]
        self.run_filter = ""
        self.runs_total = 0  # run folders in the home (the list shows the newest DASHBOARD_RUNS)
        self.disk_free_gib: float | None = None  # free space where the runs are written, read with them
        self._summaries: dict[str, tuple[list[int] | None, RunSummary]] = {}  # run id -> (its files' key, summary)
        self._profiles_stamp: tuple | None = None
        self.last_summaries: list[RunSummary] = []
        self._profile_rows: list[ProfileRow] = []
        self._runs_shown: list = []
        self._runs_title = "Runs"
        self.runs_problem: str | None = None
        self.covered = False  # another screen was pushed over this one since it last showed

    def compose(self) -> ComposeResult:
        self.set_class(self.app.size.width < NARROW, "narrow")  # before the children are styled
        yield Header()
        yield GpuPanel(id="gpus")
        with Horizontal(id="lists"):
            with Vertical(id="profiles-box"):
                yield Label("Profiles", classes="section")
                yield DataTable(id="profiles", cursor_type="row", zebra_stripes=True)
            with Vertical(id="runs-box"):
                yield Label("Runs", classes="section", id="runs-title")
                yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def commands(self) -> Iterator[SystemCommand]:
        yield SystemCommand("Edit profile", "Open the selected profile", self.action_edit)
        yield SystemCommand("Run profile", "Start a run of the selected profile", self.action_run)
        yield SystemCommand("Open run", "Monitor the selected run", self.action_open)
        yield from run_action_commands(self, "the selected run")
        yield SystemCommand("Compare runs", "Overlay the loss curves of the marked runs (m marks)", self.action_compare)

    def on_mount(self) -> None:
        self.title = "studio"
        # The first frame shows the lists at once; the fits (estimates) and the runs follow from a worker.
        self.show_profiles([profile_row(e, None) for e in all_profiles()], None)
        self.call_after_refresh(self.refresh_lists)  # runs and fits after the first frame
        self.watch(self.app, "inventory", self.show_gpus)
        self.watch(self.app, "host", self.show_host)
        self.set_interval(REFRESH_S, self.refresh_lists)
        self.query_one("#profiles", DataTable).focus()

    def on_screen_resume(self) -> None:
        """Back from a run's monitor: the Runs list has the focus, its cursor on that run (once listed)."""
        if self.covered:  # back from a full screen, not the first showing
            self.covered = False
            if self.refit_on_resume:  # resized while hidden: a hidden screen's tables are not laid out anew
                self.refit_on_resume = False
                self.call_after_refresh(self.refit_tables)
            self.query_one(GpuPanel).repaint()  # the samples taken while hidden
            self.refresh_lists()  # the run its monitor watched was not re-read while hidden
        self.show_runs(self.last_summaries)  # what was read while hidden (an unchanged table is not rebuilt)
        if self.app.watched_run_id:
            self.query_one("#runs", DataTable).focus()
            self.put_cursor_on_watched()

    def on_screen_suspend(self) -> None:
        self.covered = True

    refit_on_resume = False  # resized while under another screen: fit the tables' columns when shown again

    def put_cursor_on_watched(self) -> None:
        table = self.query_one("#runs", DataTable)
        run_id = self.app.watched_run_id
        if run_id in self.run_dirs:
            table.move_cursor(row=table.get_row_index(run_id))
            self.app.watched_run_id = None

    # Under a full screen (a run's monitor) the panel keeps sampling but does not paint: Textual passes a
    # hidden screen's repaint on to the one in front as a repaint of the whole terminal (bench/ui_speed.py).
    def show_gpus(self, inv: Inventory) -> None:
        self.query_one(GpuPanel).record(inv, paint=self.in_view)

    def show_host(self, host: HostLoad | None) -> None:
        self.query_one(GpuPanel).show_host(host, paint=self.in_view)

    def on_resize(self) -> None:
        """Below 160 columns the lists stack (each keeps its full width) rather than squeeze side by side;
        once laid out anew, the tables' columns are fitted to their new width."""
        self.set_class(self.size.width < NARROW, "narrow")
        self.query_one(GpuPanel).repaint()
        if self.covered:
            self.refit_on_resume = True  # fitted now, the columns would take the widths of a layout not yet made
        else:
            self.call_after_refresh(self.refit_tables)

    def refit_tables(self) -> None:
        self.show_profiles(self._profile_rows, self._profiles_stamp)
        self._runs_shown = []
        self.show_runs(self.last_summaries)

    # ----------------------------------------------------------- reading (workers)

    def _summary(self, run: Run, cache: SummaryCache, reread_running: bool = True) -> RunSummary:
        """A run's summary, re-read only when its events or status file changed, or its folder (a note), or
        while it runs (unless `reread_running` is false: a monitor in front reads that run already); a
        finished run not yet read by this app comes from studio's summary cache while its files are unchanged."""
        from studio.runs.summary_cache import folder_key

        key = folder_key(run)
        cached = self._summaries.get(run.id)
        if cached and (not reread_running or (cached[0] == key and cached[1].status != RunStatus.RUNNING)):
            return cached[1]
        summary = cache.summary(run, key)
        self._summaries[run.id] = (key, summary)
        return summary

    def read_runs_now(self, watched: frozenset[str] = frozenset()) -> list[RunSummary]:
        """The newest DASHBOARD_RUNS runs' summaries: a home of 20,000 runs lists as fast, and in as little
        memory, as one of 500 (the title says how many there are; `studio runs --limit 0` lists them all)."""
        from studio.runs.summary_cache import SummaryCache  # after the first frame: the reading imports it

        runs = list_runs()
        self.runs_total = len(runs)
        self.disk_free_gib = self.free_space()
        page = runs[-DASHBOARD_RUNS:]
        kept = {run.id for run in page}
        for gone in [key for key in self._summaries if key not in kept]:  # older runs leave the page's cache
            del self._summaries[gone]
        cache = SummaryCache()
        summaries = [self._summary(run, cache, reread_running=run.id not in watched) for run in reversed(page)]
        cache.save()
        return summaries

    def refresh_lists(self) -> None:
        """Read the lists again: to show them, or under a full screen (a monitor, the editor) only to say which
        runs ended. That reading is the App's work: any message the hidden dashboard handles makes Textual
        repaint the whole terminal (it counts the screen under the front one as one that may show through)."""
        if self.in_view:
            self.read_lists()
        elif self.is_current:
            watched, app = self.watched_run_ids(), self.app
            app.run_worker(lambda: self.read_runs_hidden(app, watched), thread=True, exclusive=True,
                           group="dashboard-hidden")

    def read_runs_hidden(self, app: Any, watched: frozenset[str]) -> None:
        summaries = self.read_runs_now(watched)
        try:  # the app it was read for (this screen's link to it is gone once the app has quit)
            app.call_from_thread(self.runs_read_hidden, summaries)
        except RuntimeError:
            pass  # the app quit while the runs were read: nobody is left to tell

    def runs_read_hidden(self, summaries: list[RunSummary]) -> None:
        """Which runs ended; the table is rebuilt when it shows again (on_screen_resume)."""
        self.announce_ended(summaries)
        self.last_summaries = summaries

    @work(thread=True, exclusive=True, group="dashboard-refresh")
    def read_lists(self) -> None:
        summaries = self.read_runs_now()
        # a runs folder that cannot be listed lists nothing: only then is there a reason to look for
        self.post_message(RunsRead(summaries, runs_folder_problem() if not summaries else None))
        try:
            inventory = self.app.inventory  # one answer for every row (the poll may replace it meanwhile)
        except RuntimeError:
            return  # the app quit while the runs were read (this screen's link to it is gone)
        stamp = (profiles_stamp(), gpus_stamp(inventory))
        if stamp != self._profiles_stamp:
            self.post_message(ProfilesRead([profile_row(e, inventory) for e in all_profiles()], stamp))

    def reload_profiles(self) -> None:
        self._profiles_stamp = None
        self.refresh_lists()

    @on(ProfilesRead)
    def profiles_read(self, message: ProfilesRead) -> None:
        self.show_profiles(message.rows, message.stamp)

    @on(RunsRead)
    def runs_read(self, message: RunsRead) -> None:
        self.runs_problem = message.problem
        if self.in_view:
            self.show_runs(message.summaries)
        else:  # covered since the read began
            self.runs_read_hidden(message.summaries)

    # ----------------------------------------------------------- showing

    def show_profiles(self, rows: list[ProfileRow], stamp: tuple) -> None:
        self._profiles_stamp = stamp
        self._profile_rows = rows
        self.profile_fits = {row.entry.path: (row.fit, row.fit_why) for row in rows}
        table = self.query_one("#profiles", DataTable)
        self.profile_paths = {}
        cells = []
        for row in rows:
            if row.entry.key in self.profile_paths:
                continue
            self.profile_paths[row.entry.key] = row.entry.path
            label = row.entry.name if row.entry.origin == "user" else f"{row.entry.name} ·"
            cells.append((row.entry.key, (label, row.method, row.model, fit_label(row.fit))))
        fill_table(table, PROFILE_COLUMNS, cells, flex={0: "end", 2: "end"})  # the cursor stays on its profile

    def show_runs(self, summaries: list[RunSummary]) -> None:
        self.announce_ended(summaries)
        if [(s.id, s.status) for s in summaries] != [(s.id, s.status) for s in self.last_summaries]:
            self.refresh_bindings()
        self.last_summaries = summaries
        self.all_run_dirs = {s.id: Path(s.dir) for s in summaries}  # marks outlive a filter that hides them
        table = self.query_one("#runs", DataTable)
        now = self.clock()
        wanted = self.run_filter.lower()
        shown = [s for s in summaries if not wanted or wanted in f"{s.id} {s.profile} {s.status} {s.note}".lower()]
        rows = [(s, self.run_cells(s, now)) for s in sort_runs(shown, self.sort)]
        signature = [table.size.width] + [(s.id, tuple(str(c) for c in cells)) for s, cells in rows]
        if signature != self._runs_shown:  # rebuilding an unchanged table costs CPU every refresh
            self._runs_shown = signature
            self.run_dirs = {s.id: Path(s.dir) for s, _ in rows}
            labels = RUN_COLUMNS if table.size.width >= 100 else tuple(c for c in RUN_COLUMNS if c not in WIDE_ONLY)
            keep = [RUN_COLUMNS.index(c) for c in labels]
            # the cursor stays on its run
            fill_table(table, labels, [(s.id, tuple(cells[i] for i in keep)) for s, cells in rows],
                       flex={0: "id", **({labels.index("model"): "end"} if "model" in labels else {})})
            if self.app.watched_run_id and self.is_current:
                self.put_cursor_on_watched()
        hidden = self.runs_total - len(summaries)
        title = "Runs" + (f" · newest {len(summaries)} of {self.runs_total:,} (studio runs --limit 0 lists all)"
                          if hidden > 0 else "") + (f" · sorted by {self.sort}" if self.sort != SORTS[0] else "") + \
            (f" · filter {self.run_filter!r}" if self.run_filter else "") + (f" · {len(self.marked)} marked" if self.marked
                                                                              else "")
        if self.disk_free_gib is not None:
            low = self.disk_free_gib < LOW_DISK_GIB
            title += f" · {glyphs().warn + ' ' if low else ''}{self.disk_free_gib:,.1f} GiB free" + (
                " (checkpoints and exports need room: free some, or archive runs)" if low else "")
        if self.runs_problem:
            title += f" · ⚠ {self.runs_problem}"
        if title != self._runs_title:
            self._runs_title = title
            self.query_one("#runs-title", Label).update(Text(title))

    def watched_run_ids(self) -> frozenset[str]:
        """The runs a monitor shows (it reads them, and announces their end itself)."""
        return frozenset(screen.acting_run().id for screen in self.app.screen_stack
                         if isinstance(screen, RunActions) and screen is not self)

    def announce_ended(self, summaries: list[RunSummary]) -> None:
        """A toast, the bell and a desktop notification for every run that was running at the last read and has
        ended since (any run, not only one a monitor watches)."""
        before = {s.id: s.status for s in self.last_summaries}
        watched = self.watched_run_ids()
        for s in summaries:
            told = (s.id, s.ended_at)
            if before.get(s.id) == RunStatus.RUNNING and not s.status.live and s.id not in watched \
                    and told not in self.app.told_endings:
                self.app.told_endings.add(told)  # a monitor that watched it may have said it already
                self.app.tell_ending(f"run {s.id} {s.status}" + (f" ({s.error_kind})" if s.error_kind else ""),
                                     s.status, s.status in (RunStatus.FAILED, RunStatus.CRASHED))

    def run_cells(self, s: RunSummary, now: float) -> tuple:
        from studio import display

        steps = f"{s.step}/{s.max_steps}" if s.max_steps else str(s.step or "-")
        loss = f"{s.loss:.3f}" if s.loss is not None else "-"
        if s.eval_loss is not None:
            loss += f" ({s.eval_loss:.3f})"
        took = display.duration(s.train_s) if s.train_s else "-"  # as the comparison counts it
        mark = "✓ " if s.id in self.marked else ""
        model = (s.model or "-").split("/")[-1]
        status = status_cell(s)
        noted = f" {glyphs().note}" if s.note else ""  # the user wrote a note on it (t)
        return (f"{mark}{s.id}{noted}", status, s.method or "-", model,
                steps, loss, f"{s.tokens_per_s:,.0f}" if s.tokens_per_s else "-", took,
                age(now - s.started_at if s.started_at else None))

    # ----------------------------------------------------------- selection

    def _selected(self, table_id: str) -> str | None:
        return cursor_key(self.query_one(table_id, DataTable))

    def selected_run_id(self) -> str | None:
        return self._selected("#runs")

    def selected_run(self) -> Run | None:
        run_id = self.selected_run_id()
        return Run(self.run_dirs[run_id]) if run_id in self.run_dirs else None

    def selected_profile(self) -> Path | None:
        key = self._selected("#profiles")
        return self.profile_paths.get(key) if key else None

    def acting_run(self) -> Run | None:
        return self._need_run()

    def acting_status(self) -> RunStatus | None:
        """The selected run's status as the list last read it."""
        run_id = self.selected_run_id()
        return next((s.status for s in self.last_summaries if s.id == run_id), None)

    @on(DataTable.RowHighlighted, "#runs")
    def run_highlighted(self) -> None:
        self.refresh_bindings()  # the footer offers what applies to the run under the cursor

    def _need_run(self) -> Run | None:
        """The selected run, when the Runs list has the focus (run keys never act from the Profiles list)."""
        if self.focused is not self.query_one("#runs", DataTable):
            self.notify("run keys act on the Runs list: tab to it first", severity="warning")
            return None
        run = self.selected_run()
        if run is None:
            self.notify("no run selected", severity="warning")
        return run

    # ----------------------------------------------------------- actions

    def action_cursor(self, step: int) -> None:
        table = self.focused if isinstance(self.focused, DataTable) else self.query_one("#profiles", DataTable)
        table.move_cursor(row=max(0, min(table.row_count - 1, table.cursor_row + step)))

    def action_cursor_edge(self, end: int) -> None:
        table = self.focused if isinstance(self.focused, DataTable) else self.query_one("#profiles", DataTable)
        table.move_cursor(row=table.row_count - 1 if end else 0)

    @on(DataTable.RowSelected)
    def row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter opens: a profile in the editor, a run in the monitor."""
        if event.data_table.id == "profiles":
            self.action_edit()
        else:
            self.action_open()

    def _need_profile(self) -> Path | None:
        path = self.selected_profile()
        if path is None:
            self.notify("no profile selected", severity="warning")
        return path

    def action_edit(self) -> None:
        path = self._need_profile()
        if path is not None:
            self.app.edit_profile(path)

    def action_run(self) -> None:
        if self.focused is self.query_one("#runs", DataTable):
            self.notify("r starts the profile under the cursor in Profiles (tab there first); u resumes this run",
                        severity="warning")
            return
        path = self._need_profile()
        if path is None:
            return
        fit, why = self.profile_fits.get(path, ("?", ""))
        if fit != "too big":
            self.app.start_profile(path)
            return
        from studio.ui.dialogs import Confirm

        def done(yes: bool | None) -> None:
            if yes:
                self.app.start_profile(path)

        self.app.push_screen(Confirm(f"the estimate says {path.stem} does not fit this machine ({why}); it would "
                                     "likely run out of memory. Start it anyway? (e opens it: F4 fixes it)"), done)

    def action_open(self) -> None:
        if self.focused is self.query_one("#profiles", DataTable):
            self.action_edit()
            return
        if run := self._need_run():
            self.app.open_run(run)

    def act(self, name: str) -> None:
        """Archive, delete and export act on the marked runs when there are marks (m), else on the run under the
        cursor."""
        from studio.ui.actions import MARKED_ACTIONS, export_marked, on_marked

        if name in MARKED_ACTIONS and self.marked:
            status = {s.id: s.status for s in self.last_summaries}
            runs = [(Run(self.all_run_dirs[r]), status.get(r)) for r in sorted(self.marked) if r in self.all_run_dirs]

            def done() -> None:
                self.marked = set()
                self.show_runs(self.last_summaries)

            if name == "export":
                export_marked(self, [run for run, _ in runs], done)
            else:
                on_marked(self, name, runs, done)
            return
        super().act(name)

    def applies(self, name: str) -> bool:
        """With runs marked, archive, delete and export are for them, whatever the run under the cursor is."""
        from studio.ui.actions import MARKED_ACTIONS

        return bool(self.marked and name in MARKED_ACTIONS) or super().applies(name)

    def action_archived(self) -> None:
        from studio.ui.archive import ArchivedRuns

        self.app.push_screen(ArchivedRuns())

    def action_mark(self) -> None:
        if run := self._need_run():
            self.marked ^= {run.id}
            self.show_runs(self.last_summaries)
            self.refresh_bindings()  # with marks, x, A and D are for the marked runs

    def action_compare(self) -> None:
        runs = [Run(self.all_run_dirs[r]) for r in sorted(self.marked) if r in self.all_run_dirs]
        if len(runs) < 2:
            self.notify("mark two or more runs with m (in the Runs list), then C compares them", severity="warning")
            return
        self.app.open_comparison(runs)

    def action_sort(self) -> None:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self.show_runs(self.last_summaries)

    def action_filter(self) -> None:
        """The filter box is made on first use (one widget less to style in the first frame)."""
        found = self.query("#runs-filter")
        if found:
            box = found.first(Input)
        else:
            box = Input(id="runs-filter", placeholder="filter runs: id, profile, status or note", compact=True)
            self.query_one("#runs-box").mount(box, before=self.query_one("#runs", DataTable))
        box.display = True
        box.focus()

    @on(Input.Changed, "#runs-filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.run_filter = event.value.strip()
        self.show_runs(self.last_summaries)

    def on_key(self, event: events.Key) -> None:
        """Esc in the filter box clears the filter and gives the list back its focus."""
        if event.key == "escape" and isinstance(self.focused, Input) and self.focused.id == "runs-filter":
            event.stop()
            event.prevent_default()
            self.focused.value = ""
            self.focused.display = False
            self.query_one("#runs", DataTable).focus()

    @on(Input.Submitted, "#runs-filter")
    def filter_done(self, event: Input.Submitted) -> None:
        event.input.display = bool(event.value.strip())
        self.query_one("#runs", DataTable).focus()


def sort_runs(summaries: list[RunSummary], key: str) -> list[RunSummary]:
    if key == "status":
        return sorted(summaries, key=lambda s: (s.status != RunStatus.RUNNING, s.status, s.id))
    if key == "loss":
        return sorted(summaries, key=lambda s: (s.loss is None, s.loss or 0.0))
    if key == "tokens/s":
        return sorted(summaries, key=lambda s: -(s.tokens_per_s or 0.0))
    return summaries
