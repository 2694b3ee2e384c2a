"""Planning commands: `studio gpus`, `models`, `estimate`, `suggest` and `probe`."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from studio import display
from studio.cli.errors import EXIT_FAILED, EXIT_OK, UserError
from studio.cli.runs import watch
from studio.hardware import Inventory
from studio.planning.advisor import make_it_fit, review_profile, suggest_method
from studio.planning.catalog import CatalogError, catalog_gpus, lookup_model, search_models
from studio.planning.estimate import GIB, EstimateError
from studio.planning.inventory import current_inventory, planning_inventory
from studio.planning.layout import LayoutError
from studio.planning.fit import SAFETY
from studio.planning.plan import Plan, plan_run
from studio.profiles.library import new_profile, profile_path
from studio.profiles.profile import Profile, load_profile, with_changes
from studio.profiles.vocabulary import METHODS, OBJECTIVES, OPTIMIZERS, PAIRED_OBJECTIVES, STRATEGIES
from studio.runs.history import machine_corrections
from studio.runs.launcher import events_tail
from studio.runs.start import start_profile
from studio.runs.status import RunStatus


class PlanError(UserError):
    """Bad planning input; printed as one line, exit 2."""


def cmd_gpus(args: argparse.Namespace) -> int:
    inv = current_inventory()
    if args.json:
        print(json.dumps(inv.to_dict(), indent=2))
        return EXIT_OK
    if not inv.gpus:
        print(f"no GPU: {inv.reason}")
        return EXIT_OK
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
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    matches = search_models(args.search or "", online=bool(args.search) and not args.offline)
    if args.json:
        print(json.dumps([m.to_dict() for m in matches], indent=2))
        return EXIT_OK
    if not matches:
        print(f"no model matches {args.search!r}; any Hub id or local folder with a config.json works too")
    for m in matches:
        size = display.count(m.params) if m.params else "?"
        gated = {True: "gated", False: "-", None: "?"}[m.gated]
        print(f"{m.id:52} {size:>8}  {m.family:13} {gated:5}  {m.where}")
    if not args.search:
        print("\ngated: accept the licence on the model's Hub page, then set HF_TOKEN or `hf auth login`. "
              "Any Hub id or local folder works too (`studio models --search NAME` asks the Hub).")
        print(f"GPUs: {', '.join(g.name for g in catalog_gpus())}")
    return EXIT_OK


def profile_from_args(args: argparse.Namespace) -> Profile:
    """The profile to plan: PROFILE (or the defaults) with the command line's options applied on top."""
    profile = load_profile(profile_path(args.profile)) if args.profile else Profile()
    changes: dict[str, Any] = {}
    options = (("model", "model.name"), ("revision", "model.revision"), ("method", "method.type"),
               ("objective", "train.objective"), ("rank", "method.rank"),
               ("batch", "train.batch_size"), ("seq_len", "data.max_length"), ("grad_ckpt", "train.gradient_checkpointing"),
               ("optim", "train.optimizer"), ("dtype", "model.dtype"), ("strategy", "hardware.strategy"))
    for attr, key in options:
        if getattr(args, attr, None) is not None:
            changes[key] = getattr(args, attr)
    if args.method and not args.optim:
        changes["train.optimizer"] = "auto"  # the method's own default optimizer
    if args.target_modules:
        changes["method.target_modules"] = [t.strip() for t in args.target_modules.split(",") if t.strip()]
    if args.gpus:
        changes["hardware.gpus"] = str(args.gpus)
    profile = with_changes(profile, changes, source="the command line")
    if profile.model.name.startswith("builtin:") and not args.model:
        raise PlanError(f"{profile.model.name} is a tiny CPU demo model; estimates are for real models: "
                        "give --model ID (e.g. meta-llama/Llama-3.1-8B) or a PROFILE of one")
    return profile


def inventory_from_args(args: argparse.Namespace, profile: Profile) -> Inventory:
    """--gpu NAME or --vram GB (as many as the profile asks for), else this machine's GPUs."""
    try:
        inv = planning_inventory(args.gpu, args.vram, count=args.gpus or profile.hardware.gpu_count)
    except CatalogError as e:
        raise PlanError(str(e)) from None
    return inv


