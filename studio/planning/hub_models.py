"""Models named by Hub id: their config.json (and what the Hub says of their size and gating), fetched
once with huggingface_hub and kept in the studio home, so that the next start is offline and instant.

Only config.json and the model's metadata are read (never weights). HF_ENDPOINT, HF_TOKEN, the
Hub's own login and model.revision are respected, because huggingface_hub reads them. Every
failure is a CatalogError that says what to do: a gated model, a repo that does not exist (with
close names), no network with nothing cached, a repo without a config.json.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from studio.atomic import write_json
from studio.paths import studio_home
from studio.planning.modelspec import CatalogError, ModelSpec, spec_from_config, with_anatomy

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "U8": 1,
               "I8": 1}


@dataclass(frozen=True)
class HubModel:
    """A model the Hub knows: for the model picker and for close-name suggestions."""

    id: str
    params: int | None
    gated: bool | None
    downloads: int | None = None


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def cache_file(repo_id: str, revision: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{repo_id.replace('/', '--')}@{revision}")
    return studio_home() / "cache" / "hub-configs" / f"{safe}.json"


def read_cached(repo_id: str, revision: str) -> dict[str, Any] | None:
    path = cache_file(repo_id, revision)
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 8 * 2**20:
            return None
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict) or record.get("id") != repo_id:
        return None
    return record


def describe_hub_error(name: str, what: str, e: BaseException) -> str:
    """Plain advice for a failed Hub request, by the kind of failure (the first matching cause only)."""
    from huggingface_hub import errors

    if isinstance(e, errors.GatedRepoError):
        return (f"{what} {name} is gated: accept its licence on https://huggingface.co/{name}, then set HF_TOKEN "
                "or log in with `hf auth login`")
    if isinstance(e, errors.RepositoryNotFoundError):
        return (f"{what} {name} was not found on the Hub: check the id (a private repo needs HF_TOKEN or "
                "`hf auth login`)")
    if isinstance(e, errors.RevisionNotFoundError):
        return f"{what} {name} has no such revision: check model.revision"
    if isinstance(e, errors.EntryNotFoundError) and not isinstance(e, errors.LocalEntryNotFoundError):
        return f"{what} {name} has no such file on the Hub"
    if offline():
        return (f"{what} {name} is not cached here and HF_HUB_OFFLINE=1 is set: unset it to fetch it, or point "
                "the profile at a local folder")
    if isinstance(e, errors.LocalEntryNotFoundError) or isinstance(e, (OSError, ConnectionError)) or \
            "connect" in str(e).lower() or "offline" in str(e).lower():
        return (f"{what} {name} is not cached here and the Hub cannot be reached: connect to the network (or "
                "set HF_ENDPOINT to your mirror), or point the profile at a local folder")
    return f"could not fetch {what} {name} ({type(e).__name__}: {e}); check the id, your network and HF_TOKEN"


def close_names(name: str, known: tuple[str, ...]) -> list[str]:
    """Up to three of `known` that look like `name` (the whole id, or its last part)."""
    import difflib

    lowered = {k.lower(): k for k in known}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.5)
    tails = {k.split("/")[-1]: k for k in lowered}
    for tail in difflib.get_close_matches(name.lower().split("/")[-1], list(tails), n=3, cutoff=0.6):
        if tails[tail] not in hits:
            hits.append(tails[tail])
    return [lowered[h] for h in hits[:3]]


def hub_suggestions(name: str, known: tuple[str, ...]) -> list[str]:
    """Close names: the catalog's, and the Hub's search for the name's last part (when online)."""
    found: list[str] = []
    if not offline():
        # The Hub searches by substring: a misspelt name finds nothing, so also its first word and its org.
        org, _, tail = name.rpartition("/")
        for query in dict.fromkeys(q for q in (tail, re.split(r"[-_.]", tail)[0], org) if len(q) >= 3):
            try:
                found += [m.id for m in search_hub(query, limit=20)]
            except Exception:  # noqa: BLE001 - suggestions are a courtesy; the error itself is already known
                break
    return close_names(name, (*found, *known))


