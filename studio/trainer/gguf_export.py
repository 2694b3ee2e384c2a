"""A merged model as a GGUF file for llama.cpp, LM Studio and Ollama, built on llama.cpp's own Python pieces
(the `gguf` package: its writer, its tensor-name maps, its vocabulary and quantization code). The format is
not re-implemented here: this module only says, per family, which of the model's numbers go into which of
the format's keys, and in which layout llama.cpp wants the attention weights.

Quantizations the `gguf` package writes itself: f32, f16, bf16, q8_0. The k-quants (q4_k_m, q5_k_m,
q6_k, ...) go through llama.cpp's `llama-quantize` when it is on the PATH.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from studio.trainer.gguf_vocab import VocabError, add_to_gguf, build_vocabulary, tokenizer_kind

WRITTEN = ("f32", "f16", "bf16", "q8_0")
K_QUANTS = ("q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_0", "q4_1", "q4_k_s", "q4_k_m", "q5_0", "q5_1", "q5_k_s",
            "q5_k_m", "q6_k")


class GgufError(Exception):
    """A model or a quantization the GGUF path cannot do here; the message says what can."""


@dataclass(frozen=True)
class Family:
    arch: str                 # gguf's MODEL_ARCH member name
    permute_qk: bool          # llama.cpp's LLAMA rope pairs neighbours; HF's rotate_half pairs halves
    pre: str                  # llama.cpp's pre-tokenizer name for a byte-level BPE vocabulary


FAMILIES = {
    "llama": Family("LLAMA", True, "llama-bpe"),
    "mistral": Family("LLAMA", True, "default"),
    "qwen2": Family("QWEN2", False, "qwen2"),
    "qwen3": Family("QWEN3", False, "qwen2"),
}


ROPE_TYPES = ("default", "llama3", "linear", "yarn")


def covered() -> str:
    return ", ".join(sorted(FAMILIES))


def check_request(model_type: str, quant: str) -> None:
    """Refused up front: a family the converter does not cover, or a k-quant without llama-quantize."""
    if model_type not in FAMILIES:
        raise GgufError(f"GGUF export covers the families {covered()}; this model is {model_type!r}. Export the "
                        "merged model (--merge) and convert it with llama.cpp's convert_hf_to_gguf.py")
    if quant not in WRITTEN and quant not in K_QUANTS:
        raise GgufError(f"--quant {quant}: use one of {', '.join(WRITTEN)} (written by studio) or "
                        f"{', '.join(K_QUANTS)} (through llama.cpp's llama-quantize)")
    if quant in K_QUANTS and shutil.which("llama-quantize") is None:
        raise GgufError(f"--quant {quant} is a llama.cpp k-quant: it needs llama.cpp's `llama-quantize` on the "
                        f"PATH, and none is here. Export with --quant q8_0 or f16 (studio writes those itself), or "
                        "install llama.cpp and run again")


def permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """HF's q/k rows (two halves per head) as llama.cpp's LLAMA rope wants them (pairs), as llama.cpp's
    converter does."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def tensor_data(name: str, data: np.ndarray, quant: str) -> tuple[np.ndarray, Any]:
    """The tensor in the file's type: 1-D tensors (norms, biases) stay f32, as llama.cpp's converter keeps them."""
    import gguf

    types = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
             "bf16": gguf.GGMLQuantizationType.BF16, "q8_0": gguf.GGMLQuantizationType.Q8_0}
    kind = types[quant]
    data = data.astype(np.float32)
    if data.ndim < 2 or kind == gguf.GGMLQuantizationType.F32:
        return data, gguf.GGMLQuantizationType.F32
    if kind == gguf.GGMLQuantizationType.F16:
        return data.astype(np.float16), kind
    if kind == gguf.GGMLQuantizationType.Q8_0 and data.shape[-1] % 32:
        return data.astype(np.float16), gguf.GGMLQuantizationType.F16  # q8_0 blocks are 32 wide
    return gguf.quants.quantize(data, kind), kind


def rope_scaling(config: Any) -> dict[str, Any]:
    """The config's RoPE parameters (transformers 5's rope_parameters, or an older rope_scaling), with the
    type under one name."""
    rope = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    rope["rope_type"] = str(rope.get("rope_type") or rope.get("type") or "default").lower()
    return rope


def check_rope(config: Any) -> None:
    kind = rope_scaling(config)["rope_type"]
    if kind not in ROPE_TYPES:
        raise GgufError(f"the model's RoPE scaling is {kind!r}; GGUF export here writes {', '.join(ROPE_TYPES)}. "
                        "Export the merged model (--merge) and convert it with llama.cpp's convert_hf_to_gguf.py")


def rope_freqs(config: Any, head_dim: int) -> dict[str, np.ndarray]:
    """Llama 3's frequency factors as llama.cpp's `rope_freqs` tensor (its converter's formula); nothing for
    the other RoPE types, which are metadata."""
    import math

    rope = rope_scaling(config)
    if rope["rope_type"] != "llama3":
        return {}
    base = float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0)))
    factor = float(rope.get("factor", 8.0))
    low, high = float(rope.get("low_freq_factor", 1.0)), float(rope.get("high_freq_factor", 4.0))
    old_context = float(rope.get("original_max_position_embeddings", 8192))
    low_wavelen, high_wavelen = old_context / low, old_context / high
    factors = []
    for i in range(0, head_dim, 2):
        wavelen = 2 * math.pi * base ** (i / head_dim)
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (old_context / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return {"rope_freqs.weight": np.array(factors, dtype=np.float32)}


def add_rope(writer: Any, config: Any) -> None:
    import gguf

    rope = rope_scaling(config)
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))
    if rope["rope_type"] == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    elif rope["rope_type"] == "yarn":
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(float(rope["factor"]))
        writer.add_rope_scaling_orig_ctx_len(int(rope.get("original_max_position_embeddings",
                                                          config.max_position_embeddings)))


