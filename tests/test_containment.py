"""Hostile cases: one trainer per run whatever runs at once, nothing written outside the run folder,
no raw control bytes to the terminal, a clear answer where there was a traceback or silence."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import DEMO_DATA, studio, write_profile
from studio.profiles.profile import load_profile
from studio.runs.events import End, append_event
from studio.runs.folder import Run, create_run
from studio.runs.launcher import resume_run
from studio.runs.liveness import is_trainer_process
from ui_fixtures import record_run
from waiting import wait_for


def trainers_of(run_dir: Path) -> list[int]:
    """Live studio trainer processes working on this run folder."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid"]):
        if is_trainer_process(proc.info["pid"], run_dir):
            found.append(proc.info["pid"])
    return found


def stopped_run(tmp_path: Path, name: str = "race") -> Run:
    """A run that was stopped before its first step (so resume starts it again), with a long profile."""
    profile = load_profile(write_profile(tmp_path / f"{name}.toml", DEMO_DATA, train={"max_steps": 100000}))
    run = create_run(profile.to_toml(), name)
    run.update_status_file(launched_at=1.0, stop_requested_at=2.0)
    append_event(run.events_path, End(status="stopped", step=0, time=3.0))
    return run


def kill_all(run_dir: Path) -> None:
    for pid in trainers_of(run_dir):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    wait_for(lambda: not trainers_of(run_dir), what="the trainers to die", timeout=60)


