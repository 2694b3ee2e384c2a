"""Reading what was appended to a file since the last read: the one tail for event logs and trainer logs."""

from __future__ import annotations

import os
from pathlib import Path

from studio.safeopen import open_regular


class FileTail:
    """Remembers an offset into a growing file; never rereads what it has seen."""

    def __init__(self, path: Path, from_end: bool = False):
        self.path = Path(path)
        self.offset = 0
        self._partial = b""
        if from_end:
            try:
                self.offset = self.path.stat().st_size
            except OSError:
                pass

    def read_bytes(self, limit: int | None = None) -> bytes:
        """New bytes; with `limit`, a reader far behind skips to the last `limit` bytes.

        A missing file reads as nothing new; any other failure (a folder, no permission) raises OSError.
        """
        try:
            fd = open_regular(self.path)  # a FIFO or a link in its place is an error, never a hang
        except FileNotFoundError:
            return b""
        with os.fdopen(fd, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < self.offset:  # truncated or replaced: start over
                self.offset, self._partial = 0, b""
            if limit is not None and size - self.offset > limit:
                self.offset, self._partial = size - limit, b""
            f.seek(self.offset)
            chunk = f.read() if limit is None else f.read(limit)
        self.offset += len(chunk)
        return chunk

    def read_text(self, limit: int | None = 256 * 1024) -> str:
        return self.read_bytes(limit).decode("utf-8", errors="replace")

    def read_lines(self, limit: int | None = None) -> list[bytes]:
        """New complete lines; an unterminated last line waits for the rest of it. With `limit`, a reader far
        behind skips to the last `limit` bytes (the line cut there is dropped by whoever parses it)."""
        data = self._partial + self.read_bytes(limit)
        lines = data.split(b"\n")
        self._partial = lines.pop()
        return lines
