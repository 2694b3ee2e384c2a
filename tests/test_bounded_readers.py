"""Every reader of a run stays small however long the run: `studio describe`, `studio compare` and `studio
runs` on runs with 100 MB of events each (about 400,000 step records) answer within a memory bound, and what
they answer is right: the start and the end, every eval, the last step, and a loss curve thinned to a few
thousand points. Not a timed test: bench/soak.py measures the time as the file grows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DEMO_DATA, write_profile
from studio.runs.events import Checkpoint, End, Eval, Start, to_record

pytestmark = pytest.mark.slow
MEMORY_BOUND_MB = 200
EVAL_EVERY = 1000


def long_events(path: Path, megabytes: int) -> tuple[int, int]:
    """An events file of about `megabytes` MB as a long run writes it: a start, a step per line, an eval every
    1,000 steps and a checkpoint every 5,000, an end. Returns (steps, evals)."""
    step = evals = 0
    with path.open("w") as f:
        f.write(json.dumps(to_record(Start(time=1.0, max_steps=10**7, pid=1, devices=("cpu",), dtype="fp32",
                                           total_params=1000, trainable_params=10))) + "\n")
        while f.tell() < megabytes << 20:
            step += 1
            f.write(f'{{"event": "step", "time": {1.0 + step}, "step": {step}, "max_steps": 10000000, '
                    f'"epoch": {step / 1e6:.6f}, "loss": {3 / (1 + step / 1000):.6f}, "learning_rate": 0.0001, '
                    f'"grad_norm": 0.5, "tokens": {step * 512}, "tokens_per_s": 5120.0, "elapsed_s": {step / 10}, '
                    f'"rss_gib": 0.6, "gpu_mem_reserved_gib": [12.0]}}\n')
            if step % EVAL_EVERY == 0:
                evals += 1
                f.write(json.dumps(to_record(Eval(time=1.0 + step, step=step, eval_loss=2 / (1 + step / 1000),
                                                  epoch=step / 1e6))) + "\n")
            if step % 5000 == 0:
                f.write(json.dumps(to_record(Checkpoint(time=1.0 + step, step=step, path=f"c/checkpoint-{step}")))
                        + "\n")
        f.write(json.dumps(to_record(End(time=2.0 + step, status="stopped", step=step, max_steps=10**7))) + "\n")
    return step, evals


# The CLI run in a process that says its own peak at the end (VmHWM of its own memory map; a child's ru_maxrss
# also counts the parent's memory when it was forked, and a test suite's process is large).
MEASURED = """
import sys
from studio.cli import main
try:
    code = main(sys.argv[1:])
finally:
    sys.stdout.flush()
    peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM")][0].split()[1]
    print(f"peak-kb {peak}", file=sys.stderr)
sys.exit(code)
"""


def studio_measured(home: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """The CLI's answer and the peak memory of its process, in MB."""
    proc = subprocess.run([sys.executable, "-c", MEASURED, *args], capture_output=True, text=True,
                          env=dict(os.environ, STUDIO_HOME=str(home)))
    peak_kb = int(proc.stderr.strip().splitlines()[-1].split()[1])
    return proc, peak_kb / 1024


def test_describe_compare_and_runs_read_100_mb_runs_in_bounded_memory(tmp_path: Path, monkeypatch) -> None:
    from studio.profiles.profile import load_profile
    from studio.runs.folder import create_run

    home = tmp_path / "home"
    monkeypatch.setenv("STUDIO_HOME", str(home))
    profile = load_profile(write_profile(tmp_path / "p.toml", DEMO_DATA))
    runs = [create_run(profile.to_toml(), name) for name in ("long-a", "long-b")]
    steps, evals = long_events(runs[0].events_path, 100)
    long_events(runs[1].events_path, 100)
    assert runs[0].events_path.stat().st_size >= 100 << 20

    described, peak = studio_measured(home, "describe", runs[0].id, "--json")
    assert described.returncode == 0, described.stderr
    assert peak <= MEMORY_BOUND_MB, f"describe peaked at {peak:.0f} MB"
    info = json.loads(described.stdout)
    assert info["status"] == "stopped" and info["step"] == steps, {k: info.get(k) for k in ("status", "step")}

    compared, peak = studio_measured(home, "compare", runs[0].id, runs[1].id, "--json")
    assert compared.returncode == 0, compared.stderr
    assert peak <= MEMORY_BOUND_MB, f"compare peaked at {peak:.0f} MB"
    first = json.loads(compared.stdout)["runs"][0]
    assert len(first["eval_curve"]) == evals  # every eval, found anywhere in the file
    assert first["best_eval_loss"] == pytest.approx(2 / (1 + evals * EVAL_EVERY / 1000))
    curve = first["loss_curve"]
    assert 2000 <= len(curve) <= 20000 < steps  # thinned, from the first step to the last
    assert curve[0][0] == 1 and curve[-1][0] == steps
    assert [x for x, _ in curve] == sorted(x for x, _ in curve)

    listed, peak = studio_measured(home, "runs", "--json")
    assert listed.returncode == 0 and peak <= MEMORY_BOUND_MB, (listed.stderr, peak)
    assert {r["id"] for r in json.loads(listed.stdout)} >= {r.id for r in runs}


