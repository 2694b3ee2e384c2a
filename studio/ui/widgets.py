"""Small display widgets shared by the screens."""

from __future__ import annotations

import math

from rich.text import Text
from textual.widgets import Static
from textual_plotext import PlotextPlot

from studio.hardware import Inventory
from studio.runs.events import Step


def meter(used: float, total: float, width: int = 20, style: str = "green") -> Text:
    """A bar of `width` cells: used out of total, coloured by how full it is."""
    frac = 0.0 if total <= 0 else max(0.0, min(1.0, used / total))
    filled = int(round(frac * width))
    colour = "red" if frac > 0.9 else ("yellow" if frac > 0.75 else style)
    bar = Text("█" * filled, style=colour)
    bar.append("░" * (width - filled), style="grey37")
    return bar


class GpuPanel(Static):
    """One line per GPU: name, VRAM bar, utilisation, temperature, power."""

    def show(self, inv: Inventory) -> None:
        if not inv.gpus:
            self.update(Text.assemble(("no GPU found: CPU mode", "bold yellow"), f"  ({inv.reason})"))
            return
        lines = Text()
        for i, g in enumerate(inv.gpus):
            if i:
                lines.append("\n")
            lines.append(f"[{g.index}] {g.name[:22]:22} ")
            lines.append_text(meter(g.memory_used_gib, g.memory_total_gib, 16))
            lines.append(f" {g.memory_used_gib:5.1f}/{g.memory_total_gib:.0f} GiB")
            if g.utilization_pct is not None:
                lines.append(f"  {g.utilization_pct:3.0f}%")
            if g.temperature_c is not None:
                lines.append(f" {g.temperature_c:3.0f}C")
            if g.power_w is not None:
                lines.append(f" {g.power_w:4.0f}W")
        if inv.source != "nvml":
            lines.append(f"\n(described by {inv.source}, not measured)", style="dim")
        self.update(lines)


class LossChart(PlotextPlot):
    """Train loss (and eval loss) against step, with axes and values."""

    def plot(self, train: list[tuple[int, float]], evals: list[tuple[int, float]]) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("loss")
        plt.xlabel("step")
        finite = [(s, v) for s, v in train if isinstance(v, (int, float)) and math.isfinite(v)]
        if finite:
            plt.plot([s for s, _ in finite], [v for _, v in finite], label="train", marker="braille")
        if evals:
            plt.plot([s for s, _ in evals], [v for _, v in evals], label="eval", marker="dot")
        self.refresh()


def memory_lines(step: Step | None, totals: list[float]) -> Text:
    """Per GPU of the job: torch's allocated / reserved / peak where this process measured them
    (rank 0's device), NVML's used memory for the others; RSS on CPU."""
    out = Text()
    if not step:
        return Text("memory: waiting for the first step", style="dim")
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
            out.append_text(meter(reserved[i] if i < len(reserved) else peak, total, 14))
            out.append(f" alloc {alloc[i] if i < len(alloc) else 0:.1f} res {reserved[i] if i < len(reserved) else 0:.1f}"
                       f" peak {peak:.1f}/{total:.0f} GiB\n")
        elif nvml is not None:
            out.append_text(meter(nvml, total, 14))
            out.append(f" used {nvml:.1f}/{total:.0f} GiB (NVML)\n")
    return out
