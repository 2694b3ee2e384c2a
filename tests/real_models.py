"""Tiny random models with the real tokenizers and config shapes of the families studio exports: the real
vocabulary (and the embedding rows a real checkpoint pads past it), the real special tokens and chat
template, the real RoPE scaling, tied or untied embeddings and attention biases as each family has them.
Only the sizes are small (2 layers, 64 wide). Tokenizer sources and licences: data/tokenizers/README.md."""

from __future__ import annotations

import lzma
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOKENIZERS = Path(__file__).parent / "data" / "tokenizers"


@dataclass(frozen=True)
class RealShape:
    name: str
    model_type: str
    tokenizer: str            # a folder under data/tokenizers
    rows: int                 # the embedding's rows, as the real checkpoint has them
    config: dict[str, Any] = field(default_factory=dict)
    stop_ids: tuple[int, ...] = ()   # the generation config's end tokens beyond EOS


LLAMA31_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                # the real model says 8192; 32 makes the scaling reach the positions a test can afford
                "original_max_position_embeddings": 32, "rope_theta": 10000.0}

SHAPES = {
    "llama-3.1": RealShape("llama-3.1", "llama", "llama3", 128256,
                           {"rope_parameters": LLAMA31_ROPE, "max_position_embeddings": 131072}, (128001, 128008)),
    "llama-3.2": RealShape("llama-3.2", "llama", "llama3", 128256,
                           {"rope_parameters": LLAMA31_ROPE, "tie_word_embeddings": True}, (128001, 128008)),
    "codellama": RealShape("codellama", "llama", "mistral-v0.1", 32016, {"rope_parameters": {
        "rope_type": "default", "rope_theta": 1000000.0}}),
    "mistral-v0.1": RealShape("mistral-v0.1", "mistral", "mistral-v0.1", 32000,
                              {"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}),
    "mistral-v0.3": RealShape("mistral-v0.3", "mistral", "mistral-v0.3", 32768,
                              {"rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}}),
    "qwen2": RealShape("qwen2", "qwen2", "qwen2", 151936, {"tie_word_embeddings": True}, (151643,)),
    "qwen2.5": RealShape("qwen2.5", "qwen2", "qwen2", 152064, {"tie_word_embeddings": False}, (151643,)),
    "qwen3": RealShape("qwen3", "qwen3", "qwen2", 151936, {"tie_word_embeddings": True, "head_dim": 16}, (151643,)),
}


def tokenizer_folder(name: str, out: Path) -> Path:
    """The fixture's files in `out`, decompressed."""
    out.mkdir(parents=True, exist_ok=True)
    for item in (TOKENIZERS / name).iterdir():
        if item.suffix == ".xz":
            (out / item.stem).write_bytes(lzma.decompress(item.read_bytes()))
        else:
            shutil.copy(item, out / item.name)
    return out


def build(shape: RealShape, out: Path, seed: int = 0) -> Path:
    """The model as `from_pretrained` and studio's export find it: config, weights, tokenizer (fast, as
    transformers saves it), generation config."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder(shape.tokenizer, out / "tokenizer-source"))
    eos = [tokenizer.eos_token_id, *shape.stop_ids]
    fields = dict(vocab_size=shape.rows, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, rms_norm_eps=1e-6,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=eos[0], pad_token_id=tokenizer.pad_token_id,
                  # weights wide enough that the greedy token wins clearly, as in a trained model
                  initializer_range=0.3, tie_word_embeddings=False)
    fields.update(shape.config)
    config = AutoConfig.for_model(shape.model_type, **fields)
    torch.manual_seed(seed)
    # bf16, as a model trained on a GPU is merged and saved: an f16 GGUF then holds the same numbers
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    folder = out / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=eos).save_pretrained(folder)
    shutil.rmtree(out / "tokenizer-source")
    return folder
