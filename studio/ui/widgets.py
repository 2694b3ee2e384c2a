"""Small display widgets shared by the screens."""

from __future__ import annotations

import re
from collections import deque
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.widgets import DataTable, Static
from textual.widgets.data_table import CellDoesNotExist

from studio.terminal import safe
from studio.ui.glyphs import glyphs
from studio.hardware import HostLoad, Inventory

if TYPE_CHECKING:
    from studio.runs.events import Step


HISTORY = 60   # samples of each GPU's utilisation the dashboard keeps (a minute at one a second)


def meter(used: float, total: float, width: int = 20, style: str = "green") -> Text:
    """A bar of `width` cells: used out of total, coloured by how full it is."""
    frac = 0.0 if total <= 0 else max(0.0, min(1.0, used / total))
    filled = int(round(frac * width))
    colour = "red" if frac > 0.9 else ("yellow" if frac > 0.75 else style)
    bar = Text("█" * filled, style=colour)
    bar.append("░" * (width - filled), style="grey37")
    return bar


FIT_STYLE = {"fits": "green", "tight": "yellow", "too big": "bold red", "invalid": "red", "cpu": "dim", "?": "dim"}


def fit_label(fit: str) -> Text:
    return Text(fit or "…", style=FIT_STYLE.get(fit, "dim"))


def update_in_place(widget: Static, content: Any) -> None:
    """`Static.update` without a layout of the screen unless the new content changes the widget's height.
    A monitor updates a few texts each second; a layout pass each time was most of its idle CPU."""
    widget.update(content, layout=False)
    height = widget.styles.height
    if height is not None and not height.is_auto:
        return  # a fixed height: the content never moves anything
    width = widget.content_size.width
    if not width or widget.get_content_height(widget.content_size, widget.app.size, width) != widget.content_size.height:
        widget.refresh(layout=True)


class StepBar(Static):
    """A run's progress: a bar and the percentage done, repainted only when what it shows changes. (Textual's
    ProgressBar also repainted itself every second for an ETA; the monitor says the ETA in words.)"""

    DEFAULT_CSS = "StepBar { width: 28; height: 1; }"
    CELLS = 22  # the bar; the percentage takes the rest
    shown = ""  # the markup on screen

    def show(self, done: float, total: float) -> None:
        frac = max(0.0, min(1.0, done / total)) if total > 0 else 0.0
        full, half = divmod(int(frac * self.CELLS * 2), 2)
        colour = "$success" if frac >= 1 else "$primary"
        g = glyphs()
        markup = (f"[{colour}]{g.bar_full * full}{g.bar_half * half}[/][$rule]{g.bar_empty * (self.CELLS - full - half)}[/]"
                  f"{int(frac * 100):>4d}%")
        if markup != self.shown:
            self.shown = markup
            update_in_place(self, markup)


