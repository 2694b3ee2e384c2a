"""Plain-text renderings of numbers and run events for the CLI."""

from __future__ import annotations

import math
from collections.abc import Sequence

from studio.profiles.decision import Decision
from studio.runs.events import End, Preflight, Start, Step
from studio.terminal import shell_arg
from studio.units import size_bytes  # noqa: F401 - the screens ask display for it
from studio.runs.status import RunStatus


def count(n: float | None) -> str:
    if n is None:
        return "?"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}" if unit == "B" else f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def number(value: float | None, spec: str) -> str:
    """`value` formatted with `spec`, or "-" when there is none."""
    return "-" if value is None else format(value, spec)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def memory_text(step: Step) -> str:
    peaks = [p for p in step.gpu_mem_peak_gib if p is not None]
    if peaks:
        return "VRAM " + "/".join(f"{p:.1f}" for p in peaks) + " GiB peak"
    if step.rss_gib is not None:
        return f"RSS {step.rss_gib:.2f} GiB"
    return ""


def bar(fraction: float, width: int = 20) -> str:
    """Progress as `width` cells, rounded down: the bar is full only when the work is done."""
    filled = math.floor(max(0.0, min(1.0, fraction)) * width)
    return "#" * filled + "." * (width - filled)


def step_line(step: Step) -> str:
    total = step.max_steps or 0
    frac = step.step / total if total else 0.0
    parts = [f"step {step.step}/{total or '?'} [{bar(frac)}] {math.floor(frac * 100):3d}%",
             f"loss {step.loss:.4f}" if step.loss is not None else "loss ?", *step.preference_figures(),
             f"{step.tokens_per_s or 0:,.0f} tok/s"]
    mem = memory_text(step)
    if mem:
        parts.append(mem)
    parts.append(f"ETA {duration(step.eta_s)}")
    return " | ".join(parts)


def preflight_lines(p: Preflight) -> list[str]:
    lines = [f"data: {p.rows if p.rows is not None else '?'} rows ({p.format or '?'})"]
    if p.tokens is not None:
        lines[0] += (f", {p.tokens:,} tokens, mean {p.mean_tokens} / p95 {p.p95_tokens} / "
                     f"max {p.max_tokens} per row; train {p.train_rows}, eval {p.eval_rows}")
        if p.truncated_rows:
            lines.append(f"  {p.truncated_rows} row(s) longer than max_length {p.max_length} will be truncated "
                         f"(rows {', '.join(map(str, p.truncated_row_numbers[:10]))}"
                         f"{'...' if p.truncated_rows > 10 else ''})")
        lines.append(f"  loss on: {p.loss_on}")
    if p.bad_rows_count:
        rows = ", ".join(str(b.get("row")) for b in p.bad_rows[:10])
        lines.append(f"  {p.bad_rows_count} malformed row(s): {rows}{'...' if p.bad_rows_count > 10 else ''}")
    if p.note:
        lines.append(f"  note: {p.note}")
    return lines


def start_line(s: Start) -> str:
    total, trainable = s.total_params, s.trainable_params
    share = f" ({trainable / total * 100:.2f}%)" if total and trainable else ""
    resumed = f", resuming at step {s.step}" if s.resumed_from else ""
    return (f"training on {', '.join(s.devices or ('?',))} ({s.dtype}): {count(total)} params, "
            f"{count(trainable)} trainable{share}, {s.max_steps} steps, optimizer {s.optimizer}{resumed}")


def decision_lines(decisions: Sequence[Decision]) -> list[str]:
    """What was decided for this run, and why (one line each)."""
    def shown(value: object) -> str:
        return {True: "on", False: "off"}.get(value, str(value)) if isinstance(value, bool) else str(value)

    return [f"  {d.key} = {shown(d.value)}: {d.reason}" for d in decisions]


RESUMABLE = ("oom", "data", "download", "disk", "crash", "lost_machine")


def end_lines(end: End, run_id: str) -> list[str]:
    """The end of a run for the terminal, with the commands that act on it."""
    if end.status == RunStatus.FAILED:
        lines = [f"run {run_id} failed ({end.error_kind}): {end.message}", f"  what to do: {end.advice}"]
        if end.error_kind in RESUMABLE:
            lines.append(f"  then: studio resume {shell_arg(run_id)}   (its log: studio logs {shell_arg(run_id)})")
        return lines
    lines = [f"run {run_id} {end.status} at step {end.step if end.step is not None else '?'}"]
    if end.train_tokens_per_s:
        lines[0] += f" ({end.train_tokens or 0:,} tokens in {duration(end.train_runtime_s)}, " \
                    f"{end.train_tokens_per_s:,.0f} tok/s)"
    if end.message:
        lines.append(f"  {end.message}")
    if end.advice:
        lines.append(f"  next: {end.advice}" + (f" (studio resume {shell_arg(run_id)})" if end.status == RunStatus.STOPPED
                                                else ""))
    elif end.status == RunStatus.COMPLETED and end.final:
        lines.append(f"  result in {end.final}; export with `studio export {shell_arg(run_id)} --out DIR [--merge]`")
    return lines


def step_readout(step: Step) -> str:
    """A logged step's figures for the chart's cursor: its step, loss, learning rate and tokens/s."""
    parts = [f"step {step.step}"]
    if step.loss is not None:
        parts.append(f"loss {step.loss:.4f}")
    if step.learning_rate is not None:
        parts.append(f"lr {step.learning_rate:.2e}")
    if step.tokens_per_s:
        parts.append(f"{step.tokens_per_s:,.0f} tok/s")
    return " · ".join(parts)
