"""Two machines over TCP, for real, on one box: a profile with num_machines = 2 and main_address 127.0.0.1,
started as `studio run PROFILE --node-rank 0` and `--node-rank 1` from two studio homes (each its own run
folder, as on two machines), training as one world of 2 over gloo; then stop, a killed machine, a frozen one,
and resume on both."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest

from conftest import DEMO_DATA, studio, write_profile
from studio.runs.events import End, Start, Step, read_events
from studio.runs.folder import Run
from studio.runs.state import run_status
from test_containment import trainers_of
from waiting import wait_for

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def home_of(tmp_path: Path, rank: int) -> Path | None:
    """Machine 0 is the test's own studio home; machine 1 has another, as a second machine would."""
    return None if rank == 0 else tmp_path / "machine-1-home"


def two_machines(tmp_path: Path, steps: int, name: str, **hardware: object) -> tuple[Run, Run]:
    profile = write_profile(tmp_path / f"{name}.toml", DEMO_DATA, train={"max_steps": steps, "save_steps": 5},
                            hardware={"num_machines": 2, "main_address": "127.0.0.1", "main_port": free_port(),
                                      **hardware})
    runs = []
    for rank in (0, 1):
        out = studio("run", str(profile), "--node-rank", str(rank), "--detach", "--json", home=home_of(tmp_path, rank))
        assert out.returncode == 0, out.stderr
        runs.append(Run(Path(json.loads(out.stdout)["dir"])))
    assert runs[1].dir.is_relative_to(tmp_path / "machine-1-home")
    return runs[0], runs[1]


def steps_of(run: Run) -> list[int]:
    return [e.step for e in read_events(run.events_path) if isinstance(e, Step)]


def kill_machine(run: Run, sig: int = signal.SIGKILL) -> None:
    for pid in trainers_of(run.dir):
        try:
            os.killpg(pid, sig)
        except OSError:
            pass


def ended(run: Run) -> End | None:
    ends = [e for e in read_events(run.events_path) if isinstance(e, End)]
    return ends[-1] if ends else None


def test_two_machines_train_as_one_world_to_the_last_step(tmp_path: Path) -> None:
    main, other = two_machines(tmp_path, 10, "mn")
    wait_for(lambda: run_status(main) != "running" and run_status(other) != "running", what="both machines",
             state=lambda: (main.log_path.read_text()[-2000:] + other.log_path.read_text()[-2000:]))
    assert run_status(main) == "completed" and run_status(other) == "completed"
    steps = [e for e in read_events(main.events_path) if isinstance(e, Step)]
    assert steps and steps[-1].step == 10
    assert (main.final_dir / "adapter_model.safetensors").is_file()
    start = [e for e in read_events(other.events_path) if isinstance(e, Start)][-1]
    assert start.node_rank == 1 and "2 machines" in start.job and "this is machine 1" in start.job
    assert ended(other).status == "completed"  # it ends with its job
    assert json.loads((main.dir / "launch.json").read_text())["num_machines"] == 2


def test_stop_on_the_main_machine_stops_both_and_resume_continues_on_both(tmp_path: Path) -> None:
    main, other = two_machines(tmp_path, 100000, "mnstop")
    wait_for(lambda: len([e for e in read_events(main.events_path) if isinstance(e, Step)]) >= 3, what="3 steps",
             state=lambda: main.log_path.read_text()[-2000:])
    stop = studio("stop", str(main.dir))
    assert stop.returncode == 0, stop.stderr
    wait_for(lambda: run_status(other) != "running", what="the other machine to stop with its job")
    assert ended(main).status == "stopped" and ended(other).status == "stopped", (ended(main), ended(other))
    stopped_at = ended(main).step
    for run in (main, other):
        out = studio("resume", str(run.dir), "--detach")
        assert out.returncode == 0, out.stderr
    wait_for(lambda: any(e.step > stopped_at for e in read_events(main.events_path) if isinstance(e, Step)),
             what="steps after the resume", state=lambda: main.log_path.read_text()[-2000:])
    for run in (main, other):
        studio("stop", str(run.dir), "--force")
    wait_for(lambda: not trainers_of(main.dir) and not trainers_of(other.dir), what="both gone", timeout=120)


