"""The dashboard: the Profiles and Runs lists, their keys, the GPU pane and the GPU processes screen."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input
from ui_fixtures import (
    on_the_dashboard,
    GOOD,
    eight_gpus,
    live_trainer,
    fake_inventory,
    notifications,
    record_run,
    screen_text,
    write,
)
from ui_fixtures import studio_app as app
from waiting import front, until

from studio.data import DataError
from studio.runs.folder import Run
from studio.runs.status import RunStatus
from studio.ui.app import StudioApp
from studio.ui.dashboard import Dashboard
from studio.ui.dialogs import Confirm
from studio.ui.editor import ProfileEditor
from studio.ui.monitor import RunMonitor


async def test_run_keys_do_nothing_to_runs_while_the_profiles_list_has_focus(studio_env: Path) -> None:
    run_dir = record_run(studio_env, status="crashed")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    async with app().run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: getattr(pilot.app.screen.focused, "id", None) == "profiles", "the profiles list")
        for key in ("s", "K", "u", "x"):  # stop, kill, resume, export: each would ask, act or open a dialog
            await pilot.press(key)
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()
            assert isinstance(pilot.app.screen, Dashboard), f"{key} opened {type(pilot.app.screen).__name__}"
            after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
            assert after == before, f"{key} changed the run folder"
            assert Run(run_dir).pid is None, f"{key} started a trainer"


async def test_starting_a_run_checks_its_data_in_the_background(studio_env: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import studio.runs.start as start

    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow_check(profile):  # a 100 MB dataset: the check goes on until the test lets it end
        started.set()
        release.wait(timeout=60)
        finished.set()
        raise DataError("data.path: checked slowly")

    monkeypatch.setattr(start, "check_data", slow_check)
    write(studio_env, "big", GOOD)
    async with app().run_test(size=(100, 30)) as pilot:
        texts = notifications(pilot.app)
        await pilot.pause()
        await pilot.press("r")
        await until(pilot, started.is_set, "the data check to start")
        await pilot.press("question_mark")  # the app answers keys while the data is checked
        await until(pilot, lambda: "Help" in type(pilot.app.screen).__name__, "the help screen")
        assert not finished.is_set(), "the app answered only once the data check had ended"
        release.set()
        await pilot.press("escape")
        await until(pilot, lambda: any("checked slowly" in t for t in texts), "the data check's answer")
        assert pilot.app.is_running


async def test_enter_opens_and_vim_keys_move(studio_env: Path) -> None:
    record_run(studio_env, "20260911-090000-a")
    record_run(studio_env, "20260911-090000-b")
    async with app().run_test(size=(120, 40)) as pilot:
        dash = await front(pilot, Dashboard)
        profiles = dash.query_one("#profiles", DataTable)
        await until(pilot, lambda: dash.query_one("#runs", DataTable).row_count == 2, "both runs listed")
        await pilot.press("j", "j")
        assert profiles.cursor_row == 2
        await pilot.press("k")
        assert profiles.cursor_row == 1
        await pilot.press("G")
        assert profiles.cursor_row == profiles.row_count - 1
        await pilot.press("g")
        assert profiles.cursor_row == 0
        await pilot.press("enter")
        await front(pilot, ProfileEditor)
        await pilot.press("escape")
        await front(pilot, Dashboard)
        await pilot.press("tab", "enter")
        await front(pilot, RunMonitor)


async def test_80x24_keeps_the_words_whole(studio_env: Path) -> None:
    record_run(studio_env, status="completed")
    async with app().run_test(size=(80, 24)) as pilot:
        runs = (await front(pilot, Dashboard)).query_one("#runs", DataTable)
        await until(pilot, lambda: runs.row_count, "the run listed")
        assert str(runs.get_row_at(0)[1]) == "completed"
        await until(pilot, lambda: "completed" in screen_text(pilot.app), "the status drawn whole")
        await pilot.press("question_mark")
        await until(pilot, lambda: "reattach" in screen_text(pilot.app), "the help's last words on screen")  # the help's last words are on screen


async def test_the_cursor_stays_on_the_saved_profile_and_new_files_appear(studio_env: Path) -> None:
    for name in ("a", "b", "c"):
        write(studio_env, name, GOOD)
    async with app().run_test(size=(120, 40)) as pilot:
        await front(pilot, Dashboard)
        await pilot.press("j", "j", "e")
        editor = await front(pilot, ProfileEditor)
        editor.query_one("#f-train-learning_rate", Input).value = "0.001"
        await until(pilot, lambda: editor.dirty, "the edit")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: not editor.dirty, "the save")
        await pilot.press("escape")
        table = (await front(pilot, Dashboard)).query_one("#profiles", DataTable)
        await until(pilot, lambda: table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value == "user:c",
                    "the cursor on the saved profile")
        write(studio_env, "made-by-cli", GOOD)
        await until(pilot, lambda: "user:made-by-cli" in pilot.app.screen.profile_paths, "the new file listed")


async def test_marked_runs_compare_even_when_the_filter_hides_one_and_esc_clears_the_filter(studio_env: Path) -> None:
    from studio.ui.compare import Comparison

    record_run(studio_env, "20260911-090000-llama-qlora", rank=16)
    record_run(studio_env, "20260912-090000-mistral-lora", rank=8, floor=0.9)
    async with app().run_test(size=(120, 40)) as pilot:
        runs = pilot.app.screen.query_one("#runs", DataTable)
        await until(pilot, lambda: runs.row_count == 2, "both runs listed")
        runs.focus()
        await pilot.press("m", "down", "m")
        await until(pilot, lambda: "2 marked" in screen_text(pilot.app), "two marks")
        await pilot.press("slash", *"mistral")
        await until(pilot, lambda: runs.row_count == 1, "the filter to hide one")
        await pilot.press("escape")
        await until(pilot, lambda: runs.row_count == 2 and runs.has_focus, "esc to clear the filter")
        await pilot.press("slash", *"mistral", "enter")
        await until(pilot, lambda: runs.row_count == 1, "the filter again")
        await pilot.press("C")
        await until(pilot, lambda: isinstance(pilot.app.screen, Comparison), "the comparison of both marks")


async def test_r_heeds_the_focus_and_asks_before_starting_what_does_not_fit(studio_env: Path) -> None:
    from studio.ui.dialogs import Confirm

    record_run(studio_env, status="completed")
    async with app().run_test(size=(120, 40)) as pilot:
        profiles = pilot.app.screen.query_one("#profiles", DataTable)
        runs = pilot.app.screen.query_one("#runs", DataTable)
        await until(pilot, lambda: profiles.row_count and runs.row_count, "both lists")
        said = notifications(pilot.app)
        runs.focus()
        await until(pilot, lambda: runs.has_focus, "the Runs list's focus")
        await pilot.press("r")
        await until(pilot, lambda: any("u resumes this run" in t for t in said), "the hint")
        profiles.focus()
        key = "bundled:llama-3.1-8b-full-80gb"  # 8B full fine-tuning: too big for the 18.8 GiB free here
        await until(pilot, lambda: pilot.app.screen.profile_fits, "the fit of each profile")
        profiles.move_cursor(row=profiles.get_row_index(key))
        await pilot.press("r")
        await until(pilot, lambda: isinstance(pilot.app.screen, Confirm), "a question before an out-of-memory run")
        assert "does not fit" in screen_text(pilot.app)
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(pilot.app.screen, Confirm), "the answer")
    assert [p.name for p in (studio_env / "runs").iterdir()] == ["20260911-090000-llama-qlora"]  # nothing started


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
async def test_an_eight_gpu_box_shows_every_gpu(studio_env: Path, size) -> None:
    async with StudioApp(inventory=eight_gpus()).run_test(size=size) as pilot:
        await until(pilot, lambda: all(f"[{i}]" in screen_text(pilot.app) for i in range(8)), "every GPU shown")


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
async def test_the_dashboard_tables_use_the_width_and_show_every_column(studio_env: Path, size) -> None:
    record_run(studio_env, "20260911-090000-a-profile-with-a-really-long-descriptive-name")
    long_name = "my-qwen2.5-coder-32b-instruct-qlora-with-a-long-name"
    write(studio_env, long_name, GOOD)
    async with app().run_test(size=size) as pilot:
        profiles = pilot.app.screen.query_one("#profiles", DataTable)
        runs = pilot.app.screen.query_one("#runs", DataTable)
        await until(pilot, lambda: runs.row_count and pilot.app.screen.profile_fits, "both lists and the fits")
        await pilot.pause()  # the tables laid out at this width
        for table in (profiles, runs):
            needed = sum(c.get_render_width(table) for c in table.ordered_columns)
            assert needed <= table.size.width, f"#{table.id} needs {needed} columns of {table.size.width}"
        text = screen_text(pilot.app)
        assert "age" in text and "tok/s" in text and "fit" in text, text
        if size[0] >= 120:  # room for each run's method and model
            row = [str(c) for c in runs.get_row("20260911-090000-a-profile-with-a-really-long-descriptive-name")]
            assert row[2] == "qlora" and row[3].startswith("Llama-3"), row
        assert "too big" in text, text  # the fit column is shown, not cut
        key = next(k for k in pilot.app.screen.profile_paths if long_name in k)
        shown = str(profiles.get_row(key)[0])
        if size[0] >= 120:
            assert shown == long_name  # room enough: whole
        else:
            assert shown.startswith("my-qwen2.5-coder") and shown.endswith("…"), shown  # shortened, visibly


async def test_back_from_a_runs_monitor_the_runs_list_has_the_focus_on_that_run_and_shows_it(studio_env: Path) -> None:
    record_run(studio_env, "20260911-090000-llama-qlora")
    watched = record_run(studio_env, "20260912-090000-other")
    async with app(open_run=Run(watched)).run_test(size=(120, 40)) as pilot:
        await front(pilot, RunMonitor)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(pilot.app.screen, Dashboard), "the dashboard")
        dash = pilot.app.screen
        runs = dash.query_one("#runs", DataTable)
        await until(pilot, lambda: runs.has_focus and dash.selected_run_id() == watched.name,
                    "the focus on the watched run")
        focused_title = dash.query_one("#runs-title").styles.background
        other_title = dash.query_one("#profiles-box .section").styles.background
        assert focused_title != other_title  # which list has the focus shows in its title


async def test_the_dashboard_tells_when_any_run_ends(studio_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    monkeypatch.setenv("TMUX", "/tmp/tmux-0/default,1234,0")  # in tmux: the notification is wrapped for passthrough
    monkeypatch.delenv("STUDIO_NOTIFY", raising=False)
    monkeypatch.setenv("TERM", "tmux-256color")
    run_dir = record_run(studio_env, status="completed")
    async with app().run_test(size=(120, 40)) as pilot:
        dash = pilot.app.screen
        await until(pilot, lambda: dash.last_summaries, "the runs read")
        said = notifications(pilot.app)
        sent: list[str] = []
        pilot.app.write_to_terminal = sent.append  # what would go to the terminal (headless writes nothing)
        ended = dash.last_summaries[0]
        dash.show_runs([replace(ended, status=RunStatus.RUNNING)])  # a read while it trained...
        dash.show_runs([ended])                               # ...and the next, once it ended
        await until(pilot, lambda: any(run_dir.name in t and "completed" in t for t in said), "the notice")
        dash.show_runs([ended])
        await pilot.pause()  # a second toast would be posted by now: show_runs announces as it reads
        assert sum(run_dir.name in t for t in said) == 1  # said once
    # and once to the desktop: OSC 9 inside tmux's passthrough (its escapes doubled)
    assert sent == [f"\x1bPtmux;\x1b\x1b]9;studio: run completed: run {run_dir.name} completed\x07\x1b\\"], sent


async def test_the_gpu_processes_screen_lists_each_process_and_kills_one_after_a_confirm(studio_env: Path) -> None:
    import getpass
    import signal
    import subprocess
    import sys
    from dataclasses import replace

    from studio.hardware import GpuProcess
    from studio.ui.processes import GpuProcesses

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        inv = fake_inventory()
        gpus = [replace(inv.gpus[0], processes=[GpuProcess(sleeper.pid, 3.25)]), inv.gpus[1]]
        async with StudioApp(inventory=replace(inv, gpus=gpus)).run_test(size=(120, 40)) as pilot:
            await pilot.press("p")
            await until(pilot, lambda: isinstance(pilot.app.screen, GpuProcesses), "the processes screen")
            table = pilot.app.screen.query_one(DataTable)
            await until(pilot, lambda: table.row_count == 1, "the process")
            row = [str(c) for c in table.get_row_at(0)]
            assert row[:4] == ["0", str(sleeper.pid), getpass.getuser(), "3.2 GiB"] and "time.sleep" in row[5], row
            await pilot.press("K")
            await until(pilot, lambda: isinstance(pilot.app.screen, Confirm), "the confirm")
            assert f"kill pid {sleeper.pid}" in screen_text(pilot.app)
            await pilot.press("y")
            assert sleeper.wait(timeout=60) == -signal.SIGTERM
            await pilot.press("question_mark")
            await until(pilot, lambda: "SIGTERM, after a confirm" in screen_text(pilot.app), "K in the help")
    finally:
        sleeper.kill()
        sleeper.wait()


async def test_the_processes_screen_fits_a_long_command_to_the_terminal_when_opened_and_after_a_resize(
        studio_env: Path) -> None:
    import subprocess
    import sys
    from dataclasses import replace

    from studio.hardware import GpuProcess
    from studio.ui.processes import GpuProcesses

    # a command line longer than any terminal: it is cut with an ellipsis to the width there is, never scrolled
    long_arg = "/data/" + "x" * 300
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", long_arg])
    try:
        inv = fake_inventory()
        gpus = [replace(inv.gpus[0], processes=[GpuProcess(sleeper.pid, 3.25)]), inv.gpus[1]]

        def command_line() -> str | None:
            lines = [line for line in screen_text(pilot.app).splitlines() if f" {sleeper.pid} " in line]
            return lines[0].rstrip() if lines else None

        async with StudioApp(inventory=replace(inv, gpus=gpus)).run_test(size=(80, 24)) as pilot:
            await pilot.press("p")
            await front(pilot, GpuProcesses)
            line = await until(pilot, lambda: (line := command_line()) and line.endswith("…") and line,
                               "the command cut to 80 columns")
            assert len(line) <= 80, line
            await pilot.resize_terminal(140, 30)
            wide = await until(pilot, lambda: (line := command_line()) and len(line) > 100 and line,
                               "the command refitted to 140 columns")
            assert wide.endswith("…") and len(wide) <= 140, wide
    finally:
        sleeper.kill()
        sleeper.wait()


async def test_on_a_machine_without_gpus_the_processes_screen_shows_each_trainer_s_cpu_and_memory(
        studio_env: Path) -> None:
    import subprocess
    import sys

    from studio.hardware import Inventory
    from studio.ui.processes import GpuProcesses

    run_dir = record_run(studio_env, status="completed")
    # a process studio takes for the run's trainer (its command line names the module and the run folder), busy
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass", "studio.trainer", str(run_dir.resolve())])
    try:
        async with StudioApp(inventory=Inventory([], reason="no NVIDIA driver")).run_test(size=(120, 40)) as pilot:
            await pilot.press("p")
            screen = await front(pilot, GpuProcesses)
            table = screen.query_one(DataTable)

            def busy_row() -> list[str] | None:
                rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
                mine = [r for r in rows if r[0] == str(busy.pid)]
                return mine[0] if mine and mine[0][2] not in ("0%", "?") else None

            row = await until(pilot, busy_row, "the trainer's CPU, measured between two looks")
            assert int(row[2].rstrip("%")) >= 20 and row[3].endswith(("MiB", "KiB")) and row[4] == run_dir.name, row
            assert re.search(r"studio trainer process(es)? on the CPU", screen_text(pilot.app))
            assert "Trainer processes" in screen_text(pilot.app)
    finally:
        busy.kill()
        busy.wait()


async def test_the_cursor_stays_on_its_trainer_when_the_processes_screen_refreshes(studio_env: Path) -> None:
    """On a machine without GPUs the screen looks again every second: the row under the cursor is still the
    one K kills after that."""
    import subprocess
    import sys

    from studio.hardware import Inventory
    from studio.ui.processes import GpuProcesses

    run_dir = record_run(studio_env, status="completed")
    light = "import time\nwhile True:\n    sum(range(20000)); time.sleep(0.005)"
    trainers = [subprocess.Popen([sys.executable, "-c", light, "studio.trainer", str(run_dir.resolve())])
                for _ in range(2)]
    try:
        async with StudioApp(inventory=Inventory([], reason="no NVIDIA driver")).run_test(size=(120, 40)) as pilot:
            await pilot.press("p")
            screen = await front(pilot, GpuProcesses)
            table = screen.query_one(DataTable)
            pids = {str(t.pid) for t in trainers}

            def rows() -> list[list[str]]:
                return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]

            await until(pilot, lambda: pids <= {r[0] for r in rows()}, "both trainers listed")
            first_cpu = {r[0]: r[2] for r in rows()}
            await pilot.press("down")
            chosen = rows()[table.cursor_row][0]
            # the next look measures each trainer's CPU (the first has nothing to compare with)
            await until(pilot, lambda: {r[0]: r[2] for r in rows()} != first_cpu, "the next look")
            await pilot.press("K")
            await until(pilot, lambda: isinstance(pilot.app.screen, Confirm), "the confirm")
            assert f"kill pid {chosen}" in screen_text(pilot.app)
    finally:
        for t in trainers:
            t.kill()
            t.wait()


async def test_the_gpu_pane_shows_the_hosts_cpu_and_ram_and_each_gpus_recent_utilisation(studio_env: Path) -> None:
    from dataclasses import replace

    from studio.hardware import HostLoad
    from studio.ui.widgets import SPARKS

    inv = fake_inventory()
    async with StudioApp(inventory=inv).run_test(size=(120, 40)) as pilot:
        pilot.app.host = HostLoad(cpu_pct=37.0, cpus=16, ram_used_gib=50.5, ram_total_gib=125.0)
        await until(pilot, lambda: "37% of 16 cores" in screen_text(pilot.app), "the host's CPU")
        assert "50.5/125 GiB" in screen_text(pilot.app)
        for util in (10, 90, 40, 100):  # four samples of GPU 0, as the poll brings them
            pilot.app.inventory = replace(inv, gpus=[replace(inv.gpus[0], utilization_pct=util), inv.gpus[1]])
            await pilot.pause()

        def gpu0() -> str:
            return next(line for line in screen_text(pilot.app).splitlines() if "[0]" in line)

        await until(pilot, lambda: sum(c in SPARKS for c in gpu0()) >= 4, "GPU 0's utilisation history")
        # 97% (the first sample), 10, 90, 40 and 100%, on a 0-100% scale: full, floor, full, half, full
        assert gpu0().rstrip("│ ").endswith("█▁█▄█"), gpu0()


async def test_the_fits_are_judged_again_when_the_gpus_are_found_after_the_lists_were_read(studio_env: Path) -> None:
    """The first read of the lists can beat NVML's first answer: the profiles were then judged for a machine
    without GPUs ("cpu"), and stayed so, all or some of them, until a profile file changed."""
    def fits() -> list[str]:
        table = pilot.app.screen.query_one("#profiles", DataTable)
        return [str(table.get_row_at(i)[-1]) for i in range(table.row_count)]

    async with StudioApp(poll_gpus=False).run_test(size=(120, 40)) as pilot:  # no GPU answer yet
        await until(pilot, lambda: fits() and all(f == "cpu" for f in fits()), "the fits of a machine without GPUs")
        pilot.app.inventory = fake_inventory()  # NVML answers
        await until(pilot, lambda: "cpu" not in fits(), "the fits judged again for the GPUs found")
        assert "fits" in fits()


async def test_the_gpu_pane_shows_what_was_sampled_while_a_monitor_covered_it(studio_env: Path) -> None:
    """Under a monitor the dashboard's pane samples without painting (a hidden screen's repaint costs a
    repaint of the whole terminal); back on the dashboard, the host's load and each GPU's history are the
    latest ones."""
    from dataclasses import replace

    from studio.hardware import HostLoad

    inv = fake_inventory()
    run_dir = record_run(studio_env)
    async with StudioApp(inventory=inv).run_test(size=(120, 40)) as pilot:
        pilot.app.host = HostLoad(cpu_pct=11.0, cpus=16, ram_used_gib=20.0, ram_total_gib=125.0)
        await until(pilot, lambda: "11% of 16 cores" in screen_text(pilot.app), "the host's CPU")
        pilot.app.open_run(Run(run_dir))
        await front(pilot, RunMonitor)
        pilot.app.host = HostLoad(cpu_pct=64.0, cpus=16, ram_used_gib=70.5, ram_total_gib=125.0)
        for util in (10, 90, 40, 100):  # GPU 0 sampled while the monitor is in front
            pilot.app.inventory = replace(inv, gpus=[replace(inv.gpus[0], utilization_pct=util), inv.gpus[1]])
            await pilot.pause()
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(pilot.app.screen, Dashboard), "the dashboard")
        await until(pilot, lambda: "64% of 16 cores" in screen_text(pilot.app), "the host's CPU sampled meanwhile")
        assert "70.5/125 GiB" in screen_text(pilot.app)
        gpu0 = next(line for line in screen_text(pilot.app).splitlines() if "[0]" in line)
        assert gpu0.rstrip("│ ").endswith("█▁█▄█"), gpu0  # 97% at the start, then the four samples
        assert "100%" in gpu0


async def test_a_run_that_ended_in_its_monitor_is_not_announced_again_on_the_dashboard(studio_env: Path) -> None:
    """Issue 36 #6: a late duplicate "run completed" toast after the monitor had said it."""
    run_dir = record_run(studio_env, status="completed")
    with live_trainer(run_dir, launched_at=time.time()) as trainer:  # running again, as after a resume
        async with app().run_test(size=(120, 40)) as pilot:
            said = notifications(pilot.app)
            dash = await on_the_dashboard(pilot)
            await until(pilot, lambda: dash.last_summaries and dash.last_summaries[0].status == RunStatus.RUNNING,
                        "the run listed as running")
            pilot.app.open_run(Run(run_dir))
            monitor = await front(pilot, RunMonitor)
            trainer.kill()
            trainer.wait()
            with (run_dir / "events.jsonl").open("a") as f:
                f.write(json.dumps({"event": "end", "time": time.time(), "status": "completed", "step": 40}) + "\n")
            await until(pilot, lambda: monitor.status == RunStatus.COMPLETED, "the monitor to see the end")
            await until(pilot, lambda: any(run_dir.name in t for t in said), "the monitor's toast")
            await pilot.press("escape")
            await front(pilot, Dashboard)
            # the read that would announce it again is the one that lists it completed
            await until(pilot, lambda: dash.last_summaries[0].status == RunStatus.COMPLETED, "the list re-read")
            await pilot.pause()
        assert sum(run_dir.name in t for t in said) == 1, said


