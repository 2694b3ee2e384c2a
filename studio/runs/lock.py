"""One trainer per run: an exclusive OS lock (flock) on the run folder's `run.lock`.

Every start, resume and revision takes the lock before it looks at the run's status and holds it while
it launches; the trainer inherits the very same lock (the open file is passed to it) and holds it for its
life, so a crash, a kill or a reboot releases it, and no second start can slip in between a check and a
launch. Under accelerate's launcher (studio.runs.rendezvous) the launcher process holds it for the job.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from studio.runs.files import LOCK_FILE

ENV_FD = "STUDIO_RUN_LOCK_FD"  # the trainer finds its inherited lock here


class LockError(Exception):
    """The run is locked by another live process; the message says which."""


def holder(run_dir: Path) -> str:
    """Who holds the lock: the trainer status.json names when that pid is this run's live trainer; else another
    studio process that is starting (or resuming) it, whose trainer is not recorded yet. A pid left from an
    earlier trainer is never named."""
    from studio.runs.folder import Run  # the run folder's reader and liveness: imported when asked
    from studio.runs.liveness import is_trainer_process

    pid = Run(run_dir).pid
    if pid is not None and is_trainer_process(pid, run_dir):
        return f"pid {pid}"
    return "another studio process is starting it"


class RunLock:
    """The lock of one run folder, held from `acquire` until `release` (or the holder's exit)."""

    def __init__(self, run_dir: Path, fd: int | None = None):
        self.run_dir = run_dir
        self.fd = fd

    def acquire(self) -> RunLock:
        path = self.run_dir / LOCK_FILE
        try:
            # O_NOFOLLOW: a link planted as run.lock is refused, never followed out of the folder.
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise LockError(f"cannot open the run's lock {path}: {e.strerror or e}") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            raise LockError(f"run {self.run_dir.name} is already running ({holder(self.run_dir)})") from None
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire() if self.fd is None else self

    def __exit__(self, *exc: object) -> None:
        self.release()


def inherited(run_dir: Path) -> RunLock | None:
    """The lock a launcher passed to this process, when the descriptor named in the environment really is this
    run's lock file (a descriptor number alone proves nothing: a child of a child may reuse it)."""
    raw = os.environ.get(ENV_FD, "")
    if not raw.isdigit():
        return None
    fd = int(raw)
    try:
        mine, lock = os.fstat(fd), os.stat(run_dir / LOCK_FILE, follow_symlinks=False)
    except OSError:
        return None
    if (mine.st_dev, mine.st_ino) != (lock.st_dev, lock.st_ino):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours already: this only confirms it
    except OSError:
        return None
    return RunLock(run_dir, fd)
