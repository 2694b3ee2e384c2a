"""Training throughput of a setup on a GPU: time per micro-batch from three costs that add up.

  matmuls       hardware FLOPs / (dense peak x a fitted utilisation)
  memory        bytes the elementwise kernels move (norms, activations, casts, dropout, the
                adapters' fp32 copies) / the card's bandwidth: roughly the saved activations,
                written in the forward and read in the backward, again when recomputed
  launches      kernels launched per layer (more with LoRA: each adapter adds a cast, a dropout,
                two small matmuls, a scale and an add, forward and backward) x a fixed cost

The last two are why small models run far below their FLOPs on fast cards (H100: a 1B LoRA
at ~16% of peak): their matmuls finish before the memory traffic and the launches do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from studio.planning.catalog import GpuSpec, ModelSpec
from studio.planning.estimate import (Setup, adapter_elements, adapter_input_bytes, block_saved_bytes, objective_tokens,
                                      targeted)

# Fitted on measured tokens/s, per stack (bench/calibrate_estimator.py); see docs/memory-model.md.
# studio's stack has few speed measurements (H100 only): it fits the two constants its runs pin
# down and keeps the others from the larger set of published runs.
SPEED_CALIBRATION = {
    "studio": {
        "matmul_utilisation": 0.818,     # of the dense 16-bit peak, for the large matmuls
        "adapter_bytes": 47.812,          # bytes each adapter moves per input element per pass (casts, dropout, adds)
        "activation_passes": 7.049,       # times a layer's saved activations cross the memory bus, per pass
        "launch_us": 10.531,               # per kernel launch (CPU-side overhead the GPU waits for)
        "qlora_dequant": 0.410,          # extra time of a 4-bit matmul (dequantize first), share of the matmul
    },
    "hf-legacy": {
        "matmul_utilisation": 0.591,
        "adapter_bytes": 11.485,
        "activation_passes": 7.049,
        "launch_us": 10.531,
        "qlora_dequant": 0.410,
    },
}
KERNELS_PER_LAYER = 40   # a block's forward: norms, projections, RoPE, attention, MLP, residuals
KERNELS_PER_ADAPTER = 7  # cast, dropout, A, B, scale, add (+ the mask)


@dataclass(frozen=True)
class SpeedEstimate:
    tokens_per_s: float
    flops_per_token: float
    step_s: float              # one micro-batch on one GPU
    gpu: str
    matmul_s: float = 0.0
    memory_s: float = 0.0
    launch_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def matmul_passes(setup: Setup) -> float:
    """A block's matmuls a trained token goes through, in forward passes: forward, activation gradients, weight
    gradients (full fine-tuning only; LoRA's are tiny), and a recompute under checkpointing."""
    return (3.0 if setup.method == "full" else 2.0) + (1.0 if setup.grad_ckpt else 0.0)


def flops_per_token(spec: ModelSpec, setup: Setup) -> float:
    """Hardware FLOPs per trained token.

    Matmuls (the block's linears and the LM head; the embedding is a lookup): forward,
    activation gradients, weight gradients (full fine-tuning only; LoRA's are tiny), and a
    recompute under checkpointing. TRL's fused LM head recomputes its logits in the backward.
    Causal attention: 2*s*d per layer a pass.
    """
    k = spec.experts_per_token or 1
    block = 0.0
    for blk in spec.blocks():
        # A token passes through every dense linear and k of the experts.
        dense = sum(lin.d_in * lin.d_out * (k if lin.count > 1 else 1) for lin in blk.linears)
        routed = k * blk.experts.params / blk.experts.count if blk.experts else 0.0
        block += blk.count * (dense + routed)
    head = spec.vocab * spec.hidden
    full = setup.method == "full"
    passes = matmul_passes(setup)
    head_passes = (4.0 if full else 3.0) if setup.loss == "chunked" else (3.0 if full else 2.0)
    attention = 2.0 * spec.layers * setup.seq_len * spec.q_dim
    return passes * (2.0 * block + attention) + head_passes * 2.0 * head


def extra_forwards(setup: Setup) -> float:
    """Forward passes a step adds to the trained one, without a backward: DPO's reference scoring (unless
    precomputed), KTO's reference and its KL estimate (the policy and the reference on mismatched pairs)."""
    reference = 0.0 if setup.reference == "precompute" else 1.0
    return {"dpo": reference, "kto": reference + 1.0 + reference}.get(setup.objective, 0.0)


def sampling_s(spec: ModelSpec, setup: Setup, gpu: GpuSpec) -> float:
    """GRPO's sampling, per micro-batch: one decoding pass a token of the answer, each reading every weight
    (decoding is bound by memory, whatever the number of answers sampled together), shared by the
    micro-batches of one generation batch."""
    if setup.objective != "grpo" or not setup.completion:
        return 0.0
    weights = spec.total_params * (0.55 if setup.method == "qlora" else 2.0)
    micro_batches = max(1, (setup.generation_batch or setup.batch) // setup.batch)
    return setup.completion * weights / (gpu.bandwidth_gbs * 1e9) / micro_batches


def estimate_speed(spec: ModelSpec, setup: Setup, gpu: GpuSpec) -> SpeedEstimate:
    """Training tokens per second for the whole job."""
    c = SPEED_CALIBRATION[setup.stack]
    dtype = "fp16" if setup.dtype == "fp16" else ("fp32" if setup.dtype == "fp32" else "bf16")
    tokens = objective_tokens(setup)
    fpt = flops_per_token(spec, setup)
    matmul_s = tokens * fpt / (gpu.peak_tflops(dtype) * 1e12 * c["matmul_utilisation"])
    matmul_s *= 1 + extra_forwards(setup) / matmul_passes(setup)
    if setup.method == "qlora":
        matmul_s *= 1 + c["qlora_dequant"]
    passes = 3.0 if setup.grad_ckpt else 2.0  # forward, backward (+ the recompute)
    base = sum(blk.count * (block_saved_bytes(spec, blk, setup) - (
        0.0 if setup.method == "full" else adapter_input_bytes(spec, blk, setup))) for blk in spec.blocks()) / spec.layers
    adapter = 0.0 if setup.method == "full" else adapter_elements(spec, setup) * c["adapter_bytes"] * (
        2.0 if setup.method == "lora" else 1.0)  # PEFT's fp32 round trip on a 16-bit base doubles the traffic
    moved = tokens * spec.layers * passes * (base * c["activation_passes"] + adapter)
    memory_s = moved / (gpu.bandwidth_gbs * 1e9)
    adapters = 0 if setup.method == "full" else len(targeted(spec, setup.targets)[0])
    kernels = spec.layers * (KERNELS_PER_LAYER + KERNELS_PER_ADAPTER * adapters) * (passes + 1)  # backward ~ 2x
    launch_s = kernels * c["launch_us"] * 1e-6
    step_s = matmul_s + memory_s + launch_s + sampling_s(spec, setup, gpu)
    # Padding costs the same compute as real tokens but only real ones count.
    return SpeedEstimate(tokens_per_s=round(setup.n_gpus * tokens * setup.fill / step_s, 1), flops_per_token=fpt,
                         step_s=round(step_s, 4), gpu=gpu.name, matmul_s=round(matmul_s, 4),
                         memory_s=round(memory_s, 4), launch_s=round(launch_s, 4))
