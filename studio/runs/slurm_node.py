"""The task of each node of a studio Slurm job (`python -m studio.runs.slurm_node RUN_DIR`, started by srun
from the script slurm.py writes): this node's layout (its rank from SLURM_NODEID, the first node as the
rendezvous), then its trainer through the same launcher as a local run, in the foreground, passing Slurm's
signals on so that the trainer saves before it goes:

- SIGTERM (`studio stop`'s scancel, a time limit, a preemption): the trainer finishes its step and saves; when
  the user did not ask, its `end` says why (the time limit, or Slurm ending the job);
- SIGUSR1, which a job submitted with slurm.requeue gets `requeue_before_s` before its time limit: the
  trainer saves, and the main node requeues the job, which continues from that step in a new allocation
  (the same run, one attempt more).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from studio.runs.folder import Run
from studio.runs.launcher import launch, read_layout, stop_targets, write_layout
from studio.runs.slurm import node_folder

REQUEUE_REASON = "the job's time limit is near: Slurm requeues it, and it continues in a new allocation"
TIME_LIMIT_S = 90  # a SIGTERM this close to the job's end time is its time limit


def job_end_time(job: str) -> float | None:
    """When Slurm's time limit ends the job (its EndTime while it runs), read as the task starts: while Slurm
    is ending the job squeue no longer says it reliably."""
    end = os.environ.get("SLURM_JOB_END_TIME", "")
    if end.isdigit():
        return float(end)
    try:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%e"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
        return datetime.fromisoformat(out).timestamp()
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None  # no time limit (UNLIMITED), or squeue unreachable


def slurm_stop_reason(job_end: float | None) -> str:
    """Why Slurm is ending the job, as far as its end time tells: the time limit, or something else."""
    if job_end is not None and time.time() >= job_end - TIME_LIMIT_S:
        return "Slurm's time limit for the job was reached: resume with more slurm.time, or set slurm.requeue"
    return "Slurm ended the job: preempted, or cancelled outside studio"


def run_node(run_dir: Path) -> int:
    """One node's task: this node's layout (its rank, the first node as the rendezvous), then its trainer,
    in the foreground (the Slurm task lasts as long as the trainer)."""
    run = Run(run_dir)
    rank = int(os.environ.get("SLURM_NODEID", "0"))
    nodes = int(os.environ.get("SLURM_JOB_NUM_NODES", os.environ.get("SLURM_NNODES", "1")))
    main_address = os.environ.get("STUDIO_MAIN_ADDRESS", "127.0.0.1")
    job = os.environ.get("SLURM_JOB_ID", "")
    requeue = os.environ.get("STUDIO_REQUEUE") == "1"
    node = node_folder(run, rank)
    layout = read_layout(run.dir)
    if layout is None:
        print(f"{run.dir} has no launch.json: not a studio run folder", file=sys.stderr)
        return 2
    layout = dataclasses.replace(layout, num_machines=nodes, machine_rank=rank, main_address=main_address,
                                 rendezvous="c10d" if nodes > 1 else layout.rendezvous)
    write_layout(node, layout)
    # The job resumes when its main node holds a checkpoint (every node sees the run folder); the trainers then
    # agree on one step for every node (studio.trainer.job_resume), so no node starts again from step 0.
    resume = run.last_complete_checkpoint() is not None
    node.update_status_file(slurm_job=job)
    job_end = job_end_time(job)
    # Slurm signals every process of the step, the trainer's too: SIGUSR1 would kill them (its default action),
    # so they inherit ignoring it, and this task alone acts on it (below).
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    proc = launch(node, resume=resume)
    requeueing = False

    def graceful(signum: int, frame: object) -> None:
        # scancel --signal=TERM and a time limit reach this task, not the trainer (its own session): pass
        # the stop on, so that it finishes its step and saves before Slurm's KillWait runs out.
        nonlocal requeueing
        if signum == signal.SIGUSR1 and not requeue:
            return
        record = node.status_file()
        if signum == signal.SIGUSR1:
            requeueing, reason = True, REQUEUE_REASON
        elif record.stop_requested_at >= record.launched_at:
            reason = ""  # the user's stop
        else:
            reason = slurm_stop_reason(job_end)
        if reason:
            node.update_status_file(stop_requested_at=time.time(), stop_reason=reason)
        for pid in stop_targets(proc.pid):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(sig, graceful)
    while True:
        try:
            code = proc.wait()
            break
        except InterruptedError:
            continue
    if requeueing and rank == 0:
        out = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
        print(f"studio: job {job} saved and " + ("requeued: it continues in a new allocation" if out.returncode == 0
              else f"could not be requeued ({out.stderr.strip()}): `studio resume` continues it"), flush=True)
    return code


def main(argv: list[str]) -> int:
    if len(argv) == 1:
        return run_node(Path(argv[0]).resolve())
    print("usage: python -m studio.runs.slurm_node RUN_DIR (the task of each node of a studio Slurm job)",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
