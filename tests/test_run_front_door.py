"""A run's one front door: its statuses named once, status.json a typed record of only what is read, and one
record of what was trained (plan.json's `trained`, written by the trainer); old run folders still read."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import fields, replace
from pathlib import Path

import pytest

from conftest import DEMO_DATA, studio, write_profile
from studio.planning.plan import plan_run
from studio.planning.record import Trained, read_plan
from studio.profiles.decision import Decision
from studio.profiles.profile import load_profile, with_changes
from studio.runs.folder import Run
from studio.runs.state import summarize
from studio.runs.status import RunStatus
from studio.runs.status_file import StatusFile
from ui_fixtures import fake_inventory, record_run

SOURCE = Path(__file__).resolve().parent.parent / "studio"


def sources() -> dict[Path, str]:
    return {p: p.read_text(encoding="utf-8") for p in SOURCE.rglob("*.py")}


def test_the_statuses_are_named_in_one_module() -> None:
    literal = re.compile(r"""["'](%s)["']""" % "|".join(s.value for s in RunStatus))
    found = [f"{p.relative_to(SOURCE)}:{n}: {line.strip()}" for p, text in sources().items()
             if p.name != "status.py" for n, line in enumerate(text.splitlines(), 1) if literal.search(line)]
    assert not found, "a status written as text outside studio/runs/status.py:\n" + "\n".join(found)


def test_every_field_of_status_json_is_read_somewhere() -> None:
    readers = {p: t for p, t in sources().items() if p.name != "status_file.py"}
    via = {"kind": "is_probe"}  # read through a property of the record
    unread = [f.name for f in fields(StatusFile)
              if not any(re.search(rf"\.{via.get(f.name, f.name)}\b", t) for t in readers.values())]
    assert not unread, f"status.json fields nothing reads: {unread}"


def test_an_old_status_json_still_loads_and_a_misspelt_field_is_refused(tmp_path: Path) -> None:
    run = Run(tmp_path)
    (tmp_path / "status.json").write_text(json.dumps({
        "profile": "demo", "created_at": 1.5, "kind": "train", "attempts": 2, "state": "running",
        "host": "box", "trainer_pid": 77, "world_size": 2, "node_rank": 0, "launched_at": "noon", "pid": -1,
        "pgid": 4242, "slurm_job": "17", "slurm_request": {"nodes": 2}}))
    record = run.status_file()
    assert record == StatusFile(profile="demo", created_at=1.5, attempts=2, launched_at=0.0, pid=None,
                                pgid=4242, slurm_job="17", slurm_request={"nodes": 2})
    assert record.slurm_job_id == "17"
    with pytest.raises(TypeError):
        run.update_status_file(state="stopped")  # not a field: caught where it is written, not never read
    run.update_status_file(attempts=3)
    written = json.loads((tmp_path / "status.json").read_text())
    assert written["attempts"] == 3 and "state" not in written and "host" not in written


def test_a_plan_without_the_trainers_record_reads_as_planned(studio_env: Path) -> None:
    run_dir = record_run(studio_env)
    plan = plan_run(load_profile(run_dir / "profile.toml"), fake_inventory()).record()
    run = Run(run_dir)
    run.write_plan(plan)
    read = read_plan(run_dir / "plan.json")
    assert read.trained is None and read.final == Trained(read.resolved, read.decisions)
    trained = Trained(with_changes(read.resolved, {"data.packing": False}),
                      (Decision("data.packing", False, "this model cannot keep packed rows apart"),))
    run.write_plan(replace(read, trained=trained))
    again = read_plan(run_dir / "plan.json")
    assert again.final == trained and again.final.profile.data.packing is False
    assert again.resolved == read.resolved  # what was planned stays beside what was trained


def test_a_run_started_by_an_older_studio_lists_its_method_and_model(studio_env: Path) -> None:
    """Its `start` record held the whole profile as a dict; the listing reads plan.json then."""
    run_dir = record_run(studio_env)
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    old = []
    for line in lines:
        e = json.loads(line)
        if e["event"] == "start":
            e.pop("method"), e.pop("model")
            e["config"] = {"model": {"name": "meta-llama/Llama-3.1-8B"}, "method": {"type": "qlora"}}
        old.append(json.dumps(e))
    (run_dir / "events.jsonl").write_text("\n".join(old) + "\n")
    Run(run_dir).write_plan(plan_run(load_profile(run_dir / "profile.toml"), fake_inventory()).record())
    summary = summarize(Run(run_dir))
    assert (summary.status, summary.method, summary.model) == (RunStatus.COMPLETED, "qlora", "meta-llama/Llama-3.1-8B")
    listed = json.loads(studio("runs", "--json").stdout)
    assert listed[0]["method"] == "qlora" and listed[0]["status"] == "completed"


def test_describe_names_the_slurm_job_and_what_was_asked(studio_env: Path) -> None:
    run_dir = record_run(studio_env)
    Run(run_dir).update_status_file(slurm_job="4711", slurm_request={"nodes": 2, "partition": "gpu", "time": ""})
    out = studio("describe", run_dir.name)
    assert out.returncode == 0, out.stderr
    assert "Slurm job 4711 (nodes 2, partition gpu)" in out.stdout
    assert json.loads(studio("describe", run_dir.name, "--json").stdout)["slurm"]["job"] == "4711"


def test_a_slurm_run_without_sbatch_leaves_no_run_folder(studio_env: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect: a missing sbatch left a `crashed` run folder behind."""
    bare = tmp_path / "bin"  # a PATH with python and nothing of Slurm's
    bare.mkdir()
    (bare / "python").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", str(bare))
    profile = write_profile(tmp_path / "s.toml", DEMO_DATA)
    out = studio("run", str(profile), "--slurm")
    assert out.returncode == 2 and "sbatch is not on the PATH" in out.stderr, out.stderr
    assert not (studio_env / "runs").exists() or not any((studio_env / "runs").iterdir())
