"""Peak GPU memory and throughput of a fine-tuning setup: plain arithmetic over
a model's architecture. Pure functions, no I/O. docs/memory-model.md explains
each term and where its numbers come from.

peak allocated = weights + optimizer states
                 + max(saved activations + logits  [forward end / backward start],
                       gradients + optimizer-step temporaries  [optimizer step])
peak reserved  = peak allocated x (1 + allocator slack)
peak VRAM      = peak reserved + CUDA context (+ paged optimizer states)   what nvidia-smi shows
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from studio.planning.catalog import GpuSpec, Linear, ModelSpec
from studio.planning.checks import targets_problem
from studio.profiles import vocabulary

GIB = 2**30
METHODS = vocabulary.METHODS
# The profile's words, plus what published measurements used: torch's foreach AdamW and ZeRO-1.
OPTIMIZERS = (*(o for o in vocabulary.OPTIMIZERS if o != "auto"), "adamw_foreach")
STRATEGIES = ("none", *(s for s in vocabulary.STRATEGIES if s != "auto"), "deepspeed-zero1")

# Fitted on the `hf` rows of the reference measurements (bench/calibrate_estimator.py);
# everything else in this file is counted, not fitted.
CALIBRATION = {
    "activation_scale": 0.806,      # x the counted saved activations
    "ckpt_workspace": 1.004,        # layers' worth of activations live while one layer is recomputed
    "logits_scale": 0.854,          # x the counted logits bytes (materialized logits)
    "allocator_slack": 0.205,       # cached free blocks per byte of memory that churns every step
    "cuda_context_gib": 1.440,      # CUDA context, cuBLAS workspace and libraries
    "comm_gib": 2.019,              # NCCL and collective buffers when several GPUs work together
}
CHUNK_TOKENS, CHUNK_VOCAB = 4096, 32768  # TRL's fused LM head tile


class EstimateError(Exception):
    """A setup the estimator cannot model; the message names the field."""


@dataclass(frozen=True)
class Setup:
    """What is trained and how, in the terms that move memory and speed."""

    method: str = "lora"
    rank: int = 16
    targets: tuple[str, ...] = ("all-linear",)
    dropout: float = 0.05
    dora: bool = False
    quant: str = "nf4"              # qlora weights: nf4 | gptq-int4
    double_quant: bool = True
    batch: int = 1
    seq_len: int = 1024
    seq_kind: str = "dynamic"       # packed | padded | dynamic (padded to the longest row of each batch)
    grad_ckpt: bool = True
    optimizer: str = "adamw"        # adamw = fused AdamW (studio); adamw_foreach = torch's default
    dtype: str = "bf16"             # bf16 | fp16 | fp32 | bf16-amp (fp32 weights under bf16 autocast)
    train_embeddings: bool = False  # embeddings and LM head fully trained (PEFT modules_to_save)
    loss: str = "chunked"           # chunked: TRL's fused LM head | full: logits materialized
    n_gpus: int = 1
    strategy: str = "none"


@dataclass(frozen=True)
class MemoryEstimate:
    breakdown: dict[str, float]     # GiB per part, see BREAKDOWN
    peak_allocated_gib: float
    peak_reserved_gib: float
    peak_vram_gib: float
    total_params: int
    trainable_params: int
    phase: str                      # where the peak is: "activations" or "optimizer step"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


BREAKDOWN = ("cuda_context", "weights", "trainable", "gradients", "optimizer", "activations", "logits", "overhead")


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


def targeted(spec: ModelSpec, targets: tuple[str, ...]) -> tuple[list[Linear], bool]:
    """The linear layers LoRA wraps, and whether the LM head is one of them."""
    linears = spec.linears()
    if tuple(targets) in (("all-linear",), ("all",)):
        return linears, False
    problem = targets_problem(spec, targets)
    if problem:
        raise EstimateError(problem)
    return [lin for lin in linears if lin.name in targets], "lm_head" in targets


def lora_params(spec: ModelSpec, setup: Setup) -> int:
    mods, head = targeted(spec, setup.targets)
    r = setup.rank
    n = spec.layers * sum(lin.count * r * (lin.d_in + lin.d_out) for lin in mods)
    if setup.dora:
        n += spec.layers * sum(lin.count * lin.d_out for lin in mods)
    if head:
        n += r * (spec.hidden + spec.vocab)
    return n


def saved_activation_bytes(spec: ModelSpec, setup: Setup) -> float:
    """Bytes one token leaves saved for backward in one transformer block."""
    b = compute_bytes(setup.dtype)
    h, i, q, kv = spec.hidden, spec.intermediate, spec.q_dim, spec.kv_dim
    k = spec.experts_per_token or 1
    full = setup.method == "full"
    total = spec.norms_per_layer * (4 * h + (b * h if full else 0))  # RMSNorm keeps an fp32 copy of its input
    total += b * (2 * q + 2 * kv)  # attention keeps q, k, v and its output
    elementwise = 3 * i if spec.gated_mlp else i  # act(gate), its input, up  |  GELU input
    total += b * elementwise * k
    if full or (setup.method == "qlora" and setup.quant == "nf4"):
        # Trainable linears keep their inputs for the weight gradient; bitsandbytes' 4-bit
        # matmul keeps its input too, though the weight is frozen. Shared inputs count once.
        inputs = {(lin.part, lin.d_in) for lin in spec.linears() if lin.part != "router"}
        total += b * sum(d * (k if part == "mlp" else 1) for part, d in inputs)
    if not full:
        mods, _ = targeted(spec, setup.targets)
        for lin in mods:
            if lin.part == "router":
                continue
            per_token = k if lin.part == "mlp" and lin.count > 1 else 1
            # PEFT casts each adapter's input for its own matmul: one copy per adapter,
            # plus the dropout mask when dropout is on.
            total += (b + (1 if setup.dropout > 0 else 0)) * lin.d_in * per_token
    return total


def dora_bytes(spec: ModelSpec, setup: Setup) -> float:
    """DoRA keeps W + BA (fp32) of each adapted module for backward."""
    if not setup.dora:
        return 0.0
    mods, _ = targeted(spec, setup.targets)
    per_layer = sum(4.0 * lin.d_in * lin.d_out * lin.count for lin in mods if lin.part != "router")
    return per_layer * (1 if setup.grad_ckpt else spec.layers)


def logits_bytes(spec: ModelSpec, setup: Setup, tokens: int) -> float:
    v = spec.vocab
    if setup.loss == "chunked":
        tile = min(tokens, CHUNK_TOKENS) * min(v, CHUNK_VOCAB)
        return 2 * tile * 4 + tokens * spec.hidden * 4
    # Materialized logits: the loss runs in fp32 (an explicit upcast, or autocast's fp32
    # cross-entropy): the fp32 logits, a shifted fp32 copy and the saved log-softmax.
    return CALIBRATION["logits_scale"] * tokens * v * 12


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
    if setup.batch < 1 or setup.seq_len < 1 or setup.n_gpus < 1:
        raise EstimateError("batch, seq_len and n_gpus must be >= 1")


def estimate_memory(spec: ModelSpec, setup: Setup) -> MemoryEstimate:
    """Peak per-GPU memory of one training step of `setup` on `spec`."""
    _check(setup)
    wb = weight_bytes(setup)
    b = compute_bytes(setup.dtype)
    total_params = spec.total_params
    tokens = setup.batch * setup.seq_len

    if setup.method == "qlora":
        quantized = spec.linear_params
        weights = quantized * quant_bits(setup) / 8 + (total_params - quantized) * b
    else:
        weights = total_params * wb

    adapter_bytes = 4  # PEFT keeps adapters in fp32
    deepspeed = setup.strategy.startswith("deepspeed")
    if setup.method == "full" and deepspeed and setup.optimizer in ("adamw", "adamw_foreach"):
        # DeepSpeed mixed precision (ZeRO paper): 16-bit weights and gradients, and an fp32
        # master copy plus two fp32 Adam states in the optimizer: 2 + 2 + 12 bytes a parameter.
        trainable_params = total_params
        trainable = 0.0
        gradients = total_params * 2
        optimizer = total_params * 12
        temporaries = 0.0
    elif setup.method == "full":
        trainable_params = total_params
        trainable = 0.0
        gradients = total_params * wb
        optimizer = total_params * optimizer_state_bytes(setup.optimizer, wb)
        temporaries = total_params * wb if setup.optimizer == "adamw_foreach" else 0.0
    else:
        n_lora = lora_params(spec, setup)
        trainable_params = n_lora
        trainable = n_lora * adapter_bytes
        gradients = n_lora * adapter_bytes
        optimizer = n_lora * optimizer_state_bytes(setup.optimizer, adapter_bytes)
        temporaries = n_lora * adapter_bytes if setup.optimizer == "adamw_foreach" else 0.0
        if setup.train_embeddings:
            n_emb = spec.embed_params + spec.head_params
            trainable_params += n_emb
            trainable += n_emb * wb  # modules_to_save trains a copy; the original stays
            gradients += n_emb * wb
            optimizer += n_emb * optimizer_state_bytes(setup.optimizer, wb)
            temporaries += n_emb * wb if setup.optimizer == "adamw_foreach" else 0.0

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

    per_layer = saved_activation_bytes(spec, setup) * CALIBRATION["activation_scale"]
    boundary = b * spec.hidden  # a checkpointed layer keeps only its input
    head_input = 4 * spec.hidden + b * spec.hidden
    if setup.grad_ckpt:
        activations = tokens * (spec.layers * boundary + CALIBRATION["ckpt_workspace"] * per_layer + head_input)
    else:
        activations = tokens * (spec.layers * per_layer + head_input)
    activations += dora_bytes(spec, setup)
    logits = logits_bytes(spec, setup, tokens)

    paged = setup.optimizer == "paged_adamw_8bit"
    resident_optimizer = 0.0 if paged else optimizer  # paged states live in unified memory
    step_phase = gradients + temporaries
    act_phase = activations + logits + (gradients if setup.method != "full" else 0.0)
    phase = "optimizer step" if step_phase > act_phase else "activations"
    allocated = weights + trainable + resident_optimizer + max(step_phase, act_phase)

    # The caching allocator keeps freed blocks of the memory that churns every step.
    reserved = allocated + CALIBRATION["allocator_slack"] * max(step_phase, act_phase)
    context = (CALIBRATION["cuda_context_gib"] + (CALIBRATION["comm_gib"] if n > 1 else 0.0)) * GIB
    vram = reserved + context + (optimizer if paged else 0.0)

    breakdown = {
        "cuda_context": context, "weights": weights, "trainable": trainable, "gradients": gradients,
        "optimizer": optimizer, "activations": activations, "logits": logits,
        "overhead": reserved - allocated + temporaries,
    }
    return MemoryEstimate(
        breakdown={k: round(v / GIB, 3) for k, v in breakdown.items()},
        peak_allocated_gib=round(allocated / GIB, 3),
        peak_reserved_gib=round(reserved / GIB, 3),
        peak_vram_gib=round(vram / GIB, 3),
        total_params=total_params,
        trainable_params=trainable_params,
        phase=phase,
    )


# ---------------------------------------------------------------- throughput

# Hardware-FLOPs utilisation of the HF stack on long micro-batches, and the fixed cost of
# a micro-batch per layer (kernel launches, Python, hooks) that dominates short ones.
# Fitted on measured tokens/s (bench/calibrate_estimator.py).
SPEED_CALIBRATION = {"hfu_full": 0.575, "hfu_lora": 0.537, "hfu_qlora": 0.424, "layer_overhead_ms": 4.269}


@dataclass(frozen=True)
class SpeedEstimate:
    tokens_per_s: float
    flops_per_token: float
    step_s: float
    gpu: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def flops_per_token(spec: ModelSpec, setup: Setup) -> float:
    """Hardware FLOPs per trained token.

    Matmuls: 2N forward, 2N for activation gradients, 2N more for weight gradients
    (full fine-tuning only; LoRA's are tiny), 2N to recompute under checkpointing.
    Causal attention: 2*s*d per layer forward, twice that backward.
    """
    n = spec.active_params - spec.embed_params  # the embedding is a lookup, not a matmul
    passes = (3.0 if setup.method == "full" else 2.0) + (1.0 if setup.grad_ckpt else 0.0)
    attention = 2.0 * spec.layers * setup.seq_len * spec.q_dim
    return passes * (2.0 * n + attention)


def estimate_speed(spec: ModelSpec, setup: Setup, gpu: GpuSpec) -> SpeedEstimate:
    """Training tokens per second for the whole job."""
    dtype = "fp16" if setup.dtype == "fp16" else ("fp32" if setup.dtype == "fp32" else "bf16")
    peak = gpu.peak_tflops(dtype) * 1e12
    hfu = SPEED_CALIBRATION[f"hfu_{setup.method}"]
    tokens = setup.batch * setup.seq_len
    fpt = flops_per_token(spec, setup)
    step_s = tokens * fpt / (peak * hfu) + spec.layers * SPEED_CALIBRATION["layer_overhead_ms"] / 1000
    return SpeedEstimate(tokens_per_s=round(setup.n_gpus * tokens / step_s, 1), flops_per_token=fpt,
                         step_s=round(step_s, 4), gpu=gpu.name)
