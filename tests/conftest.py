"""Shared fixtures: an isolated studio home, offline hub, small profiles and datasets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import pytest
import tomli_w

REPO = Path(__file__).resolve().parent.parent
DEMO_DATA = REPO / "profiles" / "data" / "tiny-chat.jsonl"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if any(item.get_closest_marker("gpu") for item in items):
        import torch

        if not torch.cuda.is_available():
            skip = pytest.mark.skip(reason="needs a CUDA GPU")
            for item in items:
                if item.get_closest_marker("gpu"):
                    item.add_marker(skip)


@pytest.fixture(autouse=True)
def studio_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "studio-home"
    monkeypatch.setenv("STUDIO_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    yield home
    stop_leftover_processes(tmp_path)


def stop_leftover_processes(tmp_path: Path) -> None:
    """After each test: a trainer or generation process that still works in this test's folder (a test that
    failed before its own clean-up) is killed, so that it cannot slow every test after it."""
    import psutil

    folder = str(tmp_path)
    for proc in psutil.process_iter(["pid", "cmdline"]):
        argv = proc.info["cmdline"] or []
        if any(folder in a for a in argv) and any(a.startswith(("studio.trainer", "studio.generate")) for a in argv):
            try:
                proc.kill()
            except psutil.Error:
                pass


def demo_rows(n: int | None = None) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in DEMO_DATA.read_text().splitlines() if line.strip()]
    return rows[:n] if n else rows


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def write_profile(path: Path, data_path: Path | str, **sections: dict[str, Any]) -> Path:
    """A small, fast profile of the tiny model; `sections` override keys per section."""
    doc: dict[str, Any] = {
        "model": {"name": "builtin:tiny-llama"},
        "method": {"type": "lora", "rank": 8, "alpha": 16.0, "dropout": 0.0},
        "data": {"path": str(data_path), "max_length": 96},
        "train": {"max_steps": 12, "batch_size": 8, "grad_accum": 1, "learning_rate": 3e-3,
                  "gradient_checkpointing": False, "logging_steps": 1, "save_steps": 4, "save_total_limit": 3,
                  "warmup_ratio": 0.0, "optimizer": "adamw"},
    }
    for name, values in sections.items():
        doc.setdefault(name, {}).update(values)
    path.write_text(tomli_w.dumps(doc))
    return path


def studio(*args: str, timeout: float | None = None, check: bool = False,
           home: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `studio` CLI in a subprocess (in another studio home when `home` is given: a second
    machine). The timeout is only a bound against a hang (waiting.DEADLINE_S); when it fires, the output so far
    is in the failure."""
    from waiting import DEADLINE_S

    try:
        proc = subprocess.run([sys.executable, "-m", "studio", *args], capture_output=True, text=True,
                              timeout=timeout or DEADLINE_S,
                              env=dict(os.environ, **({"STUDIO_HOME": str(home)} if home else {})))
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        raise AssertionError(f"studio {' '.join(args)} still running after {e.timeout:.0f} s\n"
                             f"stdout:\n{out[-4000:]}\nstderr:\n{err[-4000:]}") from None
    if check and proc.returncode != 0:
        raise AssertionError(f"studio {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc
