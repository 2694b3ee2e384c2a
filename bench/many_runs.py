"""A studio home of many runs: how fast, and in how much memory, the listings answer.

    python bench/many_runs.py [--runs 2000 20000] [--repeat 3]

For each count it fills a fresh home with that many finished runs (copies of one recorded run: profile,
status, plan and an events file of 40 steps, 4 evals and an end), then takes, `--repeat` times each and
alternating, `studio runs` (the newest 200), `studio runs --json --limit 0` (all of them) and the app's
first read of its Runs list (a headless app, from start to the list shown): wall time and each process's
own peak memory (VmHWM). Prints a table and writes bench/results/many-runs-<host>-<time>.json. Not a test:
the README quotes its figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(Path(__file__).parent)]

from soak import measured  # noqa: E402  (bench/soak.py: a CLI command's time and own peak)

APP = """
import asyncio, sys, time
t0 = time.perf_counter()
from textual.widgets import DataTable
from studio.hardware import Inventory
from studio.ui.app import StudioApp

async def main():
    async with StudioApp(inventory=Inventory([], reason="bench")).run_test(size=(120, 40)) as pilot:
        table = pilot.app.screen.query_one("#runs", DataTable)
        while table.row_count == 0:
            await pilot.pause()
        print(f"rows {table.row_count}")
asyncio.run(main())
print(f"seconds {time.perf_counter() - t0:.3f}")
peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM")][0].split()[1]
print(f"peak-kb {peak}")
"""


def fill(home: Path, count: int) -> None:
    from ui_fixtures import record_run

    first = record_run(home, "20250101-000000-r0")
    for i in range(1, count):
        shutil.copytree(first, home / "runs" / f"{20250101 + i // 1000 * 100:08d}-{i % 1000:06d}-r{i}")


def app_read(env: dict[str, str]) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", APP], capture_output=True, text=True, env=env, timeout=600)
    said = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    return {"s": float(said.get("seconds", "nan")), "peak_mb": round(int(said.get("peak-kb", "0")) / 1024, 1),
            "rows": int(said.get("rows", "0")), "rc": proc.returncode}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results = []
    for count in args.runs:
        with tempfile.TemporaryDirectory(prefix="studio-many-") as tmp:
            home = Path(tmp)
            t0 = time.perf_counter()
            fill(home, count)
            env = {**os.environ, "STUDIO_HOME": str(home), "HF_HUB_OFFLINE": "1"}
            takes: dict[str, list[dict[str, float]]] = {"runs": [], "runs --json --limit 0": [], "app": []}
            measured(env, "runs")  # warm the page cache and Python's bytecode once
            for _ in range(args.repeat):  # ABAB: each command in turn, so drift hits all alike
                takes["runs"].append(measured(env, "runs"))
                takes["runs --json --limit 0"].append(measured(env, "runs", "--json", "--limit", "0"))
                takes["app"].append(app_read(env))
            row: dict = {"run_folders": count, "filled_s": round(time.perf_counter() - t0, 1)}
            for name, got in takes.items():
                row[name] = {"median_s": statistics.median(t["s"] for t in got),
                             "peak_mb": max(t["peak_mb"] for t in got), "rc": max(t["rc"] for t in got),
                             **({"rows": got[0]["rows"]} if name == "app" else {})}
            results.append(row)
            print(f"{count:>6} runs: " + "; ".join(f"{name} {v['median_s']:.2f} s / {v['peak_mb']:.0f} MB"
                                                  + (f" ({v['rows']} rows)" if "rows" in v else "")
                                                  for name, v in row.items() if isinstance(v, dict)), flush=True)
    out = ROOT / "bench" / "results" / f"many-runs-{socket.gethostname()}-{time.strftime('%Y%m%d-%H%M')}.json"
    out.write_text(json.dumps({"cpus": os.cpu_count(), "results": results}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
