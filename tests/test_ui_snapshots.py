"""How each screen looks, at 80x24 and 120x40, with a described GPU inventory and a recorded run.
Update after an intended change with: python -m pytest tests/test_ui_snapshots.py --snapshot-update"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.worker import WorkerCancelled

from studio.paths import bundled_profiles_dir
from studio.runs.folder import Run
from studio.ui.app import StudioApp
from studio.ui.dashboard import Dashboard
from ui_fixtures import RECORDED_AT, eight_gpus, fake_inventory, record_run, screen_text
from waiting import POLL_S

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


@pytest.fixture
def recorded(studio_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(Dashboard, "clock", staticmethod(lambda: RECORDED_AT))
    monkeypatch.setattr(Dashboard, "free_space", staticmethod(lambda: 812.4))
    return record_run(studio_env)


async def settle(pilot, ready=lambda app: True) -> None:
    """Wait until `ready(app)` holds and the screen has stopped changing (workers, timers and layout
    done), however slow the machine: a snapshot compares a settled screen, never a moment."""
    try:
        await pilot.app.workers.wait_for_complete()
    except WorkerCancelled:
        pass  # an exclusive worker replaced by a newer one (the monitor's file poll): the loop below waits on
    # the screen itself
    previous, same = None, 0
    for _ in range(300):
        for field in pilot.app.screen.query("Input, TextArea"):
            field.cursor_blink = False  # a blinking cursor is a different picture every half second
        await asyncio.sleep(POLL_S)  # look again: the loop ends on three identical screens, not on the clock
        shot = pilot.app.export_screenshot()
        same = same + 1 if shot == previous and ready(pilot.app) else 0
        if same >= 3:
            return
        previous = shot
    raise AssertionError("the screen never settled:\n" + screen_text(pilot.app))


@pytest.mark.parametrize("size", SIZES)
def test_dashboard(snap_compare, recorded: Path, size) -> None:
    assert snap_compare(StudioApp(inventory=fake_inventory()), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES)
def test_dashboard_of_an_eight_gpu_box(snap_compare, recorded: Path, size) -> None:
    assert snap_compare(StudioApp(inventory=eight_gpus()), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES)
def test_run_monitor(snap_compare, recorded: Path, size) -> None:
    assert snap_compare(StudioApp(open_run=Run(recorded), inventory=fake_inventory()), terminal_size=size,
                        run_before=settle)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("objective,shown", [("dpo", "acc 100%"), ("grpo", "reward 0.90")])
def test_run_monitor_of_a_preference_run(snap_compare, studio_env: Path, monkeypatch: pytest.MonkeyPatch, size,
                                         objective: str, shown: str) -> None:
    """A preference or reward run's monitor shows what it trains for: DPO's reward margin and accuracy,
    GRPO's mean reward, answer length and KL."""
    monkeypatch.setattr(Dashboard, "clock", staticmethod(lambda: RECORDED_AT))
    monkeypatch.setattr(Dashboard, "free_space", staticmethod(lambda: 812.4))
    run = record_run(studio_env, f"20260911-090000-llama-{objective}", objective=objective)
    assert snap_compare(StudioApp(open_run=Run(run), inventory=fake_inventory()), terminal_size=size,
                        run_before=lambda pilot: settle(pilot, lambda app: shown in screen_text(app)))


@pytest.mark.parametrize("size", SIZES)
def test_profile_editor(snap_compare, recorded: Path, size) -> None:
    async def open_editor(pilot) -> None:
        pilot.app.edit_profile(bundled_profiles_dir() / "llama-3.1-8b-lora-24gb.toml")
        await settle(pilot)

    assert snap_compare(StudioApp(inventory=fake_inventory()), terminal_size=size, run_before=open_editor)


@pytest.mark.parametrize("size", SIZES)
def test_run_monitor_of_a_failed_run(snap_compare, studio_env: Path, monkeypatch: pytest.MonkeyPatch, size) -> None:
    monkeypatch.setattr(Dashboard, "clock", staticmethod(lambda: RECORDED_AT))
    monkeypatch.setattr(Dashboard, "free_space", staticmethod(lambda: 812.4))
    run = record_run(studio_env, "20260911-100000-llama-qlora", status="oom")
    assert snap_compare(StudioApp(open_run=Run(run), inventory=fake_inventory()), terminal_size=size,
                        run_before=settle)


@pytest.mark.parametrize("size", SIZES)
def test_profile_that_does_not_parse(snap_compare, studio_env: Path, size) -> None:
    path = studio_env / "profiles" / "broken.toml"
    path.parent.mkdir(parents=True)
    path.write_text('# my run\n[model]\nname = "meta-llama/Llama-3.1-8B"\n[train\nbatch_size = 4\n')

    async def open_it(pilot) -> None:
        pilot.app.edit_profile(path)
        await settle(pilot)

    assert snap_compare(StudioApp(inventory=fake_inventory()), terminal_size=size, run_before=open_it)


@pytest.mark.parametrize("size", SIZES)
def test_run_comparison(snap_compare, recorded: Path, size) -> None:
    other = record_run(recorded.parent.parent, "20260911-100000-llama-qlora", rank=64, floor=0.9)

    async def compare(pilot) -> None:
        pilot.app.open_comparison([Run(recorded), Run(other)])
        await settle(pilot, lambda app: app.screen.result is not None)  # the runs are read in a worker

    assert snap_compare(StudioApp(inventory=fake_inventory()), terminal_size=size, run_before=compare)