class GpuPanel(Static):
    """One line per GPU, like nvitop's summary: utilisation, memory, temperature, power against its limit,
    and how many processes use it. Bars and names shrink so a line never wraps at 80 columns; when the
    terminal has too few rows for a line each (8 GPUs at 24 rows), several GPUs share a line."""

    inventory: Inventory | None = None
    host: HostLoad | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.history: dict[int, deque[float]] = {}  # each GPU's recent utilisation, for its sparkline

    def record(self, inv: Inventory, paint: bool = True) -> None:
        """A new sample of the GPUs: their utilisation joins the history, then they show (when `paint`)."""
        for g in inv.gpus:
            self.history.setdefault(g.index, deque(maxlen=HISTORY)).append(g.utilization_pct or 0.0)
        self.inventory = inv
        if paint:
            self.show(inv)

    def show_host(self, host: HostLoad | None, paint: bool = True) -> None:
        self.host = host
        if paint:
            self.repaint()

    def repaint(self) -> None:
        """Show the latest samples (those recorded while hidden included)."""
        if self.inventory is not None:
            self.show(self.inventory)

    def show(self, inv: Inventory) -> None:
        self.inventory = inv
        if not inv.gpus:
            lines = Text.assemble(("no GPU found: CPU mode", "bold yellow"), f"  ({inv.reason})")
        else:
            rows_for_gpus = max(2, (self.app.size.height - 16) // 2)  # the lists below keep at least half the screen
            lines = self.lines(inv) if len(inv.gpus) <= rows_for_gpus else self.compact(inv)
        if inv.source != "nvml":
            lines.append(f"\n(described by {inv.source}, not measured)", style="dim")
        if self.host is not None:
            lines.append("\n")
            lines.append_text(self.host_line(self.host))
        self.update(lines)

    def host_line(self, host: HostLoad) -> Text:
        """The host under its GPUs: CPU across its cores and RAM, each with a bar."""
        width = 10 if self.app.size.width >= 100 else 6
        line = Text("host ", style="dim")
        line.append("CPU ")
        line.append_text(meter(host.cpu_pct, 100, width))
        line.append(f" {host.cpu_pct:3.0f}% of {host.cpus} cores  RAM ")
        line.append_text(meter(host.ram_used_gib, host.ram_total_gib, width))
        line.append(f" {host.ram_used_gib:.1f}/{host.ram_total_gib:.0f} GiB")
        return line

    def lines(self, inv: Inventory) -> Text:
        wide = self.app.size.width >= 100
        name_w, util_w, mem_w = (20, 8, 10) if wide else (14, 4, 6)
        lines = Text()
        for i, g in enumerate(inv.gpus):
            if i:
                lines.append("\n")
            lines.append(f"[{g.index}] {g.name.removeprefix('NVIDIA ').removeprefix('GeForce ')[:name_w]:{name_w}} ")
            util = g.utilization_pct
            lines.append("util " if wide else "")
            lines.append_text(meter(util or 0, 100, util_w))
            lines.append(f" {util:3.0f}%" if util is not None else "   ?%")
            lines.append("  mem " if wide else "  ")
            lines.append_text(meter(g.memory_used_gib, g.memory_total_gib, mem_w))
            lines.append(f" {g.memory_used_gib:5.1f}/{g.memory_total_gib:.0f}G")
            if g.temperature_c is not None:
                lines.append(f"  {g.temperature_c:3.0f}C", style="red" if g.temperature_c >= 85 else "")
            if g.power_w is not None:
                limit = f"/{g.power_limit_w:.0f}" if g.power_limit_w else ""
                lines.append(f"  {g.power_w:.0f}{limit}W")
            if g.processes:
                lines.append(f"  {len(g.processes)} proc")
            history = list(self.history.get(g.index, ()))
            if self.app.size.width >= 120 and len(history) > 1:  # the width used: utilisation over the last minute
                lines.append("  ")
                lines.append_text(spark(history, 0, 100))
        return lines

    def compact(self, inv: Inventory) -> Text:
        """Cells of 25 columns, as many to a line as fit: index, utilisation, memory bar and figures."""
        cell_w = 25
        per_line = max(1, (self.app.size.width - 4) // cell_w)
        out = Text()
        for i, g in enumerate(inv.gpus):
            if i:
                out.append("\n" if i % per_line == 0 else "  ")
            util = g.utilization_pct
            out.append(f"[{g.index}] " + (f"{util:3.0f}% " if util is not None else "  ?% "))
            out.append_text(meter(g.memory_used_gib, g.memory_total_gib, 6))
            out.append(f" {g.memory_used_gib:3.0f}/{g.memory_total_gib:.0f}G")
        return out


SPARKS = glyphs().sparks  # as this terminal draws them (a sparkline asks again: tests change TERM)


def spark(values: list[float], lo: float | None = None, hi: float | None = None) -> Text:
    """A one-line sparkline of recent values, between `lo` and `hi` (by default their own range)."""
    values = [v for v in values if v is not None]
    if not values:
        return Text("")
    lo = min(values) if lo is None else lo
    hi = max(values) if hi is None else hi
    span = (hi - lo) or 1.0
    sparks = glyphs().sparks
    return Text("".join(sparks[max(0, min(7, int((v - lo) / span * 7.99)))] for v in values), style="cyan")


def memory_lines(step: Step | None, totals: list[float]) -> Text:
    """Per GPU of the job: torch's allocated / reserved / peak where this process measured them
    (rank 0's device), NVML's used memory for the others; RSS on CPU."""
    out = Text()
    if not step:
        return Text("")
    peaks = [p or 0.0 for p in step.gpu_mem_peak_gib]
    used = list(step.nvml_mem_used_gib)
    if not peaks and not used:
        rss = f"{step.rss_gib:.2f} GiB" if step.rss_gib is not None else "- (not read)"
        out.append(f"RAM (process RSS): {rss}", style="bold")
        return out
    reserved = [r or 0.0 for r in step.gpu_mem_reserved_gib]
    for i in range(max(len(peaks), len(used))):
        peak = peaks[i] if i < len(peaks) else 0.0
        nvml = used[i] if i < len(used) and used[i] is not None else None
        total = totals[i] if i < len(totals) else max(peak, nvml or 0) * 1.25 or 1
        out.append(f"GPU{i} ")
        if peak > 0:
            res = reserved[i] if i < len(reserved) else peak
            out.append_text(meter(res, total, 10))
            allocated = step.gpu_mem_allocated_gib[i] if i < len(step.gpu_mem_allocated_gib) else None
            shown = f"{allocated:.1f}" if allocated is not None else "-"
            out.append(f" {res:.1f}/{total:.0f} GiB\n  alloc {shown} · peak {peak:.1f}\n")
        elif nvml is not None:
            out.append_text(meter(nvml, total, 10))
            out.append(f" {nvml:.1f}/{total:.0f} GiB (NVML)\n")
        else:  # neither torch nor NVML could read it: said, never drawn as an empty card
            out.append("- (not read)\n")
    return out


RUN_ID = re.compile(r"\d{8}-\d{6}-")


def shorten(text: str, width: int, where: str = "end") -> str:
    """`text` in at most `width` cells, with an ellipsis where it was cut (at the end, or in the middle for
    ids whose both ends matter)."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    if where == "id":  # a run id, YYYYMMDD-HHMMSS-name: its time tells runs apart, so the year goes first, then
        # the date, then the end of the name; another id is cut in the middle
        where = "middle"
        stamp = RUN_ID.search(text)  # after a mark, if any
        if stamp:
            head, rest = text[:stamp.start()], text[stamp.start():]
            for shorter in (head + rest[4:], head + rest[9:]):
                if len(shorter) <= width:
                    return shorter
            text, where = head + rest[9:], "end"
    if where == "middle":
        head = (width - 1) // 2
        return text[:head] + "…" + text[len(text) - (width - 1 - head):]
    return text[:width - 1] + "…"


def column_widths(labels: tuple[str, ...], rows: list[tuple[str, tuple[Any, ...]]], room: int | None,
                  flex: dict[int, str], padding: int = 1) -> list[int]:
    """Each column as wide as its widest cell; when that needs more than `room` cells, the `flex` columns
    (names, ids) give up width, the widest first, down to their label's width or 8."""
    widths = [max([len(label), *(len(str(cells[i])) for _, cells in rows)]) for i, label in enumerate(labels)]
    if room is None:
        return widths
    excess = sum(widths) + 2 * padding * len(widths) - room
    floors = {i: max(len(labels[i]), 8) for i in flex}
    while excess > 0:
        shrinkable = [i for i in flex if widths[i] > floors[i]]
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1
    return widths


def cursor_key(table: DataTable) -> str | None:
    """The key of the row under a table's cursor, if it has rows."""
    if not table.row_count:
        return None
    try:
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
    except CellDoesNotExist:
        return None


class FittedTable(DataTable):
    """A DataTable filled by `fill`, whose cut columns are fitted again whenever its width changes (filled
    before its first layout, or the terminal resized, it would keep the widths of a width it no longer has)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.filled: tuple[Any, ...] | None = None
        self.filled_width = 0

    def fill(self, labels: tuple[str, ...], rows: list[tuple[str, tuple[Any, ...]]], fit_height: bool = False,
             flex: dict[int, str] | None = None) -> None:
        self.filled = (labels, rows, fit_height, flex)
        self.filled_width = self.size.width
        fill_table(self, labels, rows, fit_height, flex)

    def on_resize(self) -> None:
        if self.filled is not None and self.filled[3] and self.size.width != self.filled_width:
            self.fill(*self.filled)


def fill_table(table: DataTable, labels: tuple[str, ...], rows: list[tuple[str, tuple[Any, ...]]],
               fit_height: bool = False, flex: dict[int, str] | None = None) -> None:
    """Replace a table's rows; every column is as wide as its widest cell, set explicitly (DataTable's
    own auto width waits for an idle moment that a busy app may not reach, and shows "comple").
    Where the table is laid out, the `flex` columns (index: "end" or "middle", where to cut) shrink
    so that every column shows within its width (a scrollbar's two cells spared)."""
    flex = flex or {}
    room = table.size.width - 2 if flex and table.size.width > 2 else None
    widths = column_widths(labels, rows, room, flex, table.cell_padding)
    under_cursor = cursor_key(table)
    current = [c.width for c in table.ordered_columns]
    if current != widths:
        table.clear(columns=True)
        for label, width in zip(labels, widths):
            table.add_column(label, width=width, key=label)
    else:
        table.clear()
    for key, cells in rows:  # cells quote run folders and profiles: their control characters are escaped
        shown = [shorten(c, widths[i], flex[i]) if i in flex and isinstance(c, str) else c
                 for i, c in enumerate(cells)]
        table.add_row(*(safe(c) if isinstance(c, str) else c for c in shown), key=key)
    if under_cursor is not None and under_cursor in table.rows:  # a refill keeps the row a key would act on
        table.move_cursor(row=table.get_row_index(under_cursor))
    if fit_height:
        # An auto height would follow the table's virtual size, which DataTable also computes only when
        # idle: a busy app showed an empty table. The rows and the header, set now (a max-height caps it).
        table.styles.height = len(rows) + (1 if table.show_header else 0)
