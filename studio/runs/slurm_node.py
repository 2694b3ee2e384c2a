"""The task of each node of a studio Slurm job (`python -m studio.runs.slurm_node RUN_DIR`, started by srun
from the script slurm.py writes): this node's layout (its rank from SLURM_NODEID, the first node as the
rendezvous), then its trainer through the same launcher as a local run, in the foreground, passing Slurm's
SIGTERM on so that the trainer saves before it goes.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
from pathlib import Path

from studio.runs.folder import Run
from studio.runs.launcher import launch, read_layout, stop_targets, write_layout
from studio.runs.slurm import node_folder


def run_node(run_dir: Path) -> int:
    """One node's task: this node's layout (its rank, the first node as the rendezvous), then its trainer,
    in the foreground (the Slurm task lasts as long as the trainer)."""
    run = Run(run_dir)
    rank = int(os.environ.get("SLURM_NODEID", "0"))
    nodes = int(os.environ.get("SLURM_JOB_NUM_NODES", os.environ.get("SLURM_NNODES", "1")))
    main_address = os.environ.get("STUDIO_MAIN_ADDRESS", "127.0.0.1")
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
    node.update_status_file(slurm_job=os.environ.get("SLURM_JOB_ID", ""))
    proc = launch(node, resume=resume)

    def graceful(signum: int, frame: object) -> None:
        # scancel --signal=TERM and a time limit reach this task, not the trainer (its own session): pass
        # the stop on, so that it finishes its step and saves before Slurm's KillWait runs out.
        for pid in stop_targets(proc.pid):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, graceful)
    signal.signal(signal.SIGINT, graceful)
    while True:
        try:
            return proc.wait()
        except InterruptedError:
            continue


def main(argv: list[str]) -> int:
    if len(argv) == 1:
        return run_node(Path(argv[0]).resolve())
    print("usage: python -m studio.runs.slurm_node RUN_DIR (the task of each node of a studio Slurm job)",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
