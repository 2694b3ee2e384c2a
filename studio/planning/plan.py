"""The plan of a run: computed once from a profile and the GPUs at hand.

`plan_run(profile, inventory)` settles everything a profile leaves to studio (which
GPUs, which strategy, which optimizer, ...) and estimates the run that will
actually happen. Starting a run, reviewing a profile, the editor's advice and the
machine history all read the same Plan; the run folder keeps it as plan.json and
the trainer repeats its decisions in the `start` event.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from studio.hardware import GpuInfo, Inventory
from studio.planning.catalog import CatalogError, GpuSpec, ModelSpec, lookup_model
from studio.planning.checks import model_notes
from studio.planning import decisions as rules
from studio.planning.corrections import NONE, Correction, Corrections
from studio.planning import fit
from studio.planning.estimate import EstimateError, MemoryEstimate, Setup, estimate_memory
from studio.planning.speed import SpeedEstimate, estimate_speed
from studio.planning.inventory import spec_for
from studio.planning.layout import Layout, layout_for
from studio.planning.record import PlanRecord
from studio.profiles.decision import DECIDED, PENDING, Decision
from studio.profiles.profile import Profile, with_changes
from studio.profiles.vocabulary import auto_dtype, default_strategy, unpacked_reason

SAFETY = fit.SAFETY  # the share of a GPU's free memory studio plans within (planning/fit.py)


@dataclass(frozen=True)
class Plan:
    profile: Profile                     # as written; `resolved` has every auto settled
    layout: Layout
    gpus: tuple[GpuInfo, ...]            # the job's GPUs on this machine; () on the CPU
    model: ModelSpec | None
    setup: Setup | None
    memory: MemoryEstimate | None        # per GPU
    speed: SpeedEstimate | None
    correction: Correction | None = None
    decisions: tuple[Decision, ...] = field(default=())
    no_estimate: str = ""                # why there is no memory estimate, when there is none
    resolved: Profile | None = None      # the profile the trainer trains with
    data: rules.DataShape | None = None
    notes: tuple[str, ...] = ()          # what this model does differently (checks.model_notes)
    rule: fit.FitRule | None = None      # the fit rule it was judged by (method, this machine's corrections)

    @property
    def gpu(self) -> GpuInfo | None:
        return tightest(self.gpus)

    @property
    def gpu_spec(self) -> GpuSpec | None:
        return spec_for(self.gpu) if self.gpu else None

    @property
    def fit_rule(self) -> fit.FitRule:
        return self.rule or fit.FitRule(self.profile.method.type)

    @property
    def peak_vram_gib(self) -> float | None:
        """Per GPU, on the tightest GPU: the estimate, corrected by this machine's history."""
        if self.memory is None:
            return None
        return self.fit_rule.expected_gib(self.memory.peak_vram_gib, self.gpu.name if self.gpu else None)

    @property
    def free_gib(self) -> float | None:
        return self.gpu.memory_free_gib if self.gpu else None

    @property
    def limit_gib(self) -> float | None:
        return self.fit_rule.limit_gib(self.free_gib) if self.free_gib is not None else None

    @property
    def fits(self) -> bool | None:
        """None when there is nothing to compare (no GPU, or no estimate): the one rule, with the correction
        this plan was made with."""
        if self.memory is None or self.gpu is None:
            return None
        return self.fit_rule.fits(self.memory.peak_vram_gib, self.gpu.name, self.gpu.memory_free_gib)

    @property
    def tokens_per_s(self) -> float | None:
        return self.speed.tokens_per_s if self.speed else None

    def decision(self, key: str) -> Decision | None:
        return next((d for d in self.decisions if d.key == key), None)

    def record(self) -> PlanRecord:
        """plan.json: what the run was planned as (the trainer trains its profile; the history compares its
        estimate with what the run measured)."""
        mem = self.memory
        return PlanRecord(
            resolved=self.resolved or self.profile, decisions=self.decisions, layout=self.layout,
            model=self.model.id if self.model else self.profile.model.name, method=self.profile.method.type,
            gpu=self.gpu.name if self.gpu else None, gpus=tuple(g.name for g in self.gpus),
            peak_vram_gib=self.peak_vram_gib, peak_reserved_gib=mem.peak_reserved_gib if mem else None,
            peak_allocated_gib=mem.peak_allocated_gib if mem else None, breakdown=mem.breakdown if mem else {},
            tokens_per_s=self.tokens_per_s, free_gib=self.free_gib, fits=self.fits,
            correction=self.correction.to_dict() if self.correction else None, no_estimate=self.no_estimate,
            notes=self.notes, data=asdict(self.data) if self.data else None)


