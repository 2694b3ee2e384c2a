"""The built-in tiny model: a small Llama built from a config, with a BPE
tokenizer trained on the run's own data. Nothing is downloaded."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from studio.planning.catalog import lookup_model
from studio.profiles.profile import TINY_MODEL

# {% generation %} marks the assistant tokens, so TRL can train on them only.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'assistant' %}<|assistant|>"
    "{% generation %}{{ m['content'] }}{{ eos_token }}{% endgeneration %}{% else %}<|{{ m['role'] }}|>"
    "{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|user|>", "<|assistant|>", "<|system|>", "<|tool|>"]
MAX_POSITIONS = 2048


def tiny_config() -> dict[str, Any]:
    """The tiny model's shape, from the catalog (one source for the trainer and the estimator)."""
    spec = lookup_model(TINY_MODEL)
    return dict(hidden_size=spec.hidden, intermediate_size=spec.intermediate, num_hidden_layers=spec.layers,
                num_attention_heads=spec.heads, num_key_value_heads=spec.kv_heads,
                max_position_embeddings=MAX_POSITIONS, tie_word_embeddings=spec.tied)


def row_texts(rows: Iterable[dict[str, Any]]) -> Iterable[str]:
    for row in rows:
        if "messages" in row:
            yield from (m["content"] for m in row["messages"])
        else:
            yield from (row[k] for k in ("prompt", "completion", "text") if isinstance(row.get(k), str))


def train_tokenizer(rows: list[dict[str, Any]], vocab_size: int = 1024) -> Any:
    """A byte-level BPE tokenizer trained on the rows' text, with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(row_texts(rows), trainer)
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|eos|>",
                                     pad_token="<|pad|>", model_max_length=MAX_POSITIONS)
    hf_tok.chat_template = CHAT_TEMPLATE
    return hf_tok


def tiny_tokenizer(rows: list[dict[str, Any]]) -> Any:
    """The built-in tiny model's tokenizer: trained on the rows, with the vocabulary the catalog gives it."""
    return train_tokenizer(rows, lookup_model(TINY_MODEL).vocab)


def build_tiny_model(out_dir: Path, rows: list[dict[str, Any]], seed: int, vocab_size: int | None = None) -> None:
    """Train a tokenizer on `rows`, build a random-weight Llama, save both to `out_dir`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    hf_tok = train_tokenizer(rows, vocab_size) if vocab_size else tiny_tokenizer(rows)
    # BPE may stop short of vocab_size: the model's vocabulary is what the tokenizer really has.
    config = LlamaConfig(vocab_size=len(hf_tok), bos_token_id=hf_tok.bos_token_id, eos_token_id=hf_tok.eos_token_id,
                         pad_token_id=hf_tok.pad_token_id, **tiny_config())
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    hf_tok.save_pretrained(out_dir)
