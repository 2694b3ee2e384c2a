"""plan.json: a run's typed record of its plan and of what it trained: the one record of "what was trained".

Written when the run is started (or revised), it holds the resolved profile (every `auto` settled; a decision
the trainer must make from the data holds the value the run starts from, marked pending), the decisions with
their reasons, the layout, and the estimate it was started against. The trainer then writes back `trained`:
the profile it trains with, after what only it can decide (packing from the token counts, Liger and exact
packing from the real model), and every decision with its reason. `final` is the one answer to "what does
this run train": the trainer's record once it started, else the plan's.

A plan.json is read like any file studio did not write this minute: a file that is not a record of this
format reads as None, and the trainer then plans the run on its own machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.planning.layout import Layout
from studio.profiles.decision import Decision
from studio.profiles.profile import Profile, ProfileError, profile_from_dict

FORMAT = 2
MAX_BYTES = 16 * 2**20


@dataclass(frozen=True)
class Trained:
    """What the trainer trains: the profile with every decision made, and the decisions with their reasons."""

    profile: Profile
    decisions: tuple[Decision, ...]

    def decision(self, key: str) -> Decision | None:
        return next((d for d in self.decisions if d.key == key), None)


@dataclass(frozen=True)
class PlanRecord:
    resolved: Profile                      # the profile as planned, every auto settled (profile.toml: as written)
    decisions: tuple[Decision, ...]
    layout: Layout
    model: str
    method: str
    gpu: str | None = None                 # the tightest GPU of the job (it holds the per-GPU peak)
    gpus: tuple[str, ...] = ()
    peak_vram_gib: float | None = None     # per GPU, corrected by this machine's history when it had any
    peak_reserved_gib: float | None = None  # uncorrected: what the history compares with the measured peak
    peak_allocated_gib: float | None = None
    breakdown: dict[str, float] = field(default_factory=dict)
    tokens_per_s: float | None = None
    free_gib: float | None = None
    fits: bool | None = None
    correction: dict[str, Any] | None = None
    no_estimate: str = ""
    notes: tuple[str, ...] = ()
    data: dict[str, Any] | None = None
    trained: Trained | None = None         # written by the trainer when it starts training (each attempt)

    @property
    def final(self) -> Trained:
        """What the run trains: the trainer's own record once it started, else what was planned."""
        return self.trained or Trained(self.resolved, self.decisions)

    def to_dict(self) -> dict[str, Any]:
        trained = self.trained
        return {
            "format": FORMAT, "profile": self.resolved.to_dict(), "decisions": [d.to_dict() for d in self.decisions],
            "layout": self.layout.to_dict(), "model": self.model, "method": self.method, "gpu": self.gpu,
            "gpus": list(self.gpus), "peak_vram_gib": self.peak_vram_gib, "peak_reserved_gib": self.peak_reserved_gib,
            "peak_allocated_gib": self.peak_allocated_gib, "breakdown": self.breakdown,
            "tokens_per_s": self.tokens_per_s, "free_gib": self.free_gib, "fits": self.fits,
            "correction": self.correction, "no_estimate": self.no_estimate or None, "notes": list(self.notes),
            "data": self.data,
            "trained": {"profile": trained.profile.to_dict(), "decisions": [d.to_dict() for d in trained.decisions]}
            if trained else None,
        }


def _number(raw: dict[str, Any], key: str) -> float | None:
    value = raw.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def plan_from_dict(raw: Any) -> PlanRecord:
    """A PlanRecord from plan.json's object; raises ValueError for anything that is not one."""
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ValueError("not a plan record of this format")
    try:
        profile = profile_from_dict(raw.get("profile"), "plan.json")
    except (ProfileError, AttributeError, TypeError) as e:
        raise ValueError(f"its profile does not load: {e}") from None
    try:
        layout = Layout.from_dict(raw.get("layout"))
    except (ValueError, TypeError, AttributeError) as e:
        raise ValueError(f"its layout does not load: {e}") from None
    decisions = _decisions(raw.get("decisions"))
    breakdown = raw.get("breakdown") if isinstance(raw.get("breakdown"), dict) else {}

    def text(key: str) -> str:
        return raw[key] if isinstance(raw.get(key), str) else ""

    return PlanRecord(
        resolved=profile, decisions=decisions, layout=layout, model=text("model"), method=text("method"),
        gpu=text("gpu") or None, gpus=tuple(g for g in raw.get("gpus") or [] if isinstance(g, str)),
        peak_vram_gib=_number(raw, "peak_vram_gib"), peak_reserved_gib=_number(raw, "peak_reserved_gib"),
        peak_allocated_gib=_number(raw, "peak_allocated_gib"),
        breakdown={k: float(v) for k, v in breakdown.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
        tokens_per_s=_number(raw, "tokens_per_s"), free_gib=_number(raw, "free_gib"),
        fits=raw["fits"] if isinstance(raw.get("fits"), bool) else None,
        correction=raw["correction"] if isinstance(raw.get("correction"), dict) else None,
        no_estimate=text("no_estimate"), notes=tuple(n for n in raw.get("notes") or [] if isinstance(n, str)),
        data=raw["data"] if isinstance(raw.get("data"), dict) else None, trained=_trained(raw.get("trained")))


def _decisions(raw: Any) -> tuple[Decision, ...]:
    return tuple(d for d in (Decision.from_dict(x) for x in (raw if isinstance(raw, list) else [])) if d is not None)


def _trained(raw: Any) -> Trained | None:
    """The trainer's record; None when absent or when it does not load (the plan's profile then stands)."""
    if not isinstance(raw, dict):
        return None
    try:
        return Trained(profile_from_dict(raw.get("profile"), "plan.json's trained profile"),
                       _decisions(raw.get("decisions")))
    except (ProfileError, AttributeError, TypeError):
        return None


def read_plan(path: Path) -> PlanRecord | None:
    """The run's plan record, or None when plan.json is missing, unreadable or not a record of this format."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_BYTES:
            return None
        return plan_from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, RecursionError):
        return None