def tightest(gpus: tuple[GpuInfo, ...]) -> GpuInfo | None:
    """The GPU with the least free memory: the one that must hold the per-GPU peak."""
    return min(gpus, key=lambda g: (g.memory_free_gib, g.index)) if gpus else None


def setup_for(profile: Profile, bf16: bool = True, n_gpus: int = 1, strategy: str = "none",
              fill: float = 1.0) -> Setup:
    """The estimator's view of a profile on `n_gpus` GPUs: the one place a Setup is made from a profile.

    An unsettled "auto" reads as the cautious choice: checkpointing on, Liger and packing off.
    """
    m, d, t = profile.method, profile.data, profile.train
    dtype = auto_dtype(profile.model.dtype, gpu=True, bf16=bf16)  # estimates are for GPUs
    packed = d.packing is True
    if t.objective == "grpo":  # a prompt and an answer it samples; a frozen copy only with a KL penalty
        r = profile.reward
        grpo = dict(seq_len=d.max_length + r.max_completion_length, completion=r.max_completion_length,
                    generation_batch=t.batch_size * t.grad_accum, reference="auto" if r.beta > 0 else "precompute")
    else:
        grpo = dict(seq_len=d.max_length, reference=profile.preference.reference)
    return Setup(method=m.type, rank=m.rank, targets=tuple(m.target_modules), dropout=m.dropout, dora=m.use_dora,
                 double_quant=m.double_quant, batch=t.batch_size,
                 grad_ckpt=t.gradient_checkpointing is not False,
                 optimizer=profile.optimizer, dtype=dtype, loss="chunked", n_gpus=n_gpus,
                 strategy=strategy if n_gpus > 1 else "none", liger=t.liger_kernel is True,
                 fill=1.0 if packed else fill, objective=t.objective, **grpo)


def model_spec(profile: Profile) -> tuple[ModelSpec | None, str]:
    """The catalog's description of the profile's model, or None and why not."""
    m = profile.model
    try:
        return lookup_model(m.name, trust_remote_code=m.trust_remote_code, revision=m.revision), ""
    except CatalogError as e:
        return None, str(e)


def plan_run(profile: Profile, inventory: Inventory, corrections: Corrections = NONE,
             data: rules.DataShape | None = None) -> Plan:
    """Decide the layout and every auto, build the setup and estimate memory and speed: once per start
    (or per piece of advice). `data` is the shape of the rows, when they have been read."""
    model, no_estimate = model_spec(profile)
    method, machines = profile.method.type, profile.hardware.num_machines
    bf16_all = all(g.bf16 for g in inventory.gpus) if inventory.gpus else True

    def peak(n: int, strategy: str) -> float | None:
        world = n * machines
        if model is None:
            return None
        if strategy == "auto":
            strategy = default_strategy(method, None) if world > 1 else "none"
        try:
            return estimate_memory(model, setup_for(profile, bf16_all, world, strategy)).peak_vram_gib
        except EstimateError:
            return None

    rule = fit.FitRule(method, corrections)
    layout, layout_decisions = layout_for(profile.hardware, method, inventory, peak, rule)
    gpus = tuple(g for g in inventory.gpus if g.index in layout.gpu_indices)
    bf16 = all(g.bf16 for g in gpus) if gpus else True
    decisions = [Decision(k, v, why) for k, v, why in layout_decisions]
    if profile.train.optimizer == "auto":
        decisions.append(Decision("train.optimizer", profile.optimizer,
                                  f"auto: {profile.optimizer} for {method}"))
    gpu = tightest(gpus)
    resolved, speed_decisions = resolve_speed_settings(profile, model, gpus, data, bf16, layout, rule)
    decisions += speed_decisions
    resolved, target_decisions = resolve_all_linear(resolved, model)
    decisions += target_decisions
    setup = memory = speed = None
    if model is not None:
        setup = setup_for(resolved, bf16, layout.world_size, layout.strategy, data.fill if data else 1.0)
        try:
            memory = estimate_memory(model, setup)
        except EstimateError as e:
            no_estimate = str(e)
    gpu_spec = spec_for(gpu) if gpu else None
    if model is not None and setup is not None and memory is not None and gpu_spec is not None:
        speed = estimate_speed(model, setup, gpu_spec)
    correction = corrections.lookup(gpu.name if gpu else None, method)
    return Plan(profile=profile, layout=layout, gpus=gpus, model=model, setup=setup, memory=memory, speed=speed,
                correction=correction, decisions=tuple(decisions), no_estimate=no_estimate, resolved=resolved,
                data=data, notes=tuple(model_notes(profile, model)), rule=rule)