def test_studio_runs_lists_the_newest_runs_and_says_how_to_see_the_rest(tmp_path: Path, monkeypatch) -> None:
    """At any number of runs `studio runs` reads only the runs it shows: the newest 200 unless --limit says
    otherwise, with a line saying how many there are; --filter finds runs by id; --json lists them all."""
    from studio.profiles.profile import load_profile
    from studio.runs.folder import create_run

    home = tmp_path / "home"
    monkeypatch.setenv("STUDIO_HOME", str(home))
    toml = load_profile(write_profile(tmp_path / "p.toml", DEMO_DATA)).to_toml()
    ids = [create_run(toml, f"many-{i:03d}").id for i in range(205)]
    listed, _ = studio_measured(home, "runs")
    assert listed.returncode == 0 and "the newest 200 of 205 runs" in listed.stdout
    assert ids[-1] in listed.stdout and ids[4] not in listed.stdout and ids[5] in listed.stdout
    found, _ = studio_measured(home, "runs", "--filter", "many-1", "--limit", "0")
    assert sum("-many-1" in line for line in found.stdout.splitlines()) == 100
    everything, _ = studio_measured(home, "runs", "--json")
    assert [r["id"] for r in json.loads(everything.stdout)] == sorted(ids)


def test_a_listing_keeps_finished_runs_lines_only_while_their_files_are_unchanged(tmp_path: Path,
                                                                                   monkeypatch) -> None:
    """The second listing of a home reads finished runs from studio's summary cache, and anything that
    changes a run's files (a note, a resume's status, more events), a damaged cache or a deleted run is
    seen by the next listing as if there were no cache."""
    import shutil

    from conftest import studio
    from ui_fixtures import record_run

    home = tmp_path / "home"
    monkeypatch.setenv("STUDIO_HOME", str(home))
    done = record_run(home, "20260911-090000-done")
    other = record_run(home, "20260912-090000-other")

    def listed() -> dict[str, dict]:
        proc = studio("runs", "--json")
        assert proc.returncode == 0, proc.stderr
        return {r["id"]: r for r in json.loads(proc.stdout)}

    first = listed()
    cache = home / "cache" / "run-summaries.json"
    assert set(json.loads(cache.read_text())["runs"]) == {done.name, other.name}
    assert listed() == first  # from the cache, the same lines

    assert studio("note", done.name, "the good one").returncode == 0
    assert listed()[done.name]["note"] == "the good one"
    with (done / "events.jsonl").open("a") as f:  # a resumed attempt that is training again
        f.write(json.dumps(to_record(Start(max_steps=80, pid=os.getpid()))) + "\n")
    status = json.loads((done / "status.json").read_text())
    (done / "status.json").write_text(json.dumps({**status, "pid": os.getpid(), "launched_at": 2e9}))
    assert listed()[done.name]["status"] != "completed"

    cache.write_text('{"format": 1, "runs": {"20260912-090000-other": {"key": 1, "summary": "\\u001b[2J"}}}')
    assert listed()[other.name] == first[other.name]
    shutil.rmtree(other)
    assert set(listed()) == {done.name}
    assert other.name not in json.loads(cache.read_text())["runs"]
