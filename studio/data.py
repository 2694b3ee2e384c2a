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

CSV_FIELD_LIMIT = 64 * 2**20  # a long conversation in one cell is fine; Python's default is 128 KiB
FORMAT_COLUMNS = {
    "messages": "messages (a list of {role, content})",
    "sharegpt": "conversations (a list of {from, value})",
    "alpaca": "instruction, output and optional input",
    "prompt_completion": "prompt and completion",
    "text": "text",
    "preference": "chosen and rejected (strings or conversations), and prompt unless they share it",
    "unpaired": "prompt, completion and label (true for a good answer, false for a bad one)",
    "prompts": "prompt (text or a conversation), and the columns your rewards read (e.g. answer)",
}
PREFERENCE_FORMATS = ("preference", "unpaired")
FORMATS_HINT = ("each row is an object such as {\"messages\": [...]}, {\"prompt\": ..., \"completion\": ...} "
                "or {\"text\": ...}")
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
    source: str = "the dataset"
    formats: dict[str, int] = field(default_factory=dict)  # rows per format their own columns say


def data_file_problem(path: str | Path) -> str | None:
    """Why a local data file cannot be read, found without reading it (it exists, is a file, has a known kind)."""
    p = Path(path).expanduser()
    try:
        p.stat()
        is_dir = p.is_dir()
    except FileNotFoundError:
        return f"data.path: {p} does not exist; check the path (relative paths start at the profile's folder)"
    except OSError as e:
        return f"data.path: cannot read {p}: {e.strerror or e}; check the path and its links"
    if is_dir:
        return f"data.path: {p} is a folder; point it at a .jsonl, .json, .csv or .parquet file"
    suffix = p.suffix.lower()
    if suffix not in (".jsonl", ".json", ".csv", ".parquet"):
        return f"data.path: {p} has an unknown extension {suffix!r}; use .jsonl, .json, .csv or .parquet"
    return None


