"""Model architectures and GPU specifications, shipped as data (studio/specs/*.toml).

Models are found by hub id or alias (case-insensitive, offline), by a local
folder with config.json, or in the local Hugging Face cache. GPU names match
loosely: "A100-80GB", "a100 80gb" and NVML's "NVIDIA A100-SXM4-80GB" are one card.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SPECS = Path(__file__).resolve().parent / "specs"


class CatalogError(Exception):
    """An unknown model or GPU; the message lists what to do."""


@dataclass(frozen=True)
class Linear:
    """One linear layer inside a transformer block: its PEFT name and shape."""

    name: str
    d_in: int
    d_out: int
    count: int = 1  # experts hold several copies
    part: str = "attn"  # attn | mlp | router

    @property
    def reads(self) -> str:
        """Which activation it reads: linears that read the same one share its saved copy.

        attn_in (the normed hidden state: q, k, v), attn_out (attention's output: o_proj),
        mlp_in (the normed hidden state: gate, up), mlp_mid (the MLP's inner activation: down).
        """
        if self.part == "attn":
            return "attn_out" if self.name in ("o_proj", "dense", "c_proj") else "attn_in"
        if self.part == "mlp":
            down = self.name in ("down_proj", "fc2", "dense_4h_to_h") or \
                (self.name in ("w2", "c_proj") and self.d_out < self.d_in)  # original Qwen's w2 is an up projection
            return "mlp_mid" if down else "mlp_in"
        return "router"


@dataclass(frozen=True)
class ModelSpec:
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

    def linears(self) -> list[Linear]:
        """The linear layers of one block, named as PEFT sees them."""
        h, i, q, kv = self.hidden, self.intermediate, self.q_dim, self.kv_dim
        a = self.arch
        if a in ("llama", "mixtral"):
            attn = [Linear("q_proj", h, q), Linear("k_proj", h, kv), Linear("v_proj", h, kv), Linear("o_proj", q, h)]
            if a == "mixtral":
                e = self.experts
                return attn + [Linear("w1", h, i, e, "mlp"), Linear("w3", h, i, e, "mlp"), Linear("w2", i, h, e, "mlp"),
                               Linear("gate", h, e, 1, "router")]
            return attn + [Linear("gate_proj", h, i, 1, "mlp"), Linear("up_proj", h, i, 1, "mlp"),
                           Linear("down_proj", i, h, 1, "mlp")]
        if a == "phi3":
            return [Linear("qkv_proj", h, q + 2 * kv), Linear("o_proj", q, h),
                    Linear("gate_up_proj", h, 2 * i, 1, "mlp"), Linear("down_proj", i, h, 1, "mlp")]
        if a == "phi":
            return [Linear("q_proj", h, q), Linear("k_proj", h, kv), Linear("v_proj", h, kv), Linear("dense", q, h),
                    Linear("fc1", h, i, 1, "mlp"), Linear("fc2", i, h, 1, "mlp")]
        if a == "qwen":
            return [Linear("c_attn", h, 3 * h), Linear("c_proj", h, h), Linear("w1", h, i, 1, "mlp"),
                    Linear("w2", h, i, 1, "mlp"), Linear("c_proj", i, h, 1, "mlp")]
        if a in ("falcon", "neox"):
            return [Linear("query_key_value", h, q + 2 * kv), Linear("dense", q, h),
                    Linear("dense_h_to_4h", h, i, 1, "mlp"), Linear("dense_4h_to_h", i, h, 1, "mlp")]
        if a == "bigcode":
            return [Linear("c_attn", h, q + 2 * kv), Linear("c_proj", q, h), Linear("c_fc", h, i, 1, "mlp"),
                    Linear("c_proj", i, h, 1, "mlp")]
        raise CatalogError(f"unknown architecture {a!r}")

    @property
    def linear_params(self) -> int:
        return self.layers * sum(lin.d_in * lin.d_out * lin.count for lin in self.linears())

    @property
    def embed_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def head_params(self) -> int:
        return 0 if self.tied else self.vocab * self.hidden

    @property
    def other_params(self) -> int:
        """Norms and biases: small, never quantized."""
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
        return self.linear_params + self.embed_params + self.head_params + self.other_params

    @property
    def active_params(self) -> int:
        """Parameters one token passes through (MoE: only the chosen experts)."""
        if not self.experts:
            return self.total_params
        per_expert = self.layers * 3 * self.hidden * self.intermediate
        return self.total_params - per_expert * (self.experts - self.experts_per_token)


@dataclass(frozen=True)
class GpuSpec:
    name: str
    memory_gib: float
    bf16_tflops: float
    fp16_tflops: float
    bandwidth_gbs: float
    price_per_hour: float
    compute_capability: str = ""
    match: tuple[tuple[str, ...], ...] = field(default=())

    @property
    def bf16(self) -> bool:
        return self.bf16_tflops > 0

    def peak_tflops(self, dtype: str) -> float:
        if dtype == "bf16" and self.bf16:
            return self.bf16_tflops
        if dtype == "fp32":
            return self.fp16_tflops / 8  # TF32 is off by default in PyTorch matmuls
        return self.fp16_tflops


def _norm(name: str) -> str:
    return name.strip().lower()


@lru_cache(maxsize=1)
def _models() -> dict[str, ModelSpec]:
    doc = tomllib.loads((SPECS / "models.toml").read_text(encoding="utf-8"))
    table: dict[str, ModelSpec] = {}
    for raw in doc["model"]:
        raw = dict(raw)
        raw["aliases"] = tuple(raw.get("aliases", ()))
        spec = ModelSpec(**raw)
        for key in (spec.id, *spec.aliases):
            table[_norm(key)] = spec
            table[_norm(key.split("/")[-1])] = table.get(_norm(key.split("/")[-1]), spec)
    return table


def catalog_models() -> list[ModelSpec]:
    seen: dict[str, ModelSpec] = {}
    for spec in _models().values():
        seen.setdefault(spec.id, spec)
    return sorted(seen.values(), key=lambda s: s.id.lower())


ARCH_BY_MODEL_TYPE = {
    "llama": "llama", "mistral": "llama", "qwen2": "llama", "gemma": "llama", "gemma2": "llama",
    "gemma3_text": "llama", "qwen3": "llama", "olmo": "llama", "olmo2": "llama", "granite": "llama",
    "mixtral": "mixtral", "phi3": "phi3", "phi": "phi", "qwen": "qwen", "falcon": "falcon",
    "gpt_neox": "neox", "stablelm": "neox", "gpt_bigcode": "bigcode",
}


def spec_from_config(config: dict[str, Any], model_id: str, source: str) -> ModelSpec:
    """A ModelSpec from a Hugging Face config.json."""
    model_type = config.get("model_type", "")
    arch = ARCH_BY_MODEL_TYPE.get(model_type)
    if arch is None:
        raise CatalogError(f"model {model_id}: architecture {model_type!r} is not modelled yet; "
                           f"known: {', '.join(sorted(ARCH_BY_MODEL_TYPE))}")

    def get(*keys: str, default: Any = None) -> Any:
        for k in keys:
            if config.get(k) is not None:
                return config[k]
        return default

    hidden = int(get("hidden_size", "n_embd", "d_model"))
    heads = int(get("num_attention_heads", "n_head"))
    kv = get("num_key_value_heads", "num_kv_heads", "n_head_kv")
    if kv is None:
        kv = 1 if (config.get("multi_query") or (arch == "falcon" and not config.get("new_decoder_architecture"))) else heads
    inter = get("intermediate_size", "n_inner", "ffn_hidden_size", default=4 * hidden)
    if arch == "qwen":
        inter = int(inter) // 2
    if arch == "mixtral":
        inter = get("intermediate_size", default=inter)
    return ModelSpec(
        id=model_id, arch=arch, hidden=hidden, intermediate=int(inter),
        layers=int(get("num_hidden_layers", "n_layer", "num_layers")), heads=heads, kv_heads=int(kv),
        vocab=int(get("vocab_size", "padded_vocab_size")), tied=bool(config.get("tie_word_embeddings", arch in ("falcon", "bigcode"))),
        head_dim=int(config.get("head_dim") or 0), experts=int(get("num_local_experts", "num_experts", default=0) or 0),
        experts_per_token=int(get("num_experts_per_tok", default=0) or 0),
        norms_per_layer=4 if model_type in ("gemma2", "gemma3_text") else 2,
        qkv_bias=bool(config.get("attention_bias") or model_type == "qwen2"), source=source,
    )


def _hf_cache_config(model_id: str) -> Path | None:
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    hub = Path(os.environ.get("HF_HUB_CACHE", home / "hub"))
    snapshots = hub / f"models--{model_id.replace('/', '--')}" / "snapshots"
    if snapshots.is_dir():
        for snap in sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
            if (snap / "config.json").is_file():
                return snap / "config.json"
    return None


def lookup_model(name: str) -> ModelSpec:
    """A model by hub id, alias, local folder or HF cache; raises CatalogError with suggestions."""
    spec = _models().get(_norm(name))
    if spec is not None:
        return spec
    local = Path(name).expanduser()
    config_path = local / "config.json" if local.is_dir() else _hf_cache_config(name)
    if config_path is not None and config_path.is_file():
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise CatalogError(f"model {name}: cannot read {config_path}: {e}") from None
        return spec_from_config(config, name, source=str(config_path))
    import difflib

    known = sorted({s.id for s in _models().values()})
    close = difflib.get_close_matches(name.lower(), [k.lower() for k in known], n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise CatalogError(f"unknown model {name!r}: not in studio's catalog, not a local folder with config.json, "
                       f"and not in the local Hugging Face cache.{hint} `studio models` lists the catalog; "
                       "or pass a folder holding the model's config.json")


def _tokens(name: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", name.lower()))


@lru_cache(maxsize=1)
def catalog_gpus() -> list[GpuSpec]:
    doc = tomllib.loads((SPECS / "gpus.toml").read_text(encoding="utf-8"))
    return [GpuSpec(**{**g, "match": tuple(tuple(m) for m in g["match"])}) for g in doc["gpu"]]


def lookup_gpu(name: str) -> GpuSpec:
    """The catalog GPU whose name tokens match best; raises CatalogError listing the known ones."""
    tokens = _tokens(name)
    best: tuple[int, GpuSpec] | None = None
    for gpu in catalog_gpus():
        for pattern in gpu.match:
            if set(pattern) <= tokens and (best is None or len(pattern) > best[0]):
                best = (len(pattern), gpu)
    if best is None:
        raise CatalogError(f"unknown GPU {name!r}; known: {', '.join(g.name for g in catalog_gpus())}; "
                           "or give the memory with --vram GB")
    gpu = best[1]
    prices = _price_overrides()
    if gpu.name.lower() in prices:
        gpu = replace(gpu, price_per_hour=prices[gpu.name.lower()])
    return gpu


def _price_overrides() -> dict[str, float]:
    """STUDIO_GPU_PRICES="H100 80GB=2.1,RTX 4090=0.3" overrides the catalog's hourly prices."""
    out: dict[str, float] = {}
    for item in os.environ.get("STUDIO_GPU_PRICES", "").split(","):
        if "=" in item:
            k, v = item.rsplit("=", 1)
            try:
                out[k.strip().lower()] = float(v)
            except ValueError:
                pass
    return out
