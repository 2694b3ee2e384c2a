"""Charts drawn with plotext (imported only by the screens that plot: it costs start-up time)."""

from __future__ import annotations

import math
from collections.abc import Callable

from textual_plotext import PlotextPlot

from studio.ui.glyphs import glyphs

Points = list[tuple[int, float]] | list[tuple[float, float]]
EVAL_MARK = glyphs().eval_mark  # as this terminal draws it (the plot asks again: tests change TERM)


def smoothed(points: Points, weight: float = 0.9) -> Points:
    """An exponential moving average, bias-corrected so the start is not pulled to zero."""
    out, avg = [], 0.0
    for n, (x, y) in enumerate(points, start=1):
        avg = weight * avg + (1 - weight) * y
        out.append((x, avg / (1 - weight ** n)))
    return out


def finite(points: Points) -> Points:
    return [(x, y) for x, y in points if isinstance(y, (int, float)) and math.isfinite(y)]


def positive(points: Points) -> Points:
    return [(x, y) for x, y in points if y > 0]


# Round steps for a time axis, in seconds: seconds, minutes, hours, days.
TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def even_ticks(lo: float, hi: float, most: int = 5, steps: tuple[float, ...] = ()) -> list[float]:
    """At most `most` ticks between lo and hi, evenly spaced by a round step (1, 2 or 5 times a power of ten,
    or the first of `steps` that is wide enough; whole numbers for whole ranges): 2 4 6 for steps 1 to 7, never
    1 2 4 6 7."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, most - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next((m for m in steps if m >= raw), None) or next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    if isinstance(lo, int) and isinstance(hi, int) or float(lo).is_integer() and float(hi).is_integer():
        step = max(1, round(step))
    first = math.ceil(lo / step) * step
    ticks, n = [], 0
    while first + n * step <= hi + 1e-9 * step:
        ticks.append(round(first + n * step, 12))
        n += 1
    return ticks or [lo]


class LossChart(PlotextPlot):
    """Train loss (raw and smoothed) and eval loss against step, on integer step ticks."""

    def plot(self, train: Points, evals: Points, series: dict[str, Points] | None = None, title: str = "loss",
             log_y: bool = False, smooth: bool = True, raw: str = "train", xlabel: str = "step",
             tick: Callable[[float], str] = lambda x: str(round(x)), weight: float = 0.9,
             cursor: float | None = None, readout: str = "", steps: tuple[float, ...] = ()) -> None:
        """`log_y` draws the values on a log scale (the points at or below zero, which it cannot show, are left
        out); the title then says so. `weight` is the smoothing's (0: none); `cursor` draws a vertical line at
        that x, and `readout` (what is under it) ends the title."""
        plt = self.plt
        marker, eval_mark = glyphs().chart_marker, glyphs().eval_mark  # braille, or dots where it is not drawn
        plt.clear_data()
        plt.clear_figure()
        plt.xlabel(xlabel)
        train, evals = finite(train), finite(evals)
        if log_y:
            train, evals = positive(train), positive(evals)
            series = {label: positive(finite(points)) for label, points in (series or {}).items()} or None
            plt.yscale("log")
            title = f"{title} (log scale)"
        if series:  # several runs, for comparing them
            plt.title(title)
            for label, points in series.items():
                points = finite(points)
                if points:
                    plt.plot([x for x, _ in points], [y for _, y in points], label=label, marker=marker)
        else:
            # The key is in the title: a legend box sits on the start of the curve, where loss is highest.
            key = [f"{raw} (grey)"] if smooth else []
            if train:
                plt.plot([x for x, _ in train], [y for _, y in train], marker=marker,
                         color="gray" if smooth else None)
                if smooth and weight > 0 and len(train) >= 8:
                    line = smoothed(train, weight)
                    plt.plot([x for x, _ in line], [y for _, y in line], marker=marker)
                    key.append(f"smoothed {weight:g}")
            if evals:  # points, not a line across the train curve; one eval shows too
                plt.scatter([x for x, _ in evals], [y for _, y in evals], marker=eval_mark, color="orange")
                key.append(f"eval {eval_mark}")
            # the cursor's readout in place of the key: a title longer than the chart is not drawn at all
            plt.title(f"{title} │ {readout}" if readout else f"{title}:  " + "  ".join(key) if key else title)
        if cursor is not None:
            plt.vline(cursor, color="white")
        xs = [x for x, _ in train] or [x for p in (series or {}).values() for x, _ in p]
        if xs:
            ticks = even_ticks(min(xs), max(xs), steps=steps)
            plt.xticks(ticks, [tick(t) for t in ticks])
        self.refresh()
