"""The GPU check's parts run on the CPU with the tiny model (`bench/gpu_check.py --cpu-smoke`), so that
the scarce GPU minutes are not spent on typos: every part must finish and report its figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from waiting import DEADLINE_S, wait_for

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_every_part_of_the_gpu_check_runs_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--cpu-smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=DEADLINE_S, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    parts = report["parts"]
    assert list(parts) == ["environment", "gpu-tests", "parity", "defaults", "8b-lora", "8b-qlora", "chat"]
    assert all(p["status"] == "ok" for p in parts.values()), {n: p.get("error") for n, p in parts.items()}
    assert parts["environment"]["figures"]["versions"]["trl"]
    assert parts["parity"]["figures"]["ratio"] > 0 and parts["defaults"]["figures"]["speedup"] > 0
    assert set(parts["defaults"]["figures"]["decided"]) >= {"train.gradient_checkpointing", "data.packing"}
    assert parts["8b-qlora"]["figures"]["measured"]["rss_peak_gib"] > 0
    assert parts["chat"]["figures"]["tokens"]["tuned"] > 0
    assert "parity" in proc.stdout and "total" in proc.stdout  # the summary table


def test_a_check_killed_inside_a_part_keeps_the_figures_of_the_parts_it_finished(tmp_path: Path) -> None:
    # A device call ends at its time limit by killing the check: the H200 run of 2026-12-04 lost the figures
    # of a part that had finished, because the JSON was written only at the end.
    out = tmp_path / "check.json"
    proc = subprocess.Popen([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--cpu-smoke", "--parts",
                             "environment,parity", "--out", str(out)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        def parity_started() -> bool:
            return out.is_file() and json.loads(out.read_text())["parts"].get("parity", {}).get("status") == "running"

        wait_for(parity_started, "the report to say the parity part is running",
                 lambda: out.read_text() if out.is_file() else "(no report yet)")
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    parts = json.loads(out.read_text())["parts"]
    assert parts["environment"]["status"] == "ok" and parts["environment"]["figures"]["versions"]["torch"]
    assert parts["parity"] == {"status": "running"}
