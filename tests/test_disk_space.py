"""A run whose checkpoints and weights would not fit on the disk of the runs folder is said before anything is
written (studio/planning/disk.py): the CLI refuses it and names what to change (--ignore-disk goes ahead), the
app asks. The disk is a real small tmpfs (root only; skipped elsewhere)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DEMO_DATA, studio, write_profile
from ui_fixtures import studio_app as app
from waiting import until, wait_for

from studio.runs.folder import Run, list_runs
from studio.runs.launcher import stop_run
from studio.runs.liveness import is_alive

pytestmark = pytest.mark.slow


@pytest.fixture
def small_home(studio_env: Path) -> Iterator[Path]:
    """The studio home on a 1 MiB disk: a tiny LoRA run needs about 5 MiB (3 checkpoints and its weights)."""
    studio_env.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(studio_env)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root): a small disk cannot be made")
    try:
        yield studio_env
    finally:
        for run in list_runs() if (studio_env / "runs").is_dir() else []:
            if is_alive(run):
                stop_run(run, force=True)
                wait_for(lambda: not is_alive(run), "the trainer to end")
        # lazily: a trainer that the kill has not reaped yet may still hold its log open there
        subprocess.run(["umount", "-l", str(studio_env)], check=False)


def profile(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_profile(path, DEMO_DATA, train={"max_steps": 30, "save_steps": 10, "batch_size": 2})


def test_the_cli_refuses_a_run_that_would_fill_the_disk_and_ignore_disk_starts_it(small_home: Path,
                                                                                   tmp_path: Path) -> None:
    path = profile(tmp_path / "p.toml")
    proc = studio("run", str(path))
    assert proc.returncode == 2, proc.stderr
    assert re.search(r"writes about [\d.]+ MiB .*\(3 checkpoints of [\d.]+ KiB", proc.stderr) and "train.save_total_limit = 3" in proc.stderr, proc.stderr
    assert "MiB free" in proc.stderr and "--ignore-disk" in proc.stderr and "nothing was started" in proc.stderr
    assert not (small_home / "runs").exists() or not list((small_home / "runs").iterdir())  # nothing written
    started = studio("run", str(path), "--ignore-disk", "--detach", "--json")
    assert started.returncode == 0, started.stderr
    assert Path(json.loads(started.stdout.strip().splitlines()[-1])["dir"]).is_dir()


async def test_the_app_asks_before_a_run_that_would_fill_the_disk_and_yes_starts_it(small_home: Path) -> None:
    from textual.widgets import DataTable

    from studio.ui.dialogs import Confirm
    from studio.ui.monitor import RunMonitor

    profile(small_home / "profiles" / "small.toml")
    async with app().run_test(size=(120, 40)) as pilot:
        profiles = pilot.app.screen.query_one("#profiles", DataTable)
        await until(pilot, lambda: profiles.row_count, "the profiles")
        profiles.focus()
        profiles.move_cursor(row=profiles.get_row_index("user:small"))
        await pilot.press("r")
        await until(pilot, lambda: isinstance(pilot.app.screen, Confirm), "a question before a run that fills the disk")
        question = pilot.app.screen.question
        assert "train.save_total_limit" in question and "Start it anyway?" in question, question
        assert not (small_home / "runs").exists() or not list((small_home / "runs").iterdir())
        await pilot.press("y")
        await until(pilot, lambda: isinstance(pilot.app.screen, RunMonitor), "the new run's monitor")
        assert isinstance(pilot.app.screen.run, Run)
