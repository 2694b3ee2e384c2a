"""The processes on the GPUs (nvitop's lower half): which GPU, pid, user, GPU memory, the studio run it
trains if it is one, and its command line; K kills the one under the cursor, after a confirm."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import psutil
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

from studio import display
from studio.hardware import Inventory
from studio.paths import runs_dir
from studio.runs.liveness import TRAINER_MODULE
from studio.ui.screens import StudioScreen
from studio.ui.widgets import fill_table

COLUMNS = ("gpu", "pid", "user", "GPU mem", "run", "command")


@dataclass(frozen=True)
class GpuProcessRow:
    gpu: int
    pid: int
    user: str
    used_gib: float | None
    run: str       # the studio run this process trains, or ""
    command: str   # "" once the process is gone


def describe_process(pid: int) -> tuple[str, str]:
    """(user, command line) of a pid; ("?", "") when it is gone or not ours to read."""
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            user = proc.username()
            command = " ".join(proc.cmdline()) or proc.name()
        return user, command
    except (psutil.Error, OSError):
        return "?", ""


def run_of(command: str) -> str:
    """The run id a studio trainer's command line names (its run folder), or ""."""
    if TRAINER_MODULE not in command:
        return ""
    root = str(runs_dir())
    for word in command.split():
        if word.startswith(root + os.sep):
            return word[len(root) + 1:].split(os.sep)[0]
    return ""


def gpu_process_rows(inv: Inventory) -> list[GpuProcessRow]:
    rows = []
    for g in inv.gpus:
        for p in g.processes:
            user, command = describe_process(p.pid)
            rows.append(GpuProcessRow(g.index, p.pid, user, p.used_gib, run_of(command), command))
    return rows


class GpuProcesses(StudioScreen):
    """Every process NVML sees on a GPU; refreshed with the GPU pane."""

    HELP_TITLE = "GPU processes"

    BINDINGS = [
        Binding("K", "kill_process", "Kill", tooltip="end the process under the cursor (SIGTERM, after a confirm); a studio "
                                             "run is better stopped from its monitor (s), which saves a checkpoint"),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[GpuProcessRow] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="processes-note")
        yield DataTable(id="processes", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.title = "GPU processes"
        self.watch(self.app, "inventory", self.show)
        self.query_one(DataTable).focus()

    def show(self, inv: Inventory) -> None:
        self.rows = gpu_process_rows(inv)
        note = self.query_one("#processes-note", Static)
        if not inv.gpus:
            note.update(f"no GPU found ({inv.reason})")
        elif not self.rows:
            note.update("no process uses a GPU")
        else:
            note.update(f"{len(self.rows)} process{'es' if len(self.rows) != 1 else ''} on "
                        f"{len({r.gpu for r in self.rows})} GPU(s); K kills the one under the cursor")
        fill_table(self.query_one(DataTable), COLUMNS,
                   [(f"{r.gpu}:{r.pid}", (str(r.gpu), str(r.pid), r.user,
                                          f"{r.used_gib:.1f} GiB" if r.used_gib is not None else "?",
                                          r.run or "-", r.command or "(gone)")) for r in self.rows],
                   flex={COLUMNS.index("command"): "end"})

    def selected(self) -> GpuProcessRow | None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row is None or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]

    def action_kill_process(self) -> None:
        from studio.ui.dialogs import Confirm

        row = self.selected()
        if row is None:
            self.notify("no process under the cursor", severity="warning")
            return
        what = f"run {row.run}'s trainer" if row.run else (row.command[:60] or "a process that is gone")
        used = f", {display.size_bytes(row.used_gib * 2**30)} on GPU {row.gpu}" if row.used_gib else ""

        def done(yes: bool | None) -> None:
            if yes:
                self.notify(kill_process(row.pid), timeout=8)

        self.app.push_screen(Confirm(f"kill pid {row.pid} ({row.user}: {what}{used})? it gets SIGTERM"), done)


def kill_process(pid: int) -> str:
    """SIGTERM to `pid`; what happened, in words a user can act on."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return f"pid {pid} has already exited"
    except PermissionError:
        return f"pid {pid} is another user's: ask them, or kill it as root (sudo kill {pid})"
    return f"sent SIGTERM to pid {pid}"
