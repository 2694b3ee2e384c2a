"""Everything studio claims about speed and memory on a GPU, in one command of at most 8 minutes.

    python bench/gpu_check.py               # on a CUDA GPU: writes bench/results/gpu-check-<card>.json
    python bench/gpu_check.py --cpu-smoke   # every part with the tiny model on the CPU (CI runs this)

Parts, in order, each timed against its budget (the script skips what no longer fits in --budget-s):
  environment  nvidia-smi, the card, and the versions of torch, transformers, trl, peft, bitsandbytes,
               accelerate, datasets and liger-kernel; stops at once if a module the parts need is missing
  gpu-tests    `pytest -m gpu` (tests/test_gpu.py)
  parity       Llama-3.2-1B config, LoRA r16 all-linear, batch 8 x 1024, fixed-length rows, the same
               settings on both sides (checkpointing, packing and Liger off): `studio run` against a plain
               TRL script; one warm-up run per side, then rounds in alternating order (ABBA...), median
  defaults     the same model on variable-length chat rows (long-tailed, as bench/speed_vs_trl.py):
               studio's defaults (its autos, decided for this card) against TRL's defaults; the autos
               taken and why, and the peak memory of each side
  8b-lora      `studio probe` of Llama-3.1-8B, LoRA r16, 2 x 4096, checkpointing as studio decides:
               measured tokens/s and peak next to the estimate
  8b-qlora     `studio probe` of Llama-3.1-8B, QLoRA, 1 x 2048: measured peak next to the estimate
  chat         `studio chat --prompt` on the parity run: load time, time to first token, tokens/s
Models are built from configs with random weights: nothing is downloaded. With --cpu-smoke every
part runs on the tiny model with a few steps and one round (no warm-up runs), so that GPU minutes are
not spent finding typos.

The parts took 762 s in all on one H200 (2026-12-04; `defaults` assumed as long as `parity`), more than
one device call of 8 minutes: run it as two calls on the same machine, e.g.
    --parts environment,parity,chat,8b-lora            (about 340 s)
    --parts environment,defaults,8b-qlora,gpu-tests    (about 440 s)
A part is started only when its budget fits in what is left of --budget-s, and the JSON is written
again after every part (a part that was running when the call was killed says "running"), so a call
killed at its limit keeps the figures of the parts it finished. Targets (issue 22): parity >= 1.00; defaults >= 1.5x at no more peak memory; on the
8B points the estimated peak within 5% and tokens/s within 15%.

On the GPU machine this needs the wheels of shared/gpu/fetch-wheels.sh: it imports torch, transformers,
trl, peft, bitsandbytes, accelerate, datasets, tomli_w and (optionally) liger_kernel, and `studio` itself
imports textual only in the app, which no part opens.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w
from saved import RESULTS  # bench/saved.py: this folder is on the path when run as a script
from speed_vs_trl import build_model, chat_rows, lengths, studio_side, trl_side

REPO = Path(__file__).resolve().parent.parent
NEEDED = ("torch", "transformers", "trl", "peft", "bitsandbytes", "accelerate", "datasets", "tomli_w")
VERSIONS = ("torch", "transformers", "trl", "peft", "bitsandbytes", "accelerate", "datasets", "liger-kernel")
# Seconds per part, as measured on one H200 (bench/results/gpu-check-nvidia-h200-20261204.log) with a little
# room; `defaults` runs as many trainings as `parity`, and `chat` was not reached there.
BUDGETS = {"environment": 25, "gpu-tests": 120, "parity": 270, "defaults": 270, "8b-lora": 45, "8b-qlora": 60,
           "chat": 30}
SAME = {"gradient_checkpointing": False, "packing": False, "liger_kernel": False}
AUTO = {"gradient_checkpointing": "auto", "packing": "auto", "liger_kernel": "auto"}


class Check:
    """The job's sizes, GPU or smoke, and where its files go."""

    def __init__(self, smoke: bool, tmp: Path):
        self.smoke, self.tmp = smoke, tmp
        self.steps = 4 if smoke else 30
        self.rounds = 1 if smoke else 3
        self.max_length = 64 if smoke else 1024
        self.model = tmp / "model"
        self.parity_run: str | None = None

    def job(self) -> dict[str, Any]:
        return {"max_steps": self.steps, "per_device_train_batch_size": 8, "max_length": self.max_length}


