"""Small display widgets shared by the screens."""

from __future__ import annotations


from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.widgets import DataTable, Static

from studio.terminal import safe
from studio.hardware import Inventory

if TYPE_CHECKING:
    from studio.runs.events import Step


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


class GpuPanel(Static):
    """One line per GPU, like nvitop's summary: utilisation, memory, temperature, power against its limit,
    and how many processes use it. Bars and names shrink so a line never wraps at 80 columns."""

    inventory: Inventory | None = None

    def show(self, inv: Inventory) -> None:
        self.inventory = inv
        if not inv.gpus:
            self.update(Text.assemble(("no GPU found: CPU mode", "bold yellow"), f"  ({inv.reason})"))
            return
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
        if inv.source != "nvml":
            lines.append(f"\n(described by {inv.source}, not measured)", style="dim")
        self.update(lines)


SPARKS = "▁▂▃▄▅▆▇█"


def spark(values: list[float]) -> Text:
    """A one-line sparkline of recent values."""
    values = [v for v in values if v is not None]
    if not values:
        return Text("")
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    return Text("".join(SPARKS[min(7, int((v - lo) / span * 7.99))] for v in values), style="cyan")


def memory_lines(step: Step | None, totals: list[float]) -> Text:
    """Per GPU of the job: torch's allocated / reserved / peak where this process measured them
    (rank 0's device), NVML's used memory for the others; RSS on CPU."""
    out = Text()
    if not step:
        return Text("")
    peaks = [p or 0.0 for p in step.gpu_mem_peak_gib]
    used = list(step.nvml_mem_used_gib)
    if not peaks and not used:
        out.append(f"RAM (process RSS): {step.rss_gib or 0:.2f} GiB", style="bold")
        return out
    alloc = [a or 0.0 for a in step.gpu_mem_allocated_gib]
    reserved = [r or 0.0 for r in step.gpu_mem_reserved_gib]
    for i in range(max(len(peaks), len(used))):
        peak = peaks[i] if i < len(peaks) else 0.0
        nvml = used[i] if i < len(used) and used[i] is not None else None
        total = totals[i] if i < len(totals) else max(peak, nvml or 0) * 1.25 or 1
        out.append(f"GPU{i} ")
        if peak > 0:
            res = reserved[i] if i < len(reserved) else peak
            out.append_text(meter(res, total, 10))
            out.append(f" {res:.1f}/{total:.0f} GiB\n  alloc {alloc[i] if i < len(alloc) else 0:.1f} · peak {peak:.1f}\n")
        elif nvml is not None:
            out.append_text(meter(nvml, total, 10))
            out.append(f" {nvml:.1f}/{total:.0f} GiB (NVML)\n")
    return out


def fill_table(table: DataTable, labels: tuple[str, ...], rows: list[tuple[str, tuple[Any, ...]]],
               fit_height: bool = False) -> None:
    """Replace a table's rows; every column is as wide as its widest cell, set explicitly (DataTable's
    own auto width waits for an idle moment that a busy app may not reach, and shows "comple")."""
    widths = [max([len(label), *(len(str(cells[i])) for _, cells in rows)]) for i, label in enumerate(labels)]
    current = [c.width for c in table.ordered_columns]
    if current != widths:
        table.clear(columns=True)
        for label, width in zip(labels, widths):
            table.add_column(label, width=width, key=label)
    else:
        table.clear()
    for key, cells in rows:  # cells quote run folders and profiles: their control characters are escaped
        table.add_row(*(safe(c) if isinstance(c, str) else c for c in cells), key=key)
    if fit_height:
        # An auto height would follow the table's virtual size, which DataTable also computes only when
        # idle: a busy app showed an empty table. The rows and the header, set now (a max-height caps it).
        table.styles.height = len(rows) + (1 if table.show_header else 0)
