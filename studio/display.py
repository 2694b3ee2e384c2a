"""Plain-text renderings of numbers and run events for the CLI."""

from __future__ import annotations

from typing import Any


def count(n: float | None) -> str:
    if n is None:
        return "?"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}" if unit == "B" else f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def size_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def memory_text(step: dict[str, Any]) -> str:
    peaks = step.get("gpu_mem_peak_gib")
    if peaks:
        return "VRAM " + "/".join(f"{p:.1f}" for p in peaks) + " GiB peak"
    if step.get("rss_gib") is not None:
        return f"RSS {step['rss_gib']:.2f} GiB"
    return ""


def bar(fraction: float, width: int = 20) -> str:
    filled = int(round(max(0.0, min(1.0, fraction)) * width))
    return "#" * filled + "." * (width - filled)


def step_line(step: dict[str, Any]) -> str:
    total = step.get("max_steps") or 0
    frac = step["step"] / total if total else 0.0
    loss = step.get("loss")
    parts = [f"step {step['step']}/{total or '?'} [{bar(frac)}] {frac * 100:3.0f}%",
             f"loss {loss:.4f}" if isinstance(loss, (int, float)) else "loss ?",
             f"{step.get('tokens_per_s') or 0:,.0f} tok/s"]
    mem = memory_text(step)
    if mem:
        parts.append(mem)
    parts.append(f"ETA {duration(step.get('eta_s'))}")
    return " | ".join(parts)


def preflight_lines(p: dict[str, Any]) -> list[str]:
    lines = [f"data: {p.get('rows', '?')} rows ({p.get('format', '?')})"]
    if "tokens" in p:
        lines[0] += (f", {p['tokens']:,} tokens, mean {p.get('mean_tokens')} / p95 {p.get('p95_tokens')} / "
                     f"max {p.get('max_tokens')} per row; train {p.get('train_rows')}, eval {p.get('eval_rows')}")
        if p.get("truncated_rows"):
            lines.append(f"  {p['truncated_rows']} row(s) longer than max_length {p['max_length']} will be truncated "
                         f"(rows {', '.join(map(str, p.get('truncated_row_numbers', [])[:10]))}"
                         f"{'...' if p['truncated_rows'] > 10 else ''})")
        lines.append(f"  loss on: {p.get('loss_on')}")
    if p.get("bad_rows_count"):
        rows = ", ".join(str(b["row"]) for b in p.get("bad_rows", [])[:10])
        lines.append(f"  {p['bad_rows_count']} malformed row(s): {rows}{'...' if p['bad_rows_count'] > 10 else ''}")
    if p.get("note"):
        lines.append(f"  note: {p['note']}")
    return lines


def start_line(s: dict[str, Any]) -> str:
    total, trainable = s.get("total_params"), s.get("trainable_params")
    share = f" ({trainable / total * 100:.2f}%)" if total and trainable else ""
    resumed = f", resuming at step {s.get('step')}" if s.get("resumed_from") else ""
    return (f"training on {', '.join(s.get('devices') or ['?'])} ({s.get('dtype')}): {count(total)} params, "
            f"{count(trainable)} trainable{share}, {s.get('max_steps')} steps, optimizer {s.get('optimizer')}{resumed}")


def end_lines(end: dict[str, Any], run_id: str) -> list[str]:
    status = end.get("status")
    if status == "failed":
        return [f"run {run_id} failed ({end.get('error_kind')}): {end.get('message')}",
                f"  what to do: {end.get('advice')}"]
    lines = [f"run {run_id} {status} at step {end.get('step', '?')}"]
    if end.get("train_tokens_per_s"):
        lines[0] += f" ({end.get('train_tokens', 0):,} tokens in {duration(end.get('train_runtime_s'))}, " \
                    f"{end['train_tokens_per_s']:,.0f} tok/s)"
    if end.get("message"):
        lines.append(f"  {end['message']}")
    if end.get("advice"):
        lines.append(f"  next: {end['advice']}")
    elif status == "completed" and end.get("final"):
        lines.append(f"  result in {end['final']}; export with `studio export {run_id} --out DIR [--merge]`")
    return lines
