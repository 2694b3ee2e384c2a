"""What a model is made of, read from its own modelling code: the anatomy process
(`python -m studio.anatomy`, which imports torch) builds the model on the meta device and
reports its parameters, blocks, linear layers, experts, norms, what bitsandbytes quantizes
and what PEFT's LoRA trains. This module runs that process, caches its answers in the
studio home (one file per config and transformers version, so the next start is instant)
and turns them into typed records for the estimator. It never imports torch.

Anatomy files are read like any file studio did not write this minute: every field is
checked, and a file that does not hold an anatomy is ignored and made again.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from studio.atomic import write_json
from studio.paths import studio_home

FORMAT = 1
# Module paths of the parts a text fine-tune leaves frozen and untargeted: vision and audio towers and
# their projectors (a regex PEFT's exclude_modules matches in full against a module's name).
NON_TEXT_MODULES = (r"(?:.*\.)?(vision\w*|visual\w*|audio\w*|speech\w*|image\w*|embed_vision|embed_audio"
                    r"|multi_modal_projector|mm_projector)(?:\..*)?")
ATTENTION_WORDS = ("attn", "attention")
# Projections only attention has: a module holding one is attention, whatever it is called (Nemotron-H's
# blocks call every mixer `mixer`, attention included).
ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "qkv_proj", "c_attn", "query_key_value", "Wqkv", "q_a_proj",
                         "kv_a_proj_with_mqa")
OUTPUT_PROJECTIONS = ("o_proj", "dense", "out_proj", "c_proj", "wo", "o")
DOWN_PROJECTIONS = ("down_proj", "fc2", "w2", "c_proj", "dense_4h_to_h", "wo")


class AnatomyError(Exception):
    """The anatomy process could not build the model; the message says why."""


@dataclass(frozen=True)
class Linear:
    """One linear layer of a block: its PEFT name (relative to the block), shape and part."""

    name: str
    d_in: int
    d_out: int
    part: str = "attn"  # attn | mlp | router
    count: int = 1      # experts hold several copies (catalog entries without an anatomy)
    reads: str = ""     # the activation it reads (linears reading the same one share its saved copy)
    bias: bool = False

    @property
    def short(self) -> str:
        return self.name.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class Experts:
    """A mixture-of-experts layer's fused expert weights (one 3-D parameter per projection)."""

    name: str
    count: int
    intermediate: int
    gated: bool
    params: int          # all experts' parameters in this block
    biased: bool = False  # the projections have biases (GPT-OSS's clamped SwiGLU keeps more for backward)


@dataclass(frozen=True)
class Norm:
    name: str
    width: int
    kind: str            # rms | layer
    frozen: float = 4.0  # bytes saved for backward per element of its input, weight frozen (an fp32 copy)...
    trained: float = 6.0  # ...and weight trained (also the normalised output, for the weight's gradient)


@dataclass(frozen=True)
class Block:
    """One kind of decoder block and how many the model has."""

    count: int
    params: int
    linears: tuple[Linear, ...]
    norms: tuple[Norm, ...]
    experts: Experts | None
    intermediate: int    # the dense MLP's width (a shared expert's beside routed experts); 0 when none
    gated: bool          # the dense MLP has a gate (SwiGLU, GeGLU)
    lora: tuple[tuple[str, int], ...]  # what PEFT's all-linear LoRA wraps in one such block, and the
                                       # parameters it adds there per unit of rank

    @property
    def lora_per_rank(self) -> int:
        return sum(n for _, n in self.lora)

    @property
    def experts_targeted(self) -> bool:
        return self.experts is not None and any(name == self.experts.name for name, _ in self.lora)

    @property
    def has_attention(self) -> bool:
        """A hybrid's blocks may mix tokens otherwise (Mamba, a convolution) or not at all (an MLP block)."""
        return any(lin.part == "attn" for lin in self.linears)


@dataclass(frozen=True)
class Anatomy:
    model_type: str
    architecture: str
    transformers: str
    attention: str                  # the attention kernel transformers picks by default: sdpa | eager | ...
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    act: str
    top_k: int
    total_params: int
    embed_params: int
    head_params: int
    tied: bool
    towers: dict[str, int]          # vision/audio parts: loaded, frozen, never targeted
    layers: int
    experts: int
    blocks: tuple[Block, ...]
    quantized_params: int           # what bitsandbytes holds in 4 bits under QLoRA
    lora_per_rank_total: int        # PEFT's all-linear trainable parameters per unit of rank
    lora_per_rank_outside: int      # of which outside the decoder blocks
    attn_softcap: float | None = None
    final_softcap: float | None = None
    sliding_window: int | None = None
    sliding_layers: int = 0         # blocks that attend within a window (the rest attend to everything)
    lora_targets: tuple[str, ...] = ()  # what all-linear is where PEFT refuses some linears (else empty)...
    lora_refused: dict[str, str] = field(default_factory=dict)  # ...the linears it refuses, and its reason
    lora_error: str = ""            # PEFT cannot put LoRA on this model at all (full fine-tuning still can)

    @property
    def all_linear_note(self) -> str:
        """What all-linear leaves out on this model, and why ("" when it is PEFT's all-linear as is)."""
        return all_linear_note(self.lora_targets, self.lora_refused)


    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def tower_params(self) -> int:
        return sum(self.towers.values())

    @property
    def expert_params(self) -> int:
        return sum(b.count * b.experts.params for b in self.blocks if b.experts)

    @property
    def experts_targeted(self) -> bool:
        """PEFT's all-linear LoRA reaches the fused expert weights (PEFT >= 0.17 wraps them as parameters)."""
        return any(b.experts_targeted for b in self.blocks)


