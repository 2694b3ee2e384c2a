"""Process control: start a run's trainer, stop it, resume it, follow it to its end.

The trainer runs in its own process session, so closing the terminal or losing
the SSH connection does not end it. Every signal goes to a process that
studio.runs.liveness has confirmed is this run's trainer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from studio.atomic import write_json, write_text
from studio.planning.layout import Layout, accelerate_config
from studio.planning.record import PlanRecord
from studio.runs.events import End, Event, EventTail, append_event
from studio.runs.files import ACCELERATE_CONFIG, LAYOUT_FILE
from studio.runs.folder import Run, RunError, skipped_checkpoints
from studio.runs.liveness import LAUNCHER_MODULE, TRAINER_MODULE, is_alive, process_start_time
from studio.runs.lock import ENV_FD, LockError, RunLock
from studio.safeopen import append_regular
from studio.runs.state import run_status
from studio.runs.status import RunStatus

EXIT_WAIT_S = 30.0  # how long a trainer that wrote its `end` may take to exit before a resume


def write_plan_files(run: Run, plan: PlanRecord) -> None:
    """plan.json (the typed record of what was decided and estimated), launch.json (read by every launch and
    resume) and, for several processes, the accelerate config the user can also reuse."""
    run.write_plan(plan)
    write_layout(run, plan.layout)


def write_layout(run: Run, layout: Layout) -> None:
    """launch.json, and for several processes the accelerate config."""
    write_json(run.dir / LAYOUT_FILE, layout.to_dict())
    if layout.distributed:
        import yaml  # comes with accelerate and transformers; only read here

        write_text(run.dir / ACCELERATE_CONFIG, yaml.safe_dump(accelerate_config(layout), sort_keys=False))


def read_layout(run_dir: Path) -> Layout | None:
    """The run's launch.json; None when missing or not a layout (the run then starts as one process)."""
    try:
        raw = json.loads((run_dir / LAYOUT_FILE).read_text(encoding="utf-8"))
        return Layout.from_dict(raw) if isinstance(raw, dict) else None
    except (OSError, ValueError, TypeError, RecursionError):
        return None


def trainer_command(run: Run, resume: bool) -> tuple[list[str], dict[str, str]]:
    """The trainer's command line (through accelerate's launcher, with studio's rendezvous, for several
    processes) and extra env."""
    run_dir = run.dir.resolve()
    layout = read_layout(run.dir)
    if layout is None or not layout.distributed:
        env = {"CUDA_VISIBLE_DEVICES": ",".join(map(str, layout.gpu_indices))} if layout and layout.gpu_indices else {}
        cmd = [sys.executable, "-m", TRAINER_MODULE]
    else:
        # accelerate's launcher with studio's rendezvous (bound where it should be: rendezvous.py); accelerate
        # sets CUDA_VISIBLE_DEVICES from the config's gpu_ids.
        cmd, env = [sys.executable, "-m", LAUNCHER_MODULE, str(run_dir), "--config_file",
                    str(run_dir / ACCELERATE_CONFIG), "-m", TRAINER_MODULE], {}
    flags = (["--resume"] if resume else []) + (["--probe"] if run.is_probe else [])
    return [*cmd, str(run_dir), *flags], env


def locked(run: Run) -> RunLock:
    """The run's lock, taken now; RunError when another live process holds it."""
    try:
        return RunLock(run.dir).acquire()
    except LockError as e:
        raise RunError(str(e)) from None


def launch(run: Run, resume: bool = False, lock: RunLock | None = None) -> subprocess.Popen[bytes]:
    """Start the trainer in its own session; it outlives this process and the terminal. The trainer inherits
    the run's lock (taken here unless the caller holds it), so only one trainer ever runs per run."""
    own = lock is None
    lock = lock or locked(run)
    try:
        return _launch(run, resume, lock)
    finally:
        if own:
            lock.release()  # the trainer holds the very same lock from here on


