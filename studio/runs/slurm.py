"""Runs on a Slurm cluster: `studio run PROFILE --slurm` writes an sbatch script into the run folder and
submits it; every node's task (`python -m studio.runs.slurm_node RUN_DIR`, in slurm_node.py) starts that node's trainer through
the same launcher as a local run, with the node rank from SLURM_NODEID and the c10d rendezvous on the first
node. The run is followed like any other: `studio runs` shows a pending job as `queued` with Slurm's reason,
`studio stop` cancels through scancel (SIGTERM first: the trainer saves), and Slurm's own endings (a time
limit, a failed node, a cancel) become clear records. The run folder must be on a filesystem every node
sees (the studio home on shared storage), as Slurm's own output files must.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

from studio.atomic import write_text
from studio.runs.events import End, append_event
from studio.runs.files import PLAN_FILE, PROFILE_FILE, SLURM_SCRIPT, STATUS_FILE
from studio.runs.folder import Run, RunError
from studio.profiles.profile import SlurmSection
from studio.runs.status import END_STATUSES, RunStatus

SLURM_ENDINGS = {
    "TIMEOUT": (RunStatus.FAILED, "the job reached its time limit", "resume with more --time (or a longer partition)"),
    "NODE_FAIL": (RunStatus.FAILED, "a node of the job failed", "resume the run: Slurm places it on healthy nodes"),
    "PREEMPTED": (RunStatus.STOPPED, "the job was preempted", "resume the run"),
    "OUT_OF_MEMORY": (RunStatus.FAILED, "Slurm killed the job for using more memory than it asked for",
                      "ask for more memory (--mem) or lower train.batch_size, then resume"),
    "CANCELLED": (RunStatus.STOPPED, "the job was cancelled", "resume the run"),
    "BOOT_FAIL": (RunStatus.FAILED, "a node failed to boot", "resume the run"),
    "DEADLINE": (RunStatus.FAILED, "the job missed its deadline", "resume the run"),
}


# Pending reasons that no amount of waiting clears: what the job asks is beyond what its partition (or QOS)
# allows. Each says what to change; `studio stop` cancels the waiting job.
NEVER_CLEARS = {
    "PartitionTimeLimit": "the job asks for more time than its partition allows: stop it and ask for less --time",
    "PartitionNodeLimit": "the job asks for more nodes than its partition has or allows: stop it and ask for fewer "
                          "--nodes (or another --partition)",
    "PartitionConfig": "no node of the partition can give what the job asks (--cpus-per-task, --mem, "
                       "--gpus-per-node or --constraint beyond its nodes, or an account or QOS it does not allow): "
                       "stop it and ask for less, or another --partition",
    "BadConstraints": "no node has the features --constraint asks for: stop it and change slurm.constraint",
    "QOSMaxWallDurationPerJobLimit": "the job asks for more time than its QOS allows: stop it and ask for less "
                                     "--time (or another --qos)",
    "QOSMaxNodePerJobLimit": "the job asks for more nodes than its QOS allows: stop it and ask for fewer --nodes",
    "QOSMaxGRESPerJob": "the job asks for more GPUs than its QOS allows: stop it and ask for fewer",
    "InvalidQOS": "the QOS asked for does not exist or is not this account's: stop it and change --qos",
    "InvalidAccount": "the account asked for does not exist or is not yours: stop it and change --account",
}


@dataclass(frozen=True)
class SlurmRequest:
    """What the job asks of Slurm: the profile's [slurm] section with the command line's flags applied."""
    nodes: int = 1
    partition: str = ""
    time: str = ""
    account: str = ""
    gpus_per_node: int = 0
    qos: str = ""
    constraint: str = ""
    mem: str = ""
    cpus_per_task: int = 0
    exclusive: bool = False
    requeue: bool = False
    requeue_before_s: int = 300
    sbatch_args: tuple[str, ...] = ()


def request_of(section: SlurmSection) -> SlurmRequest:
    return SlurmRequest(**{**asdict(section), "sbatch_args": tuple(section.sbatch_args)})


def request_from(raw: dict[str, Any]) -> SlurmRequest:
    """The request recorded in status.json (what the run was submitted with); a key of the wrong type reads as
    its default."""
    defaults = SlurmRequest()
    values = {f.name: raw[f.name] for f in fields(SlurmRequest)
              if f.name in raw and type(raw[f.name]) is type(getattr(defaults, f.name))}
    if isinstance(raw.get("sbatch_args"), list) and all(isinstance(a, str) for a in raw["sbatch_args"]):
        values["sbatch_args"] = tuple(raw["sbatch_args"])
    return SlurmRequest(**values)


def request_notes(request: SlurmRequest) -> list[str]:
    """What the request leaves to Slurm's defaults that a training job usually needs."""
    if request.cpus_per_task or request.exclusive:
        return []
    return ["the job asks Slurm for no CPUs (slurm.cpus_per_task or --cpus-per-task; or --exclusive): many "
            "clusters then give it one, and the data loader and tokenizer crawl"]


