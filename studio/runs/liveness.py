"""Is a run's trainer alive? Checked, never assumed: status.json is only a claim.

A recorded pid is believed only when it is a plausible pid, the process's command
line is studio's trainer (or its launcher) for this very run folder, and, when
recorded, its start time matches. A recycled pid, `{"pid": -1}` or a pid of some
other program is "not alive", so nothing is ever signalled on its word.
"""

from __future__ import annotations

from pathlib import Path

import psutil

from studio.runs.folder import Run
from studio.runs.status_file import valid_pid

TRAINER_MODULE = "studio.trainer"
LAUNCHER_MODULE = "studio.runs.rendezvous"  # the launcher of a several-process run (its argv names the trainer too)


def process_start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OverflowError, ValueError):
        return None


def is_trainer_process(pid: int, run_dir: Path, started_at: float | None = None) -> bool:
    """True when `pid` is a live (not zombie) studio trainer or launcher working on `run_dir`."""
    if valid_pid(pid) is None:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        argv = proc.cmdline()
        created = proc.create_time()
    except (psutil.Error, OverflowError, ValueError):
        return False
    folder = str(run_dir.resolve())
    if folder not in argv or not any(a == TRAINER_MODULE or a.startswith(TRAINER_MODULE + ".") for a in argv):
        return False
    # The same pid started at another moment is another process (after a reboot, say).
    return started_at is None or abs(created - started_at) < 2.0


def is_alive(run: Run) -> bool:
    """The run's trainer process (or launcher) is running right now."""
    pid = run.pid
    if pid is None:
        return False
    return is_trainer_process(pid, run.dir, run.status_file().pid_started_at)
