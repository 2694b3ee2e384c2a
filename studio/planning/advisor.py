"""What to run where: rank full / LoRA / QLoRA by what fits, pick settings, review a profile.

Never suggests a setup whose estimated peak is above 90% of the free memory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from collections.abc import Sequence

from studio.hardware import GpuInfo, Inventory
from studio.planning.catalog import ModelSpec
from studio.planning.corrections import NONE, Corrections
from studio.planning.decisions import DataShape
from studio.planning.estimate import EstimateError, Setup, estimate_memory
from studio.planning.speed import estimate_speed
from studio.planning.fixes import FIXES, Fix, applicable
from studio.planning.inventory import spec_for
from studio.planning.fit import SAFETY, FitRule
from studio.planning.plan import Plan, plan_run, setup_for
from studio.profiles.profile import Profile, with_changes
from studio.profiles.vocabulary import EIGHT_BIT_OPTIMIZERS, default_optimizer, default_strategy
TARGET_EFFECTIVE_BATCH = 16
QUALITY = {
    "full": "full fine-tuning: every weight trains; the highest quality ceiling, the most memory and the largest checkpoints",
    "lora": "LoRA: matches full fine-tuning on most instruction-tuning tasks (Hu et al. 2021) and forgets less; "
            "adapters are megabytes",
    "qlora": "QLoRA: LoRA on a 4-bit NF4 base; within about a point of 16-bit LoRA in the QLoRA paper "
             "(Dettmers et al. 2023), slower per step from dequantizing",
}


@dataclass
class Option:
    method: str
    fits: bool
    peak_vram_gib: float
    setup: Setup
    tokens_per_s: float | None = None
    breakdown: dict[str, float] = field(default_factory=dict)
    profile: Profile = field(default_factory=Profile)  # the candidate, made through with_changes

    def settings(self) -> dict[str, Any]:
        """The suggestion as dotted profile keys: `with_changes` applies them to a profile."""
        p = self.profile
        out: dict[str, Any] = {"method.type": p.method.type, "train.batch_size": p.train.batch_size,
                               "train.grad_accum": p.train.grad_accum,
                               "train.gradient_checkpointing": p.train.gradient_checkpointing,
                               "train.optimizer": p.train.optimizer, "data.max_length": p.data.max_length}
        if p.method.type != "full":
            out.update({"method.rank": p.method.rank, "method.alpha": p.method.alpha,
                        "method.target_modules": list(p.method.target_modules)})
        return out

    def summary(self) -> dict[str, Any]:
        return {"method": self.method, "fits": self.fits, "peak_vram_gib": self.peak_vram_gib,
                "tokens_per_s": self.tokens_per_s, "settings": self.settings()}


def default_rank(spec: ModelSpec, rows: int | None) -> tuple[int, str]:
    """The LoRA rank to suggest, and why."""
    if spec.total_params >= 30e9:
        return 32, "models of 30B parameters and more take higher ranks"
    if rows is not None and rows < 1000:
        return 8, "a small dataset needs a small adapter, which also overfits less"
    return 16, "the usual rank for this size"


def candidate(spec: ModelSpec, method: str, rank: int, batch: int, seq_len: int, ckpt: bool, optimizer: str,
              bf16: bool, n_gpus: int) -> tuple[Profile, Setup]:
    """A suggestion as a profile, through the one door every change passes (`with_changes`: the field rules
    and the cross-checks), and the estimator's view of it (`setup_for`, as for any run)."""
    profile = with_changes(Profile(), {
        "model.name": spec.id, "method.type": method, "method.rank": rank, "method.alpha": 2.0 * rank,
        "train.batch_size": batch, "train.grad_accum": max(1, TARGET_EFFECTIVE_BATCH // batch),
        "train.gradient_checkpointing": ckpt, "train.optimizer": optimizer, "data.max_length": seq_len},
        source="the advisor")
    strategy = default_strategy(method, fits_one_gpu=False) if n_gpus > 1 else "none"
    return profile, setup_for(profile, bf16, n_gpus, strategy)


def _evaluate(spec: ModelSpec, setup: Setup, gpu: GpuInfo, corrections: Corrections,
              profile: Profile | None = None) -> Option:
    mem = estimate_memory(spec, setup)
    rule = FitRule(setup.method, corrections)
    peak = rule.expected_gib(mem.peak_vram_gib, gpu.name)
    fits = bool(rule.fits(mem.peak_vram_gib, gpu.name, gpu.memory_free_gib))
    card = spec_for(gpu)
    speed = estimate_speed(spec, setup, card).tokens_per_s if card else None
    return Option(setup.method, fits, peak, setup, speed, mem.breakdown, profile or Profile())


def fits_without_checkpointing(spec: ModelSpec, option: Option, gpu: GpuInfo, corrections: Corrections) -> bool:
    profile, setup = candidate(spec, option.method, option.setup.rank, option.setup.batch, option.setup.seq_len,
                               False, option.setup.optimizer, gpu.bf16, option.setup.n_gpus)
    return _evaluate(spec, setup, gpu, corrections, profile).fits


def best_for_method(spec: ModelSpec, method: str, gpu: GpuInfo, seq_len: int, rows: int | None,
                    n_gpus: int = 1, corrections: Corrections = NONE) -> Option:
    """The fastest setup of `method` that fits, or the smallest one if none does."""
    rank, _ = default_rank(spec, rows)
    # Full fine-tuning may trade precision of its optimizer states for memory; adapters are small.
    optimizers = (default_optimizer(method), *EIGHT_BIT_OPTIMIZERS) if method == "full" else (default_optimizer(method),)
    candidates = []
    for optimizer in optimizers:
        for ckpt in (False, True):
            for batch in (8, 4, 2, 1):
                profile, setup = candidate(spec, method, rank, batch, seq_len, ckpt, optimizer, gpu.bf16, n_gpus)
                candidates.append(_evaluate(spec, setup, gpu, corrections, profile))
    fitting = [c for c in candidates if c.fits]
    if not fitting:
        return min(candidates, key=lambda c: c.peak_vram_gib)
    if all(c.tokens_per_s is not None for c in fitting):
        return max(fitting, key=lambda c: (c.tokens_per_s, -c.peak_vram_gib))
    # No speed model for this card: no checkpointing if possible, then the biggest batch.
    return min(fitting, key=lambda c: (c.setup.grad_ckpt, -c.setup.batch, c.peak_vram_gib))


@dataclass
class Suggestion:
    method: str
    fits: bool
    peak_vram_gib: float
    gpu: str
    gpu_index: int | None
    settings: dict[str, Any]
    alternatives: list[dict[str, Any]]
    reasons: list[str]
    tokens_per_s: float | None = None
    breakdown: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def suggest_method(spec: ModelSpec, gpus: Sequence[GpuInfo], seq_len: int = 1024, rows: int | None = None,
                   corrections: Corrections = NONE) -> Suggestion:
    """The best method that fits on the smallest card that holds it (of the inventory's GPUs, judged with this
    machine's corrections); alternatives and reasons."""
    if not gpus:
        raise ValueError("no GPU to plan for")
    targets = list(gpus)
    biggest = max(targets, key=lambda t: t.memory_free_gib)
    options = [best_for_method(spec, m, biggest, seq_len, rows, corrections=corrections)
               for m in ("full", "lora", "qlora")]
    chosen = next((o for o in options if o.fits), None)
    reasons: list[str] = []
    gpu = biggest
    if chosen is None and len(targets) > 1:
        sharded = shard_across(spec, targets, seq_len, rows, corrections)
        if sharded is not None:
            option, used = sharded
            reasons.append(f"no single GPU holds it; {option.method} sharded with FSDP over {len(used)} GPUs "
                           f"({', '.join(str(t.index) for t in used)}) needs ~{option.peak_vram_gib:.1f} GiB each")
            reasons.append(QUALITY[option.method])
            settings = {**option.settings(), "hardware.gpus": str(len(used)), "hardware.strategy": option.setup.strategy}
            return Suggestion(method=option.method, fits=True, peak_vram_gib=option.peak_vram_gib,
                              gpu=f"{len(used)} x {used[0].name}", gpu_index=None, settings=settings,
                              alternatives=[o.summary() for o in options], reasons=reasons,
                              tokens_per_s=option.tokens_per_s, breakdown=option.breakdown)
    if chosen is None:
        smallest = min(options, key=lambda o: o.peak_vram_gib)
        reasons.append(f"nothing fits on {biggest.name} ({biggest.memory_free_gib:.1f} GiB free): the smallest setup, "
                       f"{smallest.method} with batch 1 and gradient checkpointing, needs about "
                       f"{smallest.peak_vram_gib:.1f} GiB; use a bigger GPU, several GPUs, or a shorter max_length "
                       f"(now {seq_len})")
        chosen = smallest
    else:
        # The smallest card that holds the chosen method, so the big ones stay free.
        for t in sorted(targets, key=lambda t: t.memory_free_gib):
            o = best_for_method(spec, chosen.method, t, seq_len, rows, corrections=corrections)
            if o.fits:
                chosen, gpu = o, t
                break
        if len(targets) > 1:
            reasons.append(f"{gpu.name} (GPU {gpu.index}) is the smallest card that holds it; the larger ones stay free")
        worse = [o.method for o in options[:options.index(next(o for o in options if o.method == chosen.method))]]
        if worse:
            reasons.append(f"{' and '.join(worse)} would not fit in {SAFETY:.0%} of {biggest.memory_free_gib:.1f} GiB")
        reasons.append(QUALITY[chosen.method])
        s = chosen.setup
        reasons.append(f"estimated peak {chosen.peak_vram_gib:.1f} GiB of {gpu.memory_free_gib:.1f} GiB free "
                       f"({gpu.memory_free_gib - chosen.peak_vram_gib:.1f} GiB to spare)")
        accum = chosen.settings()["train.grad_accum"]
        reasons.append(f"micro-batch {s.batch} x {accum} accumulation steps = effective batch {s.batch * accum}")
        if not s.grad_ckpt:
            reasons.append("gradient checkpointing is off: it is not needed to fit, and skipping it saves ~25% compute")
        elif fits_without_checkpointing(spec, chosen, gpu, corrections):
            reasons.append(f"gradient checkpointing is on: it lets a micro-batch of {s.batch} fit, which the speed "
                           "model rates faster than a smaller batch without it")
        else:
            reasons.append("gradient checkpointing is on: without it the activations would not fit")
        if s.method != "full":
            reasons.append(f"rank {s.rank} (alpha {2 * s.rank}): {default_rank(spec, rows)[1]}")
        if s.optimizer != "adamw":
            reasons.append(f"optimizer {s.optimizer}: 8-bit states cut optimizer memory by 4x")
    alternatives = [o.summary() for o in options if o.method != chosen.method]
    return Suggestion(method=chosen.method, fits=chosen.fits, peak_vram_gib=chosen.peak_vram_gib, gpu=gpu.name,
                      gpu_index=gpu.index, settings=chosen.settings(), alternatives=alternatives, reasons=reasons,
                      tokens_per_s=chosen.tokens_per_s, breakdown=chosen.breakdown)


def shard_across(spec: ModelSpec, targets: list[GpuInfo], seq_len: int, rows: int | None,
                 corrections: Corrections = NONE) -> tuple[Option, list[GpuInfo]] | None:
    """The fewest GPUs (largest first) over which full, LoRA or QLoRA fits with FSDP."""
    ordered = sorted(targets, key=lambda t: -t.memory_free_gib)
    for n in range(2, len(ordered) + 1):
        used = ordered[:n]
        weakest = min(used, key=lambda t: t.memory_free_gib)
        for method in ("full", "lora", "qlora"):
            option = best_for_method(spec, method, weakest, seq_len, rows, n_gpus=n, corrections=corrections)
            if option.fits:
                return option, used
    return None


@dataclass
class Review:
    fits: bool
    peak_vram_gib: float
    free_gib: float
    gpu: str
    message: str
    fixes: list[Fix]                       # single changes that lower the peak; the gentlest that fits first
    plan: Plan | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"fits": self.fits, "peak_vram_gib": self.peak_vram_gib, "free_gib": self.free_gib, "gpu": self.gpu,
                "message": self.message, "fixes": [f.to_dict() for f in self.fixes]}


