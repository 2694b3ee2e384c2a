"""Run directories: create them, launch and stop the trainer, tell what state a run is in.

A run is a folder under `<studio home>/runs/<id>/`:
  profile.toml    the frozen profile the run trains with
  status.json     pid of the trainer process group, state, attempts
  events.jsonl    telemetry (see studio.events)
  trainer.log     the trainer's stdout and stderr
  preflight.json  dataset statistics
  checkpoints/    checkpoint-<step>/ folders (complete ones hold trainer_state.json)
  final/          the adapter (PEFT) or the full model, written at the end or on stop
The trainer runs in its own process session, so closing the terminal or losing
the SSH connection does not end it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from studio.atomic import write_json, write_text
from studio.events import END_STATUSES, EVENTS_FILE, EventTail, EventWriter, Timeline, load_timeline
from studio.paths import runs_dir

PROFILE_FILE = "profile.toml"
STATUS_FILE = "status.json"
LOG_FILE = "trainer.log"
CHECKPOINTS = "checkpoints"
FINAL = "final"


class RunError(Exception):
    """A run command that cannot be carried out; the message says why and what to do."""


@dataclass(frozen=True)
class Run:
    dir: Path

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def events_path(self) -> Path:
        return self.dir / EVENTS_FILE

    @property
    def log_path(self) -> Path:
        return self.dir / LOG_FILE

    @property
    def profile_path(self) -> Path:
        return self.dir / PROFILE_FILE

    def read_status_file(self) -> dict[str, Any]:
        try:
            data = json.loads((self.dir / STATUS_FILE).read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, json.JSONDecodeError):
            return {}

    def update_status_file(self, **fields: Any) -> None:
        data = self.read_status_file()
        data.update(fields)
        write_json(self.dir / STATUS_FILE, data)

    @property
    def pid(self) -> int | None:
        pid = self.read_status_file().get("pid")
        return pid if isinstance(pid, int) else None

    def is_alive(self) -> bool:
        pid = self.pid
        return pid is not None and trainer_alive(pid, self.dir)

    def timeline(self) -> Timeline:
        return load_timeline(self.dir)

    def status(self, timeline: Timeline | None = None) -> str:
        """running, completed, stopped, failed, or crashed (process gone without an `end`).

        An `end` written after the latest launch counts even while the process is still
        exiting; an older one (the attempt before a resume) does not.
        """
        end = (timeline or self.timeline()).end
        alive = self.is_alive()
        if end and end.get("status") in END_STATUSES:
            launched = self.read_status_file().get("launched_at") or 0
            if not alive or (end.get("time") or 0) >= launched:
                return end["status"]
        return "running" if alive else "crashed"

    def summary(self) -> dict[str, Any]:
        tl = self.timeline()
        last = tl.last_step or {}
        status_file = self.read_status_file()
        start = tl.start or {}
        return {
            "id": self.id,
            "profile": status_file.get("profile", ""),
            "status": self.status(tl),
            "dir": str(self.dir),
            "step": last.get("step", 0),
            "max_steps": last.get("max_steps", start.get("max_steps")),
            "loss": last.get("loss"),
            "started_at": status_file.get("created_at"),
            "ended_at": tl.end.get("time") if tl.end else None,
            "error_kind": tl.end.get("error_kind") if tl.end else None,
        }

    def last_complete_checkpoint(self) -> Path | None:
        return last_complete_checkpoint(self.dir / CHECKPOINTS)


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The highest checkpoint-N that holds trainer_state.json (written last, so the save finished)."""
    best: tuple[int, Path] | None = None
    if not folder.is_dir():
        return None
    for child in folder.iterdir():
        m = re.fullmatch(r"checkpoint-(\d+)", child.name)
        if m and (child / "trainer_state.json").is_file():
            step = int(m.group(1))
            if best is None or step > best[0]:
                best = (step, child)
    return best[1] if best else None


def trainer_alive(pid: int, run_dir: Path) -> bool:
    """True when `pid` is a live (not zombie) process working on `run_dir`.

    Checking the command line guards against a recycled pid after a reboot.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    proc = Path(f"/proc/{pid}")
    if proc.exists():
        try:
            stat = (proc / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                return False
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return False
        return str(run_dir.resolve()) in cmdline or run_dir.name in cmdline
    return True


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "run"


def create_run(profile_text: str, profile_name: str, home_runs: Path | None = None) -> Run:
    """A new run folder holding the frozen profile. Ids sort by creation time."""
    base = home_runs or runs_dir()
    base.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    slug = _slug(profile_name)
    for n in range(1, 1000):
        run_id = f"{stamp}-{slug}" if n == 1 else f"{stamp}-{slug}-{n}"
        try:
            (base / run_id).mkdir()
        except FileExistsError:
            continue
        run = Run(base / run_id)
        write_text(run.profile_path, profile_text)
        write_json(run.dir / STATUS_FILE, {"profile": profile_name, "created_at": time.time(),
                                           "host": socket.gethostname(), "attempts": 0})
        return run
    raise RunError(f"cannot create a run folder under {base}: too many runs started this second")


def trainer_command(run: Run, resume: bool, probe: bool = False) -> tuple[list[str], dict[str, str]]:
    """The trainer's command line (through `accelerate launch` for several processes) and extra env."""
    from studio.distributed import launch_prefix, read_layout

    prefix, env = launch_prefix(run.dir.resolve(), read_layout(run.dir))
    cmd = [*prefix, str(run.dir.resolve())]
    if resume:
        cmd.append("--resume")
    if probe:
        cmd.append("--probe")
    return cmd, env


