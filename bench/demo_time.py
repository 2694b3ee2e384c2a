"""How long the README's demo takes on this machine: `studio run tiny-demo` (the headless equivalent of
`studio demo`) from the command to the first step and to the end, and what importing the training stack
alone costs.

    python bench/demo_time.py [--rounds 3]

One warm-up round first (file caches, compiled bytecode), then ROUNDS measured rounds, each in a fresh
studio home; prints the medians with the machine's CPU and load, and writes
bench/results/demo-cpu-<time>.json. The README quotes these figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from saved import save_results  # bench/saved.py: this folder is on the path when run as a script

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

STACK = "import torch, transformers, peft, trl, datasets, accelerate"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def import_seconds() -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", STACK], check=True)
    return time.monotonic() - t0


def one_demo() -> dict:
    from studio.runs.events import load_timeline
    from studio.runs.folder import Run

    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, STUDIO_HOME=home, HF_HUB_OFFLINE="1")
        t0 = time.time()
        proc = subprocess.run([sys.executable, "-m", "studio", "run", "tiny-demo", "--json"], env=env,
                              capture_output=True, text=True)
        wall = time.time() - t0
        if proc.returncode:
            raise SystemExit(f"the demo failed:\n{proc.stderr}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        timeline = load_timeline(Path(result["dir"]))
        launched = Run(Path(result["dir"])).status_number("launched_at")
        first = timeline.first_step.time if timeline.first_step else None
        return {"wall_s": round(wall, 2), "to_first_step_s": round(first - t0, 2) if first else None,
                "launch_to_first_step_s": round(first - launched, 2) if first and launched else None,
                "steps": timeline.last_step.step if timeline.last_step else 0, "status": result["status"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import_seconds()
    one_demo()  # warm-up
    rounds = []
    for i in range(args.rounds):
        rounds.append({"import_stack_s": round(import_seconds(), 2), **one_demo()})
        print(f"round {i + 1}: {rounds[-1]}", flush=True)
    median = {key: statistics.median(r[key] for r in rounds if r[key] is not None)
              for key in ("wall_s", "to_first_step_s", "import_stack_s")}
    machine = {"cpu": cpu_name(), "cores": os.cpu_count(), "loadavg_before": os.getloadavg()}
    print(f"{machine['cpu']}, {machine['cores']} cores: the demo ({rounds[0]['steps']} steps) took "
          f"{median['wall_s']:.0f} s, {median['to_first_step_s']:.1f} s to the first step; importing the "
          f"training stack alone {median['import_stack_s']:.1f} s (medians of {args.rounds})")
    save_results("demo", "cpu", {"machine": machine, "median": median, "rounds": rounds})


if __name__ == "__main__":
    main()
