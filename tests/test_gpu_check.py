"""The GPU check's parts run on the CPU with the tiny model (`bench/gpu_check.py --cpu-smoke`), so that
the scarce GPU minutes are not spent on typos: every part must finish and report its figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from waiting import DEADLINE_S

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
