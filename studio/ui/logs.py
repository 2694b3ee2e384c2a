"""The trainer log as the monitor shows it: studio's own lines by default (the Trainer's dict logs
and progress bars are noise next to the panes that chart them), every line on request, a search."""

from __future__ import annotations

import re
from collections import deque

from textual.widgets import RichLog

KEEP = 5000
NOISE = (re.compile(r"^\s*\{'[a-z_]+': .*\}\s*$"),         # the Trainer's logged dicts
         re.compile(r"\d+%\|.*\|"),                           # tqdm bars
         re.compile(r"\d+/\d+ \[\d+:\d+"))                    # tqdm counters


def is_noise(line: str) -> bool:
    return not line.strip() or any(p.search(line) for p in NOISE)


class LogView:
    """Feeds a RichLog from appended text; keeps the last KEEP lines to re-filter them."""

    def __init__(self, widget: RichLog):
        self.widget = widget
        self.lines: deque[str] = deque(maxlen=KEEP)
        self.shown: deque[str] = deque(maxlen=KEEP)
        self._partial = ""
        self._raw = False
        self._search = ""

    @property
    def raw(self) -> bool:
        return self._raw

    @raw.setter
    def raw(self, value: bool) -> None:
        self._raw = value
        self.render()

    @property
    def search(self) -> str:
        return self._search

    @search.setter
    def search(self, value: str) -> None:
        self._search = value.strip().lower()
        self.render()

    def keeps(self, line: str) -> bool:
        if not self._raw and is_noise(line):
            return False
        return not self._search or self._search in line.lower()

    def feed(self, text: str) -> None:
        """Append text; only complete lines show (a progress bar's carriage returns keep its last state)."""
        parts = (self._partial + text).split("\n")
        self._partial = parts.pop()
        new = [p.rsplit("\r", 1)[-1] if "\r" in p.rstrip("\r") else p.rstrip("\r") for p in parts]
        self.lines.extend(new)
        kept = [line for line in new if self.keeps(line)]
        if kept:
            self.shown.extend(kept)
            self.widget.write("\n".join(kept))

    def render(self) -> None:
        self.widget.clear()
        self.shown = deque((line for line in self.lines if self.keeps(line)), maxlen=KEEP)
        if self.shown:
            self.widget.write("\n".join(self.shown))
