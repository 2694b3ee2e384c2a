"""Training data: read local files, recognise the row format, normalise rows.

Pure Python (pyarrow only for parquet), so the CLI can check a dataset without
loading the training stack. Every row keeps its number in the source file
(the line for jsonl, the record for json/csv/parquet) so errors can point at it.

Normalised rows have one of three shapes, the ones TRL's SFTTrainer takes:
  {"messages": [{"role", "content"}, ...]}      chat (messages, ShareGPT)
  {"prompt": str, "completion": str}            Alpaca, prompt/completion
  {"text": str}                                 plain text
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOCAL_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
FORMAT_COLUMNS = {
    "messages": "messages (a list of {role, content})",
    "sharegpt": "conversations (a list of {from, value})",
    "alpaca": "instruction, output and optional input",
    "prompt_completion": "prompt and completion",
    "text": "text",
}
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bing": "assistant", "bard": "assistant",
                  "system": "system", "tool": "tool", "function_response": "tool", "observation": "tool"}
CHAT_ROLES = {"system", "user", "assistant", "tool"}
ALPACA_TEMPLATE = "### Instruction:\n{instruction}\n\n### Response:\n"
ALPACA_TEMPLATE_INPUT = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"


class DataError(Exception):
    """A dataset studio cannot train on; the message says what to fix."""

    def __init__(self, message: str, rows: list[int] | None = None):
        self.rows = rows or []
        super().__init__(message)


@dataclass(frozen=True)
class BadRow:
    row: int
    reason: str


@dataclass
class Dataset:
    """Normalised rows of one split, with what was wrong with the others."""

    format: str
    rows: list[dict[str, Any]]
    row_numbers: list[int]
    bad_rows: list[BadRow] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)


def is_local(path: str) -> bool:
    p = Path(path).expanduser()
    return p.exists() or p.suffix.lower() in LOCAL_SUFFIXES or path.startswith(("/", "./", "../", "~"))


def read_local(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield (row number, raw row) from a local file; undecodable jsonl lines yield an Exception."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"data.path: {p} does not exist; check the path (relative paths start at the profile's folder)")
    if p.is_dir():
        raise DataError(f"data.path: {p} is a folder; point it at a .jsonl, .json, .csv or .parquet file")
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        with p.open(encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as e:
                    yield number, ValueError(f"not valid JSON ({e.msg} at column {e.colno})")
    elif suffix == ".json":
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"data.path: {p} is not valid JSON: {e}; fix the file or save it as jsonl") from None
        if isinstance(doc, dict):
            lists = [v for v in doc.values() if isinstance(v, list)]
            if len(lists) != 1:
                raise DataError(f"data.path: {p} must hold a list of rows (or an object with one list of rows)")
            doc = lists[0]
        if not isinstance(doc, list):
            raise DataError(f"data.path: {p} must hold a list of rows")
        yield from enumerate(doc, start=1)
    elif suffix == ".csv":
        with p.open(encoding="utf-8", newline="") as f:
            yield from enumerate(csv.DictReader(f), start=1)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq  # only parquet needs it

        yield from enumerate(pq.read_table(p).to_pylist(), start=1)
    else:
        raise DataError(f"data.path: {p} has an unknown extension {suffix!r}; use .jsonl, .json, .csv or .parquet")


def detect_format(columns: Iterable[str]) -> str | None:
    cols = set(columns)
    if "messages" in cols:
        return "messages"
    if "conversations" in cols:
        return "sharegpt"
    if {"instruction", "output"} <= cols:
        return "alpaca"
    if {"prompt", "completion"} <= cols:
        return "prompt_completion"
    if "text" in cols:
        return "text"
    return None


def unrecognised_columns_message(columns: list[str]) -> str:
    accepted = "; ".join(f"{name}: {cols}" for name, cols in FORMAT_COLUMNS.items())
    found = ", ".join(columns) if columns else "none"
    return (f"data.format: cannot tell the format from the columns found ({found}). "
            f"Accepted formats and their columns: {accepted}. Rename the columns or set data.format")


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _chat(messages: Any, role_key: str, content_key: str, roles: dict[str, str]) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise ValueError("must be a non-empty list of turns")
    out = []
    for i, turn in enumerate(messages, start=1):
        if not isinstance(turn, dict):
            raise ValueError(f"turn {i} is not an object")
        role = turn.get(role_key)
        if role not in roles:
            raise ValueError(f"turn {i} has {role_key}={role!r}; expected one of {', '.join(sorted(set(roles)))}")
        content = turn.get(content_key)
        if not isinstance(content, str):
            raise ValueError(f"turn {i} has no text in {content_key!r}")
        out.append({"role": roles[role], "content": content})
    if not any(t["role"] == "assistant" and t["content"].strip() for t in out):
        raise ValueError("has no non-empty assistant turn to learn from")
    return out


def normalise_row(fmt: str, raw: Any) -> dict[str, Any]:
    """Turn a raw row of format `fmt` into TRL's shape; raises ValueError saying what is wrong."""
    if isinstance(raw, Exception):
        raise ValueError(str(raw))
    if not isinstance(raw, dict):
        raise ValueError(f"is a {type(raw).__name__}, not an object")
    if fmt == "messages":
        return {"messages": _chat(raw.get("messages"), "role", "content", {r: r for r in CHAT_ROLES})}
    if fmt == "sharegpt":
        return {"messages": _chat(raw.get("conversations"), "from", "value", SHAREGPT_ROLES)}
    if fmt == "alpaca":
        instruction, extra, output = raw.get("instruction"), raw.get("input") or "", raw.get("output")
        if not _nonempty_str(instruction):
            raise ValueError("has an empty or missing 'instruction'")
        if not _nonempty_str(output):
            raise ValueError("has an empty or missing 'output'")
        if not isinstance(extra, str):
            raise ValueError("has an 'input' that is not text")
        template = ALPACA_TEMPLATE_INPUT if extra.strip() else ALPACA_TEMPLATE
        return {"prompt": template.format(instruction=instruction, input=extra), "completion": output}
    if fmt == "prompt_completion":
        prompt, completion = raw.get("prompt"), raw.get("completion")
        if not isinstance(prompt, str):
            raise ValueError("has no text in 'prompt'")
        if not _nonempty_str(completion):
            raise ValueError("has an empty or missing 'completion'")
        return {"prompt": prompt, "completion": completion}
    if fmt == "text":
        if not _nonempty_str(raw.get("text")):
            raise ValueError("has an empty or missing 'text'")
        return {"text": raw["text"]}
    raise ValueError(f"unknown format {fmt!r}")


