"""One run, whole: its frozen profile, the plan and why each auto was decided, the devices and versions it
ran with (for `studio describe` and the app's d key); the user's note on it; and deleting or archiving a
run that is over."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from studio.atomic import write_text
from studio.paths import archive_dir, runs_dir
from studio.runs.files import NOTE_FILE, PROFILE_FILE
from studio.runs.folder import Run, RunError
from studio.runs.state import run_status, summarize
from studio.safeopen import read_regular
from studio.runs.status import RunStatus

PROFILE_BYTES = 256 * 1024  # a profile is a page of TOML; more is not shown
NOTE_CHARS = 2000           # a note is a line or a paragraph; a longer one is refused


def write_note(run: Run, text: str) -> None:
    """Keep `text` as the run's note (atomically); an empty one removes the note."""
    text = text.strip()
    if len(text) > NOTE_CHARS:
        raise RunError(f"a note is at most {NOTE_CHARS} characters (this one has {len(text)}); keep it short, "
                       "or write longer notes beside the run")
    own_run_folder(run, "writes notes in")
    path = run.dir / NOTE_FILE
    try:
        if text:
            write_text(path, text + "\n")
        else:
            path.unlink(missing_ok=True)
    except OSError as e:
        raise RunError(f"cannot write the note in {run.dir}: {e.strerror or e}") from None


def own_run_folder(run: Run, verb: str, base: Path | None = None) -> None:
    """Refuse a link, or a folder outside studio's runs folder (or `base`, the archive): studio changes only run
    folders it made."""
    folder, base = run.dir, base or runs_dir()
    if folder.is_symlink():
        raise RunError(f"{folder} is a link; studio {verb} only run folders it made")
    try:
        inside = folder.resolve().parent == base.resolve()
    except OSError as e:
        raise RunError(f"cannot resolve {folder}: {e.strerror or e}") from None
    if not inside:
        raise RunError(f"{folder} is not in studio's {'runs' if base == runs_dir() else 'archive'} folder ({base}); "
                       f"studio {verb} only its own runs")


def describe(run: Run) -> dict[str, Any]:
    """Everything about the run that explains it, as plain data."""
    summary = summarize(run)
    plan = run.plan()
    try:
        start = run.timeline().start if summary.status != RunStatus.DAMAGED else None
    except OSError:
        start = None
    try:
        profile_text = read_regular(run.dir / PROFILE_FILE, PROFILE_BYTES).decode("utf-8", errors="replace")
    except OSError as e:
        profile_text = f"(cannot read {PROFILE_FILE}: {e.strerror or e})"
    decisions = list(plan.final.decisions) if plan else []
    record = run.status_file()
    slurm = {"job": record.slurm_job, "request": record.slurm_request or {}} if record.slurm_job else None
    return {
        "id": run.id, "dir": str(run.dir), "status": summary.status, "problem": summary.problem,
        "profile_name": summary.profile, "step": summary.step, "max_steps": summary.max_steps,
        "model": plan.model if plan else None, "method": plan.final.profile.method.type if plan else None,
        "layout": plan.layout.to_dict() if plan else None, "gpus": list(plan.gpus) if plan else [],
        "estimate": {"peak_vram_gib": plan.peak_vram_gib, "tokens_per_s": plan.tokens_per_s} if plan else None,
        "decisions": [d.to_dict() for d in decisions],
        "devices": list(start.devices) if start else [], "dtype": start.dtype if start else None,
        "optimizer": start.optimizer if start else None, "torch": start.torch if start else None,
        "profile": profile_text, "note": summary.note, "slurm": slurm, "attempts": record.attempts,
    }


