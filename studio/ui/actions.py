"""The run actions (stop, kill, resume, export): listed once, for key bindings, the
command palette and the help screen alike."""

from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table
from textual.binding import Binding


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
)


def run_bindings(shown: tuple[str, ...] = ("s",)) -> list[Binding]:
    """Key bindings for the run actions; `shown` are the keys the footer lists."""
    return [Binding(a.key, a.action, a.title.split()[0], show=a.key in shown) for a in RUN_ACTIONS]


def help_table(bindings: list[Binding]) -> Table:
    """`key  description` for each binding of a screen; descriptions wrap in their own column."""
    titles = {a.action: a.help for a in RUN_ACTIONS}
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for b in bindings:
        action = b.action.split(".")[-1].split("(")[0]
        table.add_row(b.key.replace("_", " "), titles.get(action, b.description))
    return table