def check_model(model: Path | str, tokenizer_folder: Path | None, quant: str, revision: str | None = None) -> None:
    """Everything about a model (its config, a folder or a Hub id in the cache, and the folder of its
    tokenizer) that would stop the GGUF, checked before the merge starts: the family, the quantization, the
    RoPE type and the tokenizer. A tokenizer that is not in a local folder is checked after the merge."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model, revision=None if isinstance(model, Path) else revision)
    check_request(config.model_type, quant)
    check_rope(config)
    if tokenizer_folder is not None:
        try:
            tokenizer_kind(tokenizer_folder)
        except VocabError as e:
            raise GgufError(str(e)) from None
        from studio.trainer.model import saved_token_count

        tokens = saved_token_count(tokenizer_folder)
        if tokens is not None and tokens > config.vocab_size:
            raise GgufError(f"the tokenizer ({tokenizer_folder}) has {tokens} tokens but the model's embedding has "
                            f"{config.vocab_size} rows: llama.cpp cannot load a GGUF whose tokens have no "
                            "embedding. Resize the embedding to the tokenizer (model.resize_token_embeddings("
                            "len(tokenizer))) and train again, or export the merged model (--merge)")


def embedding_rows(model_dir: Path, fallback: int) -> int:
    """How many rows the model's token embedding has (a padded vocabulary has more than the tokenizer)."""
    from safetensors import safe_open

    for path in sorted(model_dir.glob("*.safetensors")):
        with safe_open(path, framework="np") as f:
            for key in f.keys():
                if key.endswith("embed_tokens.weight"):
                    return int(f.get_slice(key).get_shape()[0])
    return fallback


def write_gguf(model_dir: Path, out: Path, quant: str = "f16", name: str = "") -> Path:
    """Write the merged model in `model_dir` to the GGUF file `out` (quantized as asked); returns `out`."""
    import gguf
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig

    from studio.trainer.model import saved_tokenizer

    check_model(model_dir, model_dir, quant)
    config = AutoConfig.from_pretrained(model_dir)
    if quant in K_QUANTS:
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            f16 = write_gguf(model_dir, Path(tmp) / "f16.gguf", "f16", name)
            proc = subprocess.run(["llama-quantize", str(f16), str(out), quant.upper()], capture_output=True, text=True)
            if proc.returncode:
                raise GgufError(f"llama-quantize failed: {proc.stderr.strip()[-400:]}")
        return out
    family = FAMILIES[config.model_type]
    arch = getattr(gguf.MODEL_ARCH, family.arch)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    writer = gguf.GGUFWriter(out, gguf.MODEL_ARCH_NAMES[arch])
    writer.add_name(name or model_dir.name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    add_rope(writer, config)
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                          "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[quant])

    tokenizer = saved_tokenizer(model_dir)
    try:
        vocabulary = build_vocabulary(model_dir, tokenizer, embedding_rows(model_dir, config.vocab_size), family.pre)
    except VocabError as e:
        raise GgufError(str(e)) from None
    writer.add_vocab_size(len(vocabulary.tokens))
    add_to_gguf(writer, vocabulary, tokenizer)
    for tensor_name, value in rope_freqs(config, head_dim).items():
        writer.add_tensor(tensor_name, value, raw_dtype=gguf.GGMLQuantizationType.F32)

    names = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise GgufError(f"{model_dir} holds no safetensors weights to convert")
    for path in files:
        with safe_open(path, framework="pt") as f:
            for key in f.keys():
                data = f.get_tensor(key).to(torch.float32).numpy()
                check_finite(key, data)
                if family.permute_qk and key.endswith("q_proj.weight"):
                    data = permute(data, heads)
                elif family.permute_qk and key.endswith("k_proj.weight"):
                    data = permute(data, kv_heads)
                gguf_name = names.get_name(key, try_suffixes=(".weight", ".bias"))
                if gguf_name is None:
                    raise GgufError(f"no GGUF name for tensor {key} of a {config.model_type} model")
                data, kind = tensor_data(gguf_name, data, quant)
                writer.add_tensor(gguf_name, data, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def check_finite(name: str, data: np.ndarray) -> None:
    """A weight that is NaN or infinite makes every answer garbage: refused, naming the tensor."""
    if not np.isfinite(data).all():
        bad = int(data.size - np.isfinite(data).sum())
        raise GgufError(f"tensor {name} has {bad} non-finite value(s) (NaN or inf): the run diverged. Nothing "
                        "was exported; train again with a lower train.learning_rate and train.max_grad_norm "
                        "set (clipping), or export an earlier checkpoint")


def read_back(path: Path) -> dict[str, Any]:
    """What the file says, through gguf's own reader: its metadata and every tensor, dequantized."""
    import gguf

    reader = gguf.GGUFReader(path)
    fields = {}
    for name, field in reader.fields.items():
        if field.types and field.types[0] == gguf.GGUFValueType.STRING and len(field.data) == 1:
            fields[name] = bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")
        elif field.types and field.types[0] != gguf.GGUFValueType.ARRAY and field.data:
            fields[name] = field.parts[field.data[0]].tolist()
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    token_list = [bytes(tokens.parts[i]) for i in tokens.data] if tokens else []
    tensors = {t.name: gguf.quants.dequantize(t.data, t.tensor_type).reshape([int(d) for d in reversed(t.shape)])
               for t in reader.tensors}
    return {"fields": fields, "tokens": token_list, "tensors": tensors}


def metadata_json(path: Path) -> str:
    return json.dumps(read_back(path)["fields"], indent=2, default=str)