def read_local(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield (row number, raw row) from a local file; a row that cannot be decoded yields an Exception.

    Whatever the file holds, the caller gets rows or a DataError that names the file and says what to do.
    """
    p = Path(path).expanduser()
    problem = data_file_problem(p)
    if problem:
        raise DataError(problem)
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        yield from _read_parquet(p)
        return
    try:
        with p.open("rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise DataError(f"data.path: cannot read {p}: {e.strerror or e}") from None
    _check_text(p, head)
    if suffix == ".jsonl":
        yield from _read_jsonl(p, head)
    elif suffix == ".json":
        yield from _read_json(p)
    else:
        yield from _read_csv(p)


def _check_text(p: Path, head: bytes) -> None:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"data.path: {p} is UTF-16 text; save it as UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8`)")
    if b"\x00" in head:
        raise DataError(f"data.path: {p} looks like a binary file (it holds NUL bytes), not {p.suffix[1:]} text; "
                        "point data.path at the dataset itself")
    if not head.lstrip(b"\xef\xbb\xbf \t\r\n"):
        raise DataError(f"data.path: {p} is empty; it needs rows ({FORMATS_HINT})")


def _decode_error(p: Path, e: UnicodeDecodeError, where: str = "") -> DataError:
    return DataError(f"data.path: {p}{where} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                     "save the file as UTF-8")


def _read_jsonl(p: Path, head: bytes) -> Iterator[tuple[int, Any]]:
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
        raise DataError(f"data.path: {p} holds a JSON array, not JSON lines; rename it to .json, "
                        "or write one object per line")
    with p.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if number == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            if not raw.strip():
                continue
            try:
                yield number, json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                yield number, ValueError(f"is not UTF-8 text (byte 0x{e.object[e.start]:02x} at column {e.start + 1})")
            except json.JSONDecodeError as e:
                yield number, ValueError(f"not valid JSON ({e.msg} at column {e.colno})")
            except RecursionError:
                yield number, ValueError("is JSON nested too deeply to be a row")


def _read_json(p: Path) -> Iterator[tuple[int, Any]]:
    try:
        doc = json.loads(p.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as e:
        raise _decode_error(p, e) from None
    except json.JSONDecodeError as e:
        raise DataError(f"data.path: {p} is not valid JSON: {e}; fix the file or save it as jsonl") from None
    except RecursionError:
        raise DataError(f"data.path: {p} is JSON nested too deeply to be a dataset") from None
    single = detect_format(doc) if isinstance(doc, dict) else None
    if single is not None:
        raise DataError(f"data.path: {p} holds a single row ({single} format), not a list of rows: put "
                        "the rows in a JSON list ([{...}, {...}]) or write one row per line in a .jsonl file")
    if isinstance(doc, dict):
        lists = [v for v in doc.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(f"data.path: {p} must hold a list of rows (or an object with one list of rows)")
        doc = lists[0]
    if not isinstance(doc, list):
        raise DataError(f"data.path: {p} must hold a list of rows, not a {type(doc).__name__}")
    yield from enumerate(doc, start=1)


def _read_csv(p: Path) -> Iterator[tuple[int, Any]]:
    csv.field_size_limit(CSV_FIELD_LIMIT)
    with p.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        number = 0
        try:
            for number, row in enumerate(reader, start=1):
                extra = row.pop(None, None)  # type: ignore[call-overload]
                if extra:
                    yield number, ValueError(f"has {len(extra)} more field(s) than the header line "
                                             f"(line {reader.line_num}); quote fields that hold commas")
                else:
                    yield number, row
        except UnicodeDecodeError as e:
            raise _decode_error(p, e, f" (after row {number})") from None
        except csv.Error as e:
            raise DataError(f"data.path: {p} line {reader.line_num}: {e}; fix the CSV quoting there") from None


def _read_parquet(p: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq  # only parquet needs it

    try:
        rows = pq.read_table(p).to_pylist()
    except Exception as e:  # noqa: BLE001 - pyarrow raises many kinds for a damaged file
        raise DataError(f"data.path: {p} is not a readable parquet file ({type(e).__name__}: {e}); "
                        "write it again, or export the data as jsonl") from None
    yield from enumerate(rows, start=1)


def detect_format(columns: Iterable[str]) -> str | None:
    cols = set(columns)
    if {"chosen", "rejected"} <= cols:
        return "preference"
    if {"prompt", "completion", "label"} <= cols:
        return "unpaired"
    if "messages" in cols:
        return "messages"
    if "prompt" in cols and not cols & {"completion", "text", "chosen"}:
        return "prompts"
    if "conversations" in cols:
        return "sharegpt"
    if {"instruction", "output"} <= cols:
        return "alpaca"
    if {"prompt", "completion"} <= cols:
        return "prompt_completion"
    if "text" in cols:
        return "text"
    return None


def unrecognised_columns_message(columns: list[str], source: str = "the dataset") -> str:
    accepted = "; ".join(f"{name}: {cols}" for name, cols in FORMAT_COLUMNS.items())
    found = ", ".join(columns) if columns else "none"
    return (f"data.format: cannot tell the format of {source} from the columns found ({found}). "
            f"Accepted formats and their columns: {accepted}. Rename the columns or set data.format")


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _text(raw: dict[str, Any], key: str, may_be_empty: bool = False) -> str:
    """The row's `key` as text; raises ValueError saying whether it is missing, empty or not text at all."""
    value = raw.get(key)
    if key in raw and value is not None and not isinstance(value, str):
        raise ValueError(f"has a '{key}' that is a {type(value).__name__} ({str(value)[:40]}), not text")
    if not may_be_empty and not _nonempty_str(value):
        raise ValueError(f"has an empty or missing '{key}'")
    if not isinstance(value, str):
        raise ValueError(f"has no text in '{key}'")
    return value


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
        instruction, output = _text(raw, "instruction"), _text(raw, "output")
        extra = _text(raw, "input", may_be_empty=True) if raw.get("input") is not None else ""
        template = ALPACA_TEMPLATE_INPUT if extra.strip() else ALPACA_TEMPLATE
        return {"prompt": template.format(instruction=instruction, input=extra), "completion": output}
    if fmt == "prompt_completion":
        return {"prompt": _text(raw, "prompt", may_be_empty=True), "completion": _text(raw, "completion")}
    if fmt == "text":
        return {"text": _text(raw, "text")}
    if fmt == "preference":
        return preference_row(raw)
    if fmt == "prompts":
        extra = {k: v for k, v in raw.items() if k != "prompt" and isinstance(v, (str, int, float, bool))}
        return {"prompt": _side(raw, "prompt"), **extra}
    if fmt == "unpaired":
        return {"prompt": _side(raw, "prompt", may_be_empty=True), "completion": _side(raw, "completion"),
                "label": _label(raw.get("label"))}
    raise ValueError(f"unknown format {fmt!r}")


def _side(raw: dict[str, Any], key: str, may_be_empty: bool = False) -> str | list[dict[str, str]]:
    """One side of a preference row: text, or a conversation (turns of role and content)."""
    value = raw.get(key)
    if isinstance(value, list):
        turns = []
        for i, turn in enumerate(value, start=1):
            if not isinstance(turn, dict) or turn.get("role") not in CHAT_ROLES or not isinstance(turn.get("content"), str):
                raise ValueError(f"has a '{key}' whose turn {i} is not {{role, content}} with a role of "
                                 f"{', '.join(sorted(CHAT_ROLES))}")
            turns.append({"role": turn["role"], "content": turn["content"]})
        if not turns and not may_be_empty:
            raise ValueError(f"has an empty '{key}'")
        return turns
    return _text(raw, key, may_be_empty)


def _label(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1) and not isinstance(value, float):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"has a 'label' of {str(value)[:40]!r}; it must be true (a good answer) or false (a bad one)")


