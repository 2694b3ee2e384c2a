"""The built-in tiny model: a small Llama built from a config, with a BPE
tokenizer trained on the run's own data. Nothing is downloaded."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

# {% generation %} marks the assistant tokens, so TRL can train on them only.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'assistant' %}<|assistant|>"
    "{% generation %}{{ m['content'] }}{{ eos_token }}{% endgeneration %}{% else %}<|{{ m['role'] }}|>"
    "{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|user|>", "<|assistant|>", "<|system|>", "<|tool|>"]
TINY_CONFIG = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True)


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
                                     pad_token="<|pad|>", model_max_length=TINY_CONFIG["max_position_embeddings"])
    hf_tok.chat_template = CHAT_TEMPLATE
    return hf_tok


def build_tiny_model(out_dir: Path, rows: list[dict[str, Any]], seed: int, vocab_size: int = 1024) -> None:
    """Train a tokenizer on `rows`, build a random-weight Llama, save both to `out_dir`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    hf_tok = train_tokenizer(rows, vocab_size)
    # BPE may stop short of vocab_size: the model's vocabulary is what the tokenizer really has.
    config = LlamaConfig(vocab_size=len(hf_tok), bos_token_id=hf_tok.bos_token_id, eos_token_id=hf_tok.eos_token_id,
                         pad_token_id=hf_tok.pad_token_id, **TINY_CONFIG)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    hf_tok.save_pretrained(out_dir)
