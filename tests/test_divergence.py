"""A run whose weights go NaN fails at the first non-finite step instead of completing, keeps its last
finite checkpoint, and ships nothing non-finite: a real trainer process driven to divergence by a learning
rate of 1.0 without gradient clipping."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import DEMO_DATA, studio, write_profile
from studio.runs.events import End, Step, read_events

pytestmark = pytest.mark.slow


def test_a_diverging_run_fails_at_its_first_non_finite_step_and_its_export_is_refused(tmp_path: Path) -> None:
    profile = write_profile(tmp_path / "p.toml", DEMO_DATA,
                            train={"max_steps": 60, "learning_rate": 1.0, "max_grad_norm": 0.0, "save_steps": 2,
                                   "save_total_limit": 100})
    result = json.loads(studio("run", str(profile), "--json").stdout.strip().splitlines()[-1])
    assert result["status"] == "failed", result
    run_dir = Path(result["dir"])
    events = read_events(run_dir / "events.jsonl")
    end = [e for e in events if isinstance(e, End)][-1]
    steps = [e for e in events if isinstance(e, Step)]
    assert end.error_kind == "diverged", end
    # every step written was finite; the run stopped at the step after the last one, and says which
    assert steps and all(math.isfinite(s.loss) and (s.grad_norm is None or math.isfinite(s.grad_norm))
                         for s in steps)
    assert f"at step {steps[-1].step + 1}" in end.message, end.message
    assert "learning_rate" in end.advice and "max_grad_norm" in end.advice
    assert not (run_dir / "final").exists()
    kept = [p for p in (run_dir / "checkpoints").glob("checkpoint-*") if not p.name.endswith(".nonfinite")]
    assert kept and f"checkpoint-{max(int(p.name.split('-')[1]) for p in kept)} is the last" in end.message
    assert max(int(p.name.split("-")[1]) for p in kept) <= steps[-1].step

    refused = studio("export", result["id"], "--out", str(tmp_path / "out"), "--gguf")
    assert refused.returncode != 0 and "diverged" in refused.stderr and "--checkpoint" in refused.stderr
    assert not (tmp_path / "out").exists()
    step = refused.stderr.split("--checkpoint ")[1].split()[0]
    exported = studio("export", result["id"], "--out", str(tmp_path / "out"), "--checkpoint", step)
    assert exported.returncode == 0, exported.stderr
    card = (tmp_path / "out" / "README.md").read_text()
    assert "Training did not complete" in card


def test_export_refuses_non_finite_weights_naming_the_tensor(tmp_path: Path) -> None:
    """A checkpoint written with NaN weights (a run older than this check, or one copied in) is refused by
    name before anything is merged or written."""
    from safetensors.torch import load_file, save_file

    profile = write_profile(tmp_path / "p.toml", DEMO_DATA, train={"max_steps": 4, "save_steps": 2})
    result = json.loads(studio("run", str(profile), "--json").stdout.strip().splitlines()[-1])
    assert result["status"] == "completed"
    adapter = Path(result["dir"]) / "final" / "adapter_model.safetensors"
    weights = load_file(adapter)
    name = sorted(weights)[0]
    weights[name][0] = float("nan")
    save_file(weights, adapter)
    proc = studio("export", result["id"], "--out", str(tmp_path / "out"), "--gguf", "--quant", "f16")
    assert proc.returncode != 0 and name in proc.stderr and "non-finite" in proc.stderr
    assert not (tmp_path / "out").exists()
