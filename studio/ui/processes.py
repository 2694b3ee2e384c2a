"""The processes on the GPUs (nvitop's lower half): which GPU, pid, user, GPU memory, the studio run it
trains if it is one, and its command line; K kills the one under the cursor, after a confirm. On a machine
without GPUs: studio's trainer processes, with their CPU and memory (btop's view of them)."""

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
from studio.ui.widgets import FittedTable

COLUMNS = ("gpu", "pid", "user", "GPU mem", "run", "command")
CPU_COLUMNS = ("pid", "user", "CPU", "memory", "run", "command")  # no GPU: the trainers on the CPU
REFRESH_S = 1.0


@dataclass(frozen=True)
class ProcessRow:
    gpu: int | None  # None: a trainer on the CPU
    pid: int
    user: str
    used_gib: float | None
    run: str       # the studio run this process trains, or ""
    command: str   # "" once the process is gone
    cpu_pct: float | None = None  # of one core, since the last look
    rss_gib: float | None = None


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


def gpu_process_rows(inv: Inventory) -> list[ProcessRow]:
    rows = []
    for g in inv.gpus:
        for p in g.processes:
            user, command = describe_process(p.pid)
            rows.append(ProcessRow(g.index, p.pid, user, p.used_gib, run_of(command), command))
    return rows


class TrainerWatch:
    """studio's trainer processes on this machine, with the CPU each used since the last look (psutil keeps
    each process's previous CPU times, so the same Process objects are asked again)."""

    def __init__(self) -> None:
        self.known: dict[int, psutil.Process] = {}

    def rows(self) -> list[ProcessRow]:
        out = []
        seen = {}
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                command = " ".join(proc.info["cmdline"] or [])
                if TRAINER_MODULE not in command:
                    continue
                watched = self.known.get(proc.pid, proc)
                with watched.oneshot():
                    cpu = watched.cpu_percent(None)  # 0.0 the first time: nothing to compare with yet
                    rss = watched.memory_info().rss / 2**30
                    user = watched.username()
                seen[proc.pid] = watched
                out.append(ProcessRow(None, proc.pid, user, None, run_of(command), command, cpu, rss))
            except (psutil.Error, OSError):
                continue
        self.known = seen
        return out


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
        self.rows: list[ProcessRow] = []
        self.trainers = TrainerWatch()
        self.inventory: Inventory | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="processes-note")
        yield FittedTable(id="processes", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.title = "GPU processes"
        self.watch(self.app, "inventory", self.show)
        self.set_interval(REFRESH_S, self.refresh_trainers)  # the inventory of a machine without GPUs never changes
        self.query_one(DataTable).focus()

    def refresh_trainers(self) -> None:
        if self.inventory is not None and not self.inventory.gpus:
            self.show(self.inventory)

    def show(self, inv: Inventory) -> None:
        self.inventory = inv
        note = self.query_one("#processes-note", Static)
        table = self.query_one(FittedTable)
        if not inv.gpus:
            self.title = "Trainer processes"
            self.rows = self.trainers.rows()
            count = f"{len(self.rows)} studio trainer process{'es' if len(self.rows) != 1 else ''} on the CPU"
            note.update(f"no GPU found ({inv.reason}): {count}" + ("; K kills the one under the cursor" if self.rows
                                                                    else ""))
            table.fill(CPU_COLUMNS,
                       [(str(r.pid), (str(r.pid), r.user, f"{r.cpu_pct:.0f}%" if r.cpu_pct is not None else "?",
                                      display.size_bytes(r.rss_gib * 2**30) if r.rss_gib is not None else "?",
                                      r.run or "-", r.command)) for r in self.rows],
                       flex={CPU_COLUMNS.index("command"): "end"})
            return
        self.title = "GPU processes"
        self.rows = gpu_process_rows(inv)
        if not self.rows:
            note.update("no process uses a GPU")
        else:
            note.update(f"{len(self.rows)} process{'es' if len(self.rows) != 1 else ''} on "
                        f"{len({r.gpu for r in self.rows})} GPU(s); K kills the one under the cursor")
        table.fill(COLUMNS,
                   [(f"{r.gpu}:{r.pid}", (str(r.gpu), str(r.pid), r.user,
                                          f"{r.used_gib:.1f} GiB" if r.used_gib is not None else "?",
                                          r.run or "-", r.command or "(gone)")) for r in self.rows],
                   flex={COLUMNS.index("command"): "end"})

    def selected(self) -> ProcessRow | None:
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
        used = (f", {display.size_bytes(row.used_gib * 2**30)} on GPU {row.gpu}" if row.used_gib else
                f", {display.size_bytes(row.rss_gib * 2**30)} of memory" if row.rss_gib else "")

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
