"""The run actions on the screens that offer them (the dashboard's Runs list, the monitor): every action the
screen offers for a run's status does something the user sees (a dialog, a screen, a message), and one it
does not offer shows nowhere (footer, palette) and does nothing."""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path

import pytest
from textual.widgets import DataTable

from studio.runs.folder import Run
from studio.runs.status import RunStatus
from studio.ui.actions import RUN_ACTIONS
from studio.ui.app import StudioApp
from studio.ui.dashboard import Dashboard
from studio.ui.monitor import RunMonitor
from ui_fixtures import fake_inventory, live_trainer, notifications, on_the_dashboard, record_run, screen_text
from waiting import until

OFFERED = {
    RunStatus.COMPLETED: {"export", "chat", "describe", "copy_id", "copy_path", "shell", "note", "archive", "delete"},
    RunStatus.RUNNING: {"stop", "kill", "describe", "copy_id", "copy_path", "shell", "note", "archive", "delete"},
}


@pytest.mark.parametrize("where", ["dashboard", "monitor"])
@pytest.mark.parametrize("status", [RunStatus.COMPLETED, RunStatus.RUNNING])
async def test_every_offered_run_action_does_something_and_no_other_shows(
        studio_env: Path, where: str, status: RunStatus) -> None:
    run_dir = record_run(studio_env)
    # a trainer launched after the recorded end: the run is running again (as after a resume)
    alive = live_trainer(run_dir, launched_at=time.time()) if status == RunStatus.RUNNING else nullcontext()
    with alive:
        app = StudioApp(open_run=Run(run_dir) if where == "monitor" else None, inventory=fake_inventory(),
                        poll_gpus=False)
        async with app.run_test(size=(120, 40)) as pilot:
            said = notifications(pilot.app)
            if where == "dashboard":
                await on_the_dashboard(pilot)  # the one run training opens in its monitor first
            kind = RunMonitor if where == "monitor" else Dashboard
            screen = await until(pilot, lambda: isinstance(pilot.app.screen, kind) and pilot.app.screen.acting_status()
                                 == status and pilot.app.screen, f"the {where} showing the run {status}")
            if where == "dashboard":
                screen.query_one("#runs", DataTable).focus()
            offered = {a.name for a in RUN_ACTIONS if screen.applies(a.name)}
            assert offered == OFFERED[status]
            palette = {c.title for c in pilot.app.get_system_commands(screen)}
            for a in RUN_ACTIONS:
                assert (a.title in palette) == (a.name in offered), a.name
            footer = lambda: screen_text(pilot.app).splitlines()[-1]  # noqa: E731
            shown = "s Stop" if status == RunStatus.RUNNING else "c Chat"
            await until(pilot, lambda: shown in footer(), f"the footer to offer {shown}")
            assert ("s Stop" in footer()) == (status == RunStatus.RUNNING), footer()
            for a in RUN_ACTIONS:
                before = len(said)
                await pilot.press(a.key)
                if a.name not in offered:
                    await pilot.pause()  # let the key's handling (if any) run
                    assert pilot.app.screen is screen and len(said) == before, f"{a.name} did something"
                    continue
                await until(pilot, lambda: pilot.app.screen is not screen or len(said) > before,
                            f"{a.name} to open something or say something")
                while pilot.app.screen is not screen:  # a dialog, the chat, the description: back out of it
                    pilot.app.pop_screen()
                    await pilot.pause()
            assert Run(run_dir).dir.is_dir()  # nothing was deleted, archived or stopped without a yes
            if status == RunStatus.RUNNING:
                assert not any("stopping" in s or "killed" in s for s in said)
                # delete and archive refuse a live run at once, naming the key that stops it (issue 36 #8)
                assert sum("stop it first (s)" in s for s in said) == 2, said