def available() -> bool:
    return shutil.which("sbatch") is not None


def script(run: Run, request: SlurmRequest) -> str:
    """The sbatch script: one task per node, each starting its node's trainer."""
    lines = ["#!/bin/bash", f"#SBATCH --job-name=studio-{run.id}"[:100], f"#SBATCH --nodes={request.nodes}",
             "#SBATCH --ntasks-per-node=1", f"#SBATCH --output={run.dir}/slurm-%j.out",
             "#SBATCH --open-mode=append"]  # a requeued job adds to its output, as the run keeps its log
    if request.gpus_per_node:
        lines.append(f"#SBATCH --gpus-per-node={request.gpus_per_node}")
    if request.cpus_per_task:
        lines.append(f"#SBATCH --cpus-per-task={request.cpus_per_task}")
    for flag, value in (("partition", request.partition), ("time", request.time), ("account", request.account),
                        ("qos", request.qos), ("constraint", request.constraint), ("mem", request.mem)):
        if value:
            lines.append(f"#SBATCH --{flag}={shlex.quote(value)}")
    if request.exclusive:
        lines.append("#SBATCH --exclusive")
    if request.requeue:  # the node task saves on the signal and requeues the job (slurm_node.py)
        lines += ["#SBATCH --requeue", f"#SBATCH --signal=USR1@{request.requeue_before_s}"]
    else:
        lines.append("#SBATCH --no-requeue")
    lines += [f"#SBATCH {arg}" for arg in request.sbatch_args]
    python = shlex.quote(sys.executable)
    lines += [
        "# The first node hosts the rendezvous, at the address Slurm itself reaches it by (NodeAddr: its hostname",
        "# may resolve to 127.0.0.1 on the node itself); every node learns its rank from SLURM_NODEID.",
        'first="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
        'addr="$(scontrol show node "$first" -o 2>/dev/null | sed -n \'s/.*NodeAddr=\\([^ ]*\\).*/\\1/p\')"',
        'export STUDIO_MAIN_ADDRESS="${addr:-$first}"',
        f"export STUDIO_REQUEUE={int(request.requeue)}",
        f"srun --kill-on-bad-exit=1 {python} -m studio.runs.slurm_node {shlex.quote(str(run.dir))}",
    ]
    return "\n".join(lines) + "\n"


def submit(run: Run, request: SlurmRequest, dry_run: bool = False) -> str:
    """Write the script into the run folder and submit it (or, dry, only write it); returns the job id or
    the script. A refusal by Slurm (an invalid partition, say) ends the run as failed with Slurm's words."""
    text = script(run, request)
    write_text(run.dir / SLURM_SCRIPT, text)
    if dry_run:
        return text
    if not available():
        raise RunError("sbatch is not on the PATH: run this on a Slurm login node (or drop --slurm)")
    proc = subprocess.run(["sbatch", "--parsable", str(run.dir / SLURM_SCRIPT)], capture_output=True, text=True)
    if proc.returncode:
        why = proc.stderr.strip().removeprefix("sbatch: error: ") or "sbatch failed"
        append_event(run.events_path, End(status=RunStatus.FAILED, error_kind="slurm", message=f"Slurm refused the job: {why}",
                                          advice="change the --partition, --time, --account or --nodes asked for "
                                                 "and start the run again"))
        raise RunError(f"Slurm refused the job: {why}")
    job = proc.stdout.strip().split(";")[0]
    run.update_status_file(slurm_job=job, launched_at=time.time())  # each node task's launch counts an attempt
    return job