def plan_from_args(args: argparse.Namespace) -> tuple[Profile, Inventory, Plan]:
    profile = profile_from_args(args)
    inventory = inventory_from_args(args, profile)
    if inventory.source in ("--gpu", "--vram"):
        # Cards by name are numbered from 0: the profile's GPU indices mean "this many".
        profile = with_changes(profile, {"hardware.gpus": str(len(inventory.gpus))})
    try:
        plan = plan_run(profile, inventory, machine_corrections())
    except LayoutError as e:
        raise PlanError(str(e)) from None
    if plan.memory is None:
        raise PlanError(plan.no_estimate)
    return profile, inventory, plan


def cmd_estimate(args: argparse.Namespace) -> int:
    profile, inventory, plan = plan_from_args(args)
    mem, setup, spec = plan.memory, plan.setup, plan.model
    assert mem is not None and setup is not None and spec is not None
    out: dict[str, Any] = {"model": spec.id, "method": setup.method, **mem.to_dict(), "peak_vram_gib": plan.peak_vram_gib,
                           "setup": asdict(setup), "decisions": [d.to_dict() for d in plan.decisions],
                           "notes": list(plan.notes), "exact_layout": spec.exact}
    if plan.correction:
        out["machine_correction"] = plan.correction.to_dict()
    gpu, gpu_spec = plan.gpu, plan.gpu_spec
    if gpu:
        out.update(gpu=gpu.name, gpu_free_gib=gpu.memory_free_gib, fits=plan.fits)
    if plan.speed and gpu_spec:
        out["tokens_per_s"] = plan.speed.tokens_per_s
        if args.tokens:
            seconds = args.tokens * args.epochs / plan.speed.tokens_per_s
            out["time_s"] = round(seconds)
            out["cost_usd"] = round(seconds / 3600 * gpu_spec.price_per_hour * setup.n_gpus, 2)
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return EXIT_OK
    per = " per GPU" if setup.n_gpus > 1 else ""
    what = setup.method if setup.objective == "sft" else f"{setup.method} {setup.objective.upper()}"
    rows = f"{setup.batch} pair(s)" if setup.objective in PAIRED_OBJECTIVES else str(setup.batch)
    print(f"{spec.id}: {what}, batch {rows} x {setup.seq_len} tokens, "
          f"gradient checkpointing {'on' if setup.grad_ckpt else 'off'}, {setup.optimizer}, {setup.dtype}"
          + (f", {setup.n_gpus} GPUs {setup.strategy}" if setup.n_gpus > 1 else ""))
    print(f"  params: {display.count(mem.total_params)} total, {display.count(mem.trainable_params)} trainable"
          + ("" if spec.exact else " (approximate)"))
    for note in plan.notes:
        print(f"  note: {note}")
    print(f"  peak VRAM{per} (nvidia-smi): {out['peak_vram_gib']:.2f} GiB   reserved {mem.peak_reserved_gib:.2f}   "
          f"allocated {mem.peak_allocated_gib:.2f}   (peak at the {mem.phase})")
    print("  breakdown: " + ", ".join(f"{k} {gib:.2f}" for k, gib in mem.parts()))
    if plan.correction:
        print(f"  corrected {plan.correction.describe()}")
    if gpu:
        verdict = "fits" if plan.fits else "does NOT fit"
        print(f"  {verdict} on {gpu.name} ({gpu.memory_free_gib:.1f} GiB free; studio keeps a {100 - SAFETY * 100:.0f}% margin)")
    else:
        print(f"  no GPU to compare with ({inventory.reason or 'none given'}); pass --gpu NAME or --vram GB")
    if plan.speed and gpu_spec:
        line = f"  speed: ~{plan.speed.tokens_per_s:,.0f} tokens/s on {setup.n_gpus} x {gpu_spec.name}"
        if "time_s" in out:
            line += f"; {args.tokens:,} tokens x {args.epochs:g} epoch(s) = {display.duration(out['time_s'])}, ~${out['cost_usd']:.2f}"
        print(line)
    return EXIT_OK


def _review(args: argparse.Namespace) -> int:
    profile = profile_from_args(args)
    inventory = inventory_from_args(args, profile)
    if not inventory.gpus:
        raise PlanError(f"no GPU to plan for ({inventory.reason}); pass --gpu NAME (e.g. \"RTX 4090\") or --vram GB")
    corrections = machine_corrections()
    try:
        review = review_profile(profile, inventory, corrections)
        fitted = None if review.fits or any(f.fits for f in review.fixes) else make_it_fit(profile, inventory,
                                                                                           corrections)
    except (EstimateError, LayoutError) as e:
        raise PlanError(str(e)) from None
    if args.json:
        print(json.dumps({**review.to_dict(), "combined": fitted.to_dict() if fitted else None}, indent=2))
        return EXIT_OK if review.fits else EXIT_FAILED
    print(f"{args.profile}: {review.message}")
    for f in review.fixes:
        print(f"  - {f.reason}: -{f.saves_gib:.1f} GiB -> {f.peak_vram_gib:.1f} GiB"
              f" ({'fits' if f.fits else 'still too big'})")
    if fitted:
        print("  together, these make it fit: " + fitted.reason)
    return EXIT_OK if review.fits else EXIT_FAILED


