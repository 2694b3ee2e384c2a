"""The trainer log's times: every line the trainer process writes (its prints, warnings, tracebacks) starts
with the local date and time it was written, `2026-12-04 18:40:01 `. Lines that native libraries write to the
file descriptor directly have none. The monitor shows the time of day and hides them on `T`
(studio/ui/logs.py reads them back with `split_time`). A base module: the trainer writes it, the app reads it."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, TextIO

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
TIME = re.compile(r"^(\d{4}-\d\d-\d\d (\d\d:\d\d:\d\d)) ")


def split_time(line: str) -> tuple[str, str]:
    """(the line's time of day, or "" when it has none; the line without its time)."""
    found = TIME.match(line)
    return (found.group(2), line[found.end():]) if found else ("", line)


class TimedLines:
    """A text stream that starts each line it passes on to `stream` with the time it was begun."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.time):
        self.stream = stream
        self.clock = clock
        self.at_line_start = True

    def write(self, text: str) -> int:
        if not text:
            return 0
        out = []
        for piece in text.splitlines(keepends=True) if "\n" in text else [text]:
            if self.at_line_start and piece not in ("\n", "\r"):
                out.append(time.strftime(TIME_FORMAT, time.localtime(self.clock())) + " ")
            out.append(piece)
            self.at_line_start = piece.endswith("\n")
        self.stream.write("".join(out))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, isatty...: the stream's own
        return getattr(self.stream, name)


def time_lines() -> None:
    """The trainer process's stdout and stderr (its log) write their lines timed from here on."""
    import sys

    sys.stdout = TimedLines(sys.stdout)  # type: ignore[assignment]
    sys.stderr = TimedLines(sys.stderr)  # type: ignore[assignment]
