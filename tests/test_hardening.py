"""Issue 12's defects, each reproduced: untrusted run folders, bad data files, numbers the
check let through, stops and resumes in awkward windows, exports to odd places, permissions."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DEMO_DATA, demo_rows, studio, write_jsonl, write_profile
from waiting import until, wait_for
from studio.cli import main
from studio.runs.events import End, Step, append_event, load_timeline
from studio.runs.folder import Run, create_run, last_complete_checkpoint
from studio.runs.launcher import resume_run, stop_run
from studio.runs.liveness import is_alive
from studio.runs.state import run_status, summarize


def home() -> Path:
    return Path(os.environ["STUDIO_HOME"])


def run_folders() -> list[str]:
    runs = home() / "runs"
    return sorted(p.name for p in runs.iterdir()) if runs.is_dir() else []


def fake_run(status: dict, events: str = "") -> Run:
    run = create_run('[data]\npath = "x.jsonl"\n', "fake")
    (run.dir / "status.json").write_text(json.dumps(status))
    if events:
        run.events_path.write_text(events)
    return run


# ---------------------------------------------------------------- 1. status.json is only a claim

@pytest.fixture
def no_signals(monkeypatch: pytest.MonkeyPatch) -> list:
    sent: list = []

    def refuse(*args: object) -> None:
        sent.append(args)
        raise AssertionError(f"a signal was sent: {args}")

    import studio.runs.launcher as launcher

    monkeypatch.setattr(launcher.os, "kill", refuse)
    monkeypatch.setattr(launcher.os, "killpg", refuse)
    return sent


@pytest.mark.parametrize("pid", [-1, 0, 1, 10**30, "4242", True, None, 3.5])
def test_a_pid_that_is_not_our_trainer_is_never_signalled(pid: object, no_signals: list, capsys) -> None:
    run = fake_run({"pid": pid, "launched_at": time.time()})
    assert not is_alive(run) and run_status(run) == "crashed"
    for force in (False, True):
        assert main(["stop", run.id] + (["--force"] if force else [])) == 2
        assert "not running" in capsys.readouterr().err
    assert no_signals == []
    assert main(["runs"]) == 0


def test_a_live_process_that_is_not_the_trainer_is_not_believed(no_signals: list,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        run = fake_run({"pid": other.pid, "pgid": other.pid, "launched_at": time.time()})
        assert not is_alive(run)
        with pytest.raises(Exception, match="not running"):
            stop_run(run, force=True)
        assert other.poll() is None
    finally:
        monkeypatch.undo()
        other.kill()


def test_a_recycled_pid_with_another_start_time_is_not_the_trainer() -> None:
    run = create_run('[data]\npath = "x.jsonl"\n', "fake")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", str(run.dir.resolve()),
                             "studio.trainer"])
    try:
        time.sleep(0.2)
        run.update_status_file(pid=proc.pid)
        assert is_alive(run)  # the command line matches
        run.update_status_file(pid_started_at=time.time() - 3600)
        assert not is_alive(run)  # but it started an hour before the recorded trainer
    finally:
        proc.kill()


# ---------------------------------------------------------------- 2. one bad run folder

def test_damaged_run_folders_show_as_damaged_alone(capsys) -> None:
    good = fake_run({"launched_at": 1.0}, json.dumps({"event": "end", "status": "completed", "time": 2.0}) + "\n")
    nested = fake_run({"pid": 10**40}, "[" * 200_000 + "\n" + '{"event": "step", "step": 1, "loss": 2.0}\n')
    folder = fake_run({})
    folder.events_path.mkdir()
    assert main(["runs", "--json"]) == 0
    listed = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed[good.id]["status"] == "completed"
    assert listed[nested.id]["status"] == "crashed" and listed[nested.id]["step"] == 1
    assert listed[folder.id]["status"] == "damaged" and "events.jsonl" in listed[folder.id]["problem"]
    assert main(["runs"]) == 0 and "damaged" in capsys.readouterr().out
    assert main(["logs", folder.id]) == 0
    assert main(["stop", folder.id]) == 2
    assert main(["resume", folder.id]) == 2 and "damaged" in capsys.readouterr().err


async def test_the_app_lists_a_damaged_run_and_keeps_working(studio_env: Path) -> None:
    from studio.ui.app import StudioApp
    from ui_fixtures import fake_inventory, record_run, screen_text
    from waiting import until

    record_run(studio_env)
    bad = fake_run({"pid": -1})
    bad.events_path.mkdir()
    async with StudioApp(inventory=fake_inventory()).run_test(size=(100, 30)) as pilot:
        # listed (its id may show shortened with an ellipsis at 100 columns), and said to be damaged
        await until(pilot, lambda: bad.id in pilot.app.screen.run_dirs and "damaged" in screen_text(pilot.app),
                    "the damaged run on the dashboard")
        assert pilot.app.is_running


# ---------------------------------------------------------------- 3. data files

DATA_CASES = {
    "invalid-utf8.jsonl": (b'{"text": "caf\xe9 au lait"}\n', "not UTF-8"),
    "utf16.jsonl": ('{"text": "hi"}\n'.encode("utf-16"), "UTF-16"),
    "binary.jsonl": (bytes(range(256)) * 8, "binary"),
    "extra-field.csv": (b'text\n"one"\n"two",surplus\n', "more field"),
    "big-field.csv": (b"text\n" + b"a" * (200 * 1024) + b"\n", None),  # a long cell is fine
    "broken.parquet": (b"PAR1 not really", "parquet"),
    "nested.jsonl": (b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", "nested"),
    "nested.json": (b"[" * 100_000 + b"]" * 100_000, "nested"),
    "empty.jsonl": (b"", "empty"),
    "blank.jsonl": (b"\n\n  \n", "empty"),
    "header-only.csv": (b"prompt,completion\n", "only a header"),
    "array.jsonl": (b'[{"text": "a"}, {"text": "b"}]\n', "JSON array"),
    "scalars.jsonl": (b"1\n2\n3\n", "not rows"),
    "all-bad.jsonl": (b"{oops\n{also bad\n", "none of the 2 row(s)"),
}


@pytest.mark.parametrize("name", sorted(DATA_CASES))
def test_bad_data_files_get_a_message_not_a_traceback(tmp_path: Path, name: str, capsys) -> None:
    content, expected = DATA_CASES[name]
    data = tmp_path / name
    data.write_bytes(content)
    profile = write_profile(tmp_path / "p.toml", data)
    code = main(["profile", "check", str(profile), "--data"])
    out = capsys.readouterr().out
    if expected is None:
        assert code == 0, out
        return
    assert code == 2 and expected in out and name in out, out
    assert main(["run", str(profile)]) == 2
    assert run_folders() == []


def test_a_symlink_loop_as_data_path(tmp_path: Path, capsys) -> None:
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(loop)
    (home() / "profiles").mkdir(parents=True)
    write_profile(home() / "profiles" / "looped.toml", loop)
    assert main(["profile", "list"]) == 0 and "looped" in capsys.readouterr().out
    assert main(["profile", "check", "looped", "--data"]) == 2
    assert "loop.jsonl" in capsys.readouterr().out


def test_a_profile_with_a_utf8_byte_order_mark_loads(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes("\ufeff".encode() + f'[data]\npath = "{DEMO_DATA}"\n'.encode())
    assert main(["profile", "check", str(path)]) == 0


# ---------------------------------------------------------------- 4. numbers and impossible settings

@pytest.mark.parametrize("section,key,value", [
    ("method", "alpha", float("inf")), ("train", "weight_decay", float("inf")), ("train", "epochs", float("inf")),
    ("train", "epochs", float("nan")), ("train", "seed", 2**32), ("train", "max_steps", 10**23),
    ("train", "batch_size", 10**9), ("data", "max_length", 10**12), ("train", "learning_rate", float("nan")),
    ("train", "max_grad_norm", float("inf")),
])
def test_numbers_out_of_range_are_refused_by_name(tmp_path: Path, section: str, key: str, value: object,
                                                  capsys) -> None:
    profile = write_profile(tmp_path / "p.toml", DEMO_DATA, **{section: {key: value}})
    assert main(["profile", "check", str(profile)]) == 2
    assert f"{section}.{key}:" in capsys.readouterr().out
    assert main(["run", str(profile)]) == 2 and run_folders() == []


@pytest.mark.parametrize("changes,key", [
    ({"method": {"target_modules": ["c_attn"]}}, "method.target_modules"),
    ({"model": {"attn_implementation": "flash_attention_2"}}, "model.attn_implementation"),
    ({"model": {"dtype": "fp16"}}, "model.dtype"),
    ({"data": {"eval_fraction": 0.5}}, "data.eval_fraction"),
])
def test_what_this_machine_model_or_data_cannot_do_is_refused_before_a_run(tmp_path: Path, changes: dict,
                                                                         key: str, capsys,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STUDIO_GPUS", raising=False)
    data = write_jsonl(tmp_path / "one.jsonl", demo_rows(1))
    profile = write_profile(tmp_path / "p.toml", data, **changes)
    assert main(["run", str(profile)]) == 2
    assert key in capsys.readouterr().err
    assert run_folders() == []


@pytest.mark.slow
def test_every_prompt_longer_than_max_length_is_a_data_error(tmp_path: Path) -> None:
    rows = [{"prompt": "word " * 80, "completion": "answer"} for _ in range(16)]
    profile = write_profile(tmp_path / "p.toml", write_jsonl(tmp_path / "d.jsonl", rows), data={"max_length": 16})
    proc = studio("run", str(profile), "--json")
    end = load_timeline(Path(json.loads(proc.stdout.splitlines()[-1])["dir"])).end
    assert end.error_kind == "data" and "data.max_length" in end.message
    assert "new run" in end.advice


# ---------------------------------------------------------------- 5, 6. stops and resumes in awkward windows

@pytest.mark.slow
def test_a_stop_in_the_first_second_ends_as_stopped(tmp_path: Path) -> None:
    profile = write_profile(tmp_path / "p.toml", write_jsonl(tmp_path / "d.jsonl", demo_rows(64)))
    run_dir = Path(json.loads(studio("run", str(profile), "--detach", "--json").stdout)["dir"])
    assert main(["stop", run_dir.name]) == 0
    assert run_status(Run(run_dir)) == "stopped"
    assert summarize(Run(run_dir)).status == "stopped"


# ---------------------------------------------------------------- 7. folders that cannot be written

def test_unwritable_runs_and_profiles_folders_are_messages(tmp_path: Path, capsys) -> None:
    home().mkdir(parents=True, exist_ok=True)
    (home() / "runs").write_text("not a folder")
    (home() / "profiles").write_text("not a folder either")
    assert main(["run", str(write_profile(tmp_path / "p.toml", DEMO_DATA))]) == 2
    assert "runs folder" in capsys.readouterr().err
    assert main(["profile", "new", "mine"]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_a_run_whose_log_cannot_be_opened_does_not_start(tmp_path: Path, capsys) -> None:
    run = create_run(write_profile(tmp_path / "p.toml", DEMO_DATA).read_text(), "x")
    run.log_path.mkdir()
    assert main(["resume", run.id]) == 2
    assert "trainer.log is not a regular file" in capsys.readouterr().err  # said, and nothing started


def test_disk_errors_in_the_trainer_are_their_own_kind() -> None:
    import errno

    from studio.trainer.failures import classify

    info = classify(OSError(errno.ENOSPC, "No space left on device", "/runs/x/checkpoints"), None)
    assert info["error_kind"] == "disk" and "free disk space" in info["advice"]


# ---------------------------------------------------------------- 8. damaged checkpoints

def test_a_truncated_trainer_state_is_not_a_complete_checkpoint(tmp_path: Path) -> None:
    for step, state in ((4, '{"global_step": 4}'), (8, '{"global_st'), (12, ""), (16, "[]")):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-20").mkdir()
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-4"


# ---------------------------------------------------------------- 9. wrongly typed event fields

async def test_wrongly_typed_event_fields_do_not_crash_the_monitor(studio_env: Path) -> None:
    from studio.ui.app import StudioApp
    from ui_fixtures import fake_inventory, record_run

    run_dir = record_run(studio_env, status="running")
    with (run_dir / "events.jsonl").open("a") as f:
        f.write(json.dumps({"event": "step", "step": 41, "max_steps": "many", "loss": "low", "tokens_per_s": "fast",
                            "gpu_mem_peak_gib": "lots", "nvml_temp_c": [None, "hot"], "eta_s": [1],
                            "time": "now"}) + "\n")
        f.write(json.dumps({"event": "start", "devices": "gpu", "config": [], "trainable_params": "all"}) + "\n")
        f.write(json.dumps({"event": "end", "status": "failed", "error_kind": 7, "message": {"a": 1}}) + "\n")
    async with StudioApp(open_run=Run(run_dir), inventory=fake_inventory()).run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: 41 in getattr(pilot.app.screen, "timeline", None).steps
                    if hasattr(pilot.app.screen, "timeline") else False, "the odd step read")
        assert pilot.app.is_running


# ---------------------------------------------------------------- 10. exports to odd places

def test_export_refuses_files_and_the_run_folder_itself(tmp_path: Path, capsys) -> None:
    run = create_run(write_profile(tmp_path / "p.toml", DEMO_DATA).read_text(), "x")
    (run.dir / "final").mkdir()
    (run.dir / "final" / "adapter_config.json").write_text("{}")
    append_event(run.events_path, End(status="completed"))
    for out, why in (("/dev/null", "not a folder"), (str(run.dir / "final" / "copy"), "inside the run folder"),
                     (str(run.dir), "inside the run folder")):
        assert main(["export", run.id, "--out", out]) == 2
        assert why in capsys.readouterr().err
    assert sorted(p.name for p in (run.dir / "final").iterdir()) == ["adapter_config.json"]


# ---------------------------------------------------------------- 11. privacy

def test_run_folders_are_private_and_events_are_strict_json(tmp_path: Path) -> None:
    run = create_run("x", "p")
    append_event(run.events_path, Step(step=1, loss=float("nan")))
    assert stat.S_IMODE(run.dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((home() / "runs").stat().st_mode) == 0o700
    for name in ("events.jsonl", "status.json", "profile.toml"):
        assert stat.S_IMODE((run.dir / name).stat().st_mode) == 0o600, name
    json.loads(run.events_path.read_text(), parse_constant=lambda c: pytest.fail(f"bare {c} in events.jsonl"))


@pytest.mark.slow
def test_a_trained_run_leaves_only_private_files(tmp_path: Path) -> None:
    profile = write_profile(tmp_path / "p.toml", write_jsonl(tmp_path / "d.jsonl", demo_rows(32)),
                            train={"max_steps": 4, "save_steps": 2})
    run_dir = Path(json.loads(studio("run", str(profile), "--json").stdout.splitlines()[-1])["dir"])
    loose = [str(p.relative_to(run_dir)) for p in run_dir.rglob("*")
             if stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert loose == [], loose


def test_chat_talks_to_a_checkpoint_newer_than_the_final_result(tmp_path: Path) -> None:
    """A completed run resumed for more steps keeps its old final/ until it ends again: what it trained
    since is in its newer checkpoints, and that is what a chat loads (and says so)."""
    from studio.runs.chat import weights_label

    run = create_run(write_profile(tmp_path / "p.toml", DEMO_DATA).read_text(), "more")
    final = run.final_dir
    final.mkdir()
    (final / "adapter_config.json").write_text("{}")
    os.utime(final / "adapter_config.json", (time.time() - 60, time.time() - 60))
    assert run.trained_weights() == final
    assert weights_label(run, str(final)) == "the final result"
    newer = run.checkpoints_dir / "checkpoint-80"
    newer.mkdir(parents=True)
    (newer / "trainer_state.json").write_text(json.dumps({"global_step": 80}))
    assert run.trained_weights() == newer
    assert weights_label(run, str(newer)) == "the checkpoint of step 80"
    assert weights_label(run, None) == "the base model"


@pytest.mark.parametrize("holds_lock", [False, True], ids=["process", "process-and-lock"])
def test_resume_waits_for_a_trainer_that_already_wrote_its_end(tmp_path: Path, monkeypatch, holds_lock: bool) -> None:
    """A trainer that has written its `end` may still be exiting; a real one still holds the run's lock too.
    Defect (seen under load, after a stop, for a two-machine run and a Slurm run alike): the resume took the
    lock before waiting for the old trainer, and failed with "already running" instead of waiting for it."""
    run = create_run(write_profile(tmp_path / "p.toml", DEMO_DATA).read_text(), "exiting")
    ready = tmp_path / "ready"
    take_lock = "RunLock(pathlib.Path(sys.argv[1])).acquire(); " if holds_lock else ""
    exiting = subprocess.Popen([sys.executable, "-c", (
        f"import sys, time, pathlib; from studio.runs.lock import RunLock; {take_lock}"
        "pathlib.Path(sys.argv[2]).touch(); time.sleep(2)"), str(run.dir.resolve()), str(ready), "studio.trainer"])
    wait_for(ready.exists, what="the old trainer to start" + (" and hold the lock" if holds_lock else ""))
    run.update_status_file(pid=exiting.pid, launched_at=time.time() - 5)
    append_event(run.events_path, End(status="stopped", step=3))
    assert run_status(run) == "stopped" and is_alive(run)
    import studio.runs.launcher as launcher

    launched = []
    monkeypatch.setattr(launcher, "launch", lambda r, resume=False, lock=None: launched.append((r, resume)) or "proc")
    assert resume_run(run).proc == "proc" and launched == [(run, True)]
    assert exiting.poll() is not None  # it waited for the old trainer to go (lock and all, when it held it)
