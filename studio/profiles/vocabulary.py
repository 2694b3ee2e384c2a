"""The methods, optimizers and strategies a profile names, and their defaults: defined once.

Everything that resolves an `auto` (the profile, the planner, the advisor, the trainer)
asks here, so a rule such as "QLoRA trains with paged 8-bit AdamW" has one home.
"""

from __future__ import annotations

METHODS = ("lora", "qlora", "full")
OBJECTIVES = ("sft", "dpo", "orpo", "kto", "grpo")  # what a run trains for: supervised, preference, reward
PAIRED_OBJECTIVES = ("dpo", "orpo")           # chosen and rejected through the model together
REFERENCE_OBJECTIVES = ("dpo", "kto")         # scored against the model before training (a reference)
BUILTIN_REWARDS = ("exact_answer", "format", "length")  # reward.functions studio ships (trainer/rewards.py)


def frozen_reference(objective: str, method: str, reference: str) -> bool:
    """A frozen copy of the base in memory: DPO's and KTO's reference (GRPO's with a KL penalty) under full
    fine-tuning, unless its log-probs are precomputed; LoRA and QLoRA turn their adapter off instead. The
    estimate counts it, and the trainer loads DPO's and KTO's (TRL loads GRPO's)."""
    return objective in (*REFERENCE_OBJECTIVES, "grpo") and method == "full" and reference == "auto"


def unpacked_reason(objective: str) -> str:
    """Why an objective other than SFT trains without packing (the planner and the trainer say the same)."""
    if objective == "grpo":
        return "grpo samples its answers and scores each whole: unpacked"
    return f"{objective} compares whole answers side by side: unpacked"
# TRL 1.16's DPO losses (DPOConfig.loss_type)
DPO_LOSSES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down", "discopop", "sigmoid_norm")
ADAPTER_METHODS = ("lora", "qlora")
OPTIMIZERS = ("auto", "adamw", "adamw_8bit", "paged_adamw_8bit", "sgd", "adafactor")
EIGHT_BIT_OPTIMIZERS = ("adamw_8bit", "paged_adamw_8bit")
STRATEGIES = ("auto", "ddp", "fsdp", "deepspeed-zero2", "deepspeed-zero3")
SHARDED_STRATEGIES = ("fsdp", "deepspeed-zero3")  # these split the weights themselves over the GPUs


TORCH_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}  # getattr(torch, name)


def auto_dtype(want: str, gpu: bool, bf16: bool) -> str:
    """model.dtype "auto": bf16 on a GPU that has it, else fp16; fp32 on the CPU. The trainer, the planner,
    the advisor, chat and the export all ask here."""
    if want != "auto":
        return want
    if not gpu:
        return "fp32"
    return "bf16" if bf16 else "fp16"


def default_optimizer(method: str) -> str:
    """QLoRA pages 8-bit AdamW states (its whole point is a small card); everything else uses fused AdamW."""
    return "paged_adamw_8bit" if method == "qlora" else "adamw"


def resolve_optimizer(method: str, optimizer: str) -> str:
    return default_optimizer(method) if optimizer == "auto" else optimizer


def default_strategy(method: str, fits_one_gpu: bool | None) -> str:
    """Several GPUs: DDP when one card holds a LoRA or QLoRA job (or nobody can tell), else FSDP."""
    if method == "full" or fits_one_gpu is False:
        return "fsdp"
    return "ddp"


def strategy_reason(method: str, fits_one_gpu: bool | None) -> str:
    if method == "full":
        return "full fine-tuning shards weights, gradients and optimizer states with FSDP"
    if fits_one_gpu is False:
        return "the job does not fit one GPU, so FSDP shards it"
    return "one GPU holds the job, so DDP runs a copy on each"