def test_a_killed_rank_on_the_other_machine_ends_the_job_with_a_clear_record(tmp_path: Path) -> None:
    main, other = two_machines(tmp_path, 100000, "mnkill")
    wait_for(lambda: len([e for e in read_events(main.events_path) if isinstance(e, Step)]) >= 3, what="3 steps")
    kill_machine(other)
    wait_for(lambda: run_status(main) != "running", what="the main machine to notice",
             state=lambda: main.log_path.read_text()[-2000:])
    end = ended(main)
    assert run_status(main) == "failed" and end.error_kind == "lost_machine"
    assert "lost a process" in end.message and "this is machine 0" in end.message, end.message
    assert run_status(other) == "crashed"
    wait_for(lambda: not trainers_of(main.dir), what="the main machine's processes to go", timeout=120)


def test_a_machine_killed_mid_run_then_both_resumed_continue_from_one_step_to_the_end(tmp_path: Path) -> None:
    main, other = two_machines(tmp_path, 30, "mnresume")
    # Killed once machine 1 holds a checkpoint: it saves its own copy of each (the main machine's disk is not its).
    wait_for(lambda: 10 in other.complete_checkpoints() and max(steps_of(main), default=0) >= 12,
             what="machine 1's checkpoint-10", state=lambda: other.log_path.read_text()[-2000:])
    kill_machine(other)
    wait_for(lambda: run_status(main) != "running", what="the main machine to notice",
             state=lambda: main.log_path.read_text()[-2000:])
    for rank, run in enumerate((main, other)):
        out = studio("resume", str(run.dir), "--detach", home=home_of(tmp_path, rank))
        assert out.returncode == 0, out.stderr
    wait_for(lambda: run_status(main) != "running" and run_status(other) != "running", what="both to finish",
             state=lambda: main.log_path.read_text()[-2000:] + other.log_path.read_text()[-2000:])
    assert run_status(main) == "completed" and run_status(other) == "completed", (ended(main), ended(other))
    starts = [[e for e in read_events(run.events_path) if isinstance(e, Start)][-1] for run in (main, other)]
    resumed = [Path(s.resumed_from).name if s.resumed_from else None for s in starts]
    assert resumed[0] is not None and resumed[0] == resumed[1], resumed  # one step for the whole job
    step = int(resumed[0].split("-")[1])
    assert step >= 10
    after = steps_of(main)[steps_of(main).index(step + 1, 1 if step else 0):] if step + 1 in steps_of(main) else []
    assert after and after[-1] == 30 and after[0] == step + 1


def test_a_frozen_machine_fails_the_job_within_the_collective_timeout_and_a_stop_still_ends(tmp_path: Path) -> None:
    main, other = two_machines(tmp_path, 100000, "mnfrozen", collective_timeout=0.25)
    wait_for(lambda: len(steps_of(main)) >= 3, what="3 steps", state=lambda: main.log_path.read_text()[-2000:])
    kill_machine(other, signal.SIGSTOP)  # its sockets stay open: nothing tells the main machine it is gone
    try:
        stop = studio("stop", str(main.dir), "--timeout", "120")
        assert stop.returncode == 0, stop.stderr
        wait_for(lambda: run_status(main) != "running", what="the job to fail", timeout=120,
                 state=lambda: main.log_path.read_text()[-2000:])
        end = ended(main)
        assert run_status(main) == "failed" and end.error_kind == "lost_machine", end
        assert "machine 1" in end.message and "15 s" in end.message, end.message
        # What this machine could keep without the other: the adapter of the last step both finished.
        assert "saved the weights of step" in end.message and (main.final_dir / "adapter_model.safetensors").is_file()
    finally:
        kill_machine(other, signal.SIGKILL)
    wait_for(lambda: not trainers_of(main.dir), what="the main machine's processes to go", timeout=120)