def resolve_all_linear(profile: Profile, model: ModelSpec | None) -> tuple[Profile, list[Decision]]:
    """all-linear on a model where PEFT refuses some linears: the ones it accepts, named (as the anatomy
    found them, and as the trainer would narrow it on the real model)."""
    anatomy = model.anatomy if model else None
    if profile.method.type == "full" or profile.method.target_modules != ["all-linear"] or not anatomy \
            or not anatomy.lora_refused:
        return profile, []
    targets = list(anatomy.lora_targets)
    return (with_changes(profile, {"method.target_modules": targets}),
            [Decision("method.target_modules", targets, anatomy.all_linear_note)])


SETTLED_KEYS = ("train.gradient_checkpointing", "train.liger_kernel", "data.packing")


def resolve_speed_settings(profile: Profile, model: ModelSpec | None, gpus: tuple[GpuInfo, ...],
                           data: rules.DataShape | None, bf16: bool, layout: Layout,
                           rule: fit.FitRule) -> tuple[Profile, list[Decision]]:
    """Liger, packing and checkpointing for this run, in that order (checkpointing weighs the others)."""
    t = profile.train
    liger, why_liger = rules.liger(t.liger_kernel, model, gpus)
    packed, why_packing = rules.packing(profile.data.packing, data, profile.data.max_length)
    if profile.train.objective != "sft":
        packed, why_packing = False, unpacked_reason(profile.train.objective)
    # Without the rows' token counts (none, or estimated from characters) the trainer decides packing once it has
    # tokenized them: the run's record then gives one set of figures, the preflight's.
    packing_state = PENDING if profile.data.packing == "auto" and profile.train.objective == "sft" and \
        (data is None or not data.exact) else DECIDED
    if packing_state == PENDING and data is not None:
        why_packing += " (estimated from characters: the trainer decides again from the token counts)"
    settled = with_changes(profile, {"train.liger_kernel": liger, "data.packing": packed})
    gpu = tightest(gpus)
    limit = rule.estimate_limit_gib(gpu.name, gpu.memory_free_gib) if gpu else None

    def peak_without() -> float | None:
        if model is None:
            return None
        trial = with_changes(settled, {"train.gradient_checkpointing": False})
        try:
            return estimate_memory(model, setup_for(trial, bf16, layout.world_size, layout.strategy)).peak_vram_gib
        except EstimateError:
            return None

    ckpt, why_ckpt = rules.checkpointing(t.gradient_checkpointing, model, gpus, peak_without, limit)
    resolved = with_changes(settled, {"train.gradient_checkpointing": ckpt})
    return resolved, [Decision("train.gradient_checkpointing", ckpt, why_ckpt),
                      Decision("train.liger_kernel", liger, why_liger),
                      Decision("data.packing", packed, why_packing, packing_state)]
