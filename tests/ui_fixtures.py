"""Deterministic data for UI tests: a described GPU inventory and a recorded run."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conftest import DEMO_DATA
from studio.hardware import GpuInfo, Inventory

if TYPE_CHECKING:
    from studio.ui.app import StudioApp

RECORDED_AT = 1_790_000_000.0  # a fixed "now" for ages


def studio_app(**kw) -> StudioApp:
    """The app on the described GPUs (no NVML polling: what the tests show does not depend on this machine)."""
    from studio.ui.app import StudioApp

    return StudioApp(**{"inventory": fake_inventory(), **kw})


GOOD = f'# my notes\n[data]\npath = "{DEMO_DATA}"\n[train]\nbatch_size = 2  # small\n'


def write(home: Path, name: str, text: str) -> Path:
    """A profile file in the studio home."""
    path = home / "profiles" / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def long_profile(home: Path) -> Path:
    """A profile of the tiny model that trains for a long time (5,000 steps): a run to watch and stop."""
    import tomli_w

    path = home / "profiles" / "long.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps({
        "model": {"name": "builtin:tiny-llama"}, "method": {"type": "lora", "rank": 8},
        "data": {"path": str(DEMO_DATA), "max_length": 64},
        "train": {"max_steps": 5000, "batch_size": 4, "grad_accum": 1, "learning_rate": 3e-3,
                  "gradient_checkpointing": False, "logging_steps": 1, "save_steps": 100000}}))
    return path


def fake_inventory() -> Inventory:
    return Inventory([
        GpuInfo(index=0, name="NVIDIA A100-SXM4-80GB", memory_total_gib=80.0, memory_used_gib=61.2,
                memory_free_gib=18.8, utilization_pct=97, temperature_c=71, power_w=388.0, compute_capability="8.0",
                bf16=True),
        GpuInfo(index=1, name="NVIDIA GeForce RTX 4090", memory_total_gib=23.99, memory_used_gib=0.4,
                memory_free_gib=23.59, utilization_pct=0, temperature_c=34, power_w=21.0, compute_capability="8.9",
                bf16=True),
    ], driver_version="560.35.03", cuda_version="12.6", source="nvml")


def eight_gpus() -> Inventory:
    """An 8-GPU box, each GPU a little busier than the one before."""
    return Inventory([GpuInfo(index=i, name="NVIDIA H100 80GB HBM3", memory_total_gib=80.0, memory_used_gib=9.5 * i,
                              memory_free_gib=80.0 - 9.5 * i, utilization_pct=12 * i, temperature_c=40 + i,
                              power_w=100.0 + i, compute_capability="9.0", bf16=True) for i in range(8)],
                     driver_version="560.35.03", cuda_version="12.6", source="nvml")


def record_run(home: Path, run_id: str = "20260911-090000-llama-qlora", status: str = "completed",
               rank: int = 16, floor: float = 1.1, objective: str = "sft") -> Path:
    """A finished GPU run folder as the trainer would leave it (`rank` and `floor`, the loss it
    settles to, tell two runs apart); a DPO run's steps carry its rewards."""
    run = home / "runs" / run_id
    run.mkdir(parents=True)
    (run / "profile.toml").write_text('[model]\nname = "meta-llama/Llama-3.1-8B"\n[method]\ntype = "qlora"\n'
                                      f'rank = {rank}\n[data]\npath = "/data/chat.jsonl"\n[train]\nmax_steps = 40\n'
                                      f'gradient_checkpointing = true\nobjective = "{objective}"\n')
    (run / "status.json").write_text(json.dumps({"profile": "llama-qlora", "created_at": RECORDED_AT - 5400,
                                                 "attempts": 1}))
    t0 = RECORDED_AT - 5000
    events = [
        {"event": "preflight", "time": t0, "format": "messages", "rows": 12000, "tokens": 4_100_000,
         "train_rows": 11880, "eval_rows": 120, "truncated_rows": 14, "max_length": 2048, "loss_on": "assistant turns"},
        {"event": "start", "time": t0 + 40, "total_params": 8_030_261_248, "trainable_params": 41_943_040,
         "devices": ["NVIDIA A100-SXM4-80GB"], "device": "cuda", "dtype": "bf16", "optimizer": "paged_adamw_8bit",
         "max_steps": 40, "method": "qlora", "model": "meta-llama/Llama-3.1-8B"},
    ]
    for step in range(1, 41):
        events.append({"event": "step", "time": t0 + 40 + step * 9.5, "step": step, "max_steps": 40,
                       "epoch": round(step / 40, 3), "loss": round(floor + 1.4 * math.exp(-step / 9) + 0.03 * math.sin(step), 4),
                       "learning_rate": 2e-4 * (1 - step / 40), "grad_norm": 0.6, "tokens": step * 32768,
                       "tokens_per_s": 3400 + 40 * math.sin(step), "elapsed_s": step * 9.5, "eta_s": (40 - step) * 9.5,
                       "gpu_mem_allocated_gib": [14.2], "gpu_mem_reserved_gib": [17.9], "gpu_mem_peak_gib": [16.4],
                       "nvml_mem_used_gib": [19.3], "nvml_power_w": [388.0], "nvml_temp_c": [71],
                       "energy_kwh": round(step * 9.5 * 388 / 3.6e6, 5), "rss_gib": 3.1,
                       **({"reward_chosen": round(0.02 * step, 4), "reward_rejected": round(-0.05 * step, 4),
                           "reward_margin": round(0.07 * step, 4),
                           "reward_accuracy": round(min(1.0, 0.5 + step / 60), 4)} if objective == "dpo" else {}),
                       **({"reward": round(0.1 + step / 50, 4), "completion_length": 180 - step,
                           "rewards": {"exact_answer": round(step / 50, 4), "length": -0.1}, "kl": 0.002 * step,
                           "clip_ratio": 0.0} if objective == "grpo" else {})})
        if step % 10 == 0:
            events.append({"event": "eval", "time": t0 + 41 + step * 9.5, "step": step,
                           "eval_loss": round(1.25 + 1.3 * math.exp(-step / 9), 4)})
            events.append({"event": "checkpoint", "time": t0 + 42 + step * 9.5, "step": step,
                           "path": str(run / "checkpoints" / f"checkpoint-{step}")})
    if status == "completed":
        events.append({"event": "end", "time": t0 + 450, "status": "completed", "step": 40, "max_steps": 40,
                       "train_tokens_per_s": 3402.0, "gpu_mem_peak_reserved_gib": [17.9]})
    elif status == "oom":
        events.append({"event": "end", "time": t0 + 450, "status": "failed", "error_kind": "oom",
                       "message": "out of memory: the run reserved 79.1 GiB before failing; the GPU has 79.2 GiB",
                       "advice": "set train.batch_size = 2 and train.grad_accum = 8 (same effective batch)"})
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (run / "trainer.log").write_text("studio trainer pid 4242\n" + "".join(
        f"{{'loss': '{e['loss']}', 'grad_norm': '0.6', 'epoch': '{e['epoch']}'}}\n"
        for e in events if e["event"] == "step")[-2000:] + "run completed at step 40\n")
    return run


