"""Read a model's anatomy from transformers' own modelling code, on the meta device (no weights,
no memory): the exact parameter count, each decoder block's linear layers, fused experts, routers
and norms, the towers a text fine-tune leaves alone (vision, audio), which linears bitsandbytes
quantizes for QLoRA (its own preprocessing, run on the skeleton) and how many parameters PEFT's
LoRA trains per unit of rank (PEFT itself, on the skeleton)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn

from studio.anatomy.lora_targets import ALL_LINEAR, LoraTargets, lora_targets, wrap
from studio.anatomy.model_class import model_class
from studio.planning.anatomy import FORMAT, NON_TEXT_MODULES

NON_TEXT = re.compile(NON_TEXT_MODULES)
TOP_K_KEYS = ("num_experts_per_tok", "experts_per_token", "num_experts_per_token", "moe_topk", "top_k")


def load_config(config_path: Path, trust_remote_code: bool) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(config_path.parent, trust_remote_code=trust_remote_code)


def build(config: Any, trust_remote_code: bool) -> nn.Module:
    """The model's skeleton on the meta device, as the trainer loads it (`model_class`)."""
    with torch.device("meta"):
        return model_class(config).from_config(config, dtype=torch.bfloat16, trust_remote_code=trust_remote_code)


def setting(config: Any, key: str) -> Any:
    """A config attribute, or None. transformers raises on a global read of a per-layer attribute (Gemma 4's
    head_dim, which differs between sliding and global layers): then the largest of the layers' values."""
    try:
        return getattr(config, key, None)
    except Exception:  # noqa: BLE001 - AmbiguousGlobalPerLayerAttributeError and its kin
        layers = getattr(config, "per_layer_config", None) or []
        values = [v for i in range(len(layers)) if (v := getattr(layers[i], key, None)) is not None]
        return max(values) if values else None


CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)  # 3-D weights that are not experts (Mamba's and LFM2's mixers)


def fused_experts(module: nn.Module) -> list[nn.Parameter]:
    """The module's own 3-D parameters when they are fused expert weights (one slice per expert)."""
    if isinstance(module, CONVOLUTIONS):
        return []
    return [p for p in module.parameters(recurse=False) if p.dim() == 3]


def is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def linear_shape(module: nn.Module) -> tuple[int, int]:
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    return module.weight.shape[0], module.weight.shape[1]  # transformers' Conv1D stores (in, out)


def decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The text model's stack of blocks: the ModuleList outside any vision or audio tower holding the most
    parameters."""
    best: tuple[int, str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) and not NON_TEXT.fullmatch(name):
            size = sum(p.numel() for p in module.parameters())
            if best is None or size > best[0]:
                best = (size, name, module)
    if best is None:
        raise ValueError("no stack of decoder blocks found")
    return best[1], best[2]


NORM_COSTS: dict[tuple[str, int], dict[str, float]] = {}


def norm_costs(module: nn.Module, width: int) -> dict[str, float]:
    """`measure_norm`, once per norm class and width."""
    key = (type(module).__qualname__, width)
    if key not in NORM_COSTS:
        NORM_COSTS[key] = measure_norm(module, width)
    return NORM_COSTS[key]


def measure_norm(module: nn.Module, width: int) -> dict[str, float]:
    """Bytes a norm saves for backward per element of its input, with its weight frozen and trained: run on
    a copy of it (real tensors on the CPU, bf16 input under autocast, as training runs it). One fp32
    number per normalised vector (the inverse norm) is taken off, so what is left scales with width."""
    import copy

    tokens = 256
    costs = {}
    for trained in (False, True):
        probe = copy.deepcopy(module).to_empty(device="cpu")
        for p in probe.parameters():
            nn.init.ones_(p)
            p.requires_grad_(trained)
        x = torch.randn(1, tokens, width, dtype=torch.bfloat16, requires_grad=True)
        seen: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            if t.numel() > width:  # not the weight, not a scalar
                seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
            probe(x)
        saved = sum(seen.values()) - x.untyped_storage().nbytes() * (x.untyped_storage().data_ptr() in seen)
        costs["trained" if trained else "frozen"] = round((saved / tokens - 4) / width, 3)
    return costs


def describe_block(block: nn.Module, experts_count: int) -> dict[str, Any]:
    linears, experts, routers, norms = [], [], [], []
    for name, module in block.named_modules():
        own = dict(module.named_parameters(recurse=False))
        if is_linear(module):
            d_in, d_out = linear_shape(module)
            entry = {"name": name, "d_in": int(d_in), "d_out": int(d_out), "bias": module.bias is not None}
            (routers if experts_count and d_out == experts_count and name.rsplit(".", 1)[-1] in ("gate", "router")
             else linears).append(entry)
        elif fused := fused_experts(module):
            experts.append({"name": name, "count": int(fused[0].shape[0]),
                            "params": {k: list(p.shape) for k, p in own.items()}})
        elif "weight" in own and own["weight"].dim() == 2 and experts_count and own["weight"].shape[0] == experts_count:
            routers.append({"name": name, "d_in": int(own["weight"].shape[1]), "d_out": int(own["weight"].shape[0]),
                            "bias": "bias" in own})
        elif "norm" in type(module).__name__.lower():
            width = own["weight"].numel() if "weight" in own else 0
            entry = {"name": name, "width": int(width), "kind": "rms" if "rms" in type(module).__name__.lower()
                     else "layer", "bias": "bias" in own}
            if width:
                try:
                    entry.update(norm_costs(module, int(width)))
                except Exception:  # noqa: BLE001 - a norm that will not run alone keeps the default costs
                    pass
            norms.append(entry)
    return {"params": sum(p.numel() for p in block.parameters()), "linears": linears, "experts": experts,
            "routers": routers, "norms": norms}


def text_settings(config: Any) -> dict[str, Any]:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config

    def get(*keys: str, default: Any = None) -> Any:
        for key in keys:
            value = setting(text, key)
            if value is not None:
                return value
        return default

    hidden = int(get("hidden_size", "n_embd", "d_model"))
    heads = int(get("num_attention_heads", "n_head", "num_heads"))
    head_dim = get("head_dim")
    return {
        "hidden": hidden, "heads": heads,
        "kv_heads": int(get("num_key_value_heads", "num_kv_heads", "n_head_kv", default=heads)),
        "head_dim": int(head_dim) if head_dim else hidden // heads,
        "vocab": int(get("vocab_size", "padded_vocab_size")),
        "act": str(get("hidden_act", "hidden_activation", "activation_function", default="silu")),
        "top_k": int(get(*TOP_K_KEYS, default=0) or 0),
        "sliding_window": get("sliding_window"),
        "sliding_layers": sum(1 for t in (get("layer_types") or []) if "sliding" in str(t)),
        "attn_softcap": get("attn_logit_softcapping"),
        "final_softcap": get("final_logit_softcapping"),
        "max_positions": get("max_position_embeddings"),
    }


def quantized_linears(config: Any, trust_remote_code: bool) -> set[str]:
    """The linears bitsandbytes turns into 4-bit ones, found by its own preprocessing of the skeleton."""
    from transformers import BitsAndBytesConfig
    from transformers.quantizers import AutoHfQuantizer

    model = build(config, trust_remote_code)
    quantizer = AutoHfQuantizer.from_config(BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4"),
                                            pre_quantized=False)
    with torch.device("meta"):  # the 4-bit layers it puts in place must not allocate their weights
        quantizer.preprocess_model(model, device_map=None)
    return {name for name, module in model.named_modules() if type(module).__name__ == "Linear4bit"}


def lora_per_rank(config: Any, trust_remote_code: bool, targets: LoraTargets) -> dict[str, int]:
    """Trainable parameters PEFT adds per unit of rank to each module it targets for "all-linear" (vision and
    audio towers excluded, as studio's trainer does)."""
    counts = []
    for rank in (1, 2):
        with torch.device("meta"):
            peft = wrap(build(config, trust_remote_code), rank, targets.modules)
        per_module: Counter[str] = Counter()
        for name, param in peft.named_parameters():
            if param.requires_grad and ".lora_" in name:
                owner = name.split(".lora_")[0].replace(".base_layer", "").removeprefix("base_model.model.")
                per_module[owner] += param.numel()
        counts.append(per_module)
    return {name: counts[1][name] - counts[0][name] for name in counts[1]}


def describe(config: Any, trust_remote_code: bool = False) -> dict[str, Any]:
    import transformers

    model = build(config, trust_remote_code)
    settings = text_settings(config)
    params = dict(model.named_parameters())
    total = sum(p.numel() for p in params.values())
    embed, head = model.get_input_embeddings(), model.get_output_embeddings()
    tied = head is not None and head.weight is embed.weight
    towers: Counter[str] = Counter()
    for name, p in params.items():
        match = NON_TEXT.fullmatch(name)
        if match:
            towers[match.group(1)] += p.numel()
    stack_name, stack = decoder_layers(model)
    experts_count = 0
    for module in stack.modules():
        for p in fused_experts(module):
            experts_count = max(experts_count, p.shape[0])
    if any("expert" in name for name, _ in stack.named_modules()):  # experts as modules, not fused weights
        for key in ("num_experts", "num_local_experts", "n_routed_experts"):  # (a config's default says nothing)
            experts_count = experts_count or int(setting(config.get_text_config(), key) or 0)
    blocks: list[dict[str, Any]] = []
    signatures: dict[str, int] = {}
    for layer in stack:
        desc = describe_block(layer, experts_count)
        key = json.dumps(desc, sort_keys=True)
        if key in signatures:
            blocks[signatures[key]]["count"] += 1
        else:
            signatures[key] = len(blocks)
            blocks.append({"count": 1, **desc})
    quantized = quantized_linears(config, trust_remote_code)
    quantized_params = sum(m.in_features * m.out_features if isinstance(m, nn.Linear) else m.weight.numel()
                           for name, m in model.named_modules() if name in quantized)
    try:  # the layout stands whatever PEFT makes of the model: full fine-tuning needs no LoRA
        targets = lora_targets(lambda: build(config, trust_remote_code))
        lora, lora_error = lora_per_rank(config, trust_remote_code, targets), ""
    except Exception as e:  # noqa: BLE001 - said in the anatomy, refused for LoRA and QLoRA by the planner
        targets, lora, lora_error = LoraTargets(ALL_LINEAR), {}, f"{type(e).__name__}: {e}"
    prefix = stack_name + "."
    block_lora: Counter[str] = Counter()
    outside_lora = 0
    for name, per_rank in lora.items():
        if name.startswith(prefix):
            block_lora[name[len(prefix):].split(".", 1)[1]] += per_rank
        else:
            outside_lora += per_rank
    return {
        "format": FORMAT,
        "transformers": transformers.__version__,
        "model_type": getattr(config, "model_type", ""),
        "architecture": type(model).__name__,
        "attention": str(getattr(model.config.get_text_config(), "_attn_implementation", None) or "sdpa"),
        **settings,
        "total_params": int(total),
        "embed_params": int(embed.weight.numel()),
        "head_params": 0 if tied or head is None else int(head.weight.numel()),
        "tied": bool(tied),
        "towers": dict(towers),
        "layers": len(stack),
        "stack": stack_name,
        "experts": int(experts_count),
        "blocks": blocks,
        "quantized_params": int(quantized_params),
        "lora_per_rank": {"total": int(sum(lora.values())), "blocks": dict(block_lora), "outside": int(outside_lora)},
        "lora_targets": targets.modules, "lora_refused": targets.refused, "lora_error": lora_error,
    }