async def test_a_home_of_more_runs_than_a_page_lists_the_newest_and_says_how_many(studio_env: Path,
                                                                                 monkeypatch) -> None:
    """The list holds the newest DASHBOARD_RUNS runs (20,000 run folders list as fast, and in as little
    memory, as a page): the title says how many there are and where the rest are listed."""
    import shutil

    from studio.ui import dashboard

    monkeypatch.setattr(dashboard, "DASHBOARD_RUNS", 5)
    first = record_run(studio_env, "20260901-090000-llama-qlora")
    for day in range(2, 8):
        shutil.copytree(first, studio_env / "runs" / f"202609{day:02d}-090000-llama-qlora")
    async with app().run_test(size=(120, 40)) as pilot:
        runs = pilot.app.screen.query_one("#runs", DataTable)
        await until(pilot, lambda: runs.row_count == 5, "a page of runs")
        assert "newest 5 of 7" in screen_text(pilot.app) and "studio runs --limit 0" in screen_text(pilot.app)
        assert runs.coordinate_to_cell_key((0, 0)).row_key.value == "20260907-090000-llama-qlora"
        assert "20260901-090000-llama-qlora" not in {row.value for row in runs.rows}


def codellama_rows(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if "codellama" in line]


async def test_resizing_behind_a_monitor_leaves_the_dashboard_laid_out_for_the_new_size(studio_env: Path) -> None:
    """Defect (issue 36 #4): open a run, resize 80x24 -> 60x20 -> 200x60 -> 120x40, esc: the Profiles list was
    clipped (`codellama-7b...`) with empty columns beside it, until the next resize."""
    record_run(studio_env, status="completed")
    async with app().run_test(size=(120, 40)) as pilot:
        await front(pilot, Dashboard)
        await until(pilot, lambda: codellama_rows(screen_text(pilot.app)), "the profiles listed")
        fresh = [row.split("·")[0] for row in codellama_rows(screen_text(pilot.app))]  # the names, whole
        assert fresh and all("codellama-7b-" in name and "…" not in name for name in fresh), fresh
    async with app().run_test(size=(80, 24)) as pilot:
        dash = await front(pilot, Dashboard)
        await until(pilot, lambda: dash.query_one("#runs", DataTable).row_count, "the run listed")
        await pilot.press("tab", "enter")
        await front(pilot, RunMonitor)
        for size in ((60, 20), (200, 60), (120, 40)):
            await pilot.resize_terminal(*size)
            await pilot.pause()
        await pilot.press("escape")
        await front(pilot, Dashboard)
        await until(pilot, lambda: [row.split("·")[0] for row in codellama_rows(screen_text(pilot.app))] == fresh,
                    f"the profiles laid out as at a fresh 120x40 ({fresh[:1]})")