@contextmanager
def live_trainer(run_dir: Path, launched_at: float) -> Iterator[subprocess.Popen]:
    """A process that studio takes for the run's trainer (its command line names the module and the folder),
    launched at `launched_at` as status.json says; killed on leaving."""
    from studio.runs.folder import Run
    from studio.runs.liveness import process_start_time

    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "studio.trainer",
                                str(run_dir.resolve())])
    try:
        Run(run_dir).update_status_file(pid=trainer.pid, pid_started_at=process_start_time(trainer.pid),
                                        launched_at=launched_at)
        yield trainer
    finally:
        trainer.kill()
        trainer.wait()


def screen_text(app) -> str:
    """What the terminal shows, as plain lines (from the app's SVG screenshot)."""
    import html
    import re

    svg = app.export_screenshot()
    rows: dict[float, list[tuple[float, str]]] = {}
    for x, y, body in re.findall(r'<text[^>]*\sx="([\d.]+)"\s+y="([\d.]+)"[^>]*>(.*?)</text>', svg):
        rows.setdefault(float(y), []).append((float(x), html.unescape(body).replace("\xa0", " ")))
    return "\n".join("".join(t for _, t in sorted(parts)) for _, parts in sorted(rows.items()))


def notifications(app) -> list[str]:
    """Every message the app shows as a notification from now on (App.notify, wrapped; Textual's own list
    of notifications is private and forgets them when they expire)."""
    seen: list[str] = []
    original = app.notify

    def notify(message, *args, **kwargs):
        seen.append(str(message))
        return original(message, *args, **kwargs)

    app.notify = notify
    return seen


async def on_the_dashboard(pilot: Any) -> Any:
    """The dashboard in front once the start-up reattach has decided (with exactly one run training it opens
    that run's monitor: esc leaves it, as a user would)."""
    from waiting import front, until

    from studio.ui.dashboard import Dashboard
    from studio.ui.monitor import RunMonitor

    await until(pilot, lambda: pilot.app.reattach_checked, "the start-up reattach")
    await pilot.pause()
    if isinstance(pilot.app.screen, RunMonitor):
        await pilot.press("escape")
    return await front(pilot, Dashboard)