def all_linear_note(targets: Sequence[str], refused: Mapping[str, str]) -> str:
    """"all-linear is q_proj, ...: PEFT cannot wrap out_proj on this model (its reason)", or "" when PEFT
    refuses nothing."""
    if not refused:
        return ""
    reason = peft_reason(next(iter(refused.values())))
    return f"all-linear is {', '.join(targets)}: PEFT cannot wrap {', '.join(sorted(refused))} on this model ({reason})"


def peft_reason(message: str) -> str:
    """The first sentence of PEFT's refusal, without its "[PEFT:...]" tag."""
    return re.sub(r"^\[PEFT:[^\]]*\]\s*", "", message).split(". ")[0].rstrip(".")


def _int(raw: dict[str, Any], key: str, minimum: int = 0) -> int:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key}: not an integer >= {minimum}")
    return value


def _cost(raw: dict[str, Any], key: str, default: float) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 64:
        return default
    return float(value)


def _str(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str):
        raise ValueError(f"{key}: not a string")
    return value


def linear_role(name: str, d_in: int, d_out: int, hidden: int, in_attention: bool) -> tuple[str, str]:
    """(part, reads) of a linear from its name and shape: attention's output projection reads attention's
    output; an MLP's down projection reads the MLP's inner activation; the rest read the normed hidden state."""
    short = name.rsplit(".", 1)[-1]
    if in_attention:
        return "attn", ("attn_out" if short in OUTPUT_PROJECTIONS else "attn_in")
    down = d_out == hidden and (d_in != hidden or short in DOWN_PROJECTIONS)
    scope = name.rsplit(".", 1)[0] if "." in name else ""
    return "mlp", (f"mlp_mid:{scope}" if down else f"mlp_in:{scope}")


def block_from(raw: dict[str, Any], hidden: int, lora: dict[str, Any]) -> Block:
    linears = []
    items = raw.get("linears") or []
    attention_scopes = {str(item.get("name", "")).rpartition(".")[0] for item in items
                        if str(item.get("name", "")).rpartition(".")[2] in ATTENTION_PROJECTIONS}
    for item in items:
        name, d_in, d_out = _str(item, "name"), _int(item, "d_in", 1), _int(item, "d_out", 1)
        in_attention = any(w in part for part in name.split(".")[:-1] for w in ATTENTION_WORDS) or \
            name.rpartition(".")[0] in attention_scopes
        part, reads = linear_role(name, d_in, d_out, hidden, in_attention)
        linears.append(Linear(name, d_in, d_out, part, 1, reads, bool(item.get("bias"))))
    for item in raw.get("routers") or []:
        linears.append(Linear(_str(item, "name"), _int(item, "d_in", 1), _int(item, "d_out", 1), "router", 1,
                              "router", bool(item.get("bias"))))
    fused = None
    for item in raw.get("experts") or []:
        shapes = {k: v for k, v in (item.get("params") or {}).items() if isinstance(v, list) and len(v) == 3}
        if not shapes:
            continue
        count = _int(item, "count", 1)
        params = sum(a * b * c for a, b, c in shapes.values())
        down = shapes.get("down_proj") or shapes.get("w2") or next(iter(shapes.values()))
        inner = down[2] if down[1] == hidden else down[1]
        gated = any(k in shapes for k in ("gate_up_proj", "w13")) or {"gate_proj", "up_proj"} <= set(shapes)
        biased = any("bias" in k for k in (item.get("params") or {}))
        fused = Experts(_str(item, "name"), count, inner, gated, params, biased)
    norms = tuple(Norm(_str(n, "name"), _int(n, "width"), "rms" if n.get("kind") == "rms" else "layer",
                       _cost(n, "frozen", 4.0), _cost(n, "trained", 6.0)) for n in raw.get("norms") or [])
    mlp = [lin for lin in linears if lin.part == "mlp"]
    downs = [lin for lin in mlp if lin.reads.startswith("mlp_mid")]
    intermediate = sum(lin.d_in for lin in downs)
    ups = [lin for lin in mlp if lin.reads.startswith("mlp_in") and lin.d_out > 1]
    gated = bool(downs) and (len(ups) >= 2 * len(downs) or any(lin.d_out == 2 * downs[0].d_in for lin in ups))
    names = {lin.name for lin in linears} | ({fused.name} if fused else set())
    targeted = tuple(sorted((k, v) for k, v in lora.items() if k in names and isinstance(v, int)))
    return Block(count=_int(raw, "count", 1), params=_int(raw, "params"), linears=tuple(linears), norms=norms,
                 experts=fused, intermediate=intermediate, gated=gated, lora=targeted)