def _launch(run: Run, resume: bool, lock: RunLock) -> subprocess.Popen[bytes]:
    if is_alive(run):
        raise RunError(f"run {run.id} is already running (pid {run.pid})")
    cmd, extra_env = trainer_command(run, resume)
    # PCI bus order makes CUDA's device indices agree with NVML's.
    env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false", CUDA_DEVICE_ORDER="PCI_BUS_ID",
               **extra_env, **{ENV_FD: str(lock.fd)})
    try:  # the record first: nothing is spawned that the run's files do not know of
        run.update_status_file(attempts=run.status_file().attempts + 1, launched_at=time.time(), stop_reason="")
        run.check_contained()
        with os.fdopen(append_regular(run.log_path), "ab") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, env=env, cwd=run.dir, pass_fds=(lock.fd,))
    except OSError as e:
        raise RunError(f"cannot start run {run.id}: {e.strerror or e} ({run.dir}); check that the folder is "
                       "writable and has free space, and holds no links or special files") from None
    try:
        run.update_status_file(pid=proc.pid, pid_started_at=process_start_time(proc.pid), pgid=proc.pid)
    except OSError as e:  # a trainer nobody could find again must not run: undo the spawn
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()
        raise RunError(f"cannot record run {run.id}'s trainer in {run.dir}: {e.strerror or e}; it was stopped. "
                       "Free space (or make the folder writable), then resume") from None
    return proc


@dataclass(frozen=True)
class Resumed:
    proc: subprocess.Popen[bytes] | None   # the trainer started here; None for a Slurm job
    slurm_job: str = ""                    # the new Slurm job that resumes it


def resume_run(run: Run, here: bool = False) -> Resumed:
    """Start the trainer again from the last complete checkpoint (`resume_note` says from where). A run that
    was submitted to Slurm is resumed through Slurm: a new job with the same request, recorded as the run's
    job (stop, kill and the monitor follow it); `here` trains it on this machine instead, as a plain run. The
    run's lock is taken before its status is read and held until the trainer holds it (or the job is
    submitted): two resumes at once start one trainer."""
    if not run.dir.is_dir():
        raise RunError(f"run {run.id}: its folder {run.dir} no longer exists; start a new run of its profile")
    with locked_once_exited(run) as lock:
        check_resumable(run)
        record = run.status_file()
        if record.slurm_job and not here:
            from studio.runs.slurm import SlurmRequest, request_from, submit

            request = request_from(record.slurm_request) if record.slurm_request else SlurmRequest()
            return Resumed(None, submit(run, request))
        if record.slurm_job:
            run.update_status_file(slurm_job="", slurm_request=None)  # a plain run from now on
        return Resumed(launch(run, resume=True, lock=lock))


def locked_once_exited(run: Run) -> RunLock:
    """The run's lock for a resume. A trainer that has written its `end` still holds the lock while it exits
    (saving, freeing the GPU, its launcher tearing down): wait for it, up to EXIT_WAIT_S, as a resume waits
    for its process anyway. A run still going (no `end` of this attempt) is refused at once."""
    deadline = time.monotonic() + EXIT_WAIT_S
    while True:
        try:
            return locked(run)
        except RunError:
            if run_status(run).live:
                raise  # still going: there is nothing to wait for
            if time.monotonic() > deadline:
                raise RunError(f"run {run.id} wrote its end but its process has not exited after "
                               f"{EXIT_WAIT_S:.0f} s; a forced stop ends it") from None
        time.sleep(0.2)


def check_resumable(run: Run) -> None:
    run.check_contained()  # names the link or special file, rather than calling the run damaged
    status = run_status(run)
    if status.live:
        raise RunError(f"run {run.id} is still {status}; stop it first")
    if status == RunStatus.COMPLETED:
        raise RunError(f"run {run.id} already completed; start a new run instead")
    if status == RunStatus.DAMAGED:
        raise RunError(f"run {run.id} is damaged (its events cannot be read); start a new run instead")
    # A trainer that has written its `end` may still be exiting: give it the time to.
    if not wait_gone(run, EXIT_WAIT_S):
        raise RunError(f"run {run.id} wrote its end but its process has not exited after {EXIT_WAIT_S:.0f} s; "
                       "a forced stop ends it")


def resume_note(run: Run) -> str:
    """Where a resume continues from, and which newer checkpoints it passes over and why, for the user."""
    checkpoint = run.last_complete_checkpoint()
    skipped = "".join(f"; skipping {name}: {why}" for name, why in skipped_checkpoints(run.checkpoints_dir))
    if checkpoint is None:
        return f"run {run.id} has no complete checkpoint yet: it starts again from step 0{skipped}"
    return f"resuming run {run.id} from {checkpoint.name}{skipped}"