def preference_row(raw: dict[str, Any]) -> dict[str, Any]:
    """prompt, chosen and rejected as TRL takes them. Without a prompt the two sides must share one (an implicit
    prompt, as Anthropic HH and UltraFeedback give it): the turns before the last answer, or for text the
    common beginning up to its last whitespace."""
    chosen, rejected = _side(raw, "chosen"), _side(raw, "rejected")
    if type(chosen) is not type(rejected):
        raise ValueError("has a 'chosen' and a 'rejected' of different kinds (one text, one conversation)")
    if chosen == rejected:
        raise ValueError("has the same 'chosen' and 'rejected': nothing to prefer")
    prompt = _side(raw, "prompt", may_be_empty=True) if raw.get("prompt") is not None else None
    if prompt is not None and isinstance(prompt, list) == isinstance(chosen, list):
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    if prompt is not None and not isinstance(chosen, list):
        raise ValueError("has a 'prompt' conversation but 'chosen' and 'rejected' texts; give all three as one kind")
    # UltraFeedback's shape: the prompt as text beside whole conversations, which hold it as their first turns
    if isinstance(chosen, list):
        shared = 0
        while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
            shared += 1
        if shared == 0 or chosen[shared - 1]["role"] == "assistant":
            raise ValueError("has no 'prompt', and its 'chosen' and 'rejected' do not begin with the same turns; "
                             "give the prompt in a 'prompt' column")
        return {"prompt": chosen[:shared], "chosen": chosen[shared:], "rejected": rejected[shared:]}
    common = 0
    while common < min(len(chosen), len(rejected)) and chosen[common] == rejected[common]:
        common += 1
    cut = max(chosen.rfind(" ", 0, common + 1), chosen.rfind("\n", 0, common + 1)) + 1
    if cut <= 0 or cut >= len(chosen) or cut >= len(rejected):
        raise ValueError("has no 'prompt', and its 'chosen' and 'rejected' texts do not begin alike; give the "
                         "prompt in a 'prompt' column")
    return {"prompt": chosen[:cut], "chosen": chosen[cut:], "rejected": rejected[cut:]}


def build_dataset(numbered_rows: Iterable[tuple[int, Any]], fmt: str = "auto", source: str = "the dataset") -> Dataset:
    """Normalise rows, detecting the format from the columns when `fmt` is auto."""
    rows = list(numbered_rows)
    if not rows:
        raise DataError(f"data.path: the dataset has no rows ({FORMATS_HINT})")
    columns: list[str] = []
    for _, raw in rows:
        if isinstance(raw, dict):
            columns.extend(str(k) for k in raw if str(k) not in columns)
    if not columns and all(isinstance(raw, Exception) for _, raw in rows):
        bad = [BadRow(number, str(raw)) for number, raw in rows]
        raise DataError(f"data.path: none of the {len(rows)} row(s) of {source} could be read: "
                        f"{describe_bad_rows(bad, 3)}",
                        rows=[b.row for b in bad])
    if fmt == "auto":
        detected = detect_format(columns)
        if detected is None:
            raise DataError(unrecognised_columns_message(columns, source))
        fmt = detected
    elif rows and not any(isinstance(raw, dict) and _has_columns(fmt, raw) for _, raw in rows[:50]):
        raise DataError(f"data.format: set to {fmt!r}, which needs {FORMAT_COLUMNS[fmt]}, but the rows of {source} "
                        f"have columns {', '.join(columns) or 'none'}; "
                        "fix data.format or set it to \"auto\"")
    out = Dataset(format=fmt, rows=[], row_numbers=[], columns=columns, source=source)
    for _, raw in rows:
        own = detect_format(raw) if isinstance(raw, dict) else None
        if own is not None:
            out.formats[own] = out.formats.get(own, 0) + 1
    for number, raw in rows:
        try:
            out.rows.append(normalise_row(fmt, raw))
            out.row_numbers.append(number)
        except ValueError as e:
            out.bad_rows.append(BadRow(number, str(e)))
    return out


