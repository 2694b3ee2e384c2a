"""The trainer log as the monitor shows it: studio's own lines by default (the Trainer's dict logs
and progress bars are noise next to the panes that chart them), every line on request, a search."""

from __future__ import annotations

import re
from collections import deque

from rich.text import Text
from textual.widgets import RichLog

from studio.log_times import split_time

KEEP = 5000
NOISE = (re.compile(r"^\s*\{'[a-z_]+': .*\}\s*$"),         # the Trainer's logged dicts
         re.compile(r"\d+%\|.*\|"),                           # tqdm bars
         re.compile(r"\d+/\d+ \[\d+:\d+"))                    # tqdm counters


# Lines that say something went wrong, for ] and [ (and marked in colour): errors first, then warnings.
ERROR = re.compile(r"\b(error|exception|traceback|failed|out of memory|nan)\b", re.IGNORECASE)
WARNING = re.compile(r"\b(warning|warn|deprecated)\b", re.IGNORECASE)


def pattern_of(text: str) -> re.Pattern[str]:
    """A search as a regular expression (case-insensitive); text that is not one is searched as it is."""
    try:
        return re.compile(text, re.IGNORECASE)
    except re.error:
        return re.compile(re.escape(text), re.IGNORECASE)


def is_noise(line: str) -> bool:
    return not line.strip() or any(p.search(line) for p in NOISE)


class LogView:
    """Feeds a RichLog from appended text; keeps the last KEEP lines to re-filter them. A search (a regular
    expression, or plain text) marks its matches, counts them and steps through them (n, N); errors and
    warnings are marked and stepped through too (] and [); the lines around a match stay in view."""

    def __init__(self, widget: RichLog):
        self.widget = widget
        self.lines: deque[str] = deque(maxlen=KEEP)
        self.shown: deque[str] = deque(maxlen=KEEP)
        self.match_ys: list[int] = []   # where each match starts among the widget's (wrapped) lines
        self.problem_ys: list[int] = []  # where each error or warning line starts
        self.at: int | None = None      # the match in view, if the user stepped to one
        self.problem_at: int | None = None
        self._pattern: re.Pattern[str] | None = None
        self._partial = ""
        self._raw = False
        self._search = ""
        self._times = True

    @property
    def raw(self) -> bool:
        return self._raw

    @raw.setter
    def raw(self, value: bool) -> None:
        self._raw = value
        self.render()

    @property
    def times(self) -> bool:
        """Each line's time of day (the trainer writes them) shown before it."""
        return self._times

    @times.setter
    def times(self, value: bool) -> None:
        self._times = value
        self.render()

    @property
    def search(self) -> str:
        return self._search

    @search.setter
    def search(self, value: str) -> None:
        self._search = value.strip()
        self._pattern = pattern_of(self._search) if self._search else None
        self.at = None
        self.render()

    def keeps(self, line: str) -> bool:
        return self._raw or not is_noise(split_time(line)[1])

    def matches(self, line: str) -> bool:
        return self._pattern is not None and self._pattern.search(split_time(line)[1]) is not None

    @staticmethod
    def problem(line: str) -> str | None:
        """"red" for an error line, "yellow" for a warning, else None."""
        said = split_time(line)[1]
        return "red" if ERROR.search(said) else "yellow" if WARNING.search(said) else None

    def as_shown(self, line: str) -> str:
        """The line as the view shows it: after its time of day, or without it."""
        when, said = split_time(line)
        return f"{when} {said}" if when and self._times else said

    def feed(self, text: str) -> None:
        """Append text; only complete lines show (a progress bar's carriage returns keep its last state)."""
        parts = (self._partial + text).split("\n")
        self._partial = parts.pop()
        new = [p.rsplit("\r", 1)[-1] if "\r" in p.rstrip("\r") else p.rstrip("\r") for p in parts]
        self.lines.extend(new)
        kept = [line for line in new if self.keeps(line)]
        if kept:
            self.shown.extend(kept)
            self._write(kept)

    def render(self) -> None:
        """Everything again: after a change of filter or search, or a new width (the lines rewrap)."""
        self.widget.clear()
        self.match_ys, self.problem_ys, self.problem_at = [], [], None
        self.shown = deque((line for line in self.lines if self.keeps(line)), maxlen=KEEP)
        self._write(list(self.shown))

    def _write(self, lines: list[str]) -> None:
        """Runs of plain lines in one write; each match, error or warning alone, marked, with where it starts
        noted."""
        plain: list[str] = []
        for line in lines:
            match, problem = self.matches(line), self.problem(line)
            if not match and not problem:
                plain.append(line)
                continue
            if plain:
                self.widget.write(self.timed(plain))
                plain = []
            y = len(self.widget.lines)
            if match:
                self.match_ys.append(y)
            if problem:
                self.problem_ys.append(y)
            self.widget.write(self.marked(line, problem))
        if plain:
            self.widget.write(self.timed(plain))

    def timed(self, lines: list[str]) -> Text:
        """Plain lines, their times dimmed."""
        text = Text()
        for i, line in enumerate(lines):
            when, said = split_time(line)
            if i:
                text.append("\n")
            if when and self._times:
                text.append(when + " ", style="dim")
            text.append(said)
        return text

    def marked(self, line: str, problem: str | None = None) -> Text:
        when, said = split_time(line)
        text = Text(said, style=problem or "")
        for found in (self._pattern.finditer(said) if self._pattern else ()):
            if found.end() > found.start():
                text.stylize("black on yellow", found.start(), found.end())
        return Text.assemble((when + " ", "dim"), text) if when and self._times else text

    def step_problem(self, direction: int) -> bool:
        """To the next (1) or previous (-1) error or warning line; False when there is none."""
        self.problem_at = self._step_to(self.problem_ys, self.problem_at, direction)
        return self.problem_at is not None

    def text(self) -> str:
        """The lines shown (studio's own, or every line), for saving: with the date and time each was written
        while times are shown."""
        lines = self.shown if self._times else (split_time(line)[1] for line in self.shown)
        return "".join(line + "\n" for line in lines)

    def step(self, direction: int) -> None:
        """To the next (1) or previous (-1) match, round the ends; the view stops following new lines."""
        self.at = self._step_to(self.match_ys, self.at, direction)

    def _step_to(self, ys: list[int], at: int | None, direction: int) -> int | None:
        """From the `at`-th of the lines starting at `ys` to the next or previous, round the ends, scrolled into
        view (the view stops following new lines); None when there is none."""
        if not ys:
            return None
        at = (0 if direction > 0 else len(ys) - 1) if at is None else (at + direction) % len(ys)
        self.widget.auto_scroll = False
        self.widget.scroll_to(y=max(0, ys[at] - 2), animate=False)
        return at

    def follow(self) -> None:
        """Back to the end, following new lines."""
        self.at = self.problem_at = None
        self.widget.auto_scroll = True
        self.widget.scroll_end(animate=False)

    def title(self) -> str:
        if self.problem_at is not None and self.problem_ys and not self._search:
            return (f"log · error/warning {self.problem_at + 1} of {len(self.problem_ys)} (] and [, G end)")
        if not self._search:
            return "log" if self.widget.auto_scroll else "log · paused (G follows)"
        count = len(self.match_ys)
        where = f" · {self.at + 1} of {count}" if self.at is not None and count else ""
        return f"log · {self._search!r}: {count} match{'es' if count != 1 else ''}{where} (n/N, G end, esc clears)"
