"""The characters the app draws with: Unicode where the terminal has it, ASCII on one that cannot show it.

The Linux virtual console (TERM=linux) and the old serial terminals have no braille, rounded corners,
heavy rules or eighth blocks in their fonts: a chart there is a field of boxes. On those (or with
STUDIO_ASCII=1 anywhere) the charts plot with dots, the sparklines and the progress bar use ASCII, and the
borders are drawn in ASCII (plain.tcss).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

PLAIN_TERMS = frozenset({"linux", "vt100", "vt102", "vt220", "dumb", "ansi", "cons25"})


def plain() -> bool:
    """This terminal draws ASCII only (its TERM, or STUDIO_ASCII=1)."""
    return os.environ.get("STUDIO_ASCII") == "1" or os.environ.get("TERM", "") in PLAIN_TERMS


@dataclass(frozen=True)
class Glyphs:
    chart_marker: str  # plotext's marker for the curves
    eval_mark: str     # an eval point on the chart
    sparks: str        # a sparkline's levels, low to high
    bar_full: str      # the progress bar: done, half a cell, to do
    bar_half: str
    bar_empty: str
    warn: str          # the marks of a run's state in the list
    cross: str
    wait: str
    note: str          # a run with the user's note


UNICODE = Glyphs("braille", "◆", "▁▂▃▄▅▆▇█", "━", "╸", "━", "⚠", "✗", "◷", "✎")
ASCII = Glyphs(".", "o", "_.-~=+*#", "#", "=", "-", "!", "x", "~", "*")


def glyphs() -> Glyphs:
    return ASCII if plain() else UNICODE
