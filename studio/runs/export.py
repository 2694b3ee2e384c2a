"""Exporting a run's result (the adapter, or a merged model): checked here, done by
`python -m studio.trainer.export` in its own process (it loads the training stack)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from studio.runs.files import EXPORT_MARKER
from studio.runs.folder import Run, RunError
from studio.runs.state import run_status
from studio.runs.status import RunStatus


def check_exportable(run: Run, checkpoint: int | None = None) -> None:
    """Raises RunError when the run has nothing to export now (still running, nothing trained yet, or it
    diverged and no checkpoint was asked for)."""
    run.check_contained()
    status = run_status(run)
    if status == RunStatus.RUNNING:
        raise RunError(f"run {run.id} is still running; stop it first or wait until it ends")
    if checkpoint is not None:
        run.trained_weights(checkpoint)  # says which checkpoints there are when this one is not
        return
    if not run.has_result() and run.last_complete_checkpoint() is None:
        raise RunError(f"run {run.id} has nothing to export yet (no final/ and no complete checkpoint)")
    try:
        end = run.timeline().end
    except OSError:
        end = None
    if end is not None and end.error_kind == "diverged":
        last = run.last_complete_checkpoint()
        earlier = (f"; its last checkpoint with finite weights is {last.name}: export it with --checkpoint "
                   f"{last.name.split('-')[1]}" if last else "; no checkpoint of it has finite weights")
        raise RunError(f"run {run.id} diverged ({end.message}): it has no result that is a model{earlier}")


GGUF_BYTES_PER_PARAM = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 1.07, "q6_k": 0.82, "q5_k_m": 0.69,
                        "q5_k_s": 0.69, "q5_0": 0.69, "q5_1": 0.75, "q4_k_m": 0.61, "q4_k_s": 0.57, "q4_0": 0.57,
                        "q4_1": 0.63, "q3_k_l": 0.54, "q3_k_m": 0.49, "q3_k_s": 0.44, "q2_k": 0.41}


def export_bytes(run: Run, merge: bool, gguf: str | None) -> int | None:
    """About how much an export writes (the merged model it goes through for a GGUF included), from the
    parameter counts and dtype of the run's `start` record; None when it has none."""
    try:
        start = run.timeline().start
    except OSError:
        return None
    if start is None or not start.total_params:
        return None
    width = 4 if start.dtype == "fp32" else 2
    whole = start.total_params * width  # a merged (or fully fine-tuned) model, in the dtype it trained in
    adapter_only = start.method in ("lora", "qlora") and not merge and not gguf
    if adapter_only:
        return (start.trainable_params or 0) * 4
    return int(whole + (start.total_params * GGUF_BYTES_PER_PARAM.get(gguf, 2.0) if gguf else 0))


def free_bytes(folder: Path) -> int | None:
    """Free space where `folder` is (or would be) made."""
    import shutil

    for place in (folder, *folder.parents):
        if place.exists():
            try:
                return shutil.disk_usage(place).free
            except OSError:
                return None
    return None


def space_warning(run: Run, out: Path, merge: bool, gguf: str | None) -> str | None:
    """What to say before an export that would not fit where it goes (None when it fits or cannot be told)."""
    need, free = export_bytes(run, merge, gguf), free_bytes(out)
    if need is None or free is None or need * 1.1 < free:
        return None
    return (f"this export writes about {need / 2**30:.1f} GiB, and {out.parent} has {free / 2**30:.1f} GiB free; "
            "free space or export elsewhere")


def export_target(run: Run, out: Path, force: bool = False, checkpoint: int | None = None) -> Path:
    """The folder to write, after checking that writing it is safe and makes sense."""
    check_exportable(run, checkpoint)
    try:
        out = out.expanduser().resolve()
        run_dir = run.dir.resolve()
    except (OSError, RuntimeError) as e:
        raise RunError(f"--out {out}: {e}") from None
    if out == run_dir or run_dir in out.parents:
        raise RunError(f"--out {out} is inside the run folder; choose a folder outside {run_dir}")
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} exists and is not a folder; choose a new folder")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if entries and not force:
        raise RunError(f"{out} exists and is not empty; choose another --out or pass --force to replace an "
                       "earlier export there")
    if entries and EXPORT_MARKER not in entries:
        raise RunError(f"--out {out} holds files studio did not write ({', '.join(entries[:3])}"
                       f"{' ...' if len(entries) > 3 else ''}); --force replaces only an earlier studio export. "
                       "Choose a new or empty folder")
    return out


def check_push_name(repo_id: str) -> None:
    """A Hub repo name is checked before the export is built, not after."""
    from studio.planning.hub_models import HUB_ID

    if not HUB_ID.match(repo_id) or ".." in repo_id or repo_id.endswith((".git", ".")) or repo_id.startswith("."):
        raise RunError(f"--push {repo_id}: a Hub repo is named org/name (letters, digits and . _ -, not starting "
                       "or ending with . and without ..); nothing was exported")


def export_command(run: Run, out: Path, merge: bool, gguf: str | None = None, ollama: bool = False,
                   push: str | None = None, private: bool = False, force: bool = False,
                   checkpoint: int | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "studio.trainer.export", str(run.dir), str(out)]
    cmd += ["--merge"] if merge else []
    cmd += ["--gguf", gguf] if gguf else []
    cmd += ["--ollama"] if ollama else []
    cmd += ["--push", push] if push else []
    cmd += ["--private"] if private else []
    cmd += ["--force"] if force else []
    cmd += ["--checkpoint", str(checkpoint)] if checkpoint is not None else []
    return cmd


def export_run(run: Run, out: Path, merge: bool = False, force: bool = False, capture: bool = False,
               gguf: str | None = None, ollama: bool = False, push: str | None = None,
               private: bool = False, checkpoint: int | None = None) -> subprocess.CompletedProcess[str]:
    """Check, then export in a child process; returns it finished (its output captured when asked)."""
    if ollama and not gguf:
        raise RunError("--ollama writes a Modelfile next to a GGUF: add --gguf (q8_0 unless --quant says another)")
    if push:
        check_push_name(push)
    target = export_target(run, out, force, checkpoint)
    return subprocess.run(export_command(run, target, merge, gguf, ollama, push, private, force, checkpoint),
                          capture_output=capture, text=True)
