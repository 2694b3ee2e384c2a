"""Several processes per run: which GPUs, which strategy, and the accelerate config for it.

studio does not implement parallelism itself: DDP, FSDP and DeepSpeed ZeRO come
from accelerate. This module only decides the layout; the run folder keeps it
(launch.json, accelerate_config.yaml, see studio.runs.launcher).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from studio.hardware import GpuInfo, Inventory
from studio.planning.fit import FitRule
from studio.profiles.profile import HardwareSection
from studio.profiles.vocabulary import default_strategy, strategy_reason

# Per-GPU peak VRAM of the job on n GPUs with a strategy (None when the model cannot be estimated).
PeakFn = Callable[[int, str], "float | None"]


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
    rendezvous: str = "static"     # static (a fixed main address and port) | c10d (Slurm's nodes find each other)
    network_interface: str = ""    # the interface the processes talk over; "": the one routing to main_address

    @property
    def world_size(self) -> int:
        return self.processes * self.num_machines

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Layout:
        """From launch.json; raises ValueError or TypeError for a file that is not one."""
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        layout = cls(**{**known, "gpu_indices": tuple(int(i) for i in known.get("gpu_indices") or ())})
        if not (isinstance(layout.processes, int) and 1 <= layout.processes <= 1024 and
                isinstance(layout.num_machines, int) and 1 <= layout.num_machines <= 4096 and
                isinstance(layout.strategy, str)):
            raise ValueError(f"not a launch layout: {raw!r}")
        return layout


def choose_gpus(hw: HardwareSection, inv: Inventory, peak: PeakFn, rule: FitRule) -> tuple[tuple[int, ...], str]:
    """The GPU indices the job uses on this machine, and why."""
    available = [g.index for g in inv.gpus]
    request = hw.gpu_request
    if request == "auto":
        return tuple(available), "hardware.gpus = auto: every visible GPU"
    if isinstance(request, int):  # a count
        count = request
        if count > len(available):
            raise LayoutError(f"hardware.gpus: asks for {count} GPUs, this machine has {len(available)}")
        # The smallest cards that hold the job, so the big ones stay free; else the biggest.
        by_size = sorted(inv.gpus, key=lambda g: (g.memory_free_gib, g.index))
        need = peak(count, "auto")
        fitting = [g for g in by_size if rule.fits(need, g.name, g.memory_free_gib)]
        if len(fitting) >= count:
            chosen, why = fitting[:count], f"the {count} smallest GPU(s) that hold the job"
        else:
            chosen, why = by_size[-count:], f"the {count} GPU(s) with the most free memory"
        return (tuple(sorted(g.index for g in chosen)) if count else ()), why
    assert isinstance(request, tuple)
    missing = [i for i in request if i not in available]
    if missing:
        raise LayoutError(f"hardware.gpus: GPU {missing[0]} does not exist here (visible: {available or 'none'})")
    return request, f"hardware.gpus = \"{hw.gpus}\""


def choose_strategy(method: str, hw: HardwareSection, world: int, tightest: GpuInfo | None,
                    peak: PeakFn, rule: FitRule) -> tuple[str, str]:
    """The parallel strategy for `world` processes, and why."""
    if world <= 1:
        return "none", "one process"
    if hw.strategy != "auto":
        return hw.strategy, f"hardware.strategy = \"{hw.strategy}\""
    one = peak(1, "none") if tightest is not None else None
    fits_one = rule.fits(one, tightest.name, tightest.memory_free_gib) if tightest is not None else None
    return default_strategy(method, fits_one), strategy_reason(method, fits_one)


def layout_for(hw: HardwareSection, method: str, inv: Inventory, peak: PeakFn,
               rule: FitRule) -> tuple[Layout, list[tuple[str, Any, str]]]:
    """The processes of a run on this machine, with the decisions behind them (key, value, why)."""
    if inv.gpus:
        indices, why_gpus = choose_gpus(hw, inv, peak, rule)
        processes = max(1, len(indices))
        tightest = min((g for g in inv.gpus if g.index in indices), key=lambda g: g.memory_free_gib, default=None)
    else:
        # No GPU: a count still starts that many CPU processes (gloo); useful for testing a DDP job.
        indices = ()
        processes = hw.gpu_request if isinstance(hw.gpu_request, int) and hw.gpu_request > 0 else 1
        tightest = None
        why_gpus = "no GPU here: the CPU" + (f", {processes} processes" if processes > 1 else "")
    strategy, why_strategy = choose_strategy(method, hw, processes * hw.num_machines, tightest, peak, rule)
    layout = Layout(processes=processes, strategy=strategy, gpu_indices=indices, num_machines=hw.num_machines,
                    machine_rank=hw.machine_rank, main_address=hw.main_address, main_port=hw.main_port,
                    offload_optimizer=hw.offload_optimizer, offload_params=hw.offload_params,
                    network_interface=hw.network_interface)
    decisions = [("hardware.gpus", ",".join(map(str, indices)) or "cpu", why_gpus),
                 ("hardware.strategy", strategy, why_strategy)]
    return layout, decisions


def check_launchable(layout: Layout, inv: Inventory) -> None:
    """What must hold before processes start (planning for other machines skips this)."""
    if layout.strategy.startswith("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        raise LayoutError(f"hardware.strategy = \"{layout.strategy}\" needs DeepSpeed, which is not installed: "
                          "pip install 'studio[deepspeed]' (or choose \"fsdp\")")
    if layout.strategy not in ("none", "ddp") and not inv.gpus:
        raise LayoutError(f"hardware.strategy = \"{layout.strategy}\" needs GPUs; on the CPU only \"ddp\" runs")


def accelerate_config(layout: Layout) -> dict[str, Any]:
    """The accelerate config for the layout (see `accelerate config` for the fields)."""
    cfg: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "num_processes": layout.world_size,
        "num_machines": layout.num_machines,
        "machine_rank": layout.machine_rank,
        "main_process_ip": layout.main_address or None,
        "main_process_port": layout.main_port,
        "rdzv_backend": layout.rendezvous,
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