def alternate(sides: dict[str, Callable[[str], dict[str, Any]]], rounds: int,
              warm: bool = True) -> dict[str, list[dict[str, Any]]]:
    """One warm-up run per side (caches, kernels, the allocator; `warm`), then rounds in alternating order."""
    names = list(sides)
    for name in (names if warm else []):
        sides[name]("warm")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            result = sides[name](str(r))
            result["tokens_per_s"] = result["tokens"] / result["runtime"]
            runs[name].append(result)
    return runs


def median_rate(runs: list[dict[str, Any]]) -> float:
    return statistics.median(r["tokens_per_s"] for r in runs)


def write_data(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------------------------------ parts

def part_environment(check: Check) -> dict[str, Any]:
    broken = {}
    for module in NEEDED:  # imported for real: a wheel of the wrong version fails here, not minutes later
        try:
            importlib.import_module(module)
        except Exception as e:  # noqa: BLE001 - every import problem is reported together
            broken[module] = f"{type(e).__name__}: {e}"
    if broken:
        raise RuntimeError("these modules do not import: " + "; ".join(f"{m} ({why})" for m, why in broken.items())
                           + "; on the GPU machine install the wheels of shared/gpu/fetch-wheels.sh first "
                           "(extra wheels: pass NAME==VERSION to it)")
    import torch

    versions = {}
    for name in VERSIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    smi = None
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True).stdout
    cuda = torch.cuda.is_available()
    if not cuda and not check.smoke:
        raise RuntimeError("no CUDA GPU here; run with --cpu-smoke on a machine without one")
    return {"card": torch.cuda.get_device_name(0) if cuda else "cpu", "cuda": torch.version.cuda,
            "versions": versions, "nvidia_smi": smi}


def part_gpu_tests(check: Check) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                           str(REPO / "tests" / "test_gpu.py")], capture_output=True, text=True, cwd=REPO)
    summary = (proc.stdout.strip().splitlines() or [""])[-1]
    if proc.returncode not in (0, 5) and "skipped" not in summary:
        raise RuntimeError(f"pytest -m gpu failed: {summary}\n{proc.stdout[-3000:]}")
    return {"summary": summary, "returncode": proc.returncode}


def part_parity(check: Check) -> dict[str, Any]:
    rows = chat_rows([check.max_length + 32] * 400, seed=1)
    data = write_data(check.tmp / "fixed.jsonl", rows)
    if not (check.model / "config.json").is_file():
        build_model(check.model, rows, cuda=not check.smoke)
    job = check.job()
    trl_same = {"gradient_checkpointing": False, "packing": False, "use_liger_kernel": False}
    runs = alternate({
        "studio": lambda r: studio_side(check.tmp, check.model, data, job, SAME, f"parity-studio-{r}"),
        "trl": lambda r: trl_side(check.tmp, check.model, data, job, trl_same, f"parity-trl-{r}"),
    }, check.rounds, warm=not check.smoke)
    check.parity_run = runs["studio"][-1]["run_dir"]
    studio_rate, trl_rate = median_rate(runs["studio"]), median_rate(runs["trl"])
    return {"settings": SAME, "job": job, "tokens_per_s": {"studio": studio_rate, "trl": trl_rate},
            "each_run": {s: [r["tokens_per_s"] for r in v] for s, v in runs.items()},
            "peak_gib": {s: max((r["peak_gib"] or 0) for r in v) or None for s, v in runs.items()},
            "ratio": studio_rate / trl_rate, "target": ">= 1.00"}


def part_defaults(check: Check) -> dict[str, Any]:
    scale = 10 if check.smoke else 1
    counts = lengths(400, 300 / scale, 1500 / scale, check.max_length, seed=2)
    data = write_data(check.tmp / "variable.jsonl", chat_rows(counts, seed=2))
    if not (check.model / "config.json").is_file():
        build_model(check.model, chat_rows([check.max_length] * 50, seed=1), cuda=not check.smoke)
    job = check.job()
    runs = alternate({
        "studio-defaults": lambda r: studio_side(check.tmp, check.model, data, job, AUTO, f"defaults-studio-{r}"),
        "trl-defaults": lambda r: trl_side(check.tmp, check.model, data, job, {}, f"defaults-trl-{r}"),
    }, check.rounds, warm=not check.smoke)
    studio_rate, trl_rate = median_rate(runs["studio-defaults"]), median_rate(runs["trl-defaults"])
    peaks = {s: max((r["peak_gib"] or 0) for r in v) or None for s, v in runs.items()}
    return {"job": job, "decided": runs["studio-defaults"][-1]["decisions"],
            "reasons": runs["studio-defaults"][-1].get("reasons"),
            "tokens_per_s": {"studio-defaults": studio_rate, "trl-defaults": trl_rate},
            "each_run": {s: [r["tokens_per_s"] for r in v] for s, v in runs.items()}, "peak_gib": peaks,
            "speedup": studio_rate / trl_rate, "target": ">= 1.5x at no more peak memory"}


