"""What a valid profile may still ask that this model or this machine cannot give.

Found before a run folder is made (the profile check alone cannot know the model or
the GPUs), so a run never starts only to fail as a `crash` that resuming would repeat.
Each problem names its key and says what to do, like the profile check's.
"""

from __future__ import annotations

from studio.hardware import Inventory
from studio.planning.catalog import ModelSpec
from studio.profiles.profile import Profile

OTHER_TARGETS = ("lm_head", "embed_tokens", "wte", "all-linear", "all")


def targets_problem(spec: ModelSpec, targets: tuple[str, ...] | list[str]) -> str | None:
    """Why LoRA cannot wrap `targets` in this model, or None when it can."""
    full = [lin.name for lin in spec.linears()]
    unknown = [t for t in targets if t not in OTHER_TARGETS and not any(n == t or n.endswith("." + t) for n in full)]
    if not unknown:
        return None
    names = sorted({n.rsplit(".", 1)[-1] for n in full})
    return (f"method.target_modules: {', '.join(unknown)} not in {spec.id}; its linear layers are "
            f"{', '.join(names)} (or use [\"all-linear\"])")


def model_problems(profile: Profile, spec: ModelSpec | None) -> list[str]:
    """LoRA targets the model does not have (when its architecture is known)."""
    if spec is None or profile.method.type == "full":
        return []
    problem = targets_problem(spec, profile.method.target_modules)
    return [problem] if problem else []


def machine_problems(profile: Profile, inventory: Inventory) -> list[str]:
    """What needs a GPU (or a kind of GPU) this machine does not have."""
    problems = []
    gpus = inventory.gpus
    if not gpus:
        if profile.model.attn_implementation == "flash_attention_2":
            problems.append("model.attn_implementation: flash_attention_2 needs an NVIDIA GPU; "
                            "use \"sdpa\" or \"auto\" on the CPU")
        if profile.model.dtype == "fp16":
            problems.append("model.dtype: fp16 training needs a GPU; on the CPU use \"fp32\" or \"auto\"")
        if profile.train.liger_kernel is True:
            problems.append("train.liger_kernel: Liger's kernels need an NVIDIA GPU; set it to false on the CPU")
    elif profile.model.dtype == "bf16" and not all(g.bf16 for g in gpus):
        problems.append("model.dtype: bf16 needs an Ampere or newer GPU, and "
                        f"{next(g.name for g in gpus if not g.bf16)} is not one; use \"fp16\" or \"auto\"")
    return problems


def data_problems(profile: Profile, rows: int) -> list[str]:
    """Settings the dataset is too small for."""
    fraction = profile.data.eval_fraction
    if fraction > 0:
        held = max(1, int(rows * fraction))
        if rows - held < 1:
            return [f"data.eval_fraction: the dataset has {rows} row(s), so holding out {fraction:g} leaves "
                    "none to train on; lower it to 0 or add rows"]
    return []
