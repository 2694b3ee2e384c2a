"""Exporting a run's result (the adapter, or a merged model): checked here, done by
`python -m studio.trainer.export` in its own process (it loads the training stack)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from studio.runs.folder import Run, RunError
from studio.runs.state import run_status


def check_exportable(run: Run) -> None:
    """Raises RunError when the run has nothing to export now (still running, or nothing trained yet)."""
    run.check_contained()
    status = run_status(run)
    if status == "running":
        raise RunError(f"run {run.id} is still running; stop it first or wait until it ends")
    if not run.has_result() and run.last_complete_checkpoint() is None:
        raise RunError(f"run {run.id} has nothing to export yet (no final/ and no complete checkpoint)")


def export_target(run: Run, out: Path, force: bool = False) -> Path:
    """The folder to write, after checking that writing it is safe and makes sense."""
    check_exportable(run)
    try:
        out = out.expanduser().resolve()
        run_dir = run.dir.resolve()
    except (OSError, RuntimeError) as e:
        raise RunError(f"--out {out}: {e}") from None
    if out == run_dir or run_dir in out.parents:
        raise RunError(f"--out {out} is inside the run folder; choose a folder outside {run_dir}")
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} exists and is not a folder; choose a new folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise RunError(f"{out} exists and is not empty; choose another --out or pass --force to overwrite")
    return out


def export_command(run: Run, out: Path, merge: bool, gguf: str | None = None, ollama: bool = False,
                   push: str | None = None, private: bool = False, force: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "studio.trainer.export", str(run.dir), str(out)]
    cmd += ["--merge"] if merge else []
    cmd += ["--gguf", gguf] if gguf else []
    cmd += ["--ollama"] if ollama else []
    cmd += ["--push", push] if push else []
    cmd += ["--private"] if private else []
    cmd += ["--force"] if force else []
    return cmd


def export_run(run: Run, out: Path, merge: bool = False, force: bool = False, capture: bool = False,
               gguf: str | None = None, ollama: bool = False, push: str | None = None,
               private: bool = False) -> subprocess.CompletedProcess[str]:
    """Check, then export in a child process; returns it finished (its output captured when asked)."""
    if ollama and not gguf:
        raise RunError("--ollama writes a Modelfile next to a GGUF: add --gguf q8_0 (or another --quant)")
    target = export_target(run, out, force)
    return subprocess.run(export_command(run, target, merge, gguf, ollama, push, private, force),
                          capture_output=capture, text=True)
