"""Peak GPU memory of a fine-tuning setup: plain arithmetic over a model's architecture.
Pure functions, no I/O. docs/memory-model.md explains each term and where its numbers
come from; speed lives in studio.planning.speed.

Two stacks are modelled:
  studio     what studio runs: TRL 1.x (fused LM head, no logits in memory), fused AdamW,
             bitsandbytes >= 0.45 (the 4-bit matmul keeps no input), QLoRA without the fp32
             upcast, PEFT adapters in fp32 under autocast. Peak = the worst phase of a step:
             the LM head's backward, the first and the last layer's backward, the embedding's
             backward, the optimizer step, each with what is alive at that moment.
  hf-legacy  the HF stack of the published measurements (shared/reference/measured.csv):
             materialized fp32 logits, torch's foreach AdamW, bitsandbytes keeping the 4-bit
             matmul's input; peak = max(forward end, optimizer step).
peak reserved = peak allocated + allocator slack x the memory that churns every step
peak VRAM     = peak reserved + CUDA context (+ NCCL buffers) (+ paged optimizer states)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from studio.planning.anatomy import Block, Linear, Norm
from studio.planning.catalog import ModelSpec, pattern_linears
from studio.planning.checks import targets_problem
from studio.profiles import vocabulary
from studio.profiles.vocabulary import PAIRED_OBJECTIVES, frozen_reference
from studio.profiles.profile import default_value

GIB = 2**30
METHODS = vocabulary.METHODS
# The profile's words, plus what published measurements used: torch's foreach AdamW and ZeRO-1.
OPTIMIZERS = (*(o for o in vocabulary.OPTIMIZERS if o != "auto"), "adamw_foreach")
STRATEGIES = ("none", *(s for s in vocabulary.STRATEGIES if s != "auto"), "deepspeed-zero1")
STACKS = ("studio", "hf-legacy")

# The few constants fitted per stack (bench/calibrate_estimator.py); everything else is counted.
CALIBRATION = {
    "studio": {
        "bwd_workspace": 1.876,       # a layer's backward holds this many of its MLP's inner activations as gradients
        "allocator_slack": 0.173,    # cached free blocks per byte of memory that churns every step
        "cuda_context_gib": 1.000,    # CUDA context and libraries (nvidia-smi only): not measured on this stack yet
        "comm_gib": 2.000,            # NCCL and collective buffers when several GPUs work together
    },
    "hf-legacy": {
        "activation_scale": 1.500,  # x the counted saved activations
        "ckpt_workspace": 1.348,    # layers' worth of activations live while one layer is recomputed
        "logits_scale": 0.619,      # x the counted logits bytes (materialized logits)
        "allocator_slack": 0.232,
        "cuda_context_gib": 1.868,
        "comm_gib": 0.000,
    },
}
CHUNK_TOKENS, CHUNK_VOCAB = 4096, 32768  # TRL's fused LM head tile
MASK_BYTES = 1  # CUDA's dropout keeps a bool mask


class EstimateError(Exception):
    """A setup the estimator cannot model; the message names the field."""


@dataclass(frozen=True)
class Setup:
    """What is trained and how, in the terms that move memory and speed: a resolved profile's values
    (planning/plan.py:setup_for makes one from a profile; the defaults are the profile's), plus what the
    published measurements vary (the stack, GPTQ, foreach AdamW, ZeRO-1)."""

    method: str = default_value("method", "type")
    rank: int = default_value("method", "rank")
    targets: tuple[str, ...] = tuple(default_value("method", "target_modules"))
    dropout: float = default_value("method", "dropout")
    dora: bool = False
    quant: str = "nf4"              # qlora weights: nf4 | gptq-int4
    double_quant: bool = True
    batch: int = default_value("train", "batch_size")
    seq_len: int = default_value("data", "max_length")
    grad_ckpt: bool = True
    optimizer: str = "adamw"        # adamw = fused AdamW (studio); adamw_foreach = torch's default
    dtype: str = "bf16"             # bf16 | fp16 | fp32 | bf16-amp (fp32 weights under bf16 autocast)
    train_embeddings: bool = False  # embeddings and LM head fully trained (PEFT modules_to_save)
    loss: str = "chunked"           # chunked: TRL's fused LM head | full: logits materialized
    n_gpus: int = 1
    strategy: str = "none"
    stack: str = "studio"           # studio | hf-legacy (see the module docstring)
    liger: bool = False             # Liger's fused RMSNorm, SwiGLU and RoPE kernels
    fill: float = 1.0               # share of each micro-batch that is real tokens (the rest is padding)
    objective: str = "sft"          # sft | dpo | orpo | kto | grpo (train.objective)
    reference: str = "auto"         # the reference: auto (adapter off, or a frozen copy) | precompute (none held)
    completion: int = 0             # GRPO: the tokens it samples per answer (part of seq_len)
    generation_batch: int = 0       # GRPO: the answers it samples at once (batch_size x grad_accum)


@dataclass(frozen=True)
class MemoryEstimate:
    breakdown: dict[str, float]     # GiB per part, see BREAKDOWN
    peak_allocated_gib: float
    peak_reserved_gib: float
    peak_vram_gib: float
    total_params: int
    trainable_params: int
    phase: str                      # where the peak is

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def parts(self) -> list[tuple[str, float]]:
        """The breakdown in display order, without the parts only some models have when they hold nothing."""
        return [(k, self.breakdown[k]) for k in BREAKDOWN if k in self.breakdown and
                (self.breakdown[k] or k not in OCCASIONAL)]


OCCASIONAL = ("experts", "reference")  # mixture-of-experts models; DPO and KTO's frozen copy under full
BREAKDOWN = ("cuda_context", "weights", "reference", "trainable", "gradients", "optimizer", "activations", "experts",
             "logits", "overhead")


def compute_bytes(dtype: str) -> int:
    return 4 if dtype == "fp32" else 2


def weight_bytes(setup: Setup) -> int:
    """Bytes per base weight: 16-bit, or fp32 (fp32 training, AMP master weights, full fp16 with fp32 master)."""
    if setup.dtype in ("fp32", "bf16-amp") or (setup.method == "full" and setup.dtype == "fp16"):
        return 4
    return 2


def quant_bits(setup: Setup) -> float:
    if setup.quant == "gptq-int4":
        return 4 + (16 + 4) / 128  # fp16 scale + 4-bit zero per group of 128
    if setup.double_quant:
        return 4 + 8 / 64 + 32 / (64 * 256)  # 8-bit absmax per 64, fp32 scale per 256 blocks
    return 4 + 32 / 64  # fp32 absmax per 64-weight block


def all_linear(targets: tuple[str, ...]) -> bool:
    return tuple(targets) in (("all-linear",), ("all",))


def matches(name: str, targets: tuple[str, ...]) -> bool:
    """PEFT's rule for a list of target names: the module's name, or its last dotted parts."""
    return any(name == t or name.endswith("." + t) for t in targets)


def targeted_in(block: Block, targets: tuple[str, ...]) -> list[Linear]:
    """The linears of one block that LoRA wraps: PEFT's own all-linear choice (read from the model), or the
    named ones."""
    if all_linear(targets):
        chosen = {name for name, _ in block.lora}
        return [lin for lin in block.linears if lin.name in chosen]
    return [lin for lin in block.linears if matches(lin.name, targets)]


def targeted(spec: ModelSpec, targets: tuple[str, ...]) -> tuple[list[Linear], bool]:
    """The linear layers LoRA wraps in a block of each kind, and whether the LM head is one of them."""
    if not all_linear(targets):
        problem = targets_problem(spec, targets)
        if problem:
            raise EstimateError(problem)
    seen: dict[str, Linear] = {}
    for block in spec.blocks():
        for lin in targeted_in(block, targets):
            seen.setdefault(lin.name, lin)
    return list(seen.values()), not all_linear(targets) and "lm_head" in targets


def lora_params(spec: ModelSpec, setup: Setup) -> int:
    """What PEFT trains: its own all-linear count (read from the model), or the named linears' adapters."""
    targeted(spec, setup.targets)  # a named target the model lacks is an error
    r = setup.rank
    if all_linear(setup.targets):
        per_rank = spec.anatomy.lora_per_rank_total if spec.anatomy else sum(b.count * b.lora_per_rank
                                                                            for b in spec.blocks())
        n = r * per_rank
    else:
        n = sum(b.count * sum(lin.count * r * (lin.d_in + lin.d_out) for lin in targeted_in(b, setup.targets))
                for b in spec.blocks())
        if "lm_head" in setup.targets:
            n += r * (spec.hidden + spec.vocab)
    if setup.dora:
        n += sum(b.count * sum(lin.count * lin.d_out for lin in targeted_in(b, setup.targets)) for b in spec.blocks())
    return n


def adapter_input_bytes(spec: ModelSpec, block: Block, setup: Setup) -> float:
    """Bytes per token one block's LoRA adapters keep for backward (their inputs).

    On a 16-bit base PEFT casts each adapter's input to fp32 (the adapter's dtype) and the
    adapter's matmul, under autocast, keeps a 16-bit copy of it: one copy per adapter, plus the
    dropout mask. On a 4-bit base under autocast PEFT skips the cast: without dropout the
    adapters that read the same activation share it; with dropout each keeps its own output.
    Adapters on fused experts (PEFT's parameter wrappers) add their product to the weight once per
    step: nothing per token.
    """
    b = compute_bytes(setup.dtype)
    mods = [lin for lin in targeted_in(block, setup.targets) if lin.part != "router"]
    rank_in = b * setup.rank * len(mods)  # lora_B keeps lora_A's output
    if setup.method == "qlora" and setup.dropout == 0:
        # The adapters keep the activation they read; attention's output may be saved by attention already.
        kept = attention_keeps_output(spec, block)
        shared = {lin.reads: lin for lin in mods if not kept or lin.reads != "attn_out"}.values()
        return b * sum(lin.d_in * lin.count for lin in shared) + rank_in
    mask = MASK_BYTES if setup.dropout > 0 else 0
    return (b + mask) * sum(lin.d_in * lin.count for lin in mods) + rank_in


def adapter_elements(spec: ModelSpec, setup: Setup) -> int:
    """Elements per token the adapters of the widest block read: the sum of their input widths."""
    return max(sum(lin.d_in * lin.count for lin in targeted_in(b, setup.targets) if lin.part != "router")
               for b in spec.blocks())


def norm_input(spec: ModelSpec, norm: Norm) -> tuple[int, int]:
    """(elements, vectors) per token a norm normalises: a per-head norm (q_norm, k_norm) runs once per head."""
    if norm.width == spec.hd and spec.hd != spec.hidden:
        heads = spec.kv_heads if norm.name.rsplit(".", 1)[-1].startswith("k") else spec.heads
        return heads * norm.width, heads
    return norm.width, 1


def fused_qkv(spec: ModelSpec, block: Block) -> bool:
    return any(lin.part == "attn" and lin.d_out == spec.q_dim + 2 * spec.kv_dim for lin in block.linears)


def attention_keeps_output(spec: ModelSpec, block: Block) -> bool:
    """SDPA keeps its output for backward, and the output projection reads it in place; eager attention's
    output, or the copy a fused q/k/v layout makes, is kept a second time by whoever reads it."""
    eager = spec.anatomy is not None and spec.anatomy.attention == "eager"
    return not eager and not fused_qkv(spec, block)


def attention_bytes(spec: ModelSpec, block: Block, setup: Setup) -> float:
    """What attention keeps per token: q and k after RoPE, v (the whole fused projection when q, k and v come
    from one), its output and log-sum-exp; where a mask is built (a sliding window shorter than the rows),
    k and v repeated per query head and the mask; eager attention (soft-capping, attention sinks) keeps its
    scores and probabilities for every key."""
    b = compute_bytes(setup.dtype)
    q, kv, heads = spec.q_dim, spec.kv_dim, spec.heads
    fused = fused_qkv(spec, block)
    anatomy = spec.anatomy
    eager = anatomy is not None and anatomy.attention == "eager"
    seq = setup.seq_len
    if eager:
        per_score = 2 + (6 if anatomy.attn_softcap else 0)  # probabilities; soft-capping's scores and tanh
        return b * 3 * q + heads * seq * per_score
    window = anatomy.sliding_window if anatomy is not None else None
    sliding = anatomy.sliding_layers / anatomy.layers if anatomy is not None and anatomy.layers else 0.0
    masked = sliding if window and seq > window else 0.0
    plain = b * (2 * q + kv + ((q + 2 * kv) if fused else kv)) + 4 * heads
    with_mask = b * 4 * q + 4 * heads + 2 * seq
    return (1 - masked) * plain + masked * with_mask


def mlp_bytes(spec: ModelSpec, block: Block, setup: Setup) -> float:
    """The dense MLP's gate, act(gate) and up (an ungated one: the activation's input); the routed experts'
    gathered inputs, projections and outputs for each of the k experts a token visits, and the router's
    scores. (What the down projection reads is counted with the linears' inputs.)"""
    b = compute_bytes(setup.dtype)
    total = 0.0
    if block.intermediate:
        total += b * ((2 if setup.liger else 3) if block.gated else 1) * block.intermediate
    if block.experts is not None:
        k = spec.experts_per_token or 1
        e, h, i = block.experts, spec.hidden, block.experts.intermediate
        # input gathered, gate_up, act, act*up (ungated: up, act), output; indices and weight
        routed = 2 * b * h + (4 if e.gated else 2) * b * i + 28
        if e.biased:
            routed += b * i * (3 if setup.method == "full" else 1)  # the clamped SwiGLU's extra saves
        total += k * routed + 4 * e.count + 12 * k + 4
    return total


def block_saved_bytes(spec: ModelSpec, block: Block, setup: Setup) -> float:
    """Bytes one token leaves saved for backward in one block of this kind (studio's stack).

    Counted from what autograd keeps (checked against saved-tensor hooks on every family's tiny model in
    tests/test_estimate.py): each norm's saves (measured on the norm itself by the anatomy process),
    attention, the MLP or experts, the inputs of trainable linears (one per activation read) and, for
    LoRA, the adapters' inputs.
    """
    b = compute_bytes(setup.dtype)
    full = setup.method == "full"
    total = 0.0
    for norm in block.norms:
        elements, vectors = norm_input(spec, norm)
        if setup.liger and norm.kind == "rms":
            total += b * elements if full else 0.0  # Liger's RMSNorm keeps no fp32 copy
        else:
            total += (norm.trained if full else norm.frozen) * elements + 4 * vectors
    if block.has_attention:
        total += attention_bytes(spec, block, setup)
    total += mlp_bytes(spec, block, setup)
    routers = [lin for lin in block.linears if lin.part == "router"]
    router_trained = full or any(lin.part == "router" for lin in targeted_in(block, setup.targets))
    if routers and router_trained:
        total += b * spec.hidden  # the router's input, for its weight's gradient
    if full:
        # The others read what their norm or activation made (attention may keep its output already).
        kept = attention_keeps_output(spec, block)
        reads = {lin.reads: lin for lin in block.linears
                 if lin.part != "router" and not (kept and lin.reads == "attn_out")}
        total += b * sum(lin.d_in for lin in reads.values())
    else:
        total += adapter_input_bytes(spec, block, setup)
    return total


def layer_saved_bytes(spec: ModelSpec, setup: Setup) -> float:
    """Bytes per token one block keeps, averaged over the model's blocks."""
    return sum(blk.count * block_saved_bytes(spec, blk, setup) for blk in spec.blocks()) / spec.layers


def legacy_layer_saved_bytes(spec: ModelSpec, setup: Setup) -> float:
    """Bytes one token leaves saved in one block on the older HF stack (fitted on measured.csv as it is)."""
    b = compute_bytes(setup.dtype)
    h, i, q, kv = spec.hidden, spec.intermediate, spec.q_dim, spec.kv_dim
    k = spec.experts_per_token or 1
    full = setup.method == "full"
    total = spec.norms_per_layer * (4 * h + (b * h if full else 0))
    total += b * (2 * q + 2 * kv)
    total += b * (3 * i if spec.gated_mlp else i) * k
    if full or (setup.method == "qlora" and setup.quant == "nf4"):
        # Older bitsandbytes kept the 4-bit matmul's input although the weight is frozen.
        inputs = {(lin.part, lin.d_in) for lin in spec.linears() if lin.part != "router"}
        total += b * sum(d * (k if part == "mlp" else 1) for part, d in inputs)
    if not full:
        mods, _ = targeted(spec, setup.targets)
        for lin in mods:
            if lin.part == "router":
                continue
            per_token = k if lin.part == "mlp" and lin.count > 1 else 1
            total += (b + (1 if setup.dropout > 0 else 0)) * lin.d_in * per_token
    return total


def dora_bytes(spec: ModelSpec, setup: Setup) -> float:
    """DoRA keeps W + BA (fp32) of each adapted module for backward."""
    if not setup.dora:
        return 0.0
    mods, _ = targeted(spec, setup.targets)
    per_layer = sum(4.0 * lin.d_in * lin.d_out * lin.count for lin in mods if lin.part != "router")
    return per_layer * (1 if setup.grad_ckpt else spec.layers)


def optimizer_state_bytes(optimizer: str, param_bytes: int) -> float:
    if optimizer in ("adamw", "adamw_foreach"):
        return 2.0 * param_bytes  # exp_avg and exp_avg_sq in the parameter's dtype
    if optimizer in vocabulary.EIGHT_BIT_OPTIMIZERS:
        return 2.0
    if optimizer == "adafactor":
        return 0.1 * param_bytes  # factored second moments: rows + columns
    if optimizer == "sgd":
        return 0.0
    raise EstimateError(f"train.optimizer: unknown optimizer {optimizer!r}; use one of {', '.join(OPTIMIZERS)}")


def _check(setup: Setup) -> None:
    if setup.method not in METHODS:
        raise EstimateError(f"method.type: must be one of {', '.join(METHODS)}, got {setup.method!r}")
    if setup.strategy not in STRATEGIES:
        raise EstimateError(f"strategy: must be one of {', '.join(STRATEGIES)}, got {setup.strategy!r}")
    if setup.stack not in STACKS:
        raise EstimateError(f"stack: must be one of {', '.join(STACKS)}, got {setup.stack!r}")
    if setup.batch < 1 or setup.seq_len < 1 or setup.n_gpus < 1:
        raise EstimateError("batch, seq_len and n_gpus must be >= 1")


@dataclass(frozen=True)
class Resident:
    """What lives through the whole step, per GPU, in bytes."""

    weights: float
    trainable: float      # adapters (and modules_to_save copies)
    gradients: float      # all of them, once backward has finished
    optimizer: float
    temporaries: float    # the optimizer step's extra copies
    total_params: int
    trainable_params: int
    reference: float = 0.0  # DPO/KTO's frozen copy of the model (full fine-tuning)


def objective_tokens(setup: Setup) -> int:
    """Tokens one micro-batch sends through the model with gradients: DPO and ORPO run each pair's chosen and
    rejected answers together, twice the rows' tokens."""
    return setup.batch * setup.seq_len * (2 if setup.objective in PAIRED_OBJECTIVES else 1)


def reference_copy(setup: Setup) -> bool:
    """DPO and KTO score against the model as it was: LoRA and QLoRA get it by turning the adapter off; full
    fine-tuning keeps a frozen copy, unless its log-probs are computed once before training."""
    return frozen_reference(setup.objective, setup.method, setup.reference)


def generation_bytes(spec: ModelSpec, setup: Setup) -> float:
    """GRPO's sampling, before the step trains on what it sampled: the KV cache of every answer sampled at once
    (prompt and answer, keys and values in every layer) and the next-token logits in fp32."""
    if setup.objective != "grpo":
        return 0.0
    b = compute_bytes(setup.dtype)
    sequences = setup.generation_batch or setup.batch
    return sequences * (2 * spec.layers * spec.kv_dim * b * setup.seq_len + 4 * spec.vocab)


def resident(spec: ModelSpec, setup: Setup) -> Resident:
    wb, b = weight_bytes(setup), compute_bytes(setup.dtype)
    total_params = spec.total_params
    if setup.method == "qlora":
        # The published measurements' older transformers quantized every linear of the usual layout.
        quantized = spec.linear_params if setup.stack == "studio" else \
            spec.layers * sum(lin.d_in * lin.d_out * lin.count for lin in pattern_linears(spec))
        weights = quantized * quant_bits(setup) / 8 + (total_params - quantized) * b
    else:
        weights = total_params * wb
    adapter_bytes = 4  # PEFT keeps adapters in fp32
    foreach = setup.optimizer == "adamw_foreach"
    if setup.method == "full" and setup.strategy.startswith("deepspeed") and setup.optimizer in ("adamw", "adamw_foreach"):
        # DeepSpeed mixed precision (ZeRO paper): 16-bit weights and gradients, and an fp32
        # master copy plus two fp32 Adam states in the optimizer: 2 + 2 + 12 bytes a parameter.
        trainable_params, trainable, gradients, optimizer, temporaries = total_params, 0.0, total_params * 2.0, \
            total_params * 12.0, 0.0
    elif setup.method == "full":
        trainable_params, trainable = total_params, 0.0
        gradients = total_params * wb
        optimizer = total_params * optimizer_state_bytes(setup.optimizer, wb)
        temporaries = total_params * wb if foreach else 0.0
    else:
        n_lora = lora_params(spec, setup)
        trainable_params = n_lora
        trainable = gradients = n_lora * adapter_bytes
        optimizer = n_lora * optimizer_state_bytes(setup.optimizer, adapter_bytes)
        temporaries = n_lora * adapter_bytes if foreach else 0.0
        if setup.train_embeddings:
            n_emb = spec.embed_params + spec.head_params
            trainable_params += n_emb
            trainable += n_emb * wb  # modules_to_save trains a copy; the original stays
            gradients += n_emb * wb
            optimizer += n_emb * optimizer_state_bytes(setup.optimizer, wb)
            temporaries += n_emb * wb if foreach else 0.0
    # Sharded strategies split weights, gradients and optimizer states over the GPUs.
    n = setup.n_gpus
    if n > 1 and setup.strategy in ("fsdp", "deepspeed-zero3"):
        weights, trainable, gradients, optimizer, temporaries = (x / n for x in (weights, trainable, gradients,
                                                                                  optimizer, temporaries))
        weights += max(lin.d_in * lin.d_out * lin.count for lin in spec.linears()) * wb * 4  # gathered layer
    elif n > 1 and setup.strategy == "deepspeed-zero2":
        gradients, optimizer, temporaries = gradients / n, optimizer / n, temporaries / n
    elif n > 1 and setup.strategy == "deepspeed-zero1":
        optimizer = optimizer / n
    reference = (total_params * wb / (n if setup.strategy in ("fsdp", "deepspeed-zero3") and n > 1 else 1)
                 if reference_copy(setup) else 0.0)
    return Resident(weights, trainable, gradients, optimizer, temporaries, total_params, trainable_params, reference)


def head_saved_bytes(spec: ModelSpec, setup: Setup) -> float:
    """Bytes per token TRL's fused LM head keeps for backward: the scored hidden state, the final
    norm's fp32 input copy, and two fp32 numbers (log-normaliser, entropy)."""
    return compute_bytes(setup.dtype) * spec.hidden + (0 if setup.liger else 4 * spec.hidden) + 8


@dataclass(frozen=True)
class Phase:
    """What is alive at one moment of a step, beyond the resident weights and optimizer states."""

    name: str
    gradients: float = 0.0
    activations: float = 0.0
    logits: float = 0.0       # the LM head's buffers (or materialized logits)
    temporaries: float = 0.0  # the optimizer step's extra copies
    experts: float = 0.0      # what the routed experts keep for the tokens sent to them (mixture of experts)

    @property
    def total(self) -> float:
        return self.gradients + self.activations + self.logits + self.temporaries + self.experts


def estimate_memory(spec: ModelSpec, setup: Setup) -> MemoryEstimate:
    """Peak per-GPU memory of one training step of `setup` on `spec`; the breakdown is what fills the
    GPU at that peak, and its parts add up to peak_vram_gib."""
    _check(setup)
    res = resident(spec, setup)
    phases = _legacy_phases(spec, setup, res) if setup.stack == "hf-legacy" else _studio_phases(spec, setup, res)
    peak = max(phases, key=lambda p: p.total)
    c = CALIBRATION[setup.stack]
    paged = setup.optimizer == "paged_adamw_8bit"
    resident_optimizer = 0.0 if paged else res.optimizer  # paged states live in unified memory
    allocated = res.weights + res.reference + res.trainable + resident_optimizer + peak.total
    # The caching allocator keeps freed blocks of the memory that churns every step.
    slack = c["allocator_slack"] * peak.total
    reserved = allocated + slack
    context = (c["cuda_context_gib"] + (c["comm_gib"] if setup.n_gpus > 1 else 0.0)) * GIB
    vram = reserved + context + (res.optimizer if paged else 0.0)
    breakdown = {
        "cuda_context": context, "weights": res.weights, "reference": res.reference, "trainable": res.trainable,
        "gradients": peak.gradients,
        "optimizer": res.optimizer, "activations": peak.activations, "experts": peak.experts, "logits": peak.logits,
        "overhead": slack + peak.temporaries,
    }
    return MemoryEstimate(
        breakdown={k: round(v / GIB, 3) for k, v in breakdown.items()},
        peak_allocated_gib=round(allocated / GIB, 3), peak_reserved_gib=round(reserved / GIB, 3),
        peak_vram_gib=round(vram / GIB, 3), total_params=res.total_params, trainable_params=res.trainable_params,
        phase=peak.name)


def _studio_phases(spec: ModelSpec, setup: Setup, res: Resident) -> list[Phase]:
    """The moments of a step on studio's stack that can hold the peak, and what is alive at each."""
    b, wb = compute_bytes(setup.dtype), weight_bytes(setup)
    h, L, v = spec.hidden, spec.layers, spec.vocab
    tokens = objective_tokens(setup)
    full = setup.method == "full"
    n = setup.n_gpus if setup.strategy in ("fsdp", "deepspeed-zero3") else 1
    blocks = spec.blocks()
    saved = [block_saved_bytes(spec, blk, setup) for blk in blocks]
    # What each block keeps until its backward (its input alone under checkpointing), and the block
    # being recomputed; routed experts' share is reported on its own.
    keep_all = sum(blk.count * (b * h if setup.grad_ckpt else s) for blk, s in zip(blocks, saved))
    keep_one = b * h if setup.grad_ckpt else max(saved)
    recompute = max(saved) if setup.grad_ckpt else 0.0
    routed = [mlp_bytes(spec, replace(blk, intermediate=0), setup) if blk.experts else 0.0 for blk in blocks]
    experts_all = 0.0 if setup.grad_ckpt else sum(blk.count * r for blk, r in zip(blocks, routed))
    k = spec.experts_per_token or 1
    inner = max(blk.intermediate + (k * blk.experts.intermediate if blk.experts else 0) for blk in blocks)
    workspace = CALIBRATION["studio"]["bwd_workspace"] * b * (inner + h)  # gradients in flight
    if setup.method == "lora":
        # On a 16-bit base the adapters' input gradients come back in fp32 (PEFT's cast).
        workspace += 4 * adapter_elements(spec, setup)
    # A 4-bit matmul dequantizes its weight into a 16-bit buffer, forward and backward.
    dequant = b * max(lin.d_in * lin.d_out for lin in spec.linears()) if setup.method == "qlora" else 0.0
    # TRL's fused LM head: what it keeps; its backward adds an fp32 gradient of the hidden states
    # (and its 16-bit copy) and one logits tile; a trained head adds its gradient in fp32 and the copy.
    head_saved = tokens * head_saved_bytes(spec, setup)
    head_bwd = tokens * (4 * h + b * h) + b * min(tokens, CHUNK_TOKENS) * min(v, CHUNK_VOCAB)
    if setup.objective == "orpo":  # TRL's ORPO builds the logits: their fp32 copy and log-softmax
        head_bwd += tokens * v * 8
    head_params = v * h
    head_grad = (4 + wb) * head_params / n if full else 0.0
    head_assigned = wb * head_params / n if full else 0.0
    layer_grads = (res.gradients - head_assigned) / L if full else 0.0
    embed_grad = wb * spec.embed_params / n if full else 0.0
    lora_grads = 0.0 if full else res.gradients
    acts_all = tokens * keep_all + dora_bytes(spec, setup)
    layer_work = tokens * (recompute + workspace) + dequant
    experts = tokens * experts_all
    return [
        Phase("LM head backward", gradients=lora_grads, activations=acts_all - experts, experts=experts,
              logits=head_saved + head_bwd + head_grad),
        Phase("first layer's backward", gradients=head_assigned + lora_grads,
              activations=acts_all - experts + layer_work, experts=experts),
        Phase("last layer's backward", gradients=res.gradients - layer_grads - (0.0 if spec.tied else embed_grad),
              activations=tokens * keep_one + layer_work),
        # A tied embedding's backward makes a dense gradient, then adds it to the LM head's.
        Phase("embedding backward", gradients=res.gradients + (embed_grad if spec.tied else 0.0)),
        # GRPO samples its answers with the KV cache (no gradients held: the last step's are freed)
        Phase("sampling answers", activations=generation_bytes(spec, setup)),
        Phase("optimizer step", gradients=res.gradients, temporaries=res.temporaries),
    ]


def _legacy_phases(spec: ModelSpec, setup: Setup, res: Resident) -> list[Phase]:
    """The older HF stack's two moments: the end of the forward, and the optimizer step."""
    c = CALIBRATION["hf-legacy"]
    b = compute_bytes(setup.dtype)
    tokens = setup.batch * setup.seq_len
    per_layer = legacy_layer_saved_bytes(spec, setup) * c["activation_scale"]
    boundary = b * spec.hidden  # a checkpointed layer keeps only its input
    head_input = 4 * spec.hidden + b * spec.hidden
    if setup.grad_ckpt:
        activations = tokens * (spec.layers * boundary + c["ckpt_workspace"] * per_layer + head_input)
    else:
        activations = tokens * (spec.layers * per_layer + head_input)
    activations += dora_bytes(spec, setup)
    if setup.loss == "chunked":
        logits = 2 * min(tokens, CHUNK_TOKENS) * min(spec.vocab, CHUNK_VOCAB) * 4 + tokens * spec.hidden * 4
    else:
        # Materialized logits: the loss runs in fp32 (an explicit upcast, or autocast's fp32
        # cross-entropy): the fp32 logits, a shifted fp32 copy and the saved log-softmax.
        logits = c["logits_scale"] * tokens * spec.vocab * 12
    return [Phase("activations", gradients=res.gradients if setup.method != "full" else 0.0,
                  activations=activations, logits=logits),
            Phase("optimizer step", gradients=res.gradients, temporaries=res.temporaries)]


def inference_memory_gib(spec: ModelSpec, method: str, copies: int = 1) -> float:
    """GiB a model needs to answer prompts: its weights (4-bit for QLoRA) and adapters, a little for the
    activations and the cache of short chats, and the CUDA context."""
    total = spec.total_params
    weights = spec.linear_params * quant_bits(Setup(method="qlora")) / 8 + (total - spec.linear_params) * 2 \
        if method == "qlora" else total * 2
    return round(copies * weights / GIB + 0.5 + CALIBRATION["studio"]["cuda_context_gib"], 2)
