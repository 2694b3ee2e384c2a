"""Probe a grid of catalog models on this machine's GPU and save what was measured.

    python bench/probe_grid.py [--models llama-3.2-1b,qwen2.5-0.5b,...] [--methods lora,qlora,full]
                               [--batches 1,4] [--seq-lens 512,2048] [--steps 12] [--grad-ckpt true,false]

Each point runs `studio probe` (random weights built from the config, synthetic rows
filled to max_length) and appends a row to bench/results/probe-<gpu>.csv in the
columns of tests/data/studio-h100.csv (stack "studio"): peak allocated and reserved
memory, and steady-state tokens/s (the first third of the steps warm up and are not
averaged). Add the rows to tests/data/ to calibrate with them (bench/calibrate_estimator.py).
Needs a CUDA GPU; on the CPU it says so and stops.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import tomli_w

REPO = Path(__file__).resolve().parent.parent
COLUMNS = ["id", "source", "stack", "model_id", "params_b", "method", "quant", "dtype", "lora_r", "target_modules",
           "batch", "seq_len", "seq_kind", "grad_ckpt", "optimizer", "gpu", "n_gpus", "strategy", "mem_allocated_gib",
           "mem_reserved_gib", "mem_nvidia_smi_gib", "tokens_per_s", "notes"]
DEFAULT_MODELS = "qwen2.5-0.5b,llama-3.2-1b,qwen2.5-1.5b,llama-3.2-3b,mistral-7b,llama-3.1-8b"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--methods", default="lora,qlora,full")
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--seq-lens", default="512,2048")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--grad-ckpt", default="true", help="true, false, or true,false for both")
    args = ap.parse_args()
    from studio.planning.catalog import lookup_model
    from studio.hardware import detect_gpus

    inv = detect_gpus()
    if not inv.gpus:
        print(f"no CUDA GPU ({inv.reason}); the probe grid measures GPUs only")
        return 1
    gpu = inv.gpus[0].name
    out = REPO / "bench" / "results" / f"probe-{re.sub(r'[^A-Za-z0-9]+', '-', gpu).strip('-')}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    new = not out.exists()
    with tempfile.TemporaryDirectory() as tmp, out.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        env = dict(os.environ, STUDIO_HOME=str(Path(tmp) / "home"))
        data = REPO / "profiles" / "data" / "tiny-chat.jsonl"
        for model in args.models.split(","):
            spec = lookup_model(model)
            for method in args.methods.split(","):
                for batch in map(int, args.batches.split(",")):
                    for seq, ckpt in ((s, c == "true") for s in map(int, args.seq_lens.split(","))
                                      for c in args.grad_ckpt.split(",")):
                        optimizer = "paged_adamw_8bit" if method == "qlora" else "adamw"
                        profile = Path(tmp) / f"{model}-{method}.toml"
                        profile.write_text(tomli_w.dumps({
                            "model": {"name": spec.id}, "method": {"type": method, "rank": 16, "alpha": 32.0},
                            "data": {"path": str(data), "max_length": seq},
                            "train": {"batch_size": batch, "gradient_checkpointing": ckpt, "optimizer": optimizer}}))
                        proc = subprocess.run([sys.executable, "-m", "studio", "probe", str(profile), "--steps",
                                               str(args.steps), "--json"], env=env, capture_output=True, text=True)
                        try:
                            result = json.loads(proc.stdout)
                        except json.JSONDecodeError:
                            print(f"{model} {method} b{batch} x {seq}: probe failed\n{proc.stderr[-2000:]}")
                            continue
                        m = result["measured"]
                        if result["status"] != "completed" or not m.get("gpu_mem_peak_gib"):
                            print(f"{model} {method} b{batch} x {seq}: {result['status']} (out of memory?)")
                            continue
                        row = {"id": f"probe-{result['run']}", "source": "studio probe (bench/probe_grid.py)",
                               "stack": "studio", "model_id": spec.id, "params_b": round(spec.total_params / 1e9, 2),
                               "method": method, "quant": "nf4-dq" if method == "qlora" else "none", "dtype": "bf16",
                               "lora_r": "" if method == "full" else 16,
                               "target_modules": "" if method == "full" else "all-linear", "batch": batch,
                               "seq_len": seq, "seq_kind": "padded", "grad_ckpt": "yes" if ckpt else "no",
                               "optimizer": optimizer, "gpu": gpu, "n_gpus": 1, "strategy": "none",
                               "mem_allocated_gib": max(m["gpu_mem_peak_gib"]),
                               "mem_reserved_gib": max(m["gpu_mem_peak_reserved_gib"]), "mem_nvidia_smi_gib": "",
                               "tokens_per_s": m["tokens_per_s"] or "",
                               "notes": f"studio probe, {args.steps} steps ({m['steps_averaged']} averaged after "
                                        f"{m['warmup_steps']} warm-up), random weights, LoRA dropout 0.05, fused AdamW"}
                        writer.writerow(row)
                        f.flush()
                        est = result.get("estimate") or {}
                        print(f"{model:14} {method:5} b{batch} x {seq:<5} allocated {row['mem_allocated_gib']:.2f} "
                              f"(est {est.get('peak_allocated_gib', float('nan')):.2f}) reserved "
                              f"{row['mem_reserved_gib']:.2f} (est {est.get('peak_reserved_gib', float('nan')):.2f}) "
                              f"{m['tokens_per_s'] or float('nan'):.0f} tok/s (est {est.get('tokens_per_s') or float('nan'):.0f})")
    print(f"results appended to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
