"""The data preview from outside the training stack: runs `python -m studio.trainer.preview` (the
tokenizer needs transformers) and returns what it found, or why it could not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from studio.terminal import KEEP_IN_STREAMS, safe

PREVIEW_TIMEOUT_S = 300


class PreviewError(Exception):
    """The preview could not be made; the message says why and what to do."""


def data_preview(profile_path: Path, rows: int = 3) -> dict[str, Any]:
    command = [sys.executable, "-m", "studio.trainer.preview", str(profile_path), "--rows", str(rows)]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=PREVIEW_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise PreviewError(f"the preview took over {PREVIEW_TIMEOUT_S} s (a tokenizer download?); try again") from None
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    try:
        result = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise PreviewError(f"the preview failed: {tail[0]}") from None
    if "error" in result:
        raise PreviewError(result["error"])
    return result


def row_heading(row: dict[str, Any]) -> str:
    """"── row 3: 40 tokens, 12 trained", with the side of a preference pair ("row 3 · chosen")."""
    side = f" · {row['side']}" if row.get("side") else ""
    return f"\n── row {row['row']}{side}: {row['tokens']} tokens, {row['trained_tokens']} trained\n"


PLAIN_MARKS = {"trained": ("[+", "+]"), "context": ("", ""), "cut": ("[-", "-]")}


def plain_preview(result: dict[str, Any]) -> str:
    """The preview for a file or a pipe: trained text between [+ +], text past max_length between [- -]."""
    out = [f"loss on {result['loss_on']} · {result['rows_in_file']:,} rows ({result['format']}) · max_length "
           f"{result['max_length']}\n"]
    if result.get("note"):
        out.append(f"{result['note']}\n")
    out.append("legend: [+trained+] context (not trained) [-cut (past max_length)-]\n")
    for row in result["rows"]:
        out.append(row_heading(row))
        for text, kind in row["segments"]:
            start, end = PLAIN_MARKS[kind]
            out.append(f"{start}{safe(text, keep=KEEP_IN_STREAMS)}{end}")
        out.append("\n")
    return "".join(out)


def preview_lines(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(text, style) pieces for a terminal: trained text bold, context dim, cut struck through; the rows' own
    text with its control characters escaped."""
    style = {"trained": "bold green", "context": "dim", "cut": "strike red"}
    out: list[tuple[str, str]] = [(f"loss on {result['loss_on']} · {result['rows_in_file']:,} rows ({result['format']})"
                                   f" · max_length {result['max_length']}\n", "bold")]
    if result.get("note"):
        out.append((f"{result['note']}\n", "yellow"))
    out.append(("legend: ", ""))
    out += [("trained", style["trained"]), (" · ", ""), ("context (not trained)", style["context"]), (" · ", ""),
            ("cut (past max_length)", style["cut"]), ("\n", "")]
    for row in result["rows"]:
        out.append((row_heading(row), "bold"))
        out += [(safe(text, keep=KEEP_IN_STREAMS), style[kind]) for text, kind in row["segments"]]
        out.append(("\n", ""))
    return out
