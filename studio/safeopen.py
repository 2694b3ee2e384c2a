"""Opening files studio did not create this minute: regular files only, never blocking, and (inside a run
folder) never through a link. A FIFO planted as events.jsonl would hang every reader; a symlink planted as
trainer.log would have studio append to whatever it points at."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


def open_regular(path: Path, flags: int = os.O_RDONLY, follow: bool = False, mode: int = 0o600) -> int:
    """A descriptor of `path` if it is a regular file (created with `mode` when flags say O_CREAT); raises
    OSError for a link (unless `follow`), a FIFO, a device or a folder, without ever blocking on one."""
    flags |= os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, f"{path.name} is a link; studio does not follow links in a run folder") from None
        raise
    kind = os.fstat(fd).st_mode
    if not stat.S_ISREG(kind):
        os.close(fd)
        what = "a FIFO" if stat.S_ISFIFO(kind) else "a folder" if stat.S_ISDIR(kind) else "not a regular file"
        raise OSError(errno.EINVAL, f"{path.name} is {what}")
    if flags & os.O_NONBLOCK and not flags & (os.O_WRONLY | os.O_RDWR):
        os.set_blocking(fd, True)  # a regular file: blocking reads are fine (and what callers expect)
    return fd


def read_regular(path: Path, max_bytes: int | None = None, follow: bool = False) -> bytes:
    """The bytes of a regular file (at most `max_bytes`); OSError for anything else."""
    fd = open_regular(Path(path), follow=follow)
    with os.fdopen(fd, "rb") as f:
        return f.read() if max_bytes is None else f.read(max_bytes)


def append_regular(path: Path) -> int:
    """A descriptor to append to `path` (created 0600), refusing links and special files."""
    return open_regular(Path(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
