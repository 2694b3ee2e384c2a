"""A model as the estimator sees it (ModelSpec): its shape from its config.json, and its anatomy (every
parameter and linear layer, read from transformers' own code) when transformers can build it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from studio.planning.anatomy import Anatomy, AnatomyError, Block, Experts, Linear, Norm, anatomy_of, linear_role


class CatalogError(Exception):
    """An unknown model or GPU; the message lists what to do."""


ARCH_BY_MODEL_TYPE = {
    "llama": "llama", "mistral": "llama", "qwen2": "llama", "gemma": "llama", "gemma2": "llama",
    "gemma3_text": "llama", "gemma3": "llama", "qwen3": "llama", "olmo": "llama", "olmo2": "llama",
    "granite": "llama", "smollm3": "llama", "mixtral": "mixtral", "qwen3_moe": "mixtral", "qwen2_moe": "mixtral",
    "olmoe": "mixtral", "gpt_oss": "mixtral", "phi3": "phi3", "phi": "phi", "qwen": "qwen", "falcon": "falcon",
    "gpt_neox": "neox", "stablelm": "neox", "gpt_bigcode": "bigcode",
}


@dataclass(frozen=True)
class ModelSpec:
    """A model as the estimator sees it: its shape, and, when transformers can build it, its anatomy (every
    parameter and linear layer, read from its own code). Without an anatomy the layout follows the
    architecture's usual pattern and estimates are approximate (`approximate` says why)."""

    id: str
    arch: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool
    head_dim: int = 0
    experts: int = 0
    experts_per_token: int = 0
    norms_per_layer: int = 2
    qkv_bias: bool = False
    aliases: tuple[str, ...] = ()
    source: str = "catalog"
    family: str = ""
    license: str = ""
    gated: bool | None = None        # None: not known (not in the catalog, and the Hub was not asked)
    note: str = ""
    config: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    anatomy: Anatomy | None = field(default=None, compare=False, repr=False)
    approximate: str = ""            # why the layout is the architecture's usual pattern, not the model's own
    reported_params: int = 0         # the parameter count the Hub reports (safetensors), when known

    @property
    def hd(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def q_dim(self) -> int:
        return self.heads * self.hd

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.hd

    @property
    def gated_mlp(self) -> bool:
        return self.arch in ("llama", "mixtral", "phi3", "qwen")

    @property
    def exact(self) -> bool:
        """The layout was read from the model's own code."""
        return self.anatomy is not None

    def blocks(self) -> tuple[Block, ...]:
        """The decoder blocks: the model's own (anatomy), else one kind following the architecture's pattern."""
        if self.anatomy is not None:
            return self.anatomy.blocks
        linears = tuple(pattern_linears(self))
        experts = None
        if self.experts:
            experts = Experts("mlp.experts", self.experts, self.intermediate, True,
                              3 * self.experts * self.hidden * self.intermediate)
        norms = tuple(Norm(f"norm{i}", self.hidden, "rms") for i in range(self.norms_per_layer))
        lora = tuple((lin.name, lin.count * (lin.d_in + lin.d_out)) for lin in linears)
        params = sum(lin.d_in * lin.d_out * lin.count for lin in linears)
        return (Block(self.layers, params, linears, norms, experts, 0 if self.experts else self.intermediate,
                      self.gated_mlp, lora),)

    def linears(self) -> list[Linear]:
        """The linear layers of one block of each kind, named as PEFT sees them."""
        seen: dict[str, Linear] = {}
        for block in self.blocks():
            for lin in block.linears:
                seen.setdefault(lin.name, lin)
        return list(seen.values())

    @property
    def linear_params(self) -> int:
        """Parameters bitsandbytes quantizes under QLoRA."""
        if self.anatomy is not None:
            return self.anatomy.quantized_params
        return self.layers * sum(lin.d_in * lin.d_out * lin.count for lin in pattern_linears(self))

    @property
    def embed_params(self) -> int:
        return self.anatomy.embed_params if self.anatomy is not None else self.vocab * self.hidden

    @property
    def head_params(self) -> int:
        if self.anatomy is not None:
            return self.anatomy.head_params
        return 0 if self.tied else self.vocab * self.hidden

    @property
    def other_params(self) -> int:
        """Norms and biases (pattern layout): small, never quantized."""
        norms = (self.norms_per_layer * self.layers + 1) * self.hidden
        if self.arch in ("phi", "falcon", "neox", "bigcode"):
            norms *= 2  # LayerNorm has a bias
        biases = 0
        if self.qkv_bias or self.arch in ("qwen", "phi", "neox", "bigcode"):
            biases = self.layers * (self.q_dim + 2 * self.kv_dim)
        if self.arch in ("phi", "neox", "bigcode"):
            biases += self.layers * (2 * self.hidden + self.intermediate)
        return norms + biases

    @property
    def total_params(self) -> int:
        if self.anatomy is not None:
            return self.anatomy.total_params
        return self.linear_params + self.embed_params + self.head_params + self.other_params

    @property
    def active_params(self) -> int:
        """Parameters one token passes through (MoE: only the chosen experts)."""
        routed = [b for b in self.blocks() if b.experts]
        if not routed:
            return self.total_params
        k = self.experts_per_token or 1
        idle = sum(b.count * b.experts.params * (b.experts.count - k) // b.experts.count for b in routed)
        return self.total_params - idle

    @property
    def tower_params(self) -> int:
        """Vision and audio towers: loaded and frozen when text is trained."""
        return self.anatomy.tower_params if self.anatomy is not None else 0


def pattern_linears(spec: ModelSpec) -> list[Linear]:
    """The linear layers of one block as the architecture usually lays them out (models without an anatomy)."""
    h, i, q, kv = spec.hidden, spec.intermediate, spec.q_dim, spec.kv_dim
    a = spec.arch

    def lin(name: str, d_in: int, d_out: int, count: int = 1, part: str = "attn") -> Linear:
        if part == "router":
            return Linear(name, d_in, d_out, "router", count, "router")
        role, reads = linear_role(name, d_in, d_out, h, part == "attn")
        return Linear(name, d_in, d_out, role, count, reads)

    if a in ("llama", "mixtral"):
        attn = [lin("q_proj", h, q), lin("k_proj", h, kv), lin("v_proj", h, kv), lin("o_proj", q, h)]
        if a == "mixtral":
            e = spec.experts
            return attn + [lin("w1", h, i, e, "mlp"), lin("w3", h, i, e, "mlp"), lin("w2", i, h, e, "mlp"),
                           lin("gate", h, e, 1, "router")]
        return attn + [lin("gate_proj", h, i, 1, "mlp"), lin("up_proj", h, i, 1, "mlp"),
                       lin("down_proj", i, h, 1, "mlp")]
    if a == "phi3":
        return [lin("qkv_proj", h, q + 2 * kv), lin("o_proj", q, h), lin("gate_up_proj", h, 2 * i, 1, "mlp"),
                lin("down_proj", i, h, 1, "mlp")]
    if a == "phi":
        return [lin("q_proj", h, q), lin("k_proj", h, kv), lin("v_proj", h, kv), lin("dense", q, h),
                lin("fc1", h, i, 1, "mlp"), lin("fc2", i, h, 1, "mlp")]
    if a == "qwen":
        return [lin("c_attn", h, 3 * h), lin("c_proj", h, h), lin("w1", h, i, 1, "mlp"), lin("w2", h, i, 1, "mlp"),
                lin("mlp.c_proj", i, h, 1, "mlp")]
    if a in ("falcon", "neox"):
        return [lin("query_key_value", h, q + 2 * kv), lin("dense", q, h), lin("dense_h_to_4h", h, i, 1, "mlp"),
                lin("dense_4h_to_h", i, h, 1, "mlp")]
    if a == "bigcode":
        return [lin("c_attn", h, q + 2 * kv), lin("c_proj", q, h), lin("c_fc", h, i, 1, "mlp"),
                lin("mlp.c_proj", i, h, 1, "mlp")]
    raise CatalogError(f"unknown architecture {a!r}")


def spec_from_config(config: dict[str, Any], model_id: str, source: str = "config", **meta: Any) -> ModelSpec:
    """A ModelSpec from a Hugging Face config.json: its shape from the config's fields. The layout is the
    architecture's usual one (marked approximate) until `with_anatomy` reads the model's own code."""
    if not isinstance(config, dict):
        raise CatalogError(f"model {model_id}: its config.json is not a JSON object")
    model_type = str(config.get("model_type", ""))
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config

    def get(*keys: str, default: Any = None) -> Any:
        for k in keys:
            if text.get(k) is not None:
                return text[k]
            if config.get(k) is not None:
                return config[k]
        return default

    try:
        hidden = int(get("hidden_size", "n_embd", "d_model"))
        heads = int(get("num_attention_heads", "n_head", "num_heads"))
        # hybrids may give only their blocks' kinds (Nemotron-H's layers_block_type, or its pattern string)
        kinds = get("layers_block_type", "hybrid_override_pattern", "layer_types")
        layers = int(get("num_hidden_layers", "n_layer", "num_layers", default=len(kinds) if kinds else None))
        vocab = int(get("vocab_size", "padded_vocab_size", default=262208 if model_type == "gemma3" else None))
        if min(hidden, heads, layers, vocab) < 1:
            raise ValueError
    except (TypeError, ValueError):
        raise CatalogError(f"model {model_id}: its config.json does not give hidden_size, num_attention_heads, "
                           "num_hidden_layers and vocab_size as positive numbers; is it a language model's "
                           "config?") from None
    arch = ARCH_BY_MODEL_TYPE.get(model_type, "llama")
    kv = get("num_key_value_heads", "num_kv_heads", "n_head_kv")
    if kv is None:
        kv = 1 if (text.get("multi_query") or (arch == "falcon" and not text.get("new_decoder_architecture"))) else heads
    experts = int(get("num_local_experts", "num_experts", "n_routed_experts", default=0) or 0)
    inter = get(*(("moe_intermediate_size",) if experts else ()), "intermediate_size", "n_inner", "ffn_hidden_size",
                default=4 * hidden)
    if arch == "qwen":
        inter = int(inter) // 2
    tied = get("tie_word_embeddings", default=arch in ("falcon", "bigcode") or model_type.startswith("gemma"))
    why = "the model's own code has not been read yet" if model_type in ARCH_BY_MODEL_TYPE else \
        f"model type {model_type or '?'} is laid out like Llama until its own code has been read"
    return ModelSpec(
        id=model_id, arch=arch, hidden=hidden, intermediate=int(inter), layers=layers, heads=heads, kv_heads=int(kv),
        vocab=vocab, tied=bool(tied), head_dim=int(get("head_dim") or 0), experts=experts,
        experts_per_token=int(get("num_experts_per_tok", "experts_per_token", default=0) or 0) if experts else 0,
        norms_per_layer=4 if model_type in ("gemma2", "gemma3_text", "gemma3") else 2,
        qkv_bias=bool(get("attention_bias") or model_type == "qwen2"), source=source, config=dict(config),
        approximate=why, **meta)


def attach(spec: ModelSpec, anatomy: Anatomy) -> ModelSpec:
    """The spec with the anatomy's exact shape."""
    return replace(spec, anatomy=anatomy, approximate="", hidden=anatomy.hidden, heads=anatomy.heads,
                   kv_heads=anatomy.kv_heads, head_dim=anatomy.head_dim, vocab=anatomy.vocab, tied=anatomy.tied,
                   layers=anatomy.layers, experts=anatomy.experts,
                   experts_per_token=anatomy.top_k if anatomy.experts else 0)


def with_anatomy(spec: ModelSpec, trust_remote_code: bool = False) -> ModelSpec:
    """The spec with its anatomy read from the model's own code (once per config, then cached); left
    approximate, with the reason, when transformers cannot build the model."""
    if spec.anatomy is not None or spec.config is None:
        return spec
    try:
        return attach(spec, anatomy_of(spec.config, trust_remote_code))
    except AnatomyError as e:
        return replace(spec, approximate=f"transformers cannot build it here ({e}); the layout is the usual "
                                         f"{spec.arch} one")


def read_config(path: Path, name: str) -> dict[str, Any]:
    """A config.json studio did not write: a JSON object of sane size, or a CatalogError naming the file."""
    try:
        if path.stat().st_size > 4 * 2**20:
            raise CatalogError(f"model {name}: {path} is over 4 MiB; that is not a config.json")
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CatalogError(f"model {name}: cannot read {path} ({e}); point model.name at a folder with the "
                           "model's config.json") from None
    if not isinstance(config, dict):
        raise CatalogError(f"model {name}: {path} is not a JSON object")
    return config