def probe(check: Check, label: str, method: str, batch: int, seq_len: int, steps: int) -> dict[str, Any]:
    """`studio probe` of Llama-3.1-8B (the tiny model in a smoke run): measured next to the estimate."""
    model = "builtin:tiny-llama" if check.smoke else "meta-llama/Llama-3.1-8B"
    if check.smoke:
        batch, seq_len = 2, 64
    profile = check.tmp / f"{label}.toml"
    profile.write_text(tomli_w.dumps({
        "model": {"name": model}, "method": {"type": method, "rank": 16, "alpha": 32.0, "dropout": 0.05},
        "data": {"path": str(REPO / "profiles" / "data" / "tiny-chat.jsonl"), "max_length": seq_len},
        "train": {"batch_size": batch, "gradient_checkpointing": "auto", "liger_kernel": "auto"}}))
    env = dict(os.environ, STUDIO_HOME=str(check.tmp / "home"), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "studio", "probe", str(profile), "--steps", str(steps), "--json"],
                          capture_output=True, text=True, env=env)
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"studio probe printed no result:\n{proc.stderr[-3000:]}") from None
    if result.get("status") != "completed":
        raise RuntimeError(f"studio probe {result.get('status')}:\n{proc.stderr[-3000:]}")
    measured, estimate = result["measured"], result.get("estimate") or {}
    out: dict[str, Any] = {"model": model, "method": method, "batch": batch, "seq_len": seq_len,
                           "measured": measured, "estimate": {k: estimate.get(k) for k in (
                               "peak_allocated_gib", "peak_reserved_gib", "peak_vram_gib", "tokens_per_s",
                               "decisions")}}
    peak = max((p for p in measured.get("gpu_mem_peak_reserved_gib") or [] if p is not None), default=None)
    if peak and estimate.get("peak_reserved_gib"):
        out["peak_error"] = (estimate["peak_reserved_gib"] - peak) / peak
    if measured.get("tokens_per_s") and estimate.get("tokens_per_s"):
        out["tokens_per_s_error"] = (estimate["tokens_per_s"] - measured["tokens_per_s"]) / measured["tokens_per_s"]
    return out


def part_8b_lora(check: Check) -> dict[str, Any]:
    return {**probe(check, "8b-lora", "lora", 2, 4096, 8 if check.smoke else 10),
            "target": "peak within 5%, tokens/s within 15%",
            "reference": "NVIDIA NeMo AutoModel: 12,473 tokens/s, Llama-3 8B LoRA at 4096 on one H100"}


def part_8b_qlora(check: Check) -> dict[str, Any]:
    return {**probe(check, "8b-qlora", "qlora", 1, 2048, 4 if check.smoke else 6), "target": "peak within 5%"}


def part_chat(check: Check) -> dict[str, Any]:
    if check.parity_run is None:
        raise RuntimeError("no parity run to talk to (the parity part did not finish)")
    run_dir = Path(check.parity_run)
    env = dict(os.environ, STUDIO_HOME=str(run_dir.parent.parent), HF_HUB_OFFLINE="1")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "studio", "chat", run_dir.name, "--prompt",
                           "Say something about rivers and numbers.", "--temperature", "0", "--max-new-tokens",
                           "64", "--json"], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"studio chat failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"wall_s": time.monotonic() - t0, "ttft_s": result.get("ttft_s"), "tokens": result.get("tokens"),
            "tokens_per_s": result.get("tokens_per_s"), "load_s": result.get("load_s")}


PARTS: dict[str, Callable[[Check], dict[str, Any]]] = {
    "environment": part_environment, "gpu-tests": part_gpu_tests, "parity": part_parity,
    "defaults": part_defaults, "8b-lora": part_8b_lora, "8b-qlora": part_8b_qlora, "chat": part_chat,
}


