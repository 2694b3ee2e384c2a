"""What the trainer asks of the machine, and the SFTConfig it trains with."""

from __future__ import annotations

import importlib.util
import os
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch

from studio.profiles.profile import Profile
from studio.profiles.vocabulary import TORCH_NAMES, auto_dtype
from studio.runs.folder import Run
from studio.trainer.failures import ConfigError

if TYPE_CHECKING:
    from studio.trainer.dataset import LossSettings

HF_OPTIM = {"adamw": "adamw_torch_fused", "adamw_8bit": "adamw_bnb_8bit", "paged_adamw_8bit": "paged_adamw_8bit",
            "sgd": "sgd", "adafactor": "adafactor"}
TORCH_DTYPE = {name: getattr(torch, torch_name) for name, torch_name in TORCH_NAMES.items()}


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def is_machine_main() -> bool:
    """The first process on this machine: it keeps this machine's run folder (every machine of a multi-node
    job has its own), and builds or downloads this machine's copy of the model."""
    return int(os.environ.get("LOCAL_RANK", "0")) == 0


def local_world_size() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def collective_timeout(profile: Profile) -> timedelta:
    """How long a rank waits in a collective for the others (hardware.collective_timeout): a lost machine ends
    the job after this, not after torch's half hour."""
    return timedelta(minutes=profile.hardware.collective_timeout)


def node_rank() -> int:
    return int(os.environ.get("GROUP_RANK", os.environ.get("NODE_RANK", "0")) or 0)


def resolve_dtype(profile: Profile, device: str) -> str:
    want = profile.model.dtype
    gpu = device != "cpu"
    bf16_ok = gpu and torch.cuda.is_bf16_supported()
    if want == "fp16" and not gpu:
        raise ConfigError("model.dtype: fp16 training needs a GPU; on the CPU use \"fp32\" or \"auto\"")
    if want == "bf16" and gpu and not bf16_ok:
        raise ConfigError("model.dtype: this GPU has no bf16 support; use \"fp16\" or \"auto\"")
    return auto_dtype(want, gpu, bf16_ok)


def check_requirements(profile: Profile, device: str) -> None:
    """What the profile asks of this machine, checked before anything large loads."""
    if profile.method.type == "qlora":
        check_bitsandbytes(device)
    if profile.train.liger_kernel is True:
        if device != "cuda":
            raise ConfigError("train.liger_kernel: Liger's kernels need an NVIDIA GPU; set it to false on the CPU")
        if importlib.util.find_spec("liger_kernel") is None:
            raise ConfigError("train.liger_kernel: liger-kernel is not installed: pip install -e '.[fast]' "
                              "(or set train.liger_kernel = false)")


def check_bitsandbytes(device: str) -> None:
    """QLoRA needs a bitsandbytes backend for this device; say so before anything loads."""
    try:
        import bitsandbytes.cextension as ce
    except Exception as e:  # not installed, or its library fails to load
        raise ConfigError(f"method.type = \"qlora\" needs bitsandbytes, which failed to load ({e}); "
                          "`pip install bitsandbytes` or use method.type = \"lora\"") from e
    backend = str(getattr(ce, "BNB_BACKEND", "")).upper()
    wanted = {"cuda": ("CUDA", "ROCM"), "cpu": ("CPU",)}[device]
    if backend and backend not in wanted:
        raise ConfigError(f"method.type = \"qlora\": bitsandbytes has no {device.upper()} backend here "
                          f"(it loaded the {backend} one); use method.type = \"lora\" or install a matching bitsandbytes")


def training_arguments(profile: Profile, run: Run, device: str, dtype: str, has_eval: bool,
                       probe: bool = False) -> dict[str, Any]:
    """What every objective's config shares (TRL's SFT, DPO, ORPO and KTO configs are TrainingArguments)."""
    t, d = profile.train, profile.data
    eval_strategy = "steps" if has_eval and t.eval_steps > 0 else "no"
    return dict(
        output_dir=str(run.checkpoints_dir),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps if t.max_steps > 0 else -1,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay,
        optim=HF_OPTIM[profile.optimizer],
        activation_checkpointing=t.gradient_checkpointing is True,
        activation_checkpointing_kwargs={"use_reentrant": False} if t.gradient_checkpointing is True else None,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,  # a NaN loss is logged as NaN (the filter logged the mean of the others), so
        # the run fails at that step instead of training on garbage (studio.trainer.telemetry)
        eval_strategy=eval_strategy,
        eval_steps=t.eval_steps if eval_strategy == "steps" else None,
        save_strategy="no" if probe else "steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        report_to=[] if profile.output.report_to == "none" else [profile.output.report_to],
        bf16=dtype == "bf16",
        fp16=dtype == "fp16",
        use_cpu=device == "cpu",
        max_length=d.max_length,
        disable_tqdm=True,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False if world_size() > 1 else None,
        ddp_timeout=round(collective_timeout(profile).total_seconds()),
        # Several machines: each saves every checkpoint whole in its own run folder, so that each can resume
        # the job from the same step without reading another's disk (studio.trainer.job_resume).
        save_on_each_node=world_size() > local_world_size(),
        use_liger_kernel=t.liger_kernel is True,
    )


def sft_config(profile: Profile, run: Run, device: str, dtype: str, loss: LossSettings, has_eval: bool,
               probe: bool = False) -> Any:
    """The SFTConfig for the run; everything not set here is TRL's default."""
    from trl import SFTConfig

    return SFTConfig(
        **training_arguments(profile, run, device, dtype, has_eval, probe),
        packing=profile.data.packing is True,
        # The rows come tokenized (studio.trainer.tokenize): their assistant_masks column already marks the
        # assistant turns, which TRL applies whatever this flag says (and it only accepts chat rows with it on).
        assistant_only_loss=False,
        completion_only_loss=loss.completion_only,
    )