def stop_run(run: Run, force: bool = False, wait_s: float = 300.0) -> RunStatus | None:
    """Ask the trainer to stop (SIGTERM: it finishes the step and saves) or kill its whole job; a Slurm run
    through scancel. The status it ended with, or None when asked not to wait (wait_s=0) and it is stopping."""
    if run.status_file().slurm_job and run_status(run).live:
        return stop_slurm(run, force, wait_s)
    pid = run.pid
    if pid is None or not is_alive(run):
        raise RunError(f"run {run.id} is not running (status: {run_status(run)}); nothing to stop")
    if force:
        kill_job(run, pid)
        checkpoint = run.last_complete_checkpoint()
        where = f"from {checkpoint.name}" if checkpoint else "from the start (no checkpoint yet)"
        try:
            last = run.timeline().last_step
        except OSError:
            last = None
        append_event(run.events_path, End(status=RunStatus.STOPPED, forced=True, step=last.step if last else None,
                                          message="killed at once; nothing was saved at the kill",
                                          advice=f"resume continues {where}"))
        return RunStatus.STOPPED
    # Recorded first: a trainer that dies of the signal before its handler is in place still counts as stopped.
    run.update_status_file(stop_requested_at=time.time())
    for target in stop_targets(pid):
        try:
            os.kill(target, signal.SIGTERM)
        except ProcessLookupError:
            pass
    if wait_s <= 0:
        return None
    if not wait_gone(run, wait_s):
        raise RunError(f"run {run.id} did not stop within {wait_s:.0f} s; "
                       "a forced stop kills it (unsaved steps are lost)")
    return run_status(run)


def stop_slurm(run: Run, force: bool, wait_s: float) -> RunStatus:
    from studio.runs.slurm import cancel, record_ending

    queued = run_status(run) == RunStatus.QUEUED
    run.update_status_file(stop_requested_at=time.time())
    cancel(run, force or queued)  # a job still waiting has nothing to save
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and run_status(run).live:
        time.sleep(0.5)
    record_ending(run)
    return run_status(run)


def kill_job(run: Run, pid: int) -> None:
    """SIGKILL the trainer and everything it started (a launcher's ranks run in sessions of their own)."""
    targets = job_processes(pid)  # collected first: once the launcher dies its ranks are re-parented
    pgid = run.status_file().pgid
    if pgid == pid:  # only the group studio itself created
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for target in targets:
        try:
            os.kill(target, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_gone(run, 30.0)


def job_processes(leader: int) -> list[int]:
    """The trainer and everything it started."""
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
        argv = psutil.Process(leader).cmdline()
    except psutil.Error:
        return [leader]
    if not any(a == LAUNCHER_MODULE or "accelerate" in a or "torch.distributed.run" in a for a in argv):
        return [leader]
    ranks = []
    for pid in job_processes(leader)[1:]:
        try:
            if TRAINER_MODULE in psutil.Process(pid).cmdline():
                ranks.append(pid)
        except psutil.Error:
            pass
    return ranks or [leader]


def wait_gone(run: Run, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_alive(run):
            return True
        time.sleep(0.1)
    return not is_alive(run)


def events_tail(run: Run, from_start: bool = True) -> EventTail:
    """A reader of the run's events, from the beginning or from what is written next."""
    return EventTail(run.events_path, from_end=not from_start)


def follow(run: Run, on_event: Callable[[Event], None], tail: EventTail,
           proc: subprocess.Popen[bytes] | None = None, poll_s: float = 0.2) -> str:
    """Call `on_event` for each new event until the trainer process is gone; returns the final status."""
    while True:
        for record in _read(tail):
            on_event(record)
        alive = proc.poll() is None if proc is not None else is_alive(run)
        if not alive:
            for record in _read(tail):
                on_event(record)
            return run_status(run)
        time.sleep(poll_s)


def _read(tail: EventTail) -> list[Event]:
    try:
        return tail.read_new()
    except OSError:
        return []  # the folder went away or is damaged: the status says so