def launch(run: Run, resume: bool = False, probe: bool = False) -> subprocess.Popen[bytes]:
    """Start the trainer in its own session; it outlives this process and the terminal."""
    if run.is_alive():
        raise RunError(f"run {run.id} is already running (pid {run.pid}); follow it with `studio logs {run.id} --follow`")
    # PCI bus order makes CUDA's device indices agree with NVML's.
    cmd, extra_env = trainer_command(run, resume, probe)
    env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false", CUDA_DEVICE_ORDER="PCI_BUS_ID",
               **extra_env)
    with run.log_path.open("ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env=env, cwd=run.dir,
        )
    attempts = int(run.read_status_file().get("attempts", 0)) + 1
    run.update_status_file(pid=proc.pid, pgid=proc.pid, launched_at=time.time(), attempts=attempts, state="running")
    return proc


def resume_run(run: Run) -> subprocess.Popen[bytes]:
    status = run.status()
    if status == "running":
        raise RunError(f"run {run.id} is still running; stop it first with `studio stop {run.id}`")
    if status == "completed":
        raise RunError(f"run {run.id} already completed; start a new run with `studio run` instead")
    if run.last_complete_checkpoint() is None and status != "failed":
        print(f"note: run {run.id} has no complete checkpoint yet; it starts again from step 0", file=sys.stderr)
    return launch(run, resume=True)


def stop_run(run: Run, force: bool = False, wait_s: float = 300.0) -> str:
    """Ask the trainer to stop (SIGTERM: it finishes the step and saves) or kill its group."""
    pid = run.pid
    if pid is None or not run.is_alive():
        raise RunError(f"run {run.id} is not running (status: {run.status()}); nothing to stop")
    if force:
        # Collect the whole tree first: once the launcher dies its ranks are re-parented.
        targets = job_processes(pid)
        try:
            os.killpg(run.read_status_file().get("pgid", pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
        for target in targets:
            try:
                os.kill(target, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _wait_gone(run, 30.0)
        checkpoint = run.last_complete_checkpoint()
        where = f"from {checkpoint.name}" if checkpoint else "from the start (no checkpoint yet)"
        writer = EventWriter(run.events_path)
        writer.write("end", status="stopped", forced=True, step=(run.timeline().last_step or {}).get("step"),
                     message="killed by `studio stop --force`; nothing was saved at the kill",
                     advice=f"`studio resume {run.id}` continues {where}")
        writer.close()
        run.update_status_file(state="stopped")
        return "stopped"
    for target in stop_targets(pid):
        try:
            os.kill(target, signal.SIGTERM)
        except ProcessLookupError:
            pass
    if wait_s <= 0:
        return "stopping"
    if not _wait_gone(run, wait_s):
        raise RunError(f"run {run.id} did not stop within {wait_s:.0f} s; "
                       f"`studio stop {run.id} --force` kills it (unsaved steps are lost)")
    return run.status()


def job_processes(leader: int) -> list[int]:
    """The trainer and everything it started (a launcher's ranks run in sessions of their own)."""
    import psutil

    try:
        root = psutil.Process(leader)
        return [leader] + [c.pid for c in root.children(recursive=True)]
    except psutil.Error:
        return []


def stop_targets(leader: int) -> list[int]:
    """Who gets the graceful SIGTERM: the trainer itself, or, under a launcher, every rank.

    A launcher that gets SIGTERM kills its ranks after a short grace period, which
    could cut a checkpoint save short; the ranks stop together and it exits after them.
    """
    try:
        cmdline = Path(f"/proc/{leader}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return [leader]
    if "accelerate" not in cmdline and "torch.distributed.run" not in cmdline:
        return [leader]
    ranks = []
    for pid in job_processes(leader)[1:]:
        try:
            if b"studio.trainer" in Path(f"/proc/{pid}/cmdline").read_bytes():
                ranks.append(pid)
        except OSError:
            pass
    return ranks or [leader]


def _wait_gone(run: Run, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not run.is_alive():
            return True
        time.sleep(0.1)
    return not run.is_alive()


def list_runs(base: Path | None = None) -> list[Run]:
    base = base or runs_dir()
    if not base.is_dir():
        return []
    return sorted((Run(d) for d in base.iterdir() if (d / PROFILE_FILE).is_file()), key=lambda r: r.id)


def find_run(ref: str, base: Path | None = None) -> Run:
    """A run by id, unique id prefix, path, or `last`."""
    path = Path(ref).expanduser()
    if (path / PROFILE_FILE).is_file():
        return Run(path.resolve())
    runs = list_runs(base)
    if ref in ("last", "latest"):
        if not runs:
            raise RunError("there are no runs yet; start one with `studio run PROFILE`")
        return runs[-1]
    exact = [r for r in runs if r.id == ref]
    if exact:
        return exact[0]
    matches = [r for r in runs if r.id.startswith(ref) or ref in r.id]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RunError(f"no run matches {ref!r}; `studio runs` lists them")
    raise RunError(f"{ref!r} matches {len(matches)} runs ({', '.join(r.id for r in matches[:5])}); give more of the id")


def events_tail(run: Run, from_start: bool = True) -> EventTail:
    """A reader of the run's events, from the beginning or from what is written next."""
    tail = EventTail(run.events_path)
    if not from_start and run.events_path.exists():
        tail.offset = run.events_path.stat().st_size
    return tail


def follow(run: Run, on_event: Callable[[dict[str, Any]], None], tail: EventTail,
           proc: subprocess.Popen[bytes] | None = None, poll_s: float = 0.2) -> str:
    """Call `on_event` for each new event until the trainer process is gone; returns the final status."""
    while True:
        for record in tail.read_new():
            on_event(record)
        alive = proc.poll() is None if proc is not None else run.is_alive()
        if not alive:
            for record in tail.read_new():
                on_event(record)
            return run.status()
        time.sleep(poll_s)