def cmd_suggest(args: argparse.Namespace) -> int:
    if args.profile:
        return _review(args)
    if not args.model:
        raise PlanError("give a model: --model ID (e.g. meta-llama/Llama-3.1-8B) or a PROFILE")
    inventory = inventory_from_args(args, Profile())
    if not inventory.gpus:
        raise PlanError(f"no GPU to plan for ({inventory.reason}); pass --gpu NAME (e.g. \"RTX 4090\") or --vram GB")
    corrections = machine_corrections()
    try:
        s = suggest_method(lookup_model(args.model), inventory.gpus, seq_len=args.seq_len or 1024, rows=args.rows,
                           corrections=corrections)
    except (CatalogError, EstimateError) as e:
        raise PlanError(str(e)) from None
    if args.save:
        dest = new_profile(args.save, with_changes(Profile(), {"model.name": args.model, **s.settings},
                                                   source="the suggestion"),
                           description=f"{args.model}: {s.method} on {s.gpu}, as studio suggested")
        print(f"wrote {dest}; set data.path in it, then: studio run {dest.stem}")
    if args.json:
        print(json.dumps(s.to_dict(), indent=2))
        return EXIT_OK
    where = f"{s.gpu}" + (f" (GPU {s.gpu_index})" if s.gpu_index is not None else "")
    head = "suggest" if s.fits else "nothing fits; closest"
    print(f"{head}: {s.method} on {where}, ~{s.peak_vram_gib:.1f} GiB peak"
          + (f", ~{s.tokens_per_s:,.0f} tokens/s" if s.tokens_per_s else ""))
    print("  settings: " + ", ".join(f"{k} = {v}" for k, v in s.settings.items()))
    for r in s.reasons:
        print(f"  - {r}")
    corrected = {m: c.vram_factor for g in inventory.gpus for m in METHODS
                 if (c := corrections.lookup(g.name, m)) is not None}
    if corrected:
        print("  - estimates corrected by runs measured on this machine: "
              + ", ".join(f"{m} x{f:.2f}" for m, f in sorted(corrected.items())))
    for a in s.alternatives:
        print(f"  alternative: {a['method']:5} {'fits' if a['fits'] else 'does not fit'}, ~{a['peak_vram_gib']:.1f} GiB"
              + (f", ~{a['tokens_per_s']:,.0f} tokens/s" if a['tokens_per_s'] else ""))
    return EXIT_OK


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
    path = profile_path(args.profile)
    profile = load_profile(path)
    changes = {"train.max_steps": args.steps, "train.logging_steps": 1, "train.eval_steps": 0,
               "train.grad_accum": 1}
    if args.batch is not None:
        changes["train.batch_size"] = args.batch
    if args.seq_len is not None:
        changes["data.max_length"] = args.seq_len
    profile = with_changes(profile, changes, source="the command line")
    t, d = profile.train, profile.data
    check_probe_fits_in_ram(profile)
    started = start_profile(profile, f"probe-{path.stem}", probe=True)
    run, plan = started.run, started.plan
    status = watch(run, started.proc, True, events_tail(run))
    tl = run.timeline()
    end = tl.end
    warmup = max(2, args.steps // 3)
    steady, averaged = tl.steady_tokens_per_s(warmup)
    measured = {"gpu_mem_peak_gib": list(end.gpu_mem_peak_gib) if end else [],
                "gpu_mem_peak_reserved_gib": list(end.gpu_mem_peak_reserved_gib) if end else [],
                "rss_peak_gib": end.rss_peak_gib if end else None,
                "tokens_per_s": round(steady, 1) if steady else None, "steps_averaged": averaged,
                "warmup_steps": warmup,
                "train_tokens_per_s_with_warmup": end.train_tokens_per_s if end else None}
    estimate = plan.record().to_dict() if plan.memory is not None and plan.gpu is not None else None
    result: dict[str, Any] = {"run": run.id, "status": status, "steps": len(tl.steps), "estimate": estimate,
                              "measured": measured}
    if args.json:
        print(json.dumps(result, indent=2))
        return EXIT_OK if status == RunStatus.COMPLETED else EXIT_FAILED
    if status != RunStatus.COMPLETED:
        print(f"probe {status}: {end.message if end else ''}\n  {end.advice if end else ''}")
        return EXIT_FAILED
    print(f"probe of {path.stem}: {len(tl.steps)} steps ran ({profile.method.type}, batch {t.batch_size} x {d.max_length} tokens)")
    peaks = [p for p in measured["gpu_mem_peak_gib"] if p is not None]
    rate = (f"{measured['tokens_per_s']:,.0f} tokens/s steady (steps {warmup + 1}-{warmup + averaged + 1}, "
            f"{averaged} averaged after {warmup} warm-up)" if measured["tokens_per_s"] else
            f"too few steps for a steady tokens/s (raise --steps above {warmup + 1})")
    if peaks:
        print(f"  measured: peak allocated {max(peaks):.2f} GiB, "
              f"reserved {max(p for p in measured['gpu_mem_peak_reserved_gib'] if p is not None):.2f} GiB; {rate}")
    else:
        print(f"  measured on the CPU: peak RSS {measured['rss_peak_gib']:.2f} GiB; {rate}")
    if estimate:
        print(f"  estimated: peak allocated {estimate['peak_allocated_gib']:.2f} GiB, reserved "
              f"{estimate['peak_reserved_gib']:.2f} GiB" + (f", {estimate['tokens_per_s']:,.0f} tokens/s"
                                                             if estimate["tokens_per_s"] else ""))
    else:
        print("  no GPU estimate to compare with (CPU run, or a model outside the catalog)")
    return EXIT_OK


def add_plan_commands(sub: Any) -> None:
    p = sub.add_parser("probe", help="run a few steps of a profile (random weights) and measure memory and speed")
    p.add_argument("profile")
    p.add_argument("--steps", type=int, default=12, help="steps to run; the first third warm up and are not averaged")
    p.add_argument("--batch", type=int, help="override the micro-batch")
    p.add_argument("--seq-len", type=int, help="override max_length (rows are filled to it)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("gpus", help="the GPUs studio sees (NVML), or STUDIO_GPUS")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_gpus)

    p = sub.add_parser("models", help="the model and GPU catalog; --search NAME also asks the Hub")
    p.add_argument("--search", help="models whose id contains these words (the catalog, then the Hub's search)")
    p.add_argument("--offline", action="store_true", help="search the catalog only")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    for name, func, text in (("estimate", cmd_estimate, "peak VRAM, breakdown and speed of a setup"),
                             ("suggest", cmd_suggest, "what fits: full, LoRA or QLoRA, and the settings")):
        p = sub.add_parser(name, help=text)
        p.add_argument("profile", nargs="?", help="a profile to estimate or review")
        p.add_argument("--model", help="hub id, alias or local folder")
        p.add_argument("--revision", help="the Hub revision of --model (branch, tag or commit)")
        p.add_argument("--method", choices=METHODS)
        p.add_argument("--objective", choices=OBJECTIVES, help="sft, or preference tuning: dpo, orpo, kto")
        p.add_argument("--rank", type=int)
        p.add_argument("--target-modules", help="all-linear or a comma list, e.g. q_proj,v_proj")
        p.add_argument("--batch", type=int, help="micro-batch per GPU")
        p.add_argument("--seq-len", type=int, help="tokens per sample (max_length)")
        p.add_argument("--grad-ckpt", dest="grad_ckpt", action="store_true", default=None)
        p.add_argument("--no-grad-ckpt", dest="grad_ckpt", action="store_false")
        p.add_argument("--optim", choices=OPTIMIZERS)
        p.add_argument("--dtype", choices=("bf16", "fp16", "fp32"))
        p.add_argument("--gpu", help="plan for this card, e.g. \"RTX 4090\" or A100-80GB")
        p.add_argument("--vram", type=float, help="plan for a card with this many GiB free")
        p.add_argument("--gpus", type=int, help="number of GPUs (memory is then per GPU)")
        p.add_argument("--strategy", choices=STRATEGIES)
        p.add_argument("--rows", type=int, help="dataset rows (suggest: picks a smaller rank for small data)")
        p.add_argument("--tokens", type=int, help="dataset tokens (estimate: time and cost)")
        p.add_argument("--epochs", type=float, default=1.0)
        p.add_argument("--json", action="store_true")
        if name == "suggest":
            p.add_argument("--save", metavar="NAME", help="write the suggestion as a new profile NAME")
        p.set_defaults(func=func)
