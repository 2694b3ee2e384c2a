"""studio against a plain TRL script written the obvious way, on the same job: tokens/s and the ratios.

    python bench/speed_vs_trl.py [--rounds 3] [--steps N] [--model llama-3.2-1b]

Four sides train the same model (random weights from the same config), data, seed, batch and LoRA:
  trl-defaults     SFTConfig with only the job's settings: TRL's defaults otherwise (checkpointing on,
                   batches padded to their longest row)
  studio-defaults  `studio run` of a profile that leaves speed settings on "auto"
  trl-same         TRL with the settings studio-same uses
  studio-same      `studio run` with those settings written out (parity: no overhead of its own)
on two datasets: fixed-length rows (all at max_length) and variable-length chat rows drawn from a
long-tailed distribution (median ~300 tokens, 95th percentile ~1,500, capped at max_length; scaled
down 10x on the CPU). One warm-up round first, then rounds that alternate the order of the sides;
the median of each side is compared. Throughput is trained (non-padding) tokens over the trainer's
train_runtime. On the CPU the model is studio's tiny Llama (a smoke check); on a CUDA GPU a
Llama-3.2-1B config. Prints the figures and writes bench/results/speed-<device>-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import tomli_w
from saved import save_results  # bench/saved.py: this folder is on the path when run as a script

REPO = Path(__file__).resolve().parent.parent
SIDES = ("trl-defaults", "studio-defaults", "trl-same", "studio-same")
WORDS = ("the model learns patterns from data while small birds sing about rain and memory grows with every token "
         "in the batch of questions answers numbers colours rivers cities").split()

PLAIN_TRL = r'''
import json, sys, torch
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

model_dir, data, out, settings = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
cuda = torch.cuda.is_available()
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if cuda else torch.float32)
if cuda:
    model = model.to("cuda")
args = SFTConfig(output_dir=out, report_to="none", save_strategy="no", logging_steps=10,
                 use_cpu=not cuda, bf16=cuda, **settings)
trainer = SFTTrainer(model=model, args=args, train_dataset=load_dataset("json", data_files=data, split="train"),
                     processing_class=tok, peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05,
                     target_modules="all-linear", task_type="CAUSAL_LM"))
result = trainer.train()
peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
print("RESULT " + json.dumps({"runtime": result.metrics["train_runtime"], "tokens": trainer._total_train_tokens,
                              "peak_gib": peak}))
'''


def lengths(n: int, median: float, p95: float, cap: int, seed: int) -> list[int]:
    """Log-normal lengths with the given median and 95th percentile, capped: the shape of real chat data."""
    sigma = math.log(p95 / median) / 1.645
    rng = random.Random(seed)
    return [max(8, min(cap, int(rng.lognormvariate(math.log(median), sigma)))) for _ in range(n)]


def chat_rows(token_counts: list[int], seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for n in token_counts:
        question = " ".join(rng.choice(WORDS) for _ in range(max(2, n // 5)))
        answer = " ".join(rng.choice(WORDS) for _ in range(max(2, n - n // 5)))
        rows.append({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]})
    return rows


def build_model(folder: Path, rows: list[dict], cuda: bool) -> None:
    """A model folder: the tiny Llama (CPU) or a Llama-3.2-1B config with random bf16 weights (GPU), with a
    tokenizer trained on the rows. Both sides load it as a user's model: from_pretrained."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from studio.planning.catalog import lookup_model
    from studio.trainer.tiny import build_tiny_model, train_tokenizer

    if not cuda:
        build_tiny_model(folder, rows, seed=1)
        return
    spec = lookup_model("meta-llama/Llama-3.2-1B")
    tok = train_tokenizer(rows, 4096)
    config = LlamaConfig(vocab_size=spec.vocab, hidden_size=spec.hidden, intermediate_size=spec.intermediate,
                         num_hidden_layers=spec.layers, num_attention_heads=spec.heads,
                         num_key_value_heads=spec.kv_heads, tie_word_embeddings=spec.tied,
                         max_position_embeddings=8192, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    with torch.device("cuda"):
        AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).save_pretrained(folder)
    tok.save_pretrained(folder)


def studio_side(tmp: Path, model: Path, data: Path, job: dict, speed: dict, label: str) -> dict:
    profile = tmp / f"{label}.toml"
    profile.write_text(tomli_w.dumps({
        "model": {"name": str(model)},
        "method": {"type": "lora", "rank": 16, "alpha": 32.0, "dropout": 0.05},
        "data": {"path": str(data), "max_length": job["max_length"], "completion_only_loss": False,
                 "packing": speed["packing"]},
        "train": {"max_steps": job["max_steps"], "batch_size": job["per_device_train_batch_size"], "grad_accum": 1,
                  "learning_rate": 2e-4, "warmup_ratio": 0.0, "optimizer": "adamw", "logging_steps": 10,
                  "save_steps": 1_000_000, "gradient_checkpointing": speed["gradient_checkpointing"],
                  "liger_kernel": speed["liger_kernel"]},
    }))
    env = dict(os.environ, STUDIO_HOME=str(tmp / "home"), HF_HUB_OFFLINE="1")
    t0 = time.time()
    out = subprocess.run([sys.executable, "-m", "studio", "run", str(profile), "--json"], env=env,
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"studio run failed:\n{out.stderr[-3000:]}")
    run_dir = Path(json.loads(out.stdout.strip().splitlines()[-1])["dir"])
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    end = [e for e in events if e["event"] == "end"][-1]
    first_step = next(e["time"] for e in events if e["event"] == "step")
    trained = json.loads((run_dir / "plan.json").read_text()).get("trained") or {}  # what the trainer trained
    decisions = trained.get("decisions") or []
    return {"run_dir": str(run_dir), "runtime": end["train_runtime_s"], "tokens": end["train_tokens"],
            "peak_gib": max(end.get("gpu_mem_peak_gib") or [0]) or None, "to_first_step_s": first_step - t0,
            "decisions": {d["key"]: d["value"] for d in decisions},
            "reasons": {d["key"]: d.get("reason") for d in decisions}}


