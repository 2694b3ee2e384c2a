"""The archive (runs moved out of the list with A, whole, into STUDIO_HOME/archive): what each was, and keys
to bring one back (u) or delete it (D, asks first)."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

from studio.runs.state import RunSummary
from studio.ui.screens import StudioScreen
from studio.ui.widgets import FittedTable

COLUMNS = ("run", "status", "steps", "loss", "note")


class ArchivedRuns(StudioScreen):
    HELP_TITLE = "Archived runs"

    BINDINGS = [
        Binding("u", "bring_back", "Bring back", tooltip="move the run under the cursor back into the runs list"),
        Binding("D", "delete", "Delete", tooltip="delete the archived run under the cursor, with everything in it "
                                                 "(asks first)"),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.summaries: list[RunSummary] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("reading the archive...", id="archive-note")
        yield FittedTable(id="archived", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Archived runs"
        self.query_one(DataTable).focus()
        self.read()

    @work(thread=True, exclusive=True, group="archive")
    def read(self) -> None:
        """Each archived run's summary, newest first (read in a worker: an archive can hold many)."""
        from studio.paths import archive_dir
        from studio.runs.describe import archived_runs
        from studio.runs.folder import Run
        from studio.runs.state import summarize

        summaries = []
        for name in reversed(archived_runs()):
            try:
                summaries.append(summarize(Run(archive_dir() / name)))
            except OSError:
                continue
        self.app.call_from_thread(self.show, summaries)

    def show(self, summaries: list[RunSummary]) -> None:
        self.summaries = summaries
        count = f"{len(summaries)} run{'s' if len(summaries) != 1 else ''}"
        self.query_one("#archive-note", Static).update(
            f"{count} in the studio home's archive folder; u brings the one under the cursor back, D deletes it"
            if summaries else "the archive is empty; A in the Runs list archives a run, m marks several")
        self.query_one(FittedTable).fill(COLUMNS,
                   [(s.id, (s.id, str(s.status), f"{s.step}/{s.max_steps}" if s.max_steps else str(s.step or "-"),
                            f"{s.loss:.3f}" if s.loss is not None else "-", s.note or ""))
                    for s in summaries], flex={0: "end", 4: "end"})

    def selected(self) -> RunSummary | None:
        table = self.query_one(DataTable)
        if not self.summaries or table.cursor_row is None or table.cursor_row >= len(self.summaries):
            self.notify("the archive is empty", severity="warning")
            return None
        return self.summaries[table.cursor_row]

    def action_bring_back(self) -> None:
        from studio.runs.describe import unarchive_run
        from studio.runs.folder import RunError

        chosen = self.selected()
        if chosen is None:
            return
        try:
            run = unarchive_run(chosen.id)
        except RunError as e:
            self.notify(str(e), title="not brought back", severity="error", timeout=10)
            return
        self.notify(f"run {run.id} is back in the runs list", timeout=6)
        self.app.watched_run_id = run.id  # the Runs list's cursor goes to it
        self.app.refresh_dashboards()
        self.read()

    def action_delete(self) -> None:
        from studio.runs.describe import delete_archived_run
        from studio.runs.folder import RunError
        from studio.ui.dialogs import Confirm

        chosen = self.selected()
        if chosen is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                try:
                    delete_archived_run(chosen.id)
                except (RunError, OSError) as e:
                    self.notify(str(e), title="not deleted", severity="error", timeout=10)
                    return
                self.notify(f"deleted archived run {chosen.id}", timeout=6)
                self.read()

        self.app.push_screen(Confirm(f"delete archived run {chosen.id} and everything in it? This cannot be "
                                     "undone."), answered)