def headline(name: str, figures: dict[str, Any]) -> str:
    """The part's one figure for the table."""
    if name == "environment":
        return f"{figures['card']}, torch {figures['versions']['torch']}"
    if name == "gpu-tests":
        return figures["summary"]
    if name == "parity":
        return f"studio / TRL = {figures['ratio']:.3f} (target >= 1.00)"
    if name == "defaults":
        peaks = figures["peak_gib"]
        mem = (f"; peak {peaks['studio-defaults']:.1f} vs {peaks['trl-defaults']:.1f} GiB"
               if peaks["studio-defaults"] and peaks["trl-defaults"] else "")
        return f"{figures['speedup']:.2f}x TRL defaults (target >= 1.5x){mem}"
    if name in ("8b-lora", "8b-qlora"):
        parts = []
        if "peak_error" in figures:
            parts.append(f"peak error {figures['peak_error']:+.1%}")
        if "tokens_per_s_error" in figures:
            parts.append(f"tokens/s {figures['measured']['tokens_per_s']:,.0f}, error {figures['tokens_per_s_error']:+.1%}")
        return "; ".join(parts) or f"ran (no GPU estimate on the CPU); {figures['measured'].get('tokens_per_s')} tok/s"
    if name == "chat":
        ttft = figures.get("ttft_s") or {}
        rate = figures.get("tokens_per_s") or {}
        return f"first token {ttft.get('tuned', 0) * 1000:.0f} ms, {rate.get('tuned', 0) or 0:,.0f} tokens/s"
    return ""


def save_report(out: Path, report: dict[str, Any], started: float) -> None:
    """The report as it stands, replacing the file whole (a reader never sees half of it)."""
    report["total_s"] = round(time.monotonic() - started, 1)
    report["card"] = report["parts"].get("environment", {}).get("figures", {}).get("card", "unknown")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_text(json.dumps(report, indent=2, default=str))
    partial.replace(out)


def card_slug(card: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", card.lower()).strip("-") or "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="every part on the tiny model on the CPU")
    ap.add_argument("--budget-s", type=float, default=480.0, help="the whole check's time; later parts are skipped")
    ap.add_argument("--parts", default=",".join(PARTS), help="a comma list of parts to run")
    ap.add_argument("--out", type=Path, help="the JSON file (default bench/results/gpu-check-<card>.json)")
    args = ap.parse_args()
    wanted = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in wanted if p not in PARTS]
    if unknown:
        ap.error(f"unknown parts {unknown}; known: {', '.join(PARTS)}")
    started = time.monotonic()
    out = args.out or RESULTS / f"gpu-check-{'cpu-smoke' if args.cpu_smoke else 'gpu'}.json"
    report: dict[str, Any] = {"smoke": args.cpu_smoke, "budget_s": args.budget_s, "parts": {}}
    with tempfile.TemporaryDirectory() as tmp_name:
        check = Check(args.cpu_smoke, Path(tmp_name))
        for name in wanted:
            left = args.budget_s - (time.monotonic() - started)
            if name != "environment" and not args.cpu_smoke and left < BUDGETS[name]:
                report["parts"][name] = {"status": "skipped", "why": f"{left:.0f} s left of the budget, "
                                                                    f"the part takes about {BUDGETS[name]} s"}
                continue
            t0 = time.monotonic()
            print(f"[{time.monotonic() - started:6.1f} s] {name} ...", flush=True)
            report["parts"][name] = {"status": "running"}
            save_report(out, report, started)  # a call killed inside this part keeps the parts before it
            try:
                figures = PARTS[name](check)
                entry = {"status": "ok", "figures": figures}
            except Exception as e:  # noqa: BLE001 - one failed part must not cost the others' minutes
                entry = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
                if name == "environment":
                    report["parts"][name] = entry
                    print(entry["error"], file=sys.stderr)
                    break
            entry["wall_s"] = round(time.monotonic() - t0, 1)
            entry["budget_s"] = BUDGETS[name]
            report["parts"][name] = entry
            save_report(out, report, started)
            print(f"           {name}: {entry['status']} in {entry['wall_s']} s"
                  + (f" ({entry['error'][:300]})" if entry["status"] == "failed" else ""), flush=True)
    save_report(out, report, started)
    card = report["card"]
    print(f"\n{'part':12} {'status':8} {'wall s':>7} {'budget':>7}  result   ({card})")
    for name, entry in report["parts"].items():
        result = headline(name, entry["figures"]) if entry["status"] == "ok" else entry.get("error") or entry.get("why")
        print(f"{name:12} {entry['status']:8} {entry.get('wall_s', 0):7.1f} {BUDGETS[name]:7d}  {str(result)[:200]}")
    print(f"total {report['total_s']:.0f} s of {args.budget_s:.0f}")
    if args.out is None and not args.cpu_smoke:  # named for the card, now that it is known
        out = out.replace(out.with_name(f"gpu-check-{card_slug(card)}.json"))
    print(f"wrote {out}")
    failed = [n for n, e in report["parts"].items() if e["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
