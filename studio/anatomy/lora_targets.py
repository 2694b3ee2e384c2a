"""What LoRA's "all-linear" wraps on a model, as PEFT itself decides it: one rule for the estimate and the
trainer.

PEFT refuses some linear layers on some architectures (on Mamba models, `out_proj` and `conv1d`), and then
refuses "all-linear" as a whole. studio keeps "all-linear" meaning what a user means by it: every linear
layer PEFT accepts on this model. Each layer name is tried alone on a skeleton of the model (the meta
device, no memory), so a refusal names the layer and keeps PEFT's own reason."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from studio.planning.anatomy import NON_TEXT_MODULES, all_linear_note

ALL_LINEAR = "all-linear"


@dataclass(frozen=True)
class LoraTargets:
    modules: str | list[str]                  # "all-linear", or the layer names PEFT accepts on this model
    refused: dict[str, str] = field(default_factory=dict)  # layer name -> PEFT's reason for refusing it

    @property
    def note(self) -> str:
        """What all-linear leaves out here and why ("" when PEFT takes it as is)."""
        return all_linear_note(self.modules if isinstance(self.modules, list) else [], self.refused)


def tower_exclusion(model: nn.Module) -> str | None:
    """The regex of vision and audio modules LoRA leaves alone, when the model has any (PEFT refuses an
    exclusion that matches nothing)."""
    towers = re.compile(NON_TEXT_MODULES)
    return NON_TEXT_MODULES if any(towers.fullmatch(name) for name, _ in model.named_modules()) else None


def wrap(model: nn.Module, rank: int, modules: str | list[str], **options: Any) -> nn.Module:
    """PEFT's LoRA model on `model` (PEFT's ValueError when it refuses a target)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=modules, exclude_modules=tower_exclusion(model),
                        task_type="CAUSAL_LM", **options)
    return get_peft_model(model, config)


def linear_names(model: nn.Module) -> set[str]:
    """The layer names PEFT's all-linear would wrap: every linear outside the towers but the output head."""
    towers = re.compile(NON_TEXT_MODULES)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
            if (isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D") and module is not head
            and not towers.fullmatch(name)}


def lora_targets(skeleton: Callable[[], nn.Module]) -> LoraTargets:
    """What "all-linear" is on the model `skeleton()` builds (afresh at each call: PEFT changes it)."""
    try:
        wrap(skeleton(), 1, ALL_LINEAR)
        return LoraTargets(ALL_LINEAR)
    except ValueError:
        pass
    names = linear_names(skeleton())
    refused = {}
    for name in sorted(names):
        try:
            wrap(skeleton(), 1, [name])
        except ValueError as e:
            refused[name] = str(e)
    if not refused:
        raise ValueError("PEFT refuses all-linear on this model, though it accepts each linear layer alone")
    return LoraTargets(sorted(names - refused.keys()), refused)
