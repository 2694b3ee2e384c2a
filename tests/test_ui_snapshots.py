"""How each screen looks, at 80x24 and 120x40, with a described GPU inventory and a recorded run.
Update after an intended change with: python -m pytest tests/test_ui_snapshots.py --snapshot-update"""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.paths import bundled_profiles_dir
from studio.runs.folder import Run
from studio.ui.app import StudioApp
from studio.ui.dashboard import Dashboard
from ui_fixtures import RECORDED_AT, fake_inventory, record_run

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


@pytest.fixture
def recorded(studio_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(Dashboard, "clock", staticmethod(lambda: RECORDED_AT))
    return record_run(studio_env)


async def settle(pilot) -> None:
    await pilot.pause(0.3)


@pytest.mark.parametrize("size", SIZES)
def test_dashboard(snap_compare, recorded: Path, size) -> None:
    assert snap_compare(StudioApp(inventory=fake_inventory()), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES)
def test_run_monitor(snap_compare, recorded: Path, size) -> None:
    assert snap_compare(StudioApp(open_run=Run(recorded), inventory=fake_inventory()), terminal_size=size,
                        run_before=settle)


@pytest.mark.parametrize("size", SIZES)
def test_profile_editor(snap_compare, recorded: Path, size) -> None:
    async def open_editor(pilot) -> None:
        pilot.app.edit_profile(bundled_profiles_dir() / "llama-3.1-8b-lora-24gb.toml")
        await pilot.pause(0.5)

    assert snap_compare(StudioApp(inventory=fake_inventory()), terminal_size=size, run_before=open_editor)
