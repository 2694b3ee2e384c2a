"""Several processes per run: which GPUs, which strategy, and the `accelerate launch`
command with its config file (written into the run folder for the user to see and reuse).

studio does not implement parallelism itself: DDP, FSDP and DeepSpeed ZeRO come
from accelerate. This module only decides the layout and writes the files.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from studio.atomic import write_json, write_text
from studio.hardware import Inventory
from studio.profile import Profile

LAYOUT_FILE = "launch.json"
ACCELERATE_CONFIG = "accelerate_config.yaml"


class LayoutError(Exception):
    """A hardware section this machine cannot honour; the message names the field."""


@dataclass(frozen=True)
class Layout:
    processes: int                 # on this machine
    strategy: str                  # none | ddp | fsdp | deepspeed-zero2 | deepspeed-zero3
    gpu_indices: tuple[int, ...]   # () on CPU
    num_machines: int = 1
    machine_rank: int = 0
    main_address: str = ""
    main_port: int = 29500
    offload_optimizer: bool = False
    offload_params: bool = False

    @property
    def distributed(self) -> bool:
        return self.processes * self.num_machines > 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _peak_gib(profile: Profile, n_gpus: int) -> float | None:
    """Estimated per-GPU peak of the profile on n GPUs (None for models outside the catalog)."""
    from dataclasses import replace as dc_replace

    from studio.advisor import setup_from_profile
    from studio.catalog import CatalogError, lookup_model
    from studio.estimate import EstimateError, estimate_memory

    try:
        setup = setup_from_profile(profile)
        if n_gpus > 1:
            setup = dc_replace(setup, n_gpus=n_gpus, strategy="fsdp" if profile.method.type == "full" else "ddp")
        return estimate_memory(lookup_model(profile.model.name), setup).peak_vram_gib
    except (CatalogError, EstimateError):
        return None


def _gpu_indices(spec: str, inv: Inventory, profile: Profile) -> tuple[int, ...]:
    available = [g.index for g in inv.gpus]
    if spec == "auto":
        return tuple(available)
    parts = [int(p) for p in spec.split(",") if p.strip()]
    if "," not in spec:  # a count
        count = parts[0]
        if count > len(available):
            raise LayoutError(f"hardware.gpus: asks for {count} GPUs, this machine has {len(available)}")
        from studio.advisor import SAFETY

        # The smallest cards that hold the job, so the big ones stay free; else the biggest.
        by_size = sorted(inv.gpus, key=lambda g: (g.memory_free_gib, g.index))
        peak = _peak_gib(profile, count)
        fitting = [g for g in by_size if peak is not None and peak <= SAFETY * g.memory_free_gib]
        chosen = fitting[:count] if len(fitting) >= count else by_size[-count:]
        return tuple(sorted(g.index for g in chosen)) if count else ()
    missing = [i for i in parts if i not in available]
    if missing:
        raise LayoutError(f"hardware.gpus: GPU {missing[0]} does not exist here (visible: {available or 'none'})")
    return tuple(parts)


def auto_strategy(profile: Profile, processes: int, per_gpu_free_gib: float | None) -> str:
    """DDP for LoRA/QLoRA when one card holds the model; FSDP for full fine-tuning or when it does not."""
    if processes <= 1:
        return "none"
    if profile.method.type == "full":
        return "fsdp"
    if per_gpu_free_gib is None:
        return "ddp"
    from studio.advisor import SAFETY, setup_from_profile
    from studio.catalog import CatalogError, lookup_model
    from studio.estimate import EstimateError, estimate_memory

    try:
        peak = estimate_memory(lookup_model(profile.model.name), setup_from_profile(profile)).peak_vram_gib
    except (CatalogError, EstimateError):
        return "ddp"
    return "ddp" if peak <= SAFETY * per_gpu_free_gib else "fsdp"


def plan_layout(profile: Profile, inv: Inventory) -> Layout:
    hw = profile.hardware
    if inv.gpus:
        indices = _gpu_indices(hw.gpus, inv, profile)
        processes = max(1, len(indices))
        free = min((g.memory_free_gib for g in inv.gpus if g.index in indices), default=None)
    else:
        # No GPU: a count still starts that many CPU processes (gloo); useful for testing a DDP job.
        indices = ()
        processes = int(hw.gpus) if hw.gpus.isdigit() else 1
        free = None
    strategy = hw.strategy if hw.strategy != "auto" else auto_strategy(profile, processes * hw.num_machines, free)
    if processes * hw.num_machines == 1:
        strategy = "none"
    elif strategy == "none":
        strategy = "ddp"
    if strategy.startswith("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        raise LayoutError(f"hardware.strategy = \"{strategy}\" needs DeepSpeed, which is not installed: "
                          "pip install 'studio[deepspeed]' (or choose \"fsdp\")")
    if strategy != "none" and not inv.gpus and strategy != "ddp":
        raise LayoutError(f"hardware.strategy = \"{strategy}\" needs GPUs; on the CPU only \"ddp\" runs")
    return Layout(processes=processes, strategy=strategy, gpu_indices=indices, num_machines=hw.num_machines,
                  machine_rank=hw.machine_rank, main_address=hw.main_address, main_port=hw.main_port,
                  offload_optimizer=hw.offload_optimizer, offload_params=hw.offload_params)


def accelerate_config(layout: Layout) -> dict[str, Any]:
    """The accelerate config for the layout (see `accelerate config` for the fields)."""
    cfg: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "num_processes": layout.processes * layout.num_machines,
        "num_machines": layout.num_machines,
        "machine_rank": layout.machine_rank,
        "main_process_ip": layout.main_address or None,
        "main_process_port": layout.main_port,
        "rdzv_backend": "static",
        "same_network": True,
        "mixed_precision": "no",  # the trainer sets bf16/fp16 itself
        # On the CPU the processes talk over gloo; MULTI_GPU is what starts several of them.
        "use_cpu": False,
        "distributed_type": "MULTI_GPU",
    }
    if layout.gpu_indices:
        cfg["gpu_ids"] = ",".join(map(str, layout.gpu_indices))
    if layout.strategy == "fsdp":
        cfg["distributed_type"] = "FSDP"
        cfg["fsdp_config"] = {
            "fsdp_version": 1,
            "fsdp_sharding_strategy": "FULL_SHARD",
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_state_dict_type": "SHARDED_STATE_DICT",
            "fsdp_offload_params": layout.offload_params,
            "fsdp_use_orig_params": True,  # PEFT mixes frozen and trainable parameters
            "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_sync_module_states": True,
        }
    elif layout.strategy.startswith("deepspeed"):
        cfg["distributed_type"] = "DEEPSPEED"
        stage = 3 if layout.strategy.endswith("3") else 2
        cfg["deepspeed_config"] = {
            "zero_stage": stage,
            "offload_optimizer_device": "cpu" if layout.offload_optimizer else "none",
            "offload_param_device": "cpu" if (layout.offload_params and stage == 3) else "none",
            "zero3_init_flag": stage == 3,
            "zero3_save_16bit_model": stage == 3,
        }
    return cfg


def write_layout(run_dir: Path, layout: Layout) -> None:
    """launch.json (read by every launch and resume) and, when distributed, the accelerate config."""
    write_json(run_dir / LAYOUT_FILE, layout.to_dict())
    if layout.distributed:
        import yaml  # comes with accelerate and transformers; only read here

        write_text(run_dir / ACCELERATE_CONFIG, yaml.safe_dump(accelerate_config(layout), sort_keys=False))


def read_layout(run_dir: Path) -> Layout | None:
    try:
        raw = json.loads((run_dir / LAYOUT_FILE).read_text())
        raw["gpu_indices"] = tuple(raw.get("gpu_indices") or ())
        return Layout(**raw)
    except (OSError, ValueError, TypeError):
        return None


def launch_prefix(run_dir: Path, layout: Layout | None) -> tuple[list[str], dict[str, str]]:
    """The command that starts the trainer module, and the environment it needs."""
    if layout is None or not layout.distributed:
        env = {"CUDA_VISIBLE_DEVICES": ",".join(map(str, layout.gpu_indices))} if layout and layout.gpu_indices else {}
        return [sys.executable, "-m", "studio.trainer"], env
    # accelerate sets CUDA_VISIBLE_DEVICES from the config's gpu_ids.
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(run_dir / ACCELERATE_CONFIG),
            "-m", "studio.trainer"], {}
