"""Tokenize the rows once, exactly as TRL's SFTTrainer would, so the preflight and the
training share the work: TRL skips its own tokenization for a dataset that has input_ids.

Each row becomes input_ids plus the mask TRL builds labels from: assistant_masks for chat
rows trained on the assistant turns, completion_mask for prompt/completion rows. EOS is
appended to plain text and completions the way TRL does. tests/test_packing.py checks the
result against TRL's own preparation for every format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trl.data_utils import _tokenize, common_prefix_length

from studio.data import DataError

Rows = list[dict[str, Any]]


@dataclass
class Tokenized:
    rows: list[dict[str, list[int]]]   # input_ids and the mask column, untruncated

    @property
    def lengths(self) -> list[int]:
        return [len(r["input_ids"]) for r in self.rows]

    def first_trained(self) -> list[int]:
        """Where the first token the loss covers sits in each row (0 when every token trains)."""
        out = []
        for r in self.rows:
            mask = r.get("assistant_masks") or r.get("completion_mask")
            out.append(mask.index(1) if mask and 1 in mask else (len(r["input_ids"]) if mask else 0))
        return out


def tokenize_rows(tokenizer: Any, rows: Rows, assistant_only: bool) -> Tokenized:
    """Rows in TRL's shapes (messages, prompt/completion as text or turns, text) to token ids."""
    eos = tokenizer.eos_token or ""
    out = []
    for i, row in enumerate(rows):
        if "messages" in row:
            processed = _tokenize(tokenizer, row["messages"], return_assistant_tokens_mask=assistant_only)
            item = {k: list(processed[k]) for k in ("input_ids", "assistant_masks") if k in processed}
            if assistant_only and 1 not in item.get("assistant_masks", [1]):
                raise DataError(f"row {i + 1} has no assistant tokens under the model's chat template; "
                                "check the template's {% generation %} markers or the row's turns", rows=[i + 1])
        elif "prompt" in row:
            if isinstance(row["prompt"], list):  # conversational prompt and completion
                prompt_ids = _tokenize(tokenizer, row["prompt"], add_generation_prompt=True)["input_ids"]
                full = _tokenize(tokenizer, row["prompt"] + row["completion"],
                                 return_assistant_tokens_mask=assistant_only)
                ids = list(full["input_ids"])
            else:
                completion = row["completion"] if row["completion"].endswith(eos) else row["completion"] + eos
                prompt_ids = _tokenize(tokenizer, row["prompt"])["input_ids"]
                ids = list(_tokenize(tokenizer, row["prompt"] + completion)["input_ids"])
            start = common_prefix_length(list(prompt_ids), ids)
            item = {"input_ids": ids, "completion_mask": [0] * start + [1] * (len(ids) - start)}
            if isinstance(row["prompt"], list) and "assistant_masks" in full:
                item["assistant_masks"] = list(full["assistant_masks"])
        else:
            text = row["text"] if row["text"].endswith(eos) else row["text"] + eos
            item = {"input_ids": list(_tokenize(tokenizer, text)["input_ids"])}
        out.append(item)
    return Tokenized(out)


def columns(tokenized: Tokenized) -> dict[str, list[list[int]]]:
    """Column-wise, for datasets.Dataset.from_dict (every row has the same keys)."""
    keys = sorted({k for r in tokenized.rows for k in r})
    missing = [k for k in keys if any(k not in r for r in tokenized.rows)]
    if missing:
        raise DataError(f"data: rows mix formats ({', '.join(missing)} only in some); use one format per dataset")
    return {k: [r[k] for r in tokenized.rows] for k in keys}
