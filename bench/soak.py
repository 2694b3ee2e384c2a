"""Soak: a run's events file grows to 1 GB while the app watches the run and the CLI reads it.

    python bench/soak.py [--size-mb 1024] [--every-mb 128]

A writer appends step records (an eval every 1,000 steps, a checkpoint every 5,000) to a run, as a long
run that logs every step does, `--every-mb` at a time. The app runs in a pseudo-terminal (80x24) with that
run's monitor open. At each size the CLI commands that read a run are timed (wall clock) and their peak
memory taken (the child's own ru_maxrss): `studio runs`, `studio runs --json`, `studio describe RUN --json`,
`studio compare RUN OTHER --json` (OTHER: a second run of 128 MB) and `studio logs RUN` (each in a process that
reports its own VmHWM); and the app's memory
and its CPU since the last size. The curve is printed and saved in bench/results/soak-cpu-*.json.
Not a test: the README quotes its figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ui_speed import drain, spawn  # noqa: E402 - the same pseudo-terminal helpers

ROOT = Path(__file__).resolve().parent.parent


def append_steps(path: Path, first_step: int, target_bytes: int) -> int:
    """Steps from `first_step` until the file has `target_bytes`; returns the next step."""
    step = first_step
    with path.open("a") as f:
        while f.tell() < target_bytes:
            lines = []
            for _ in range(1000):
                lines.append(f'{{"event": "step", "time": {1.0 + step}, "step": {step}, "max_steps": 100000000, '
                             f'"epoch": {step / 1e6:.6f}, "loss": {3 / (1 + step / 1000):.6f}, '
                             f'"learning_rate": 0.0001, "grad_norm": 0.5, "tokens": {step * 512}, '
                             f'"tokens_per_s": 5120.0, "elapsed_s": {step / 10}, "rss_gib": 0.6, '
                             f'"gpu_mem_reserved_gib": [12.0]}}\n')
                if step % 1000 == 0:
                    lines.append(f'{{"event": "eval", "time": {1.0 + step}, "step": {step}, '
                                 f'"eval_loss": {2 / (1 + step / 1000):.6f}}}\n')
                if step % 5000 == 0:
                    lines.append(f'{{"event": "checkpoint", "time": {1.0 + step}, "step": {step}, '
                                 f'"path": "checkpoints/checkpoint-{step}"}}\n')
                step += 1
            f.write("".join(lines))
    return step


# The CLI in a process that says its own peak (VmHWM of its own memory map) as its last line: a child's
# ru_maxrss also counts the memory of the process it was forked from.
MEASURED = """
import sys
from studio.cli import main
try:
    code = main(sys.argv[1:])
finally:
    sys.stdout.flush()
    peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM")][0].split()[1]
    print(f"peak-kb {peak}", file=sys.stderr)
sys.exit(code)
"""


def measured(env: dict[str, str], *args: str) -> dict[str, float]:
    """One CLI command: its wall time and its own peak memory."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", MEASURED, *args], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, env=env)
    seconds = time.perf_counter() - t0
    peak_kb = int(proc.stderr.strip().splitlines()[-1].split()[1])
    return {"s": round(seconds, 3), "peak_mb": round(peak_kb / 1024, 1), "rc": proc.returncode}


def make_run(name: str) -> Path:
    from studio.profiles.profile import load_profile
    from studio.runs.events import Start, append_event
    from studio.runs.folder import create_run

    run = create_run(load_profile(ROOT / "profiles" / "tiny-demo.toml").to_toml(), name)
    append_event(run.events_path, Start(max_steps=100_000_000, devices=("cpu",), dtype="fp32", total_params=1000,
                                       trainable_params=10, pid=os.getpid()))
    return run.dir


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--every-mb", type=int, default=128)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="studio-soak-"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(STUDIO_HOME=str(home), HF_HUB_OFFLINE="1", TERM="xterm-256color")
    os.environ["STUDIO_HOME"] = str(home)
    other = make_run("soak-other")
    append_steps(other / "events.jsonl", 1, 128 << 20)
    run = make_run("soak-long")
    step = append_steps(run / "events.jsonl", 1, 1 << 20)
    app, master = spawn([sys.executable, "-m", "studio"], env)
    drain(master, 20, until=b"Profiles")
    for key in (b"\t", b"\r"):  # to the Runs list; open the newest run (this one) in the monitor
        os.write(master, key)
        drain(master, 3)
    watcher = psutil.Process(app.pid)
    watcher.cpu_percent(None)
    rows = []
    print(f"{'events':>8} {'runs':>13} {'runs --json':>13} {'describe':>13} {'compare':>13} {'logs':>13} "
          f"{'app MB':>7} {'app CPU':>8}")
    for target in range(args.every_mb, args.size_mb + 1, args.every_mb):
        step = append_steps(run / "events.jsonl", step, target << 20)
        drain(master, 3)  # the app reads what was written
        row = {"events_mb": round((run / "events.jsonl").stat().st_size / 2**20), "steps": step - 1,
               "runs": measured(env, "runs"), "runs_json": measured(env, "runs", "--json"),
               "describe": measured(env, "describe", run.name, "--json"),
               "compare": measured(env, "compare", run.name, other.name, "--json"),
               "logs": measured(env, "logs", run.name),
               "app_rss_mb": round(watcher.memory_info().rss / 2**20, 1),
               "app_cpu_pct": round(watcher.cpu_percent(None), 1)}
        rows.append(row)
        cells = [f"{row[k]['s']:5.2f}s {row[k]['peak_mb']:4.0f}MB" for k in ("runs", "runs_json", "describe",
                                                                              "compare", "logs")]
        print(f"{row['events_mb']:>6}MB " + " ".join(f"{c:>13}" for c in cells)
              + f" {row['app_rss_mb']:>7} {row['app_cpu_pct']:>7}%", flush=True)
    os.write(master, b"q")
    drain(master, 5)
    app.kill()
    result = {"when": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores", "load_before": os.getloadavg(), "rows": rows}
    out = ROOT / "bench" / "results" / f"soak-cpu-{time.strftime('%Y%m%d-%H%M')}.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