def endpoint() -> str:
    """The Hub studio talks to: HF_ENDPOINT as it is now (huggingface_hub reads it once, at its import, and
    builds some URLs from it then), passed to every call."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def reachable(url: str, timeout_s: float = 3.0) -> bool:
    """The Hub's host answers a TCP connection (a quick 'no' instead of huggingface_hub's retries)."""
    import socket
    from urllib.parse import urlparse

    parts = urlparse(url)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)),
                                      timeout=timeout_s):
            return True
    except OSError:
        return False


def fetch_record(repo_id: str, revision: str, known: tuple[str, ...] = ()) -> dict[str, Any]:
    """config.json, the Hub's parameter count and gating, fetched now; raises CatalogError."""
    import logging

    from huggingface_hub import HfApi, errors, hf_hub_download

    if not reachable(endpoint()):
        close = close_names(repo_id, known)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise CatalogError(f"model {repo_id}{hint} is not cached here and the Hub ({endpoint()}) cannot be reached: "
                           "connect to the network (or set HF_ENDPOINT to your mirror), or point the profile at a "
                           "local folder with the model's config.json")
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)  # its retry notices are not the user's business
    downloads = studio_home() / "cache" / "hub-downloads"
    try:
        path = hf_hub_download(repo_id, "config.json", revision=revision, cache_dir=downloads,
                               endpoint=endpoint())
    except errors.LocalEntryNotFoundError as e:  # a subclass of "no such file": the network failed
        raise CatalogError(describe_hub_error(repo_id, "model", e)) from None
    except errors.EntryNotFoundError:
        raise CatalogError(f"model {repo_id} has no config.json on the Hub (at revision {revision}): it is not a "
                           "transformers model (a GGUF or adapter-only repo?); name the base model it was made "
                           "from") from None
    except errors.GatedRepoError as e:  # a subclass of "not found": said first
        raise CatalogError(describe_hub_error(repo_id, "model", e)) from None
    except errors.RepositoryNotFoundError as e:
        close = hub_suggestions(repo_id, known)
        hint = f" Close names: {', '.join(close)}." if close else ""
        raise CatalogError(describe_hub_error(repo_id, "model", e) + "." + hint) from None
    except Exception as e:  # noqa: BLE001 - every other failure gets its advice
        raise CatalogError(describe_hub_error(repo_id, "model", e)) from None
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CatalogError(f"model {repo_id}: its config.json does not parse ({e})") from None
    params, gated = None, None
    try:
        info = HfApi(endpoint=endpoint()).model_info(repo_id, revision=revision, expand=["gated", "safetensors"])
        gated = bool(info.gated) if info.gated is not None else None
        if info.safetensors is not None and info.safetensors.total:
            params = int(info.safetensors.total)
    except Exception:  # noqa: BLE001 - the size then comes from the weights' index, or the config alone
        pass
    if params is None:
        params = params_from_index(repo_id, revision, config, downloads)
    return {"id": repo_id, "revision": revision, "config": config, "params": params, "gated": gated,
            "fetched_at": time.time()}


def params_from_index(repo_id: str, revision: str, config: dict[str, Any], downloads: Path) -> int | None:
    """Parameters from model.safetensors.index.json: its total size over the bytes of the config's dtype."""
    from huggingface_hub import hf_hub_download

    try:
        index = json.loads(Path(hf_hub_download(repo_id, "model.safetensors.index.json", revision=revision,
                                                cache_dir=downloads, endpoint=endpoint())).read_text(encoding="utf-8"))
        size = int(index["metadata"]["total_size"])
    except Exception:  # noqa: BLE001 - single-file models have no index
        return None
    dtype = config.get("torch_dtype") or config.get("dtype") or "bfloat16"
    return size // DTYPE_BYTES.get(str(dtype), 2)


def hub_model(name: str, revision: str = "main", online: bool = True, trust_remote_code: bool = False,
              read_code: bool = True, known: tuple[str, ...] = ()) -> ModelSpec:
    """A model by Hub id: from studio's cache of Hub configs, else (online) fetched now; raises CatalogError."""
    if not HUB_ID.match(name):
        close = close_names(name, known)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise CatalogError(f"unknown model {name!r}: not in studio's catalog, not a local folder with a "
                           f"config.json, and not a Hub id (org/name).{hint} `studio models` lists the catalog")
    record = read_cached(name, revision)
    if record is None:
        if not online or offline():
            why = "HF_HUB_OFFLINE=1 is set" if offline() else "studio is not looking online for it here"
            close = close_names(name, known)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise CatalogError(f"unknown model {name!r}: not in studio's catalog or the local Hugging Face cache, "
                               f"and {why}, so its config cannot be fetched.{hint} Unset HF_HUB_OFFLINE (or connect) "
                               "once to fetch it; or point at a local folder with its config.json")
        record = fetch_record(name, revision, known)
        try:
            write_json(cache_file(name, revision), record)
        except OSError:
            pass  # a read-only home: fetched again next time
    spec = spec_from_config(record["config"], name, source="hub", gated=record.get("gated"),
                            reported_params=int(record.get("params") or 0))
    spec = with_anatomy(spec, trust_remote_code) if read_code else spec
    return approximate_from_params(spec)


def approximate_from_params(spec: ModelSpec) -> ModelSpec:
    """A model transformers cannot build (remote code, an unknown type) still gets an estimate: its pattern
    layout scaled so that its parameters add up to what the Hub reports, marked approximate with the reason."""
    if spec.exact or not spec.reported_params or not spec.total_params:
        return spec
    scale = spec.reported_params / spec.total_params
    if 0.9 < scale < 1.1:
        return spec
    layers = max(1, round(spec.layers * scale))
    return replace(spec, layers=layers, approximate=f"{spec.approximate}; {spec.layers} -> {layers} blocks so "
                                                    f"that it has the {spec.reported_params / 1e9:.2f}B parameters "
                                                    "the Hub reports")


def search_hub(query: str, limit: int = 20) -> list[HubModel]:
    """The Hub's model search (text-generation models, most downloaded first); raises on network errors."""
    from huggingface_hub import HfApi

    found = []
    for info in HfApi(endpoint=endpoint()).list_models(search=query, limit=limit, sort="downloads",
                                    expand=["gated", "safetensors", "downloads"]):
        params = int(info.safetensors.total) if getattr(info, "safetensors", None) and info.safetensors.total else None
        gated = bool(info.gated) if getattr(info, "gated", None) is not None else None
        found.append(HubModel(info.id, params, gated, getattr(info, "downloads", None)))
    return found