def trl_side(tmp: Path, model: Path, data: Path, job: dict, settings: dict, label: str) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp / "hf"))
    proc = subprocess.run([sys.executable, "-c", PLAIN_TRL, str(model), str(data), str(tmp / label),
                           json.dumps({**job, **settings})], env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"plain TRL failed:\n{proc.stderr[-3000:]}")
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("RESULT ")][-1][7:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, help="optimizer steps per run (default 60 on a GPU, 40 on the CPU)")
    args = ap.parse_args()
    import torch

    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else f"CPU ({os.cpu_count()} cores, {platform.processor() or 'x86_64'})"
    scale, cap = (1, 2048) if cuda else (10, 256)
    job = {"max_steps": args.steps or (60 if cuda else 40), "per_device_train_batch_size": 8, "max_length": cap}
    # studio-same writes out what studio decided for the variable dataset; TRL gets the same.
    results: dict = {"device": device, "job": job, "datasets": {}, "time": datetime.now().isoformat(timespec="seconds")}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = {
            "fixed": chat_rows([cap + 32] * 600, seed=1),
            "variable": chat_rows(lengths(600, 300 / scale, 1500 / scale, cap, seed=2), seed=2),
        }
        model = tmp / "model"
        build_model(model, data["fixed"] + data["variable"], cuda)
        for name, rows in data.items():
            path = tmp / f"{name}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
            auto = {"gradient_checkpointing": "auto", "liger_kernel": "auto", "packing": "auto"}
            probe = studio_side(tmp, model, path, {**job, "max_steps": 2}, auto, f"decide-{name}")
            same = {k.split(".")[1]: v for k, v in probe["decisions"].items()
                    if k in ("train.gradient_checkpointing", "train.liger_kernel", "data.packing")}
            trl_same = {"gradient_checkpointing": same["gradient_checkpointing"], "packing": same["packing"],
                        "use_liger_kernel": same["liger_kernel"]}
            runs = {
                "trl-defaults": lambda i: trl_side(tmp, model, path, job, {}, f"trl-d-{name}-{i}"),
                "studio-defaults": lambda i: studio_side(tmp, model, path, job, auto, f"studio-d-{name}-{i}"),
                "trl-same": lambda i: trl_side(tmp, model, path, job, trl_same, f"trl-s-{name}-{i}"),
                "studio-same": lambda i: studio_side(tmp, model, path, job, same, f"studio-s-{name}-{i}"),
            }
            for side in SIDES:  # warm-up: caches, compiled kernels, the allocator
                runs[side]("warm")
            figures: dict = {side: [] for side in SIDES}
            for r in range(args.rounds):
                order = SIDES if r % 2 == 0 else tuple(reversed(SIDES))
                for side in order:
                    res = runs[side](r)
                    res["tokens_per_s"] = res["tokens"] / res["runtime"]
                    figures[side].append(res)
                print(f"{name} round {r + 1}: " + ", ".join(f"{s} {figures[s][-1]['tokens_per_s']:,.0f}"
                                                            for s in SIDES), flush=True)
            medians = {s: statistics.median(f["tokens_per_s"] for f in figures[s]) for s in SIDES}
            peaks = {s: max((f["peak_gib"] or 0) for f in figures[s]) or None for s in SIDES}
            results["datasets"][name] = {
                "studio_decided": same, "tokens_per_s": medians, "peak_gib": peaks,
                "runs": {s: [{k: v for k, v in f.items() if k not in ("decisions", "reasons", "run_dir")} for f in figures[s]]
                         for s in SIDES},
                "parity_studio_vs_trl_same_settings": medians["studio-same"] / medians["trl-same"],
                "speedup_studio_defaults_vs_trl_defaults": medians["studio-defaults"] / medians["trl-defaults"],
                "studio_to_first_step_s": statistics.median(f["to_first_step_s"] for f in figures["studio-defaults"]),
            }
    print(f"\n{device}; {job['max_steps']} steps, batch {job['per_device_train_batch_size']}, max_length {cap}, "
          f"median of {args.rounds} alternating rounds after a warm-up")
    for name, d in results["datasets"].items():
        print(f"{name:9} studio decided {d['studio_decided']}")
        for s in SIDES:
            peak = f", peak {d['peak_gib'][s]:.2f} GiB" if d["peak_gib"][s] else ""
            print(f"          {s:16} {d['tokens_per_s'][s]:10,.0f} tokens/s{peak}")
        print(f"          parity (studio / TRL, same settings): {d['parity_studio_vs_trl_same_settings']:.3f}")
        print(f"          speed-up (studio defaults / TRL defaults): {d['speedup_studio_defaults_vs_trl_defaults']:.2f}x")
        print(f"          studio run -> first step: {d['studio_to_first_step_s']:.1f} s")
    save_results("speed", "cuda" if cuda else "cpu", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
