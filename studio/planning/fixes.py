"""The changes that lower a run's peak memory, gentlest first: one list for every use.

The profile review (`studio suggest PROFILE`), the revision after an out-of-memory
failure, the advice in an OOM `end` event and the editor's "make it fit" all walk
this list, so they agree on what to try and in which order: first what costs only
speed, then what costs a little precision, last what changes what is trained.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from studio.profiles.profile import Profile, with_changes


@dataclass(frozen=True)
class Fix:
    """Advice that lowers the peak: the profile changes (dotted keys, applied through `with_changes`), why,
    one line per step ("switch to QLoRA ..."), and the peak it leads to. The CLI prints it, the editor applies
    it; neither reads the other's text."""

    changes: dict[str, Any]
    reasons: tuple[str, ...]
    peak_vram_gib: float | None
    saves_gib: float = 0.0
    fits: bool = False

    @property
    def reason(self) -> str:
        return "; then ".join(self.reasons)

    def apply(self, profile: Profile) -> Profile:
        return with_changes(profile, self.changes, source="the fix")

    def to_dict(self) -> dict[str, Any]:
        return {"change": self.reason, "steps": list(self.reasons), "set": self.changes, "saves_gib": self.saves_gib,
                "peak_vram_gib": self.peak_vram_gib, "fits": self.fits}


@dataclass(frozen=True)
class FixRule:
    """A named change to a profile; `changes` gives the dotted keys to set, or None when it does not apply."""

    name: str
    changes: Callable[[Profile], "dict[str, object] | None"]
    describe: Callable[[Profile], str]

    def apply(self, profile: Profile) -> Profile | None:
        changes = self.changes(profile)
        return with_changes(profile, changes) if changes else None


def _checkpointing(p: Profile) -> dict[str, object] | None:
    return None if p.train.gradient_checkpointing is True else {"train.gradient_checkpointing": True}


def _halve_batch(p: Profile) -> dict[str, object] | None:
    t = p.train
    if t.batch_size <= 1:
        return None
    return {"train.batch_size": t.batch_size // 2, "train.grad_accum": t.grad_accum * 2}


def _eight_bit_optimizer(p: Profile) -> dict[str, object] | None:
    return {"train.optimizer": "paged_adamw_8bit"} if p.method.type == "full" and p.optimizer == "adamw" else None


def _lora(p: Profile) -> dict[str, object] | None:
    return {"method.type": "lora", "train.optimizer": "auto"} if p.method.type == "full" else None


def _qlora(p: Profile) -> dict[str, object] | None:
    return {"method.type": "qlora", "train.optimizer": "auto"} if p.method.type in ("full", "lora") else None


def _shorter(p: Profile) -> dict[str, object] | None:
    return {"data.max_length": p.data.max_length // 2} if p.data.max_length > 256 else None


FIXES: tuple[FixRule, ...] = (
    FixRule("checkpointing", _checkpointing, lambda p: "set train.gradient_checkpointing = true"),
    FixRule("halve_batch", _halve_batch,
        lambda p: f"set train.batch_size = {p.train.batch_size // 2} and train.grad_accum = {p.train.grad_accum * 2} "
                  "(same effective batch)"),
    FixRule("8bit_optimizer", _eight_bit_optimizer, lambda p: "set train.optimizer = \"paged_adamw_8bit\""),
    FixRule("lora", _lora, lambda p: "switch method.type to \"lora\""),
    FixRule("qlora", _qlora, lambda p: "switch to QLoRA (method.type = \"qlora\", a 4-bit base)"),
    FixRule("shorter", _shorter, lambda p: f"set data.max_length = {p.data.max_length // 2} "
                                       f"(now {p.data.max_length}; longer rows are truncated)"),
)


def applicable(profile: Profile, trained: Profile | None = None) -> list[tuple[FixRule, Profile]]:
    """Each fix that changes this profile, with the changed profile, gentlest first.

    `trained` is the profile with its autos settled as the run had them (what needs changing is
    judged on it); the change itself goes into `profile`, so the other autos stay auto.
    """
    trained = trained or profile
    out = []
    for fix in FIXES:
        changes = fix.changes(trained)
        if changes:
            changed = with_changes(profile, changes)
            if changed != profile:
                out.append((fix, changed))
    return out


def revised_for_oom(profile: Profile, trained: Profile | None = None) -> Profile:
    """The profile after the gentlest fix (unchanged when none applies)."""
    found = applicable(profile, trained)
    return found[0][1] if found else profile


def oom_advice(profile: Profile, trained: Profile | None = None) -> str:
    """The fixes, in order, as advice text."""
    trained = trained or profile
    steps = [fix.describe(trained) for fix, _ in applicable(profile, trained)]
    return "; or ".join(steps or ["lower train.batch_size or data.max_length"]) + "; then resume the run"
