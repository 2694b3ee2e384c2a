"""Planning commands: `studio gpus`, `studio models`, `studio estimate`, `studio suggest`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from studio import display
from studio.advisor import SAFETY, Target, review_profile, setup_from_profile, suggest_method
from studio.catalog import CatalogError, catalog_gpus, catalog_models, lookup_gpu, lookup_model
from studio.estimate import BREAKDOWN, GIB, OPTIMIZERS, STRATEGIES, EstimateError, Setup, estimate_memory, estimate_speed
from studio.history import correction_for, run_estimate
from studio.inventory import current_inventory, spec_for
from studio.profile import Profile, load_profile


class PlanError(Exception):
    """Bad planning input; printed as one line, exit 2."""


def targets_from_args(args: argparse.Namespace) -> tuple[list[Target], str]:
    """The GPUs to plan for: --gpu, --vram, else this machine's (or STUDIO_GPUS)."""
    if getattr(args, "gpu", None):
        try:
            spec = lookup_gpu(args.gpu)
        except CatalogError as e:
            raise PlanError(str(e)) from None
        count = max(1, getattr(args, "gpus", None) or 1)
        return [Target(spec.name, spec.memory_gib, spec.memory_gib, spec, i) for i in range(count)], "--gpu"
    if getattr(args, "vram", None):
        return [Target(f"{args.vram:g} GiB GPU", args.vram, args.vram, None)], "--vram"
    inv = current_inventory()
    targets = [Target(g.name, g.memory_free_gib, g.memory_total_gib, spec_for(g), g.index) for g in inv.gpus]
    return targets, inv.reason