async def test_at_60_columns_run_ids_keep_the_time_that_tells_them_apart(studio_env: Path) -> None:
    """Defect (issue 36 #13): at 60x20 every run id became `202...demo`, indistinguishable from the others."""
    ids = ["20260911-090000-tiny-demo", "20260911-093000-tiny-demo", "20260911-100000-tiny-demo"]
    for run_id in ids:
        record_run(studio_env, run_id, status="completed")
    async with app().run_test(size=(60, 20)) as pilot:
        dash = await front(pilot, Dashboard)
        table = dash.query_one("#runs", DataTable)
        await until(pilot, lambda: table.row_count == 3, "the runs listed")
        shown = [str(table.get_row_at(i)[0]) for i in range(3)]
        assert len(set(shown)) == 3, shown
        for cell in shown:
            assert any(run_id[9:15] in cell for run_id in ids), shown  # each names its time


async def test_the_runs_list_says_what_is_wrong_with_a_symbol_and_marks_runs_with_a_note(studio_env: Path) -> None:
    """Habits of the tools power users live in (issue 36): a run that ran out of memory reads so in the list
    (it read `failed`), and a run with a note has a mark."""
    from studio.runs.describe import write_note
    from studio.runs.state import RunSummary
    from studio.ui.dashboard import status_cell

    oom = record_run(studio_env, "20260911-090000-oom", status="oom")
    noted = record_run(studio_env, "20260911-100000-noted", status="completed")
    write_note(Run(noted), "the one with rank 16")
    async with app().run_test(size=(120, 40)) as pilot:
        table = (await front(pilot, Dashboard)).query_one("#runs", DataTable)
        await until(pilot, lambda: table.row_count == 2, "the runs listed")
        rows = {str(table.get_row_at(i)[0]).split()[0]: [str(c) for c in table.get_row_at(i)] for i in range(2)}
        assert "out of memory" in rows[oom.name][1], rows
        assert rows[noted.name][0].endswith("✎") and rows[noted.name][1] == "completed", rows
    summary = dict(id="r", profile="p", status=RunStatus.QUEUED, dir="/r", step=None, max_steps=None, loss=None,
                   started_at=None, ended_at=None, error_kind=None)
    queued = RunSummary(**summary, problem="waiting for Slurm: PartitionConfig (no node of the partition ...)")
    assert str(status_cell(queued)).endswith("queued: PartitionConfig")
    lost = RunSummary(**{**summary, "status": RunStatus.FAILED, "error_kind": "lost_machine"})
    assert "lost machine" in str(status_cell(lost))