def _has_columns(fmt: str, raw: dict[str, Any]) -> bool:
    needed = {"messages": {"messages"}, "sharegpt": {"conversations"}, "alpaca": {"instruction", "output"},
              "prompt_completion": {"prompt", "completion"}, "text": {"text"}, "preference": {"chosen", "rejected"},
              "unpaired": {"prompt", "completion", "label"}, "prompts": {"prompt"}}[fmt]
    return needed <= set(raw)


def held_out_indices(rows: int, fraction: float, seed: int) -> set[int]:
    """Which rows an eval fraction holds out: the same ones for the trainer and for the chat's prompts."""
    import random

    if fraction <= 0 or rows == 0:
        return set()
    order = list(range(rows))
    random.Random(seed).shuffle(order)
    return set(order[:max(1, int(rows * fraction))])


def prompt_text(fmt: str, row: dict[str, Any]) -> str | list[dict[str, str]]:
    """What the model is asked in a normalised row: the turns before the last answer, or the prompt."""
    if "messages" in row:
        last = max(i for i, m in enumerate(row["messages"]) if m["role"] == "assistant")
        return row["messages"][:last]
    if "prompt" in row:
        return row["prompt"]
    return row["text"][: len(row["text"]) // 2]


def estimated_tokens(row: dict[str, Any]) -> int:
    """About how many tokens a normalised row is, before any tokenizer has seen it (4 characters a token,
    a few more for each chat turn's markers)."""
    if "messages" in row:
        return sum(len(m["content"]) for m in row["messages"]) // 4 + 4 * len(row["messages"]) + 1
    if "chosen" in row:  # a pair: the prompt with the longer answer (the sides are padded to one length)
        return _side_tokens(row["prompt"]) + max(_side_tokens(row["chosen"]), _side_tokens(row["rejected"]))
    if "completion" in row:
        return _side_tokens(row["prompt"]) + _side_tokens(row["completion"])
    if "prompt" in row:
        return _side_tokens(row["prompt"])
    return len(row.get("text", "")) // 4 + 1


def _side_tokens(side: str | list[dict[str, str]]) -> int:
    if isinstance(side, list):
        return sum(len(m["content"]) for m in side) // 4 + 4 * len(side)
    return len(side) // 4 + 1


def describe_bad_rows(bad: list[BadRow], limit: int = 10) -> str:
    shown = "; ".join(f"row {b.row} {b.reason}" for b in bad[:limit])
    more = f"; and {len(bad) - limit} more" if len(bad) > limit else ""
    return f"{shown}{more}"


def check_bad_rows(ds: Dataset, on_bad_rows: str) -> None:
    """Raise DataError naming the malformed rows, unless the profile says to skip them."""
    if ds.bad_rows and on_bad_rows == "error" and len(ds.formats) > 1:
        counts = ", ".join(f"{n} {name}" for name, n in sorted(ds.formats.items(), key=lambda kv: -kv[1]))
        raise DataError(
            f"{ds.source} mixes row formats ({counts} rows; read as {ds.format}): one dataset trains in one "
            "format. Convert the rows to one format (or split the file and train on one part), or set "
            "data.on_bad_rows = \"skip\" to train on the " + ds.format + " rows only",
            rows=[b.row for b in ds.bad_rows],
        )
    if ds.bad_rows and on_bad_rows == "error":
        raise DataError(
            f"{len(ds.bad_rows)} malformed row(s) in {ds.source}: {describe_bad_rows(ds.bad_rows)}. "
            "Fix or remove them, or set data.on_bad_rows = \"skip\" to train without them",
            rows=[b.row for b in ds.bad_rows],
        )
    if not ds.rows:
        raise DataError(f"data.path: no usable rows left in {ds.source} after removing malformed ones")


def load_local(path: str, fmt: str = "auto") -> Dataset:
    p = Path(path).expanduser()
    rows = list(read_local(p))
    if not rows:
        only = " (only a header line)" if p.suffix.lower() == ".csv" else ""
        raise DataError(f"data.path: {p} has no rows{only}; {FORMATS_HINT}")
    if not any(isinstance(raw, dict) for _, raw in rows):
        kinds = sorted({type(raw).__name__ for _, raw in rows if not isinstance(raw, Exception)})
        if kinds:
            raise DataError(f"data.path: {p} holds {', '.join(kinds)} values, not rows with named fields; "
                            f"{FORMATS_HINT}")
    return build_dataset(rows, fmt, source=str(p))
