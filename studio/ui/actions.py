"""The run actions (stop, kill, resume, export): listed once, for key bindings, the
command palette and the help screen alike."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.table import Table
from textual.app import SystemCommand
from textual.binding import Binding

if TYPE_CHECKING:
    from studio.runs.folder import Run


@dataclass(frozen=True)
class RunAction:
    key: str
    action: str        # the screen's action_<name>
    title: str         # the palette's command
    help: str
    show: bool = True  # in the footer


RUN_ACTIONS = (
    RunAction("s", "stop", "Stop run", "gracefully stop: finish the step, save a checkpoint and the adapter"),
    RunAction("K", "kill", "Kill run", "kill now (shift+k, so it is never a slip); steps since the last checkpoint are lost"),
    RunAction("u", "resume", "Resume run", "continue a stopped or crashed run from its last checkpoint"),
    RunAction("x", "export", "Export run", "write the adapter, or a merged model, to a folder"),
    RunAction("c", "chat", "Chat with run", "talk to what the run trained, side by side with the base model"),
    RunAction("d", "describe", "Describe run", "the run whole: its profile, the plan and why each auto was decided, "
                                               "devices and versions"),
    RunAction("y", "copy_id", "Copy run id", "copy the run's id to the clipboard (OSC 52: works over SSH too)"),
    RunAction("P", "copy_path", "Copy run folder", "copy the run folder's path to the clipboard (OSC 52)"),
    RunAction("exclamation_mark", "shell", "Shell in run folder", "a shell ($SHELL) in the run folder, the app "
                                                                  "suspended; exit comes back"),
    RunAction("t", "note", "Note on run", "your note on the run (why it ran, what it showed); the runs filter finds "
                                          "it, describe shows it"),
    RunAction("A", "archive", "Archive run", "move a run that is over out of the list, whole, into the archive "
                                             "(studio unarchive brings it back; asks first)"),
    RunAction("D", "delete", "Delete run", "delete a run that is over, with everything in it (asks first)"),
)


class RunActions:
    """The run actions of a screen, each forwarded to the app for the run `acting_run` names (the Runs
    list's cursor on the dashboard, the watched run in the monitor). Mixed into a Screen."""

    app: Any

    def acting_run(self) -> Run | None:
        raise NotImplementedError

    def action_stop(self) -> None:
        if run := self.acting_run():
            self.app.confirm_run_action(run, "stop")

    def action_kill(self) -> None:
        if run := self.acting_run():
            self.app.confirm_run_action(run, "kill")

    def action_resume(self) -> None:
        if run := self.acting_run():
            self.app.resume_run(run)

    def action_export(self) -> None:
        if run := self.acting_run():
            self.app.export_run(run)

    def action_chat(self) -> None:
        if run := self.acting_run():
            self.app.open_chat(run)

    def action_describe(self) -> None:
        if run := self.acting_run():
            self.app.describe_run(run)

    def action_copy_id(self) -> None:
        if run := self.acting_run():
            self.app.copy_to_clipboard(run.id)
            self.app.notify(f"copied {run.id}")

    def action_copy_path(self) -> None:
        if run := self.acting_run():
            self.app.copy_to_clipboard(str(run.dir))
            self.app.notify(f"copied {run.dir}")

    def action_shell(self) -> None:
        if run := self.acting_run():
            self.app.shell_in(run.dir)

    def action_note(self) -> None:
        if run := self.acting_run():
            self.app.edit_note(run)

    def action_archive(self) -> None:
        if run := self.acting_run():
            self.app.confirm_archive(run)

    def action_delete(self) -> None:
        if run := self.acting_run():
            self.app.confirm_delete(run)


def run_action_commands(screen: RunActions, which: str) -> Iterator[SystemCommand]:
    """The palette's commands for the run actions of `screen` ("the selected run", "this run")."""
    for a in RUN_ACTIONS:
        yield SystemCommand(a.title, f"{which}: {a.help}", getattr(screen, f"action_{a.action}"))


def run_bindings(shown: tuple[str, ...] = ("s",)) -> list[Binding]:
    """Key bindings for the run actions; `shown` are the keys the footer lists."""
    return [Binding(a.key, a.action, a.title.split()[0], show=a.key in shown) for a in RUN_ACTIONS]


GENERAL_KEYS = (("tab / shift+tab", "move between the lists, fields and buttons"),
                ("enter", "open what the cursor is on; in a dialog, answer it"),
                ("esc", "back, or cancel a dialog or a search"))


def help_table(bindings: list[Binding], display: Callable[[Binding], str],
               general: tuple[tuple[str, str], ...] = (), columns: int = 1) -> Table:
    """`key  description` for each binding of a screen, the keys as they are typed ("/", "?", "^p"; keys
    bound together joined by " / "); descriptions wrap in their own column. With `columns=2` (a wide terminal)
    the rows are laid out in two halves side by side, so that a screen of many keys fits without scrolling."""
    titles = {a.action: a.help for a in RUN_ACTIONS}
    rows = list(general)
    for b in bindings:
        action = b.action.split(".")[-1].split("(")[0]
        keys = " / ".join(display(Binding(k.strip(), b.action, b.description)) for k in b.key.split(","))
        rows.append((keys, titles.get(action, b.tooltip or b.description)))  # a tooltip says more than the footer
    if columns < 2 or len(rows) < 8:
        return key_table(rows)
    # Split where the wrapped heights balance (a description of ~40 characters takes a line in either half).
    heights = [1 + len(what) // 40 for _, what in rows]
    total, run_sum, half = sum(heights), 0, len(rows)
    for i, h in enumerate(heights):
        if run_sum + h / 2 >= total / 2:
            half = i
            break
        run_sum += h
    outer = Table.grid(padding=(0, 3), expand=True)
    outer.add_column(ratio=1)
    outer.add_column(ratio=1)
    outer.add_row(key_table(rows[:half]), key_table(rows[half:]))
    return outer


def key_table(rows: list[tuple[str, str]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for keys, what in rows:
        table.add_row(keys, what)
    return table