@pytest.mark.parametrize("size", SIZES)
def test_chat(snap_compare, recorded: Path, monkeypatch: pytest.MonkeyPatch, size) -> None:
    from studio.ui.chat import ChatScreen

    def loaded(screen: ChatScreen) -> None:  # the model is not loaded: the layout is what is checked
        screen.status("compare: adapter of step 40 on cuda:1, loaded in 3.6 s", "green")

    monkeypatch.setattr(ChatScreen, "open_session", loaded)

    async def chat(pilot) -> None:
        pilot.app.open_chat(Run(recorded))
        await settle(pilot)
        screen = pilot.app.screen
        screen.write("base", "\n> What is 11 plus 5?\n11 plus 5 is 115.\n")
        screen.write("tuned", "\n> What is 11 plus 5?\n11 plus 5 is 16, because ten and five make fifteen and one "
                              "more makes sixteen; the answer wraps in its pane.\n")
        await settle(pilot)

    assert snap_compare(StudioApp(inventory=fake_inventory()), terminal_size=size, run_before=chat)


@pytest.mark.parametrize("size", SIZES)
def test_gpu_processes(snap_compare, recorded: Path, size) -> None:
    from dataclasses import replace

    from studio.hardware import GpuProcess

    inv = fake_inventory()
    gone = 4_194_400   # above Linux's largest pid: a process that is not there, the same on every machine
    gpus = [replace(inv.gpus[0], processes=[GpuProcess(gone, 58.4)]),
            replace(inv.gpus[1], processes=[GpuProcess(gone + 1, 0.4)])]

    async def open_processes(pilot) -> None:
        await pilot.press("p")
        await settle(pilot, lambda app: "processes" in app.screen.title)

    assert snap_compare(StudioApp(inventory=replace(inv, gpus=gpus)), terminal_size=size, run_before=open_processes)


@pytest.mark.parametrize("size", SIZES)
def test_archived_runs(snap_compare, recorded: Path, size) -> None:
    from studio.runs.describe import archive_run

    home = recorded.parent.parent
    archive_run(Run(recorded))
    archive_run(Run(record_run(home, "20260911-100000-llama-qlora", rank=64, floor=0.9, status="stopped")))

    async def open_archive(pilot) -> None:
        await pilot.press("a")
        await settle(pilot, lambda app: app.screen.title == "Archived runs" and app.screen.summaries)

    assert snap_compare(StudioApp(inventory=fake_inventory()), terminal_size=size, run_before=open_archive)


@pytest.mark.parametrize("size", SIZES)
def test_run_monitor_with_the_times_of_its_log(snap_compare, recorded: Path, size) -> None:
    lines = (recorded / "trainer.log").read_text().splitlines()
    (recorded / "trainer.log").write_text("".join(f"2026-09-11 09:{i // 60 % 60:02d}:{i % 60:02d} {line}\n"
                                                  for i, line in enumerate(lines)))
    assert snap_compare(StudioApp(open_run=Run(recorded), inventory=fake_inventory()), terminal_size=size,
                        run_before=settle)


@pytest.mark.parametrize("size", SIZES)
def test_trainer_processes_on_a_machine_without_gpus(snap_compare, recorded: Path, monkeypatch: pytest.MonkeyPatch,
                                                     size) -> None:
    from studio.hardware import Inventory
    from studio.ui.processes import ProcessRow, TrainerWatch

    # the figures are fixed (and no machine path): the layout is what is checked
    command = f"python -m studio.trainer /home/ada/.local/share/studio/runs/{recorded.name}"
    monkeypatch.setattr(TrainerWatch, "rows", lambda self: [
        ProcessRow(None, 4242, "ada", None, recorded.name, command, 187.0, 1.25),
        ProcessRow(None, 4250, "ada", None, "", "python -m studio.trainer /elsewhere/runs/x", 3.0, 0.5)])

    async def open_processes(pilot) -> None:
        await pilot.press("p")
        await settle(pilot, lambda app: app.screen.title == "Trainer processes")

    app = StudioApp(inventory=Inventory([], reason="no NVIDIA driver"))
    assert snap_compare(app, terminal_size=size, run_before=open_processes)


@pytest.mark.parametrize("size", SIZES)
def test_export_dialog(snap_compare, recorded: Path, monkeypatch: pytest.MonkeyPatch, size) -> None:
    monkeypatch.setenv("HOME", "/home/ada")  # the dialog offers a folder in the user's home
    (recorded / "final").mkdir(exist_ok=True)
    (recorded / "final" / "adapter_config.json").write_text("{}")

    async def open_export(pilot) -> None:
        from studio.ui.dialogs import ExportDialog

        # x applies once the monitor has read the run's status (the footer offers it then); pressed before, it
        # does nothing, as for a run still training
        await settle(pilot, lambda app: "x Export" in screen_text(app))
        await pilot.press("x")
        await settle(pilot, lambda app: isinstance(app.screen, ExportDialog))

    assert snap_compare(StudioApp(open_run=Run(recorded), inventory=fake_inventory()), terminal_size=size,
                        run_before=open_export)