async def test_the_runs_title_says_the_free_space_and_warns_when_it_runs_low(
        studio_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Habits (issue 36): the free disk space of the studio home in the dashboard, with a warning."""
    import re

    record_run(studio_env, status="completed")
    async with app().run_test(size=(160, 40)) as pilot:
        await front(pilot, Dashboard)
        await until(pilot, lambda: re.search(r"Runs .*· [\d,]+\.\d GiB free", screen_text(pilot.app)), "the free space")
    monkeypatch.setattr(Dashboard, "free_space", staticmethod(lambda: 3.0))
    async with app().run_test(size=(160, 40)) as pilot:
        await front(pilot, Dashboard)
        await until(pilot, lambda: "3.0 GiB free (checkpoints and exports need room" in screen_text(pilot.app),
                    "the warning")


async def test_a_fresh_home_without_runs_says_its_free_space_too(studio_env: Path) -> None:
    """Defect (found driving the app in tmux): with no runs folder yet, the title said nothing of the space."""
    import re

    assert not (studio_env / "runs").exists()
    async with app().run_test(size=(160, 40)) as pilot:
        await front(pilot, Dashboard)
        await until(pilot, lambda: re.search(r"Runs .*· [\d,]+\.\d GiB free", screen_text(pilot.app)), "the free space")


async def test_marked_runs_are_archived_together_and_the_archive_brings_one_back_and_deletes_another(
        studio_env: Path) -> None:
    from studio.paths import archive_dir
    from studio.ui.archive import ArchivedRuns
    from studio.ui.dialogs import Confirm

    ids = ["20260911-090000-a", "20260911-100000-b", "20260911-110000-c"]
    for run_id in ids:
        record_run(studio_env, run_id=run_id, status="completed")
    live = record_run(studio_env, run_id="20260911-120000-live", status="completed")
    with live_trainer(live, launched_at=time.time()):
        async with app().run_test(size=(120, 40)) as pilot:
            dash = await on_the_dashboard(pilot)
            runs = dash.query_one("#runs", DataTable)
            await until(pilot, lambda: runs.row_count == 4 and any(s.status == RunStatus.RUNNING
                                                                   for s in dash.last_summaries), "the four runs")
            runs.focus()
            for run_id in (ids[0], ids[1], live.name):
                runs.move_cursor(row=runs.get_row_index(run_id))
                await pilot.press("m")
            await until(pilot, lambda: len(dash.marked) == 3, "three marks")
            said = notifications(pilot.app)
            await pilot.press("x")  # for the marked runs, though the one under the cursor is still training
            await until(pilot, lambda: any("no marked run has anything to export" in t for t in said),
                        "why nothing is exported")
            await pilot.press("A")
            confirm = await front(pilot, Confirm)
            assert "archive 2 marked runs" in confirm.question and f"still going: {live.name}" in confirm.question
            await pilot.press("y")
            await until(pilot, lambda: runs.row_count == 2 and not dash.marked, "two runs left, the marks cleared")
            assert sorted(p.name for p in archive_dir().iterdir()) == ids[:2]
            assert (studio_env / "runs" / live.name).is_dir()  # the live run was left alone

            await pilot.press("a")
            archived = await front(pilot, ArchivedRuns)
            table = archived.query_one(DataTable)
            await until(pilot, lambda: table.row_count == 2, "the archive's two runs")
            assert "2 runs in the studio home" in screen_text(pilot.app)
            table.move_cursor(row=table.get_row_index(ids[0]))
            await pilot.press("u")
            await until(pilot, lambda: table.row_count == 1, "one run brought back")
            assert (studio_env / "runs" / ids[0]).is_dir()
            await pilot.press("D")
            confirm = await front(pilot, Confirm)
            assert f"delete archived run {ids[1]}" in confirm.question
            await pilot.press("y")
            await until(pilot, lambda: "the archive is empty" in screen_text(pilot.app), "the archive emptied")
            assert not list(archive_dir().iterdir())
            await pilot.press("escape")
            await front(pilot, Dashboard)
            await until(pilot, lambda: runs.row_count == 3, "the run brought back listed again")


@pytest.mark.slow
async def test_marked_runs_export_each_into_its_own_folder_and_one_with_nothing_is_left_out(studio_env: Path,
                                                                                           tmp_path: Path) -> None:
    from conftest import DEMO_DATA, studio, write_profile
    from studio.ui.dialogs import ExportDialog

    profile = write_profile(tmp_path / "p.toml", DEMO_DATA, train={"max_steps": 2, "save_steps": 100})
    trained = []
    for _ in range(2):
        proc = studio("run", str(profile), "--json")
        assert proc.returncode == 0, proc.stderr
        trained.append(Path(json.loads(proc.stdout.strip().splitlines()[-1])["dir"]).name)
    empty = record_run(studio_env, run_id="20260911-090000-nothing", status="completed")  # no final weights
    out = tmp_path / "exports"
    async with app().run_test(size=(120, 40)) as pilot:
        said = notifications(pilot.app)
        dash = await on_the_dashboard(pilot)
        runs = dash.query_one("#runs", DataTable)
        await until(pilot, lambda: runs.row_count == 3, "the three runs")
        runs.focus()
        for run_id in (*trained, empty.name):
            runs.move_cursor(row=runs.get_row_index(run_id))
            await pilot.press("m")
        await pilot.press("x")
        dialog = await front(pilot, ExportDialog)
        assert "export 2 marked runs" in dialog.heading and empty.name in dialog.heading
        dialog.query_one("#export-folder", Input).value = str(out)
        await pilot.press("enter")
        await until(pilot, lambda: all((out / r / "adapter_config.json").is_file() for r in trained)
                    and sum("exported run" in t or "adapter" in t for t in said) >= 2, "both exports")
        assert not (out / empty.name).exists() and not dash.marked