@pytest.mark.slow
def test_two_resumes_at_once_start_one_trainer_every_time(tmp_path: Path) -> None:
    """Twenty rounds of two `studio resume` racing: one says it resumed, the other that the run is already
    running (with the pid), and exactly one trainer works on the run."""
    run = stopped_run(tmp_path)
    env = dict(os.environ)
    try:
        for round_ in range(20):
            procs = [subprocess.Popen([sys.executable, "-m", "studio", "resume", run.id, "--detach", "--json"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                     for _ in range(2)]
            results = [(p.wait(), p.stdout.read(), p.stderr.read()) for p in procs]
            codes = sorted(code for code, _, _ in results)
            assert codes == [0, 2], (round_, results)
            refused = next(err for code, _, err in results if code == 2)
            # the loser names the trainer, or, when it came while the winner was still launching, says that
            assert "already running (pid" in refused or "another studio process is starting it" in refused, refused
            wait_for(lambda: trainers_of(run.dir), what="the trainer", timeout=120)
            assert len(trainers_of(run.dir)) == 1, (round_, trainers_of(run.dir))
            if "(pid" in refused:  # never the pid of the trainer killed in the round before
                assert f"(pid {trainers_of(run.dir)[0]})" in refused, (round_, refused, trainers_of(run.dir))
            kill_all(run.dir)
    finally:
        kill_all(run.dir)  # a failed round leaves no trainer behind


def test_a_second_trainer_started_by_hand_refuses_to_run(tmp_path: Path) -> None:
    run = stopped_run(tmp_path, "byhand")
    from studio.runs.lock import RunLock

    with RunLock(run.dir):  # someone holds the run (a live trainer would)
        proc = subprocess.run([sys.executable, "-m", "studio.trainer", str(run.dir), "--resume"],
                              capture_output=True, text=True, env=dict(os.environ))
    assert proc.returncode == 2 and "already running" in proc.stderr
    assert [e for e in run.events_path.read_text().splitlines() if '"start"' in e] == []  # it wrote nothing


def test_resume_that_cannot_record_its_trainer_undoes_the_spawn(tmp_path: Path, monkeypatch) -> None:
    """A full disk: status.json cannot be written once the trainer is spawned; the trainer is stopped and the
    error says what to do, so no unrecorded trainer runs beside the next resume."""
    run = stopped_run(tmp_path, "full")
    from studio.runs import folder
    from studio.runs.folder import RunError

    real = folder.Run.update_status_file
    calls = []

    def full_disk(self, **fields):
        calls.append(fields)
        if "pid" in fields:
            raise OSError(28, "No space left on device")
        return real(self, **fields)

    monkeypatch.setattr(folder.Run, "update_status_file", full_disk)
    with pytest.raises(RunError, match="No space left on device.*stopped"):
        resume_run(run)
    monkeypatch.setattr(folder.Run, "update_status_file", real)
    assert not trainers_of(run.dir)


@pytest.mark.slow
def test_a_truncated_file_in_the_last_checkpoint_falls_back_to_the_one_before(tmp_path: Path) -> None:
    path = write_profile(tmp_path / "t.toml", DEMO_DATA, train={"max_steps": 8, "save_steps": 4})
    done = json.loads(studio("run", str(path), "--json").stdout.strip().splitlines()[-1])
    run = Run(Path(done["dir"]))
    last = run.checkpoints_dir / "checkpoint-8" / "adapter_model.safetensors"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a full disk cut the save short
    append_event(run.events_path, End(status="stopped", step=8))
    resumed = studio("resume", run.id)
    assert resumed.returncode == 0, resumed.stderr
    assert "skipping checkpoint-8: adapter_model.safetensors is cut short" in resumed.stdout
    assert "from checkpoint-4" in resumed.stdout
    assert "SafetensorError" not in resumed.stdout + resumed.stderr


# ---------------------------------------------------------------- the terminal: no raw control bytes

ESC = "\x1b]0;pwned\x07\x1b[2J"  # retitle the terminal, then clear it


def test_names_and_contents_from_files_reach_the_terminal_escaped(tmp_path: Path) -> None:
    from studio.paths import runs_dir

    fake = runs_dir() / f"evil{ESC}\nfake-run completed step 60 of 60"
    fake.mkdir(parents=True)
    (fake / "status.json").write_text("{}")
    (fake / "profile.toml").write_text('[data]\npath = "x.jsonl"\n')
    listed = studio("runs")
    assert "\x1b" not in listed.stdout and "\\x1b" in listed.stdout
    assert not any(line.startswith("fake-run") for line in listed.stdout.splitlines())  # no line of its own
    data = tmp_path / "d.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"hi {ESC}"}, {"role": "assistant", "content": "ok"}]}] * 4
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    profile = tmp_path / "p.toml"
    profile.write_text(f'[data]\npath = "{data}"\nevil{ESC.encode("unicode_escape").decode()} = 1\n'.replace(
        "evil", "").replace('\\x07', '\\u0007').replace('\\x1b', '\\u001b'))
    checked = studio("profile", "check", str(profile))
    assert checked.returncode == 2 and "\x1b" not in checked.stdout + checked.stderr


def test_hints_quote_run_ids_as_a_shell_would(tmp_path: Path) -> None:
    from studio.display import end_lines

    lines = end_lines(End(status="failed", error_kind="crash", message="m", advice="a"), "crash;$(touch PWNED5)")
    assert "studio resume 'crash;$(touch PWNED5)'" in "\n".join(lines)


def test_profile_names_refuse_control_bidi_and_zero_width_characters() -> None:
    from studio.profiles.library import check_name
    from studio.profiles.profile import ProfileError

    for name in ("a\x1b[2Jb", "evil\u202egnp.toml", "zero\u200bwidth"):
        with pytest.raises(ProfileError) as caught:
            check_name(name)
        assert not any(ord(c) < 32 or c in "\u202e\u200b" for c in str(caught.value))


# ---------------------------------------------------------------- containment: nothing leaves the run folder

@pytest.mark.parametrize("entry", ["trainer.log", "events.jsonl", "checkpoints", "final", "chats", "chat.log"])
def test_a_link_planted_in_a_run_folder_is_refused_and_nothing_outside_is_touched(tmp_path: Path, entry: str,
                                                                                  capsys) -> None:
    from studio.cli import main

    run = stopped_run(tmp_path, "linked")
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "README"
    victim.write_text("keep me")
    target = victim if "." in entry else outside
    (run.dir / entry).unlink(missing_ok=True) if (run.dir / entry).is_file() else None
    (run.dir / entry).symlink_to(target)
    before = {p: (p.read_bytes(), p.stat().st_mode) for p in outside.rglob("*") if p.is_file()}
    assert main(["resume", run.id]) == 2
    assert f"{entry} is a link" in capsys.readouterr().err
    listed = main(["runs", "--json"]) == 0 and json.loads(capsys.readouterr().out)
    assert listed[0]["status"] == "damaged" and entry in listed[0]["problem"]
    assert {p: (p.read_bytes(), p.stat().st_mode) for p in outside.rglob("*") if p.is_file()} == before


def test_fifos_in_a_run_folder_hang_nothing(tmp_path: Path) -> None:
    """A FIFO as events.jsonl, trainer.log or status.json: listing, logs and resume answer at once."""
    run = stopped_run(tmp_path, "fifo")
    for name in ("events.jsonl", "trainer.log"):
        (run.dir / name).unlink(missing_ok=True)
        os.mkfifo(run.dir / name)
    for argv in (["runs"], ["logs", run.id], ["resume", run.id]):
        proc = studio(*argv, timeout=60)  # a hang is a failure here, not a wait
        assert "Traceback" not in proc.stderr, (argv, proc.stderr)
    listed = json.loads(studio("runs", "--json", timeout=60).stdout)
    assert listed[0]["status"] == "damaged" and "not a regular file" in listed[0]["problem"]


@pytest.mark.slow
def test_a_closed_output_is_said_and_the_run_goes_on(tmp_path: Path) -> None:
    """`studio run ... | head -1`: head quits after the first line; studio says the run goes on in the background
    (not "completed", not silence) and exits 141, and the run trains to its end."""
    profile = write_profile(tmp_path / "piped.toml", DEMO_DATA, train={"max_steps": 40})
    proc = subprocess.run(["bash", "-c", f'{shlex.quote(sys.executable)} -m studio run {shlex.quote(str(profile))} '
                                         '| head -1; exit "${PIPESTATUS[0]}"'],
                          capture_output=True, text=True, env=dict(os.environ))
    assert proc.stdout.startswith("run ") and len(proc.stdout.splitlines()) == 1
    assert proc.returncode == 141, proc.stderr
    assert "goes on in the background" in proc.stderr and "studio stop" in proc.stderr
    assert "Traceback" not in proc.stderr and "completed" not in proc.stderr
    listed = json.loads(studio("runs", "--json").stdout)
    run = Run(Path(listed[0]["dir"]))
    wait_for(lambda: json.loads(studio("runs", "--json").stdout)[0]["status"] == "completed",
             what="the run to train on to its end")
    assert run.timeline().last_step.step == 40


def test_logs_of_a_run_whose_log_was_removed_says_so(studio_env: Path) -> None:
    run_dir = record_run(studio_env, status="completed")
    Run(run_dir).update_status_file(launched_at=1.0)
    (run_dir / "trainer.log").unlink()
    proc = studio("logs", run_dir.name)
    assert proc.returncode == 2 and "trainer.log was removed" in proc.stderr and "no log yet" not in proc.stdout


def test_a_model_name_with_control_characters_is_refused_at_check_time(tmp_path: Path, studio_env: Path) -> None:
    profile = write_profile(tmp_path / "ctl.toml", DEMO_DATA, model={"name": "acme/evil\x1b]0;pwned\x07-7B"})
    for command in (("profile", "check"), ("run",)):
        proc = studio(*command, str(profile))
        said = proc.stdout + proc.stderr  # check prints its findings, run its refusal
        assert proc.returncode == 2 and "model.name" in said and "control" in said, said
        assert "\x1b" not in said
    assert not (studio_env / "runs").exists() or not list((studio_env / "runs").iterdir())


def quiet_run(home: Path, last_step_ago_s: float) -> tuple[Run, subprocess.Popen]:
    """A live run whose trainer went quiet: ten steps half a second apart, the last `last_step_ago_s` ago,
    and a process that is this run's trainer as far as anyone can tell (its command line names the module and
    the folder) but never writes again."""
    import psutil

    from studio.runs.events import Start, Step

    run = create_run(load_profile(write_profile(home.parent / "quiet.toml", DEMO_DATA)).to_toml(), "quiet")
    t_last = time.time() - last_step_ago_s
    append_event(run.events_path, Start(time=t_last - 6, max_steps=100))
    for step in range(1, 11):
        append_event(run.events_path, Step(time=t_last - (10 - step) * 0.5, step=step, max_steps=100, loss=2.0))
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(900)", "studio.trainer", str(run.dir)])
    run.update_status_file(pid=sleeper.pid, pid_started_at=psutil.Process(sleeper.pid).create_time(),
                           launched_at=t_last - 7)
    return run, sleeper


def test_studio_runs_says_a_live_run_has_gone_quiet(studio_env: Path) -> None:
    run, sleeper = quiet_run(studio_env, last_step_ago_s=120)
    try:
        listed = studio("runs").stdout
        assert "running" in listed and "no step for 1" in listed and "usually every 0.5 s" in listed
        assert json.loads(studio("runs", "--json").stdout)[0]["alert"].startswith("no step for")
    finally:
        sleeper.kill()


@pytest.mark.slow  # over 10 s on the 2-core VM (the fast set's budget is 5 min)
async def test_the_monitor_notices_a_run_going_quiet_while_nothing_is_written(studio_env: Path) -> None:
    from studio.ui.app import StudioApp
    from ui_fixtures import fake_inventory, screen_text
    from waiting import until

    run, sleeper = quiet_run(studio_env, last_step_ago_s=10)  # quiet, not yet for long enough (30 s)
    try:
        async with StudioApp(inventory=fake_inventory(), open_run=run).run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: "step 10/100" in screen_text(pilot.app), "the run's steps")
            alert = await until(pilot, lambda: re.search(r"no step for (\d+) s", screen_text(pilot.app)),
                                "the quiet-run alert, no record written")
            assert int(alert.group(1)) >= 30  # never sooner than the quiet spell it names, however slow the paint
    finally:
        sleeper.kill()


def test_what_studio_writes_is_private_whatever_the_umask(tmp_path: Path, studio_env: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "studio", "profile", "new", "mine"], capture_output=True, text=True,
                          env=dict(os.environ), preexec_fn=lambda: os.umask(0))
    assert proc.returncode == 0, proc.stderr
    for path in (studio_env, studio_env / "profiles"):
        assert path.stat().st_mode & 0o777 == 0o700, (path, oct(path.stat().st_mode))
    assert (studio_env / "profiles" / "mine.toml").stat().st_mode & 0o777 == 0o600


