"""Fuzzing what users hand studio: profiles (values, types, sections, TOML syntax) and
dataset files (encodings, truncation, binary, the shapes of each format).

For every input: exit 0 or 2, never a traceback; exit 2 comes with a message that names
the key or the file; input the checks reject never leaves a run folder behind; and
nothing in the studio home changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import DEMO_DATA
from studio.cli import main
from studio.profiles.profile import SECTIONS

FIELDS = {name: [f for f in cls.__dataclass_fields__] for name, cls in SECTIONS.items()}
FUZZ = settings(max_examples=int(os.environ.get("STUDIO_FUZZ_EXAMPLES", "120")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

scalars = st.one_of(st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.sampled_from(["lora", "qlora", "full", "auto", "all-linear", "", "../x", "0,1", "2",
                                     "builtin:tiny-llama", str(DEMO_DATA), "flash_attention_2", "fp16"]))
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=5), scalars, max_size=2))


@st.composite
def profiles(draw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"data": {"path": str(DEMO_DATA)}} if draw(st.booleans()) else {}
    for section in draw(st.lists(st.sampled_from([*SECTIONS, "modle", "extra"]), max_size=4)):
        keys = FIELDS.get(section, ["x"]) + ["unknown_key"]
        table = doc.setdefault(section, {}) if isinstance(doc.get(section, {}), dict) else {}
        for key in draw(st.lists(st.sampled_from(keys), max_size=4)):
            table[key] = draw(values)
    if draw(st.booleans()):
        doc[draw(st.sampled_from(["description", "data", "train", "zzz"]))] = draw(scalars)
    return doc


def snapshot(home: Path) -> dict[str, str]:
    out = {}
    if home.exists():
        for p in sorted(home.rglob("*")):
            out[str(p.relative_to(home))] = hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def cli(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(list(args))
    return code, out.getvalue()


# "<file>: <key>: <what is wrong>", or a file-level problem
NAMED = re.compile(r"^.+?: (?:[^\s:][^:]*: |not valid TOML|not UTF-8|profile not found|cannot read)", re.M)


def check_profile_file(path: Path, home: Path) -> None:
    before = snapshot(home)
    code, text = cli("profile", "check", str(path))
    assert code in (0, 2), text
    if code == 2:
        lines = [line for line in text.splitlines() if line.strip()]
        assert lines and all(NAMED.match(line) for line in lines), text
        run_code, run_text = cli("run", str(path))
        assert run_code == 2, run_text
        assert not (home / "runs").exists() or not any((home / "runs").iterdir()), "a run folder was left behind"
    assert snapshot(home) == before


@FUZZ
@given(doc=profiles())
def test_fuzzed_profile_values(doc: dict[str, Any], tmp_path: Path, studio_env: Path) -> None:
    try:
        text = tomli_w.dumps(doc)
    except (TypeError, ValueError):
        return  # not expressible in TOML (tomli-w refuses), so no user can write it
    path = tmp_path / "fuzz.toml"
    path.write_text(text, encoding="utf-8")
    check_profile_file(path, studio_env)


VALID = (f'description = "x"\n[model]\nname = "builtin:tiny-llama"\n[data]\npath = "{DEMO_DATA}"\nmax_length = 96\n'
         '[train]\nmax_steps = 2\nlearning_rate = 1e-3\n')


@FUZZ
@given(cuts=st.lists(st.tuples(st.integers(0, len(VALID)), st.integers(0, 3), st.text(max_size=3)), max_size=4),
       raw=st.binary(max_size=40), mode=st.sampled_from(["edit", "bytes", "bom", "truncate"]))
def test_fuzzed_profile_syntax(cuts: list, raw: bytes, mode: str, tmp_path: Path, studio_env: Path) -> None:
    text = VALID
    for at, drop, insert in cuts:
        text = text[:at] + insert + text[at + drop:]
    data = {"edit": text.encode("utf-8", "surrogatepass"), "bytes": raw, "bom": b"\xef\xbb\xbf" + text.encode(),
            "truncate": VALID.encode()[: len(raw)]}[mode]
    path = tmp_path / "fuzz.toml"
    path.write_bytes(data)
    check_profile_file(path, studio_env)


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                                     st.text(max_size=8)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                           max_leaves=8)
columns = st.sampled_from(["messages", "conversations", "instruction", "input", "output", "prompt", "completion",
                           "text", "role", "content", "other"])
turns = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "bot", 3]),
                                        "content": st.one_of(st.text(max_size=10), st.none())}), max_size=3)
rows = st.one_of(st.dictionaries(columns, st.one_of(json_values, turns, st.text(max_size=12)), max_size=4),
                 json_values)


@st.composite
def dataset_files(draw: Any) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from([".jsonl", ".json", ".csv", ".parquet"]))
    items = draw(st.lists(rows, max_size=6))
    if suffix == ".jsonl":
        body = "".join(json.dumps(r) + "\n" for r in items)
    elif suffix == ".json":
        body = json.dumps(items if draw(st.booleans()) else {"rows": items})
    elif suffix == ".csv":
        cols = draw(st.lists(columns, min_size=1, max_size=3, unique=True))
        body = ",".join(cols) + "\n" + "".join(
            ",".join(json.dumps(draw(st.text(max_size=8))) for _ in range(draw(st.integers(0, 4)))) + "\n"
            for _ in items)
    else:
        body = "PAR1" + json.dumps(items)
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"]))
    data = body.encode(encoding, errors="replace")
    how = draw(st.sampled_from(["whole", "truncated", "noise"]))
    if how == "truncated":
        data = data[: draw(st.integers(0, len(data)))]
    elif how == "noise":
        data = data + draw(st.binary(max_size=30))
    return suffix, data


@FUZZ
@given(file=dataset_files(), fmt=st.sampled_from(["auto", "messages", "sharegpt", "alpaca", "prompt_completion", "text"]),
       bad_rows=st.sampled_from(["error", "skip"]), eval_fraction=st.sampled_from([0.0, 0.5, 0.9]))
def test_fuzzed_dataset_files(file: tuple[str, bytes], fmt: str, bad_rows: str, eval_fraction: float,
                              tmp_path: Path, studio_env: Path) -> None:
    suffix, data = file
    path = tmp_path / f"data{suffix}"
    path.write_bytes(data)
    profile = tmp_path / "p.toml"
    profile.write_text(tomli_w.dumps({"model": {"name": "builtin:tiny-llama"},
                                      "data": {"path": str(path), "format": fmt, "on_bad_rows": bad_rows,
                                               "eval_fraction": eval_fraction}}))
    before = snapshot(studio_env)
    code, text = cli("profile", "check", str(profile), "--data")
    assert code in (0, 2), text
    if code == 2:
        assert "data." in text and str(path) in text, text
        assert cli("run", str(profile))[0] == 2
        assert not (studio_env / "runs").exists() or not any((studio_env / "runs").iterdir())
    assert snapshot(studio_env) == before