def changed_keys(before: Profile, after: Profile) -> dict[str, Any]:
    """The dotted keys whose values differ between two profiles."""
    a, b = before.to_dict(), after.to_dict()
    return {f"{section}.{key}": value for section, values in b.items() if isinstance(values, dict)
            for key, value in values.items() if a.get(section, {}).get(key) != value}


def planned(profile: Profile, inventory: Inventory, corrections: Corrections = NONE,
            data: DataShape | None = None) -> Plan:
    """The plan of a profile, raising EstimateError when it cannot be estimated or has no GPU to go on."""
    plan = plan_run(profile, inventory, corrections, data)
    if plan.memory is None:
        raise EstimateError(plan.no_estimate or "no estimate for this profile")
    if plan.gpu is None:
        raise EstimateError("no GPU to plan for; pass --gpu NAME or --vram GB")
    return plan


def review_profile(profile: Profile, inventory: Inventory, corrections: Corrections = NONE,
                   data: DataShape | None = None) -> Review:
    """Does the profile fit the GPUs, and if not, which single changes (gentlest first) make it fit.
    `data` (the rows' shape, when read) lets the plan settle packing as a run would."""
    plan = planned(profile, inventory, corrections, data)
    peak, limit, gpu = plan.peak_vram_gib or 0.0, plan.limit_gib or 0.0, plan.gpu
    assert gpu is not None
    gb = lambda x: f"{x:.1f} GiB"  # noqa: E731
    fixes = []
    for rule, changed in applicable(profile):
        after = plan_run(changed, inventory, corrections, data).peak_vram_gib
        if after is None or peak - after <= 0.05:
            continue
        fixes.append(Fix(changed_keys(profile, changed), (rule.describe(profile),), after,
                         saves_gib=round(peak - after, 2), fits=after <= limit))
    fixes.sort(key=lambda f: not f.fits)  # stable: the gentlest fix that fits comes first
    per = " per GPU" if plan.layout.processes > 1 else ""
    if peak <= limit:
        message = (f"fits with {gb(gpu.memory_free_gib - peak)} to spare (estimated peak {gb(peak)}{per} of "
                   f"{gb(gpu.memory_free_gib)} free on {gpu.name})")
    else:
        shown = [f"{f.reason} (-{gb(f.saves_gib)})" for f in fixes[:3]]
        message = (f"will run out of memory at ~{gb(peak)}{per} on a {gb(gpu.memory_total_gib)} card "
                   f"({gpu.name}, {gb(gpu.memory_free_gib)} free); " + (" or ".join(shown) if shown else
                                                                        "no single change is enough: use a bigger GPU"))
    return Review(fits=peak <= limit, peak_vram_gib=peak, free_gib=gpu.memory_free_gib, gpu=gpu.name,
                  message=message, fixes=fixes, plan=plan)


def make_it_fit(profile: Profile, inventory: Inventory, corrections: Corrections = NONE,
                data: DataShape | None = None) -> Fix | None:
    """Fixes applied one after another, gentlest first, until the profile fits, as one Fix (its changes set all
    at once give the same profile); None if even all do not."""
    current, steps = profile, []
    first = planned(profile, inventory, corrections, data).peak_vram_gib or 0.0
    for _ in range(len(FIXES) * 4):
        plan = planned(current, inventory, corrections, data)
        if plan.fits:
            peak = plan.peak_vram_gib
            return Fix(changed_keys(profile, current), tuple(steps), peak,
                       saves_gib=round(first - (peak or 0.0), 2), fits=True)
        options = applicable(current)
        if not options:
            return None
        # The gentlest fix that lowers the peak; halving again is allowed on the next round.
        for fix, changed in options:
            after = plan_run(changed, inventory, corrections, data).peak_vram_gib
            if after is not None and after < (plan.peak_vram_gib or 0) - 0.05:
                steps.append(fix.describe(current))
                current = changed
                break
        else:
            return None
    return None