def anatomy_from_dict(raw: Any) -> Anatomy:
    """An Anatomy from the process's JSON; raises ValueError on anything that is not one."""
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ValueError("not an anatomy of this format")
    hidden = _int(raw, "hidden", 1)
    lora = raw.get("lora_per_rank") if isinstance(raw.get("lora_per_rank"), dict) else {}
    per_block = lora.get("blocks") if isinstance(lora.get("blocks"), dict) else {}
    blocks_raw = raw.get("blocks")
    if not isinstance(blocks_raw, list) or not blocks_raw:
        raise ValueError("blocks: missing")
    blocks = []
    for b in blocks_raw:
        if not isinstance(b, dict):
            raise ValueError("blocks: not a table")
        blocks.append(block_from(b, hidden, per_block))
    towers = raw.get("towers") if isinstance(raw.get("towers"), dict) else {}

    def optional_number(key: str) -> Any:
        value = raw.get(key)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    return Anatomy(
        model_type=_str(raw, "model_type"), architecture=_str(raw, "architecture"),
        attention=_str(raw, "attention") or "sdpa",
        transformers=_str(raw, "transformers"), hidden=hidden, heads=_int(raw, "heads", 1),
        kv_heads=_int(raw, "kv_heads", 1), head_dim=_int(raw, "head_dim", 1), vocab=_int(raw, "vocab", 1),
        act=_str(raw, "act"), top_k=_int(raw, "top_k"), total_params=_int(raw, "total_params", 1),
        embed_params=_int(raw, "embed_params"), head_params=_int(raw, "head_params"), tied=bool(raw.get("tied")),
        towers={str(k): v for k, v in towers.items() if isinstance(v, int)}, layers=_int(raw, "layers", 1),
        experts=_int(raw, "experts"), blocks=tuple(blocks), quantized_params=_int(raw, "quantized_params"),
        lora_per_rank_total=_int(lora, "total"), lora_per_rank_outside=_int(lora, "outside"),
        attn_softcap=optional_number("attn_softcap"), final_softcap=optional_number("final_softcap"),
        sliding_window=optional_number("sliding_window"), sliding_layers=_int(raw, "sliding_layers") if "sliding_layers" in raw else 0,
        lora_targets=tuple(str(t) for t in targets) if isinstance(targets := raw.get("lora_targets"), list) else (),
        lora_refused={str(k): str(v) for k, v in refused.items()} if isinstance(refused := raw.get("lora_refused"), dict) else {},
        lora_error=raw["lora_error"] if isinstance(raw.get("lora_error"), str) else "")


# ------------------------------------------------------------------------------------------- the process

def transformers_version() -> str:
    try:
        return importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        return "none"


def cache_dir() -> Path:
    return studio_home() / "cache" / "anatomy"


def config_key(config: dict[str, Any], per_version: bool = True) -> str:
    """One anatomy per config and, in the cache, per transformers version (new versions change modelling
    code; the catalog's shipped anatomies are kept across versions and regenerated by a test's hint)."""
    canonical = json.dumps(config, sort_keys=True, default=str)
    version = transformers_version() if per_version else "shipped"
    return hashlib.sha256(f"{FORMAT}\n{version}\n{canonical}".encode()).hexdigest()[:32]


def cached(config: dict[str, Any]) -> Anatomy | None:
    path = cache_dir() / f"{config_key(config)}.json"
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > 16 * 2**20:
            return None
        return anatomy_from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, RecursionError):
        return None


def run_process(configs: list[dict[str, Any]], trust_remote_code: bool = False) -> list[dict[str, Any] | str]:
    """Each config's anatomy as the process reports it, or the error it gave."""
    with tempfile.TemporaryDirectory(prefix="studio-anatomy-") as tmp:
        paths = []
        for i, config in enumerate(configs):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
            paths.append(str(folder / "config.json"))
        flags = ["--trust-remote-code"] if trust_remote_code else []
        proc = subprocess.run([sys.executable, "-m", "studio.anatomy", *flags, *paths], capture_output=True,
                              text=True, env=dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false"))
    answers: dict[str, dict[str, Any] | str] = {}
    for line in proc.stdout.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("config") in paths:
            answers[record["config"]] = record.get("anatomy") or str(record.get("error") or "no answer")
    tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
    return [answers.get(p, f"the anatomy process ended ({proc.returncode}): {tail[0]}") for p in paths]


def anatomy_of(config: dict[str, Any], trust_remote_code: bool = False) -> Anatomy:
    """The anatomy of the model `config` describes: from the cache, else from the process (then cached)."""
    found = cached(config)
    if found is not None:
        return found
    answer = run_process([config], trust_remote_code)[0]
    if isinstance(answer, str):
        raise AnatomyError(answer)
    try:
        anatomy = anatomy_from_dict(answer)
    except ValueError as e:
        raise AnatomyError(f"the anatomy process gave an unreadable answer ({e})") from None
    try:
        write_json(cache_dir() / f"{config_key(config)}.json", answer)
    except OSError:
        pass  # a read-only home: the next start asks the process again
    return anatomy