def cmd_gpus(args: argparse.Namespace) -> int:
    inv = current_inventory()
    if args.json:
        print(json.dumps(inv.to_dict(), indent=2))
        return 0
    if not inv.gpus:
        print(f"no GPU: {inv.reason}")
        return 0
    src = f" (from {inv.source})" if inv.source != "nvml" else f" (driver {inv.driver_version}, CUDA {inv.cuda_version})"
    print(f"{len(inv.gpus)} GPU(s){src}")
    for g in inv.gpus:
        extra = []
        if g.utilization_pct is not None:
            extra.append(f"util {g.utilization_pct:.0f}%")
        if g.temperature_c is not None:
            extra.append(f"{g.temperature_c:.0f}C")
        if g.power_w is not None:
            extra.append(f"{g.power_w:.0f} W")
        procs = f", {len(g.processes)} process(es)" if g.processes else ""
        print(f"  [{g.index}] {g.name}: {g.memory_used_gib:.1f}/{g.memory_total_gib:.1f} GiB used, "
              f"{g.memory_free_gib:.1f} free; cc {g.compute_capability or '?'}, bf16 {'yes' if g.bf16 else 'no'}"
              f"{', ' + ', '.join(extra) if extra else ''}{procs}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    models = catalog_models()
    if args.json:
        print(json.dumps([{"id": m.id, "aliases": list(m.aliases), "params_b": round(m.total_params / 1e9, 2),
                           "arch": m.arch, "layers": m.layers, "hidden": m.hidden, "vocab": m.vocab} for m in models],
                         indent=2))
        return 0
    for m in models:
        print(f"{m.id:52} {m.total_params / 1e9:7.2f}B  {m.arch:8} aliases: {', '.join(m.aliases[:2])}")
    print(f"\nGPUs: {', '.join(g.name for g in catalog_gpus())}")
    return 0


def _profile_arg(ref: str | None) -> Profile | None:
    if not ref:
        return None
    from studio.cli import profile_path

    return load_profile(profile_path(ref))


def setup_from_args(args: argparse.Namespace, profile: Profile | None, bf16: bool) -> Setup:
    setup = setup_from_profile(profile, bf16) if profile else Setup(dtype="bf16" if bf16 else "fp16")
    changes: dict[str, Any] = {}
    if args.method:
        changes["method"] = args.method
        if args.method == "qlora" and not args.optim:
            changes["optimizer"] = "paged_adamw_8bit"
    for attr, key in (("rank", "rank"), ("batch", "batch"), ("seq_len", "seq_len"), ("optim", "optimizer"),
                      ("dtype", "dtype"), ("gpus", "n_gpus"), ("strategy", "strategy")):
        if getattr(args, attr, None) is not None:
            changes[key] = getattr(args, attr)
    if args.target_modules:
        changes["targets"] = tuple(t.strip() for t in args.target_modules.split(",") if t.strip())
    if args.grad_ckpt is not None:
        changes["grad_ckpt"] = args.grad_ckpt
    if changes.get("n_gpus", 1) > 1 and "strategy" not in changes and setup.strategy == "none":
        changes["strategy"] = "fsdp" if changes.get("method", setup.method) == "full" else "ddp"
    from dataclasses import replace

    return replace(setup, **changes)


def _model_name(args: argparse.Namespace, profile: Profile | None) -> str:
    name = args.model or (profile.model.name if profile else None)
    if not name:
        raise PlanError("give a model: --model ID (e.g. meta-llama/Llama-3.1-8B) or a PROFILE")
    if name.startswith("builtin:"):
        raise PlanError(f"{name} is a tiny CPU demo model; estimates are for real models (--model)")
    return name


def cmd_estimate(args: argparse.Namespace) -> int:
    profile = _profile_arg(args.profile)
    targets, why = targets_from_args(args)
    target = targets[0] if targets else None
    bf16 = target.spec.bf16 if target and target.spec else True
    try:
        spec = lookup_model(_model_name(args, profile))
        setup = setup_from_args(args, profile, bf16)
        mem = estimate_memory(spec, setup)
        speed = estimate_speed(spec, setup, target.spec) if target and target.spec else None
    except (CatalogError, EstimateError) as e:
        raise PlanError(str(e)) from None
    out: dict[str, Any] = {"model": spec.id, "method": setup.method, **mem.to_dict(),
                           "setup": {k: v for k, v in setup.__dict__.items()}}
    correction = correction_for(target.name if target else None, setup.method)
    if correction:
        out["machine_correction"] = correction
        out["peak_vram_gib"] = round(mem.peak_vram_gib * correction["vram_factor"], 3)
    if target:
        out["gpu"] = target.name
        out["gpu_free_gib"] = target.free_gib
        out["fits"] = out["peak_vram_gib"] <= SAFETY * target.free_gib
    if speed:
        out["tokens_per_s"] = speed.tokens_per_s
        if args.tokens:
            seconds = args.tokens * args.epochs / speed.tokens_per_s
            out["time_s"] = round(seconds)
            out["cost_usd"] = round(seconds / 3600 * target.spec.price_per_hour * setup.n_gpus, 2)
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    per = " per GPU" if setup.n_gpus > 1 else ""
    print(f"{spec.id}: {setup.method}, batch {setup.batch} x {setup.seq_len} tokens, "
          f"gradient checkpointing {'on' if setup.grad_ckpt else 'off'}, {setup.optimizer}, {setup.dtype}"
          + (f", {setup.n_gpus} GPUs {setup.strategy}" if setup.n_gpus > 1 else ""))
    print(f"  params: {display.count(mem.total_params)} total, {display.count(mem.trainable_params)} trainable")
    print(f"  peak VRAM{per} (nvidia-smi): {out['peak_vram_gib']:.2f} GiB   reserved {mem.peak_reserved_gib:.2f}   "
          f"allocated {mem.peak_allocated_gib:.2f}   (peak at the {mem.phase})")
    print("  breakdown: " + ", ".join(f"{k} {mem.breakdown[k]:.2f}" for k in BREAKDOWN))
    if correction:
        print(f"  corrected x{correction['vram_factor']:.3f} from {correction['runs']} run(s) measured on this machine")
    if target:
        verdict = "fits" if out["fits"] else "does NOT fit"
        print(f"  {verdict} on {target.name} ({target.free_gib:.1f} GiB free; studio keeps a {100 - SAFETY * 100:.0f}% margin)")
    elif why:
        print(f"  no GPU to compare with ({why}); pass --gpu NAME or --vram GB")
    if speed:
        line = f"  speed: ~{speed.tokens_per_s:,.0f} tokens/s on {setup.n_gpus} x {target.spec.name}"
        if "time_s" in out:
            line += f"; {args.tokens:,} tokens x {args.epochs:g} epoch(s) = {display.duration(out['time_s'])}, ~${out['cost_usd']:.2f}"
        print(line)
    return 0


def with_machine_corrections(target: Target) -> Target:
    """The target with what earlier runs on this machine measured against their estimates."""
    from dataclasses import replace

    factors = {}
    for method in ("full", "lora", "qlora"):
        c = correction_for(target.name, method)
        if c:
            factors[method] = c["vram_factor"]
    return replace(target, vram_factor=factors) if factors else target


def cmd_suggest(args: argparse.Namespace) -> int:
    profile = _profile_arg(args.profile)
    targets, why = targets_from_args(args)
    if not targets:
        raise PlanError(f"no GPU to plan for ({why}); pass --gpu NAME (e.g. \"RTX 4090\") or --vram GB")
    try:
        spec = lookup_model(_model_name(args, profile))
        if profile is not None:
            target = max(targets, key=lambda t: t.free_gib)
            setup = setup_from_args(args, profile, target.spec.bf16 if target.spec else True)
            review = review_profile(spec, setup, target)
            if args.json:
                print(json.dumps(review.to_dict(), indent=2))
            else:
                print(f"{args.profile}: {review.message}")
                for f in review.fixes:
                    print(f"  - {f['change']}: -{f['saves_gib']:.1f} GiB -> {f['peak_vram_gib']:.1f} GiB"
                          f" ({'fits' if f['fits'] else 'still too big'})")
            return 0 if review.fits else 1
        seq_len = args.seq_len or 1024
        targets = [with_machine_corrections(t) for t in targets]
        s = suggest_method(spec, targets, seq_len=seq_len, rows=args.rows)
    except (CatalogError, EstimateError) as e:
        raise PlanError(str(e)) from None
    if args.json:
        print(json.dumps(s.to_dict(), indent=2))
        return 0
    where = f"{s.gpu}" + (f" (GPU {s.gpu_index})" if s.gpu_index is not None else "")
    head = "suggest" if s.fits else "nothing fits; closest"
    print(f"{head}: {s.method} on {where}, ~{s.peak_vram_gib:.1f} GiB peak"
          + (f", ~{s.tokens_per_s:,.0f} tokens/s" if s.tokens_per_s else ""))
    print("  settings: " + ", ".join(f"{k} = {v}" for k, v in s.settings.items()))
    for r in s.reasons:
        print(f"  - {r}")
    corrected = {m: f for t in targets for m, f in t.vram_factor.items()}
    if corrected:
        print("  - estimates corrected by runs measured on this machine: "
              + ", ".join(f"{m} x{f:.2f}" for m, f in sorted(corrected.items())))
    for a in s.alternatives:
        print(f"  alternative: {a['method']:5} {'fits' if a['fits'] else 'does not fit'}, ~{a['peak_vram_gib']:.1f} GiB"
              + (f", ~{a['tokens_per_s']:,.0f} tokens/s" if a['tokens_per_s'] else ""))
    return 0


def check_probe_fits_in_ram(profile: Profile) -> None:
    """Without a GPU the probe trains in RAM in fp32; refuse what cannot fit rather than swap."""
    if current_inventory().gpus or profile.model.name.startswith("builtin:"):
        return
    try:
        spec = lookup_model(profile.model.name)
    except CatalogError:
        return
    import psutil

    per_param = 16 if profile.method.type == "full" else 4  # fp32 weights (+ grads and Adam states)
    need_gib = spec.total_params * per_param / GIB * 1.2
    have_gib = psutil.virtual_memory().available / GIB
    if need_gib > 0.8 * have_gib:
        raise PlanError(f"probe on the CPU: {spec.id} needs about {need_gib:.0f} GiB of RAM in fp32, "
                        f"{have_gib:.0f} GiB is free; probe on a GPU machine, or estimate instead: "
                        f"studio estimate --model {profile.model.name} --gpu NAME")


def cmd_probe(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from studio.cli import _watch, profile_path
    from studio.history import save_estimate
    from studio.runs import create_run, events_tail, launch

    path = profile_path(args.profile)
    profile = load_profile(path)
    t = replace(profile.train, max_steps=args.steps, logging_steps=1, eval_steps=0,
                batch_size=args.batch or profile.train.batch_size, grad_accum=1)
    d = replace(profile.data, max_length=args.seq_len or profile.data.max_length)
    m = replace(profile.model, random_init=not profile.model.name.startswith("builtin:"))
    profile = replace(profile, train=t, data=d, model=m)
    check_probe_fits_in_ram(profile)
    run = create_run(profile.to_toml(), f"probe-{path.stem}")
    estimate = run_estimate(profile)
    if estimate:
        save_estimate(run, estimate)
    tail = events_tail(run)
    proc = launch(run, probe=True)
    status = _watch(run, proc, True, tail)
    end = run.timeline().end or {}
    steps = [s for s in run.timeline().steps.values()]
    result: dict[str, Any] = {"run": run.id, "status": status, "steps": len(steps), "estimate": estimate,
                              "measured": {k: end.get(k) for k in ("gpu_mem_peak_gib", "gpu_mem_peak_reserved_gib",
                                                                   "rss_peak_gib", "train_tokens_per_s")}}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0 if status == "completed" else 1
    if status != "completed":
        print(f"probe {status}: {end.get('message', '')}\n  {end.get('advice', '')}")
        return 1
    meas = result["measured"]
    print(f"probe of {path.stem}: {len(steps)} steps ran ({profile.method.type}, batch {t.batch_size} x {d.max_length} tokens)")
    if meas["gpu_mem_peak_gib"]:
        print(f"  measured: peak allocated {max(meas['gpu_mem_peak_gib']):.2f} GiB, "
              f"reserved {max(meas['gpu_mem_peak_reserved_gib']):.2f} GiB, {meas['train_tokens_per_s']:,.0f} tokens/s")
    else:
        print(f"  measured on the CPU: peak RSS {meas['rss_peak_gib']:.2f} GiB, {meas['train_tokens_per_s']:,.0f} tokens/s")
    if estimate:
        print(f"  estimated: peak allocated {estimate['peak_allocated_gib']:.2f} GiB, reserved "
              f"{estimate['peak_reserved_gib']:.2f} GiB" + (f", {estimate['tokens_per_s']:,.0f} tokens/s"
                                                             if estimate["tokens_per_s"] else ""))
    else:
        print("  no GPU estimate to compare with (CPU run, or a model outside the catalog)")
    return 0


def add_plan_commands(sub: Any) -> None:
    p = sub.add_parser("probe", help="run a few steps of a profile (random weights) and measure memory and speed")
    p.add_argument("profile")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch", type=int, help="override the micro-batch")
    p.add_argument("--seq-len", type=int, help="override max_length (rows are filled to it)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("gpus", help="the GPUs studio sees (NVML), or STUDIO_GPUS")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_gpus)

    p = sub.add_parser("models", help="the model and GPU catalog")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    for name, func, text in (("estimate", cmd_estimate, "peak VRAM, breakdown and speed of a setup"),
                             ("suggest", cmd_suggest, "what fits: full, LoRA or QLoRA, and the settings")):
        p = sub.add_parser(name, help=text)
        p.add_argument("profile", nargs="?", help="a profile to estimate or review")
        p.add_argument("--model", help="hub id, alias or local folder")
        p.add_argument("--method", choices=("lora", "qlora", "full"))
        p.add_argument("--rank", type=int)
        p.add_argument("--target-modules", help="all-linear or a comma list, e.g. q_proj,v_proj")
        p.add_argument("--batch", type=int, help="micro-batch per GPU")
        p.add_argument("--seq-len", type=int, help="tokens per sample (max_length)")
        p.add_argument("--grad-ckpt", dest="grad_ckpt", action="store_true", default=None)
        p.add_argument("--no-grad-ckpt", dest="grad_ckpt", action="store_false")
        p.add_argument("--optim", choices=[o for o in OPTIMIZERS if o != "adamw_foreach"])
        p.add_argument("--dtype", choices=("bf16", "fp16", "fp32"))
        p.add_argument("--gpu", help="plan for this card, e.g. \"RTX 4090\" or A100-80GB")
        p.add_argument("--vram", type=float, help="plan for a card with this many GiB free")
        p.add_argument("--gpus", type=int, help="number of GPUs (memory is then per GPU)")
        p.add_argument("--strategy", choices=STRATEGIES)
        p.add_argument("--rows", type=int, help="dataset rows (suggest: picks a smaller rank for small data)")
        p.add_argument("--tokens", type=int, help="dataset tokens (estimate: time and cost)")
        p.add_argument("--epochs", type=float, default=1.0)
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=func)