def job_of(run: Run) -> str | None:
    return run.status_file().slurm_job_id


def job_state(job: str) -> tuple[str, str] | None:
    """(Slurm's state, its reason) for a job, from squeue while it is known there, then scontrol."""
    try:
        proc = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T|%r"], capture_output=True, text=True, timeout=30)
        if proc.returncode == 0 and proc.stdout.strip():
            state, _, reason = proc.stdout.strip().splitlines()[0].partition("|")
            return state, reason
        proc = subprocess.run(["scontrol", "show", "job", job, "-o"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode or "JobState=" not in proc.stdout:
        return None
    fields = dict(part.split("=", 1) for part in proc.stdout.split() if "=" in part)
    return fields.get("JobState", "UNKNOWN"), fields.get("Reason", "None")


def slurm_status(run: Run, events_status: RunStatus | None) -> tuple[RunStatus, str] | None:
    """The status of a Slurm run, and what to say of it: queued (with Slurm's reason) while pending, running
    while Slurm runs it, else the events' word, or Slurm's ending when the trainer could not write one."""
    job = job_of(run)
    if job is None:
        return None
    state = job_state(job)
    if state is None:
        return None
    name, reason = state
    if name == "PENDING":
        why = f"waiting for Slurm: {reason}"
        if reason in NEVER_CLEARS:
            why += f" ({NEVER_CLEARS[reason]})"
        return RunStatus.QUEUED, why
    if name in ("RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED") and events_status not in END_STATUSES:
        return RunStatus.RUNNING, f"Slurm job {job} {name.lower()}"
    if events_status in END_STATUSES:
        return events_status, ""
    ending = SLURM_ENDINGS.get(name.split()[0])
    if ending:
        return ending[0], f"{ending[1]} (Slurm job {job}, {name}); {ending[2]}"
    return None


def record_ending(run: Run) -> None:
    """An `end` record for a job Slurm ended before its trainer could write one (a time limit, a dead node)."""
    job = job_of(run)
    state = job_state(job) if job else None
    if state is None:
        return
    ending = SLURM_ENDINGS.get(state[0].split()[0])
    if ending is None:
        return
    try:
        tl = run.timeline()
    except OSError:
        return
    if tl.end is not None and tl.end.time >= run.status_file().launched_at:
        return
    status, message, advice = ending
    append_event(run.events_path, End(status=status, error_kind="slurm" if status == RunStatus.FAILED else None,
                                      message=f"{message} (Slurm job {job}, {state[0]})", advice=advice))


def cancel(run: Run, force: bool) -> None:
    """scancel: SIGTERM to every task first (the trainer finishes its step and saves), or the job at once."""
    job = job_of(run)
    if job is None:
        raise RunError(f"run {run.id} has no Slurm job")
    cmd = ["scancel", job] if force else ["scancel", "--signal=TERM", job]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RunError(f"scancel {job} failed: {proc.stderr.strip()}")


# ------------------------------------------------------------------------------------------- the node task

def node_folder(run: Run, rank: int) -> Run:
    """Node 0 trains in the run folder; every other node in its own folder inside it (its events say which job
    it belongs to), each with the layout for its rank."""
    if rank == 0:
        return run
    node = Run(run.dir / f"node-{rank}")
    node.dir.mkdir(mode=0o700, exist_ok=True)
    for name in (PROFILE_FILE, PLAN_FILE):
        if not (node.dir / name).exists():
            shutil.copy2(run.dir / name, node.dir / name)
    if not (node.dir / STATUS_FILE).exists():
        node.update_status_file(profile=run.status_file().profile, created_at=time.time())
    return node
