"""Is a tokenizer one a model can train with? Checked wherever a run gets its tokenizer."""

from __future__ import annotations

from typing import Any

TOKENIZER_PROBE = "The quick brown fox jumps over the lazy dog, 12 times."


def tokenizer_problem(tokenizer: Any) -> str | None:
    """What makes a tokenizer unusable for training, or None. transformers 5 makes a tokenizer of a folder
    holding only config.json: one token, turning every text into nothing."""
    size = len(tokenizer)
    ids = tokenizer(TOKENIZER_PROBE, add_special_tokens=False)["input_ids"]
    if size < 32:
        return f"has a tokenizer of {size} token{'s' if size != 1 else ''}"
    if len(ids) < 2 or len(set(ids)) < 2:
        return f"has a tokenizer that turns text into {len(set(ids))} distinct token(s)"
    return None
