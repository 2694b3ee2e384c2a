from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.data import DataError, build_dataset, check_bad_rows, detect_format, load_local

MESSAGES = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
SHAREGPT = {"conversations": [{"from": "system", "value": "be brief"}, {"from": "human", "value": "hi"},
                              {"from": "gpt", "value": "hello"}]}
ALPACA = {"instruction": "Add", "input": "2 and 3", "output": "5"}
PROMPT = {"prompt": "2+3=", "completion": "5"}
TEXT = {"text": "plain words"}


@pytest.mark.parametrize("row,fmt", [(MESSAGES, "messages"), (SHAREGPT, "sharegpt"), (ALPACA, "alpaca"),
                                     (PROMPT, "prompt_completion"), (TEXT, "text")])
def test_detects_and_normalises_each_format(row: dict, fmt: str) -> None:
    ds = build_dataset([(1, row)])
    assert ds.format == fmt and not ds.bad_rows
    out = ds.rows[0]
    if fmt in ("messages", "sharegpt"):
        assert out["messages"][-1] == {"role": "assistant", "content": "hello"}
        assert {m["role"] for m in out["messages"]} <= {"system", "user", "assistant"}
    elif fmt == "alpaca":
        assert "### Instruction:\nAdd" in out["prompt"] and "### Input:\n2 and 3" in out["prompt"]
        assert out["completion"] == "5"
    elif fmt == "prompt_completion":
        assert out == PROMPT
    else:
        assert out == TEXT


def test_alpaca_without_input_has_no_input_block() -> None:
    ds = build_dataset([(1, {"instruction": "Say hi", "output": "hi"})])
    assert "### Input" not in ds.rows[0]["prompt"]


def test_unrecognised_columns_name_found_and_accepted() -> None:
    with pytest.raises(DataError) as e:
        build_dataset([(1, {"question": "q", "answer": "a"})])
    msg = str(e.value)
    assert "question, answer" in msg
    for accepted in ("messages", "conversations", "instruction", "prompt and completion", "text"):
        assert accepted in msg


def test_explicit_format_that_does_not_match() -> None:
    with pytest.raises(DataError, match="data.format: set to 'alpaca'"):
        build_dataset([(1, TEXT)], "alpaca")


def test_bad_rows_keep_their_line_numbers(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    lines = [json.dumps(MESSAGES), "", json.dumps({"messages": [{"role": "user", "content": "no answer"}]}),
             "{not json", json.dumps(MESSAGES), json.dumps({"messages": [{"role": "robot", "content": "x"}]}),
             json.dumps([1, 2])]
    f.write_text("\n".join(lines) + "\n")
    ds = load_local(f)
    assert [b.row for b in ds.bad_rows] == [3, 4, 6, 7]
    assert ds.row_numbers == [1, 5]
    with pytest.raises(DataError) as e:
        check_bad_rows(ds, "error")
    assert e.value.rows == [3, 4, 6, 7]
    assert "row 3 has no non-empty assistant turn" in str(e.value)
    assert "row 4 not valid JSON" in str(e.value)
    assert "data.on_bad_rows" in str(e.value)
    check_bad_rows(ds, "skip")  # skipping leaves two good rows


def test_csv_json_and_parquet(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("instruction,input,output\nAdd,1 and 2,3\nSay hi,,hi\n")
    assert load_local(tmp_path / "a.csv").format == "alpaca"
    (tmp_path / "b.json").write_text(json.dumps({"data": [PROMPT, PROMPT]}))
    ds = load_local(tmp_path / "b.json")
    assert ds.format == "prompt_completion" and len(ds.rows) == 2
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([TEXT, TEXT, TEXT]), tmp_path / "c.parquet")
    assert len(load_local(tmp_path / "c.parquet").rows) == 3


def test_missing_file_and_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_local(tmp_path / "nope.jsonl")
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(DataError, match="unknown extension"):
        load_local(tmp_path / "x.xlsx")


def test_detect_prefers_chat_columns() -> None:
    assert detect_format(["text", "messages"]) == "messages"
    assert detect_format(["prompt"]) == "prompts"  # prompts alone: GRPO's data (the answers are sampled)
    assert detect_format(["prompt", "completion"]) == "prompt_completion"


def test_a_file_mixing_formats_says_so_with_the_count_of_each(tmp_path: Path) -> None:
    f = tmp_path / "mixed.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in [MESSAGES] * 20 + [ALPACA] * 80))
    with pytest.raises(DataError) as e:
        check_bad_rows(load_local(f), "error")
    said = str(e.value)
    assert "mixes row formats" in said and "80 alpaca" in said and "20 messages" in said
    assert "non-empty list of turns" not in said  # not 80 copies of the row-level complaint


def test_one_row_object_instead_of_a_list_says_how_to_write_rows(tmp_path: Path) -> None:
    f = tmp_path / "one.json"
    f.write_text(json.dumps(MESSAGES))
    with pytest.raises(DataError) as e:
        load_local(f)
    assert "single row" in str(e.value) and ".jsonl" in str(e.value) and "cannot tell" not in str(e.value)


@pytest.mark.parametrize("row,key", [({"text": 5}, "text"), ({"prompt": "2+3=", "completion": 5}, "completion"),
                                     ({"instruction": ["a"], "output": "5"}, "instruction")])
def test_a_value_that_is_not_text_is_called_that_not_empty(row: dict, key: str) -> None:
    ds = build_dataset([(1, row)])
    assert ds.bad_rows and f"'{key}' that is a" in ds.bad_rows[0].reason and "not text" in ds.bad_rows[0].reason