def huge_run(studio_env: Path, forged_step: int | None = None) -> Run:
    """A completed run of 60 steps whose events file holds a million step records (over 90 MB)."""
    run = create_run(load_profile(write_profile(studio_env.parent / "huge.toml", DEMO_DATA)).to_toml(), "huge")
    line = '{"event": "step", "time": 1700000000.0, "step": %d, "max_steps": 60, "loss": 1.5, "tokens": 1000}\n'
    with open(run.events_path, "a") as f:
        f.write('{"event": "start", "time": 1699999990.0, "max_steps": 60}\n')
        for block in range(0, 1_000_000, 10_000):
            f.write("".join(line % (1 + (s % 60)) for s in range(block, block + 10_000)))
        if forged_step is not None:
            f.write(line % forged_step)
        f.write('{"event": "end", "time": 1700000100.0, "status": "completed", "step": 60, "max_steps": 60}\n')
    return run


def test_a_huge_events_file_lists_in_bounded_memory_and_forged_steps_are_not_believed(studio_env: Path) -> None:
    """100 MB of valid steps (and forged ones past max_steps): `studio runs` reads a bounded head and tail."""
    run = huge_run(studio_env, forged_step=198411)  # a forged step: past its own last step
    assert run.events_path.stat().st_size > 90_000_000
    # VmHWM: this process's own peak (ru_maxrss would count the forking parent's memory too).
    probe = ("import sys; from studio.cli import main; code = main(['runs', '--json']); "
             "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]; "
             "print(hwm, file=sys.stderr); sys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)[0]
    assert listed["status"] == "completed" and listed["step"] == 60  # not 198411/60
    peak_mib = int(proc.stderr.strip().splitlines()[-1]) / 1024
    assert peak_mib < 250, f"studio runs peaked at {peak_mib:.0f} MiB on a 100 MB events file"


MONITOR_PROBE = """
import asyncio, sys
from pathlib import Path
from studio.runs.folder import Run
from studio.ui.app import StudioApp
from studio.ui.monitor import RunMonitor

async def main():
    app = StudioApp(open_run=Run(Path(sys.argv[1])), poll_gpus=False)
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(6000):
            screen = app.screen
            if isinstance(screen, RunMonitor) and screen.status == "completed" and screen.timeline.last_step:
                break
            await asyncio.sleep(0.1)  # look again: the loop ends when the monitor shows the end
        print(screen.status, screen.timeline.last_step.step)
    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]
    print(hwm, file=sys.stderr)

asyncio.run(main())
"""


@pytest.mark.slow  # over 10 s on the 2-core VM (the fast set's budget is 5 min)
def test_the_monitor_of_a_huge_events_file_loads_in_a_worker_in_bounded_memory(studio_env: Path) -> None:
    """100 MB of steps: the monitor reads a bounded head and tail (off the UI thread), then follows the end."""
    run = huge_run(studio_env)
    proc = subprocess.run([sys.executable, "-c", MONITOR_PROBE, str(run.dir)], capture_output=True, text=True,
                          env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["completed", "60"]
    peak_mib = int(proc.stderr.strip().splitlines()[-1]) / 1024
    assert peak_mib < 400, f"the monitor peaked at {peak_mib:.0f} MiB on a 100 MB events file"


# ---------------------------------------------------------------- 14. folders studio may not read

@contextmanager
def as_another_user() -> Iterator[None]:
    """The block reads as someone who does not own the test's folders. Root reads anything, so it acts as
    `nobody` for the block (effective ids only, restored after); anyone else meets the mode-000 folders."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def shared_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A studio home that `nobody` can reach (pytest's own folders are private to the user running it)."""
    top = Path(tempfile.mkdtemp(prefix="studio-shared-"))
    top.chmod(0o755)
    home = top / "home"
    (home / "runs").mkdir(parents=True)
    for d in (home, home / "runs"):
        d.chmod(0o755)
    monkeypatch.setenv("STUDIO_HOME", str(home))
    mask = os.umask(0o022)  # main() tightens the umask of the process it runs in
    try:
        yield home
    finally:
        os.umask(mask)
        for d in (top, *top.rglob("*")):
            if d.is_dir() and not d.is_symlink():
                d.chmod(0o755)
        shutil.rmtree(top)


CLOSED = 0o700 if os.geteuid() == 0 else 0o000  # another owner's private folder, or one closed to its owner


def test_a_run_folder_studio_cannot_read_is_listed_as_unreadable_with_the_reason(shared_home: Path,
                                                                                capsys: pytest.CaptureFixture) -> None:
    from studio.cli import main

    readable = record_run(shared_home, "20260911-090000-mine")
    closed = record_run(shared_home, "20260911-100000-theirs")
    closed.chmod(CLOSED)
    assert main(["runs", "--json"]) == 0  # as the owner: both (and every module the listing needs is loaded)
    capsys.readouterr()
    with as_another_user():
        listed_code = main(["runs", "--json"])
        listed = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
        text_code = main(["runs"])
        text = capsys.readouterr().out
        logs_code = main(["logs", closed.name])
        logs_err = capsys.readouterr().err
    assert listed_code == 0 and text_code == 0
    assert listed[readable.name]["status"] == "completed"
    assert listed[closed.name]["status"] == "unreadable", listed
    assert "Permission denied" in listed[closed.name]["problem"] and f"mode {CLOSED:o}" in listed[closed.name]["problem"]
    line = next(l for l in text.splitlines() if closed.name in l)
    assert "unreadable" in line and "Permission denied" in line
    assert logs_code == 2 and "unreadable" in logs_err and "Permission denied" in logs_err


def test_a_runs_folder_studio_cannot_read_is_said_not_called_empty(shared_home: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    from studio.cli import main

    record_run(shared_home)
    (shared_home / "runs").chmod(CLOSED)
    assert main(["runs"]) == 0
    capsys.readouterr()
    with as_another_user():
        runs_code = main(["runs"])
        runs = capsys.readouterr()
        last_code = main(["logs", "last"])
        last = capsys.readouterr()
    assert runs_code == 2 and "no runs yet" not in runs.out
    assert f"cannot read the runs folder {shared_home / 'runs'}" in runs.err and "Permission denied" in runs.err
    assert "STUDIO_HOME" in runs.err
    assert last_code == 2 and "cannot read the runs folder" in last.err and "no runs yet" not in last.err


async def test_the_dashboard_shows_unreadable_runs_and_an_unreadable_runs_folder(shared_home: Path) -> None:
    from studio.ui.app import StudioApp
    from ui_fixtures import fake_inventory, screen_text
    from waiting import until

    record_run(shared_home, "20260911-090000-mine")
    closed = record_run(shared_home, "20260911-100000-theirs")
    closed.chmod(CLOSED)
    async with StudioApp(inventory=fake_inventory()).run_test(size=(160, 40)) as pilot:
        await until(pilot, lambda: len(pilot.app.screen.run_dirs) == 2, "both runs listed (as their owner)")
        assert "unreadable" not in screen_text(pilot.app)  # (and what reads the screen is loaded)
        with as_another_user():
            await until(pilot, lambda: "unreadable" in screen_text(pilot.app), "the closed run said unreadable")
        (shared_home / "runs").chmod(CLOSED)
        with as_another_user():
            await until(pilot, lambda: "cannot read the runs folder" in screen_text(pilot.app),
                        "the runs folder's problem in the Runs title")
            assert "Permission denied" in screen_text(pilot.app)
            assert pilot.app.is_running


def test_a_trainer_nobody_recorded_records_itself_and_can_be_stopped(tmp_path: Path) -> None:
    """The process that spawned it was killed before it wrote the trainer's pid (or it was started by hand):
    the trainer records itself, so the run lists as running and `studio stop` reaches it."""
    run = stopped_run(tmp_path, "unrecorded")
    proc = subprocess.Popen([sys.executable, "-m", "studio.trainer", str(run.dir), "--resume"],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def listed() -> str:
            return {r["id"]: r for r in json.loads(studio("runs", "--json").stdout)}[run.id]["status"]

        wait_for(lambda: listed() == "running", what="the run listed as running", state=listed, poll=0.5)
        stopped = studio("stop", run.id, "--force")
        assert stopped.returncode == 0, stopped.stderr
        wait_for(lambda: proc.poll() is not None, what="the trainer to die of the kill")
        assert proc.returncode != 0
        assert listed() == "stopped"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


async def test_a_hung_run_shows_as_stalled_in_the_list_and_promises_no_eta(studio_env: Path) -> None:
    """Issue 36 #5: the list said `running` and the monitor kept an ETA and a finish time for a hung run."""
    from textual.widgets import DataTable

    from studio.ui.monitor import RunMonitor
    from ui_fixtures import on_the_dashboard, studio_app
    from waiting import front, until

    run, sleeper = quiet_run(studio_env, last_step_ago_s=120)
    try:
        async with studio_app().run_test(size=(120, 40)) as pilot:
            runs = (await on_the_dashboard(pilot)).query_one("#runs", DataTable)
            await until(pilot, lambda: runs.row_count and str(runs.get_row_at(0)[1]).endswith("stalled"), "stalled listed")
            pilot.app.open_run(run)
            monitor = await front(pilot, RunMonitor)
            progress = lambda: str(monitor.query_one("#progress-text").render())  # noqa: E731
            await until(pilot, lambda: "ETA unknown" in progress(), "the ETA withdrawn")
            assert "done ~" not in progress() and "no step for" in str(monitor.query_one("#alerts").render())
    finally:
        sleeper.kill()
