"""studio vs a plain TRL script on the same tiny config: tokens/s of each and the ratio.

    python bench/speed_vs_trl.py [--steps 150] [--repeats 3] [--hidden 256 --layers 4]

Both train the same model (built once by studio, then loaded from the run's
base-model/ by the plain script), the same data, seed, batch and LoRA settings,
and both log every 10 steps. Throughput is training tokens over the trainer's
own train_runtime. The runs alternate and the median of each side is compared.
studio's target: ratio >= 0.97.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import tomli_w

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "profiles" / "data" / "tiny-chat.jsonl"

PLAIN_TRL = r'''
import json, sys
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

model_dir, data, out, steps, batch, lr, max_len = sys.argv[1:8]
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir)
args = SFTConfig(output_dir=out, max_steps=int(steps), per_device_train_batch_size=int(batch),
                 learning_rate=float(lr), max_length=int(max_len), use_cpu=True, bf16=False,
                 gradient_checkpointing=False, report_to="none", logging_steps=10, seed=42,
                 assistant_only_loss=True, lr_scheduler_type="cosine", save_steps=100000)
trainer = SFTTrainer(model=model, args=args, train_dataset=load_dataset("json", data_files=data, split="train"),
                     processing_class=tok, peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                     target_modules="all-linear", task_type="CAUSAL_LM"))
result = trainer.train()
print("RESULT " + json.dumps({"train_runtime": result.metrics["train_runtime"]}))
'''


def studio_run(home: Path, profile: Path) -> dict:
    env = dict(os.environ, STUDIO_HOME=str(home), HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-m", "studio", "run", str(profile), "--json"], env=env,
                         capture_output=True, text=True, check=True)
    run_dir = Path(json.loads(out.stdout.strip().splitlines()[-1])["dir"])
    end = [json.loads(l) for l in (run_dir / "events.jsonl").read_text().splitlines() if '"end"' in l][-1]
    return {"dir": run_dir, "runtime": end["train_runtime_s"], "tokens": end["train_tokens"]}


def plain_run(model_dir: Path, out: Path, steps: int, batch: int, lr: float, max_len: int) -> float:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(out / "hf"))
    proc = subprocess.run([sys.executable, "-c", PLAIN_TRL, str(model_dir), str(DATA), str(out), str(steps),
                           str(batch), str(lr), str(max_len)], env=env, capture_output=True, text=True, check=True)
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])["train_runtime"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    lr, max_len = 3e-3, 128
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        profile = tmp_path / "bench.toml"
        profile.write_text(tomli_w.dumps({
            "model": {"name": "builtin:tiny-llama"},
            "method": {"type": "lora", "rank": 16, "alpha": 32.0, "dropout": 0.0},
            "data": {"path": str(DATA), "max_length": max_len},
            "train": {"max_steps": args.steps, "batch_size": args.batch, "grad_accum": 1, "learning_rate": lr,
                      "warmup_ratio": 0.0, "gradient_checkpointing": False, "optimizer": "adamw",
                      "logging_steps": 10, "save_steps": 100000, "seed": 42},
        }))
        studio_times, plain_times, tokens = [], [], 0
        for i in range(args.repeats):
            s = studio_run(tmp_path / "home", profile)
            studio_times.append(s["runtime"])
            tokens = s["tokens"]
            plain_times.append(plain_run(s["dir"] / "base-model", tmp_path / f"plain{i}", args.steps, args.batch,
                                         lr, max_len))
            print(f"round {i + 1}: studio {s['runtime']:.3f} s, plain TRL {plain_times[-1]:.3f} s "
                  f"for {args.steps} steps ({tokens} tokens)", flush=True)
    s_med, p_med = statistics.median(studio_times), statistics.median(plain_times)
    print(f"studio:    {tokens / s_med:10.1f} tokens/s (median train_runtime {s_med:.3f} s)")
    print(f"plain TRL: {tokens / p_med:10.1f} tokens/s (median train_runtime {p_med:.3f} s)")
    ratio = p_med / s_med
    print(f"ratio studio/plain: {ratio:.3f} (target >= 0.97: {'met' if ratio >= 0.97 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