def describe_lines(info: dict[str, Any]) -> list[str]:
    """The description for a terminal (the caller escapes what came from files)."""
    def on_off(value: object) -> str:
        return {True: "on", False: "off"}.get(value, str(value)) if isinstance(value, bool) else str(value)

    steps = f"step {info['step']}/{info['max_steps'] or '?'}"
    lines = [f"run {info['id']}  status {info['status']}  {steps}", f"folder {info['dir']}"]
    if info.get("note"):
        lines.append(f"note: {info['note']}")
    if info["problem"]:
        lines.append(f"problem: {info['problem']}")
    if info.get("slurm"):
        asked = ", ".join(f"{k} {v}" for k, v in info["slurm"]["request"].items() if v)
        lines.append(f"Slurm job {info['slurm']['job']}" + (f" ({asked})" if asked else ""))
    if info["model"]:
        layout = info["layout"] or {}
        lines.append(f"model {info['model']} · {info['method']} · {layout.get('processes', 1)} process(es), "
                     f"{layout.get('strategy', '?')}")
    estimate = info["estimate"] or {}
    if estimate.get("peak_vram_gib") is not None:
        rate = f", ~{estimate['tokens_per_s']:,.0f} tokens/s" if estimate.get("tokens_per_s") else ""
        lines.append(f"estimate {estimate['peak_vram_gib']:.1f} GiB peak per GPU{rate}")
    if info["devices"]:
        lines.append(f"ran on {', '.join(info['devices'])} ({info['dtype'] or '?'}), optimizer "
                     f"{info['optimizer'] or '?'}, torch {info['torch'] or '?'}")
    lines.append("decisions:" if info["decisions"] else "decisions: none recorded")
    lines += [f"  {d['key']} = {on_off(d.get('value'))}: {d.get('reason', '')}" for d in info["decisions"]]
    lines += ["profile (as the run holds it):", *("  " + line for line in info["profile"].splitlines())]
    return lines


def delete_run(run: Run) -> None:
    """Remove a run that is over, with everything in it. Refuses a running or queued run, a link, and
    anything outside studio's runs folder."""
    own_run_folder(run, "deletes")
    refuse_live(run)
    shutil.rmtree(run.dir)


def delete_archived_run(run_id: str) -> None:
    """Remove an archived run, with everything in it."""
    if not run_id or "/" in run_id or run_id in (".", ".."):
        raise RunError(f"not a run id: {run_id!r}")
    run = Run(archive_dir() / run_id)
    own_run_folder(run, "deletes", archive_dir())
    shutil.rmtree(run.dir)


def refuse_live(run: Run) -> None:
    status = run_status(run)
    if status.live:
        raise RunError(f"run {run.id} is {status}; stop it first (studio stop {run.id})")


def archive_run(run: Run) -> Path:
    """Move a run that is over, whole, out of the runs folder into the archive; where it went."""
    own_run_folder(run, "archives")
    refuse_live(run)
    dest = archive_dir() / run.id
    if dest.exists():
        raise RunError(f"the archive already holds a run {run.id} ({dest}); delete or move that one first")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        run.dir.rename(dest)  # the same file system (both under STUDIO_HOME): one step, nothing half-moved
    except OSError as e:
        raise RunError(f"cannot move {run.dir} to {dest}: {e.strerror or e}") from None
    return dest


def archived_runs() -> list[str]:
    try:
        return sorted(p.name for p in archive_dir().iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return []


def unarchive_run(run_id: str) -> Run:
    """Bring an archived run back into the runs folder (and the lists)."""
    if not run_id or "/" in run_id or run_id in (".", ".."):
        raise RunError(f"not a run id: {run_id!r}")
    source = archive_dir() / run_id
    if not source.is_dir() or source.is_symlink():
        have = archived_runs()
        raise RunError(f"the archive holds no run {run_id!r}" + (f"; it holds {', '.join(have[:8])}" if have
                                                                  else f" ({archive_dir()} is empty)"))
    dest = runs_dir() / run_id
    if dest.exists():
        raise RunError(f"{dest} exists already; delete or archive that one first")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        source.rename(dest)
    except OSError as e:
        raise RunError(f"cannot move {source} back to {dest}: {e.strerror or e}") from None
    return Run(dest)
