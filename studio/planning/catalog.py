"""The model catalog and the GPU catalog, shipped as data (specs/models.toml, specs/gpus.toml).

A model is found by hub id or alias (case-insensitive, offline), by a local folder with a
config.json, in the local Hugging Face cache, or on the Hub (studio.planning.hub_models, which
fetches config.json alone and caches it). Its anatomy, read from transformers' own code,
makes parameter counts and LoRA targets exact; the catalog ships its models' anatomies.
GPU names match loosely: "A100-80GB", "a100 80gb" and NVML's "NVIDIA A100-SXM4-80GB" are one card.
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

from studio.planning.anatomy import Anatomy, anatomy_from_dict, config_key
from studio.planning.hub_models import hub_model
from studio.planning.modelspec import (ARCH_BY_MODEL_TYPE, CatalogError, ModelSpec, attach, pattern_linears,
                                       read_config, spec_from_config, with_anatomy)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SPECS = Path(__file__).resolve().parent / "specs"


__all__ = ["ARCH_BY_MODEL_TYPE", "CatalogError", "GpuSpec", "ModelSpec", "catalog_gpus", "catalog_models",
           "lookup_gpu", "lookup_model", "pattern_linears", "spec_from_config"]


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
def _anatomies() -> dict[str, Any]:
    """The shipped anatomies of the catalog's models (specs/anatomies.json), by model id."""
    try:
        raw = json.loads((SPECS / "anatomies.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def shipped_anatomy(model_id: str, config: dict[str, Any]) -> Anatomy | None:
    """The catalog's anatomy of `model_id`, when it was read from this very config with this transformers."""
    entry = _anatomies().get(model_id)
    if not isinstance(entry, dict) or entry.get("key") != config_key(config, per_version=False):
        return None
    try:
        return anatomy_from_dict(entry.get("anatomy"))
    except ValueError:
        return None


@lru_cache(maxsize=1)
def _models() -> dict[str, ModelSpec]:
    doc = tomllib.loads((SPECS / "models.toml").read_text(encoding="utf-8"))
    table: dict[str, ModelSpec] = {}
    for raw in doc["model"]:
        meta = dict(family=raw.get("family", ""), license=raw.get("license", ""), gated=raw.get("gated"),
                    note=raw.get("note", ""), aliases=tuple(raw.get("aliases", ())), source="catalog")
        if "config" in raw:
            spec = spec_from_config(raw["config"], raw["id"], **meta)
            anatomy = shipped_anatomy(raw["id"], raw["config"])
            spec = attach(spec, anatomy) if anatomy else spec
        else:
            spec = ModelSpec(id=raw["id"], **raw["shape"], **meta,
                             approximate=raw.get("note", "the layout is the architecture's usual one"))
        for key in (spec.id, *spec.aliases):
            table[_norm(key)] = spec
            table.setdefault(_norm(key.split("/")[-1]), spec)
    return table


def catalog_models() -> list[ModelSpec]:
    seen: dict[str, ModelSpec] = {}
    for spec in _models().values():
        seen.setdefault(spec.id, spec)
    return sorted(seen.values(), key=lambda s: s.id.lower())


def _hf_cache_config(model_id: str) -> Path | None:
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    hub = Path(os.environ.get("HF_HUB_CACHE", home / "hub"))
    snapshots = hub / f"models--{model_id.replace('/', '--')}" / "snapshots"
    try:
        if snapshots.is_dir():
            for snap in sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
                if (snap / "config.json").is_file():
                    return snap / "config.json"
    except OSError:
        return None
    return None


def catalog_match(name: str) -> ModelSpec | None:
    return _models().get(_norm(name))


def local_model(name: str, trust_remote_code: bool = False, read_code: bool = True) -> ModelSpec | None:
    """A model from a local folder or the Hugging Face cache, with its anatomy (read once, then cached)."""
    local = Path(name).expanduser()
    try:
        config_path = local / "config.json" if local.is_dir() else _hf_cache_config(name)
        if config_path is None or not config_path.is_file():
            return None
    except OSError:
        return None
    spec = spec_from_config(read_config(config_path, name), name, source=str(config_path))
    return with_anatomy(spec, trust_remote_code) if read_code else spec


def lookup_model(name: str, trust_remote_code: bool = False, online: bool = True, revision: str = "main",
                 read_code: bool = True) -> ModelSpec:
    """A model by catalog id or alias, local folder, Hugging Face cache, studio's cache of Hub configs, or
    (online) the Hub itself; raises CatalogError saying what to do. `read_code=False` never starts the
    anatomy process (an instant answer; approximate until the process has run once for this config)."""
    spec = catalog_match(name)
    if spec is not None:
        return spec
    spec = local_model(name, trust_remote_code, read_code)
    if spec is not None:
        return spec
    return hub_model(name, revision=revision, online=online, trust_remote_code=trust_remote_code,
                     read_code=read_code, known=tuple(n for s in catalog_models() for n in (s.id, *s.aliases)
                                                      if "/" in n))


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


@dataclass(frozen=True)
class ModelMatch:
    """One answer of the model picker: a catalog model, or one the Hub found."""

    id: str
    params: int | None
    gated: bool | None
    family: str
    where: str            # "catalog" | "hub"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "params": self.params, "gated": self.gated, "family": self.family,
                "where": self.where}


def search_models(query: str, online: bool = False, limit: int = 30) -> list[ModelMatch]:
    """Catalog models whose id or alias holds every word of `query` (all of them for ""), then, `online`, what
    the Hub's search adds; a failed Hub search leaves the catalog's answer."""
    words = [w for w in re.split(r"[\s/]+", query.lower()) if w]
    found = [ModelMatch(s.id, s.total_params, s.gated, s.family, "catalog") for s in catalog_models()
             if not s.id.startswith("builtin:") or not words
             if all(any(w in name.lower() for name in (s.id, *s.aliases)) for w in words)]
    if online and words:
        from studio.planning.hub_models import search_hub

        try:
            hub = search_hub(" ".join(words), limit=limit)
        except Exception:  # noqa: BLE001 - offline or unreachable: the catalog's matches stand
            hub = []
        known = {m.id.lower() for m in found}
        found += [ModelMatch(h.id, h.params, h.gated, "", "hub") for h in hub if h.id.lower() not in known]
    return found[:limit] if words else found