def build_dataset(numbered_rows: Iterable[tuple[int, Any]], fmt: str = "auto") -> Dataset:
    """Normalise rows, detecting the format from the columns when `fmt` is auto."""
    rows = list(numbered_rows)
    columns: list[str] = []
    for _, raw in rows:
        if isinstance(raw, dict):
            columns.extend(k for k in raw if k not in columns)
    if fmt == "auto":
        detected = detect_format(columns)
        if detected is None:
            raise DataError(unrecognised_columns_message(columns))
        fmt = detected
    elif rows and not any(isinstance(raw, dict) and _has_columns(fmt, raw) for _, raw in rows[:50]):
        raise DataError(f"data.format: set to {fmt!r}, which needs {FORMAT_COLUMNS[fmt]}, "
                        f"but the rows have columns {', '.join(columns) or 'none'}; "
                        "fix data.format or set it to \"auto\"")
    if not rows:
        raise DataError("data.path: the dataset has no rows")
    out = Dataset(format=fmt, rows=[], row_numbers=[], columns=columns)
    for number, raw in rows:
        try:
            out.rows.append(normalise_row(fmt, raw))
            out.row_numbers.append(number)
        except ValueError as e:
            out.bad_rows.append(BadRow(number, str(e)))
    return out


def _has_columns(fmt: str, raw: dict[str, Any]) -> bool:
    needed = {"messages": {"messages"}, "sharegpt": {"conversations"}, "alpaca": {"instruction", "output"},
              "prompt_completion": {"prompt", "completion"}, "text": {"text"}}[fmt]
    return needed <= set(raw)


def describe_bad_rows(bad: list[BadRow], limit: int = 10) -> str:
    shown = "; ".join(f"row {b.row} {b.reason}" for b in bad[:limit])
    more = f"; and {len(bad) - limit} more" if len(bad) > limit else ""
    return f"{shown}{more}"


def check_bad_rows(ds: Dataset, on_bad_rows: str) -> None:
    """Raise DataError naming the malformed rows, unless the profile says to skip them."""
    if ds.bad_rows and on_bad_rows == "error":
        raise DataError(
            f"{len(ds.bad_rows)} malformed row(s) in the dataset: {describe_bad_rows(ds.bad_rows)}. "
            "Fix or remove them, or set data.on_bad_rows = \"skip\" to train without them",
            rows=[b.row for b in ds.bad_rows],
        )
    if not ds.rows:
        raise DataError("data.path: no usable rows left after removing malformed ones")


def load_local(path: str, fmt: str = "auto") -> Dataset:
    return build_dataset(read_local(path), fmt)
