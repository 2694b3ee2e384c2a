"""`studio run --slurm` on a real one-node Slurm cluster (slurmctld, slurmd and munge on this machine, started
by .ci/slurm-cluster): a job followed to completed, a job stopped through scancel (the trainer saves), a job
asking more time than its partition allows shown as queued with Slurm's reason, and a refused job."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import DEMO_DATA, studio, write_profile
from waiting import wait_for


def cluster_up() -> str:
    if shutil.which("sinfo") is None:
        return "Slurm is not installed here (.ci/slurm-cluster installs and starts a one-node cluster)"
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if proc.returncode or not any(s in proc.stdout for s in ("idle", "mixed", "alloc")):
        return f"no Slurm node is up (run .ci/slurm-cluster): {proc.stderr.strip() or proc.stdout.strip()}"
    return ""


pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(cluster_up()), reason=cluster_up() or "up")]


def runs() -> dict[str, dict]:
    return {r["id"]: r for r in json.loads(studio("runs", "--json").stdout)}


def submit(tmp_path: Path, *flags: str, steps: int = 10) -> dict:
    profile = write_profile(tmp_path / "s.toml", DEMO_DATA, train={"max_steps": steps, "save_steps": 5})
    out = studio("run", str(profile), "--slurm", "--json", *flags)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_slurm_job_is_followed_to_completed(tmp_path: Path) -> None:
    job = submit(tmp_path)
    assert job["status"] == "queued" and job["slurm_job"].isdigit()
    assert "#SBATCH --ntasks-per-node=1" in (Path(job["dir"]) / "slurm.sbatch").read_text()
    wait_for(lambda: runs()[job["id"]]["status"] == "completed", what="the job to complete",
             state=lambda: json.dumps(runs()[job["id"]]))
    assert runs()[job["id"]]["step"] == 10 and (Path(job["dir"]) / "final").is_dir()


def test_studio_stop_cancels_a_slurm_job_and_the_trainer_saves(tmp_path: Path) -> None:
    job = submit(tmp_path, steps=100000)
    wait_for(lambda: runs()[job["id"]]["step"] >= 2, what="two steps", state=lambda: json.dumps(runs()[job["id"]]))
    stop = studio("stop", job["id"])
    assert stop.returncode == 0, stop.stderr
    wait_for(lambda: runs()[job["id"]]["status"] == "stopped", what="the stop")
    assert list((Path(job["dir"]) / "checkpoints").glob("checkpoint-*"))  # it saved on the way out


def test_more_time_than_the_partition_allows_is_queued_with_slurms_reason(tmp_path: Path) -> None:
    job = submit(tmp_path, "--time", "1:00:00")  # the partition allows 10 minutes
    wait_for(lambda: "PartitionTimeLimit" in (runs()[job["id"]].get("problem") or ""), what="Slurm's reason",
             state=lambda: json.dumps(runs()[job["id"]]))
    assert runs()[job["id"]]["status"] == "queued"
    assert "less --time" in runs()[job["id"]]["problem"]
    assert studio("stop", job["id"]).returncode == 0
    wait_for(lambda: runs()[job["id"]]["status"] != "queued", what="the cancel")


def test_a_job_slurm_refuses_is_a_clear_failed_record(tmp_path: Path) -> None:
    profile = write_profile(tmp_path / "s.toml", DEMO_DATA)
    out = studio("run", str(profile), "--slurm", "--partition", "nosuchpartition")
    assert out.returncode == 2 and "Slurm refused the job" in out.stderr and "partition" in out.stderr.lower()
    [failed] = [r for r in runs().values() if r["status"] == "failed"]
    assert failed["error_kind"] == "slurm"


def test_the_dry_run_prints_the_script_and_leaves_nothing(tmp_path: Path) -> None:
    profile = write_profile(tmp_path / "s.toml", DEMO_DATA)
    out = studio("run", str(profile), "--slurm-dry-run", "--nodes", "2", "--gpus-per-node", "8", "--time", "2:00:00")
    assert out.returncode == 0
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --time=2:00:00", "scontrol show hostnames", "-m studio.runs.slurm_node"):
        assert line in out.stdout
    assert runs() == {}


def test_what_a_slurm_user_asks_for_reaches_the_script_from_the_profile_and_the_flags(tmp_path: Path) -> None:
    profile = write_profile(tmp_path / "s.toml", DEMO_DATA,
                            slurm={"mem": "8G", "cpus_per_task": 2, "sbatch_args": ["--mail-type=END"], "qos": "low"})
    out = studio("run", str(profile), "--slurm-dry-run", "--mem", "16G", "--exclusive", "--constraint", "a100",
                 "--requeue", "--sbatch-arg=--comment=studio")
    assert out.returncode == 0, out.stderr
    for line in ("#SBATCH --mem=16G", "#SBATCH --cpus-per-task=2", "#SBATCH --qos=low", "#SBATCH --exclusive",
                 "#SBATCH --constraint=a100", "#SBATCH --requeue", "#SBATCH --signal=USR1@300",
                 "#SBATCH --mail-type=END", "#SBATCH --comment=studio", "NodeAddr"):
        assert line in out.stdout, line
    # Without CPUs asked for, the submission says what Slurm's default usually means.
    plain = studio("run", str(write_profile(tmp_path / "p.toml", DEMO_DATA)), "--slurm-dry-run")
    assert plain.returncode == 0 and "#SBATCH --no-requeue" in plain.stdout
    bad = studio("run", str(profile), "--slurm-dry-run", "--mem", "lots")
    assert bad.returncode == 2 and "slurm.mem" in bad.stderr and "64G" in bad.stderr
    lone = studio("run", str(profile), "--qos", "high")
    assert lone.returncode == 2 and "--qos is a Slurm option: add --slurm" in lone.stderr
    assert runs() == {}


@pytest.mark.parametrize("flags, reason, advice", [
    (("--nodes", "2"), "PartitionNodeLimit", "fewer --nodes"),
    (("--cpus-per-task", "64"), "PartitionConfig", "ask for less"),
])
def test_a_job_that_can_never_start_says_what_to_change(tmp_path: Path, flags: tuple[str, ...], reason: str,
                                                         advice: str) -> None:
    job = submit(tmp_path, *flags)
    wait_for(lambda: reason in (runs()[job["id"]].get("problem") or ""), what=f"Slurm's reason {reason}",
             state=lambda: json.dumps(runs()[job["id"]]))
    assert runs()[job["id"]]["status"] == "queued" and advice in runs()[job["id"]]["problem"]
    assert studio("stop", job["id"]).returncode == 0
    wait_for(lambda: squeue(job["slurm_job"]) == "", what="the job gone from squeue")


def test_a_requeued_job_saves_and_continues_as_the_same_run_with_another_attempt(tmp_path: Path) -> None:
    job = submit(tmp_path, "--requeue", steps=100000)
    run_id = job["id"]
    wait_for(lambda: (runs()[run_id]["step"] or 0) >= 6, what="a checkpoint's worth of steps",
             state=lambda: json.dumps(runs()[run_id]))
    # What Slurm sends requeue_before_s before the time limit, sent now.
    subprocess.run(["scancel", "--signal=USR1", job["slurm_job"]], check=True)
    events = Path(job["dir"]) / "events.jsonl"
    wait_for(lambda: "Slurm requeues it" in events.read_text(), what="the save before the requeue",
             state=lambda: json.dumps(runs()[run_id]))
    stopped = [json.loads(line) for line in events.read_text().splitlines() if '"event": "end"' in line][-1]
    assert stopped["status"] == "stopped" and "continues in a new allocation" in stopped["message"]
    # Slurm holds a requeued job until its credential's expiry (CredExpire, 120 s by default) has passed: a test
    # need not wait it out. Released at once, the new allocation could be made in the same second as the old
    # credential was revoked, and slurmd kills it ("Job credential revoked": it compares whole seconds).
    wait_for(lambda: squeue(job["slurm_job"]) == "PENDING", what="the job requeued")
    subprocess.run(["scontrol", "update", f"JobId={job['slurm_job']}", "StartTime=now+3"], check=True)
    wait_for(lambda: runs()[run_id]["status"] == "running" and runs()[run_id]["step"] > stopped["step"],
             what="the requeued job training past the save", timeout=300,
             state=lambda: json.dumps(runs()[run_id]) + "\n" + scontrol_job(job["slurm_job"]))
    described = json.loads(studio("describe", run_id, "--json").stdout)
    assert described["attempts"] == 2 and described["slurm"]["job"] == job["slurm_job"]  # one run, one job id
    starts = [json.loads(line) for line in events.read_text().splitlines() if '"event": "start"' in line]
    assert starts[-1]["resumed_from"].endswith(f"checkpoint-{stopped['step']}")
    assert studio("stop", run_id).returncode == 0
    wait_for(lambda: squeue(job["slurm_job"]) == "", what="the job gone from squeue")


def test_a_job_that_reaches_its_time_limit_ends_with_a_record_saying_so(tmp_path: Path) -> None:
    job = submit(tmp_path, "--time", "1", steps=100000)  # one minute, not requeued
    wait_for(lambda: runs()[job["id"]]["status"] not in ("queued", "running"), what="the time limit", timeout=300,
             state=lambda: json.dumps(runs()[job["id"]]))
    end = [json.loads(line) for line in (Path(job["dir"]) / "events.jsonl").read_text().splitlines()
           if '"event": "end"' in line][-1]
    assert "time limit" in end["message"] and "slurm.time" in end["message"] + end.get("advice", ""), end
    assert runs()[job["id"]]["status"] == "stopped" and list((Path(job["dir"]) / "checkpoints").glob("checkpoint-*"))


def scontrol_job(job: str) -> str:
    return subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout


def squeue(job: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout.strip()


def test_a_stopped_slurm_run_resumes_as_a_new_slurm_job_that_stop_stops(tmp_path: Path) -> None:
    """Defect: `studio resume` of a stopped Slurm run trained on the submitting node, outside Slurm, and
    `studio stop` then tried to cancel the old job."""
    job = submit(tmp_path, steps=100000)
    run_id = job["id"]
    wait_for(lambda: (runs()[run_id]["step"] or 0) >= 6, what="a checkpoint's worth of steps",
             state=lambda: json.dumps(runs()[run_id]))
    assert studio("stop", run_id).returncode == 0
    wait_for(lambda: runs()[run_id]["status"] == "stopped", what="the stop")
    stopped_at = runs()[run_id]["step"]
    out = studio("resume", run_id, "--json")
    assert out.returncode == 0, out.stderr
    again = json.loads(out.stdout)
    assert again["status"] == "queued" and again["slurm_job"].isdigit() and again["slurm_job"] != job["slurm_job"]
    assert squeue(again["slurm_job"]) in ("PENDING", "RUNNING", "CONFIGURING")  # Slurm holds it, not this shell
    assert runs()[run_id]["slurm_job"] == again["slurm_job"]
    wait_for(lambda: runs()[run_id]["status"] == "running" and runs()[run_id]["step"] > stopped_at,
             what="the new job training past the stop", state=lambda: json.dumps(runs()[run_id]))
    starts = [json.loads(line) for line in (Path(job["dir"]) / "events.jsonl").read_text().splitlines()
              if '"event": "start"' in line]
    assert starts[-1].get("resumed_from", "").endswith(f"checkpoint-{starts[-1]['step']}")  # from its checkpoint
    assert "Slurm job " + again["slurm_job"] in studio("runs").stdout
    assert studio("stop", run_id).returncode == 0  # the new job, through scancel
    wait_for(lambda: runs()[run_id]["status"] == "stopped", what="the second stop")
    wait_for(lambda: squeue(again["slurm_job"]) == "", what="the job gone from squeue")
