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


def pre_tokenizer(model_dir: Path, family: Family) -> str:
    """llama.cpp's name for how text is split before BPE: GPT-2's own split when the tokenizer uses plain
    byte-level splitting (as studio's built-in tokenizers do), else the family's."""
    try:
        pre = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8")).get("pre_tokenizer") or {}
    except (OSError, ValueError):
        return family.pre
    return "gpt-2" if pre.get("type") == "ByteLevel" and pre.get("use_regex", True) else family.pre


def vocabulary(model_dir: Path, tokenizer: Any) -> tuple[list[bytes], list[int]]:
    """Tokens in id order and their types: the special ones CONTROL, so llama.cpp never splits or prints them."""
    import gguf

    vocab = gguf.vocab.BpeVocab(model_dir)
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    tokens, types = [], []
    for i, (text, _, kind) in enumerate(vocab.all_tokens()):
        tokens.append(text if isinstance(text, bytes) else str(text).encode())
        types.append(int(gguf.TokenType.CONTROL if i in special else kind))
    return tokens, types


def write_gguf(model_dir: Path, out: Path, quant: str = "f16", name: str = "") -> Path:
    """Write the merged model in `model_dir` to the GGUF file `out` (quantized as asked); returns `out`."""
    import gguf
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(model_dir)
    check_request(config.model_type, quant)
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
    rope = getattr(config, "rope_parameters", None) or {}
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                          "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[quant])

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokens, types = vocabulary(model_dir, tokenizer)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer(model_dir, family))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=len(tokens))
    if tokenizer.chat_template and not special.chat_template:
        special.chat_template = tokenizer.chat_template  # saved as chat_template.jinja by transformers 5
    special.add_to_gguf(writer, quiet=True)

    names = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise GgufError(f"{model_dir} holds no safetensors weights to convert")
    for path in files:
        with safe_open(path, framework="pt") as f:
            for key in f.keys():
                data = f.get_tensor(key).to(torch.float32).numpy()
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


def ollama_modelfile(gguf_name: str, tokenizer: Any, temperature: float, top_p: float) -> str:
    """An Ollama Modelfile: FROM the GGUF, a TEMPLATE in Go's syntax whose pieces come from rendering the model's
    own chat template around markers (each role's prefix and suffix are the template's), its stop tokens,
    and the run's generation defaults."""
    S, U, A = "\x00SYSTEM\x00", "\x00USER\x00", "\x00ASSISTANT\x00"

    def render(messages: list[tuple[str, str]], generation: bool = False) -> str:
        text = tokenizer.apply_chat_template([{"role": r, "content": c} for r, c in messages], tokenize=False,
                                             add_generation_prompt=generation)
        return text.removeprefix(tokenizer.bos_token or "")  # llama.cpp adds BOS itself

    plain = render([("user", U), ("assistant", A)])
    user_prefix, rest = plain.split(U, 1)
    assistant_suffix = rest.split(A, 1)[1]
    asked = render([("user", U)], generation=True).split(U, 1)[1]  # the user's suffix and the assistant's prefix
    system = ""
    try:
        with_system = render([("system", S), ("user", U), ("assistant", A)])
        sys_prefix, between = with_system.split(S, 1)
        between = between.split(U, 1)[0]
        if between.endswith(user_prefix):
            system = (f"{{{{ if .System }}}}{sys_prefix}{{{{ .System }}}}{between[:len(between) - len(user_prefix)]}"
                      "{{ end }}")
    except Exception:  # noqa: BLE001 - a template without a system role
        system = ""
    template = (f"{system}{{{{ if .Prompt }}}}{user_prefix}{{{{ .Prompt }}}}{{{{ end }}}}{asked}"
                f"{{{{ .Response }}}}{assistant_suffix}")
    stops = [s for s in dict.fromkeys([tokenizer.eos_token, assistant_suffix.strip(), user_prefix.strip()]) if s]
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{template}"""']
    lines += [f'PARAMETER stop "{s}"' for s in stops]
    lines += [f"PARAMETER temperature {temperature}", f"PARAMETER top_p {top_p}"]
    return "\n".join(lines) + "\n"


def metadata_json(path: Path) -> str:
    return json.dumps(read_back(path)["fields"], indent=2, default=str)
