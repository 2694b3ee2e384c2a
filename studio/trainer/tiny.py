"""The built-in tiny models (builtin:tiny-llama, builtin:tiny-qwen3, ...: one per family studio trains):
a few layers built from the catalog's config with random weights, with a BPE tokenizer trained on the
run's own data. Nothing is downloaded."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from studio.planning.catalog import catalog_match, catalog_models
from studio.profiles.profile import TINY_MODEL
from studio.trainer.failures import ConfigError

# {% generation %} marks the assistant tokens, so TRL can train on them only.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'assistant' %}<|assistant|>"
    "{% generation %}{{ m['content'] }}{{ eos_token }}{% endgeneration %}{% else %}<|{{ m['role'] }}|>"
    "{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|user|>", "<|assistant|>", "<|system|>", "<|tool|>"]
MAX_POSITIONS = 2048


def builtin_names() -> list[str]:
    return [s.id for s in catalog_models() if s.id.startswith("builtin:")]


def tiny_config(name: str = TINY_MODEL) -> dict[str, Any]:
    """A built-in model's config, from the catalog (one source for the trainer and the estimator)."""
    spec = catalog_match(name)
    if spec is None or spec.config is None or not name.startswith("builtin:"):
        raise ConfigError(f"model.name: unknown built-in model {name!r}; the built-in ones are "
                          f"{', '.join(builtin_names())}")
    return json.loads(json.dumps(spec.config))  # a copy the caller may change


def row_texts(rows: Iterable[dict[str, Any]]) -> Iterable[str]:
    """Every text a row holds, in any format: turns, prompts, answers, preference pairs' sides."""
    for row in rows:
        for key in ("messages", "prompt", "completion", "text", "chosen", "rejected"):
            value = row.get(key)
            if isinstance(value, str):
                yield value
            elif isinstance(value, list):
                yield from (m["content"] for m in value if isinstance(m, dict) and isinstance(m.get("content"), str))


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


def tiny_tokenizer(rows: list[dict[str, Any]], name: str = TINY_MODEL) -> Any:
    """A built-in model's tokenizer: trained on the rows, with the vocabulary the catalog gives it."""
    config = tiny_config(name)
    return train_tokenizer(rows, (config.get("text_config") or config)["vocab_size"])


def build_tiny_model(out_dir: Path, rows: list[dict[str, Any]], seed: int, vocab_size: int | None = None,
                     name: str = TINY_MODEL) -> None:
    """Train a tokenizer on `rows`, build the built-in model `name` with random weights, save both to `out_dir`."""
    import torch
    from transformers import AutoConfig

    from studio.anatomy.model_class import model_class

    hf_tok = train_tokenizer(rows, vocab_size) if vocab_size else tiny_tokenizer(rows, name)
    fields = tiny_config(name)
    text = fields.get("text_config") or fields
    # BPE may stop short of vocab_size: the model's vocabulary is what the tokenizer really has.
    ids = dict(vocab_size=len(hf_tok), bos_token_id=hf_tok.bos_token_id, eos_token_id=hf_tok.eos_token_id,
               pad_token_id=hf_tok.pad_token_id)
    text.update(ids, max_position_embeddings=MAX_POSITIONS)
    if text is not fields:
        fields.update({k: v for k, v in ids.items() if k != "vocab_size"})
        fields.setdefault("image_token_index", len(hf_tok) - 1)  # a multimodal config's image token: in range
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    torch.manual_seed(seed)
    model = model_class(config).from_config(config)
    save_machine_copy(model, out_dir)
    hf_tok.save_pretrained(out_dir)


def save_machine_copy(model: Any, out_dir: Path) -> None:
    """The model's config and weights, written by this process whatever its rank: under torch.distributed
    save_pretrained writes on global rank 0 only, and every machine of a multi-machine job needs its copy."""
    from safetensors.torch import save_model

    out_dir.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(out_dir)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(out_dir)
    save_model(model, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
