"""What a newcomer meets in the first minutes: the CLI's small messages and figures say what is true."""

from __future__ import annotations

import tomllib
from pathlib import Path

from conftest import studio
from studio.display import step_line
from studio.runs.events import Step
from studio.runs.folder import Run
from studio.ui.app import StudioApp
from ui_fixtures import fake_inventory, record_run, screen_text
from waiting import until


def test_stop_on_a_finished_run_says_only_that_there_is_nothing_to_stop(studio_env: Path) -> None:
    run_dir = record_run(studio_env, status="completed")
    proc = studio("stop", run_dir.name)
    assert proc.returncode != 0 and "not running" in proc.stderr
    assert "asking" not in proc.stdout  # no promise of a stop first


def test_the_progress_line_is_full_only_at_the_last_step() -> None:
    almost = step_line(Step(step=59, max_steps=60, loss=1.0, tokens_per_s=100.0))
    done = step_line(Step(step=60, max_steps=60, loss=1.0, tokens_per_s=100.0))
    assert "." in almost.split("[")[1].split("]")[0] and "98%" in almost
    assert "[" + "#" * 20 + "]" in done and "100%" in done


def test_profile_new_from_a_template_keeps_its_settings_and_no_untrue_description(studio_env: Path) -> None:
    proc = studio("profile", "new", "mine", "--from", "tiny-demo", "--method", "qlora")
    assert proc.returncode == 0, proc.stderr
    written = tomllib.loads((studio_env / "profiles" / "mine.toml").read_text())
    assert written["method"]["type"] == "qlora"
    assert written["train"]["optimizer"] == "adamw"  # the template's, kept
    assert "LoRA" not in written["description"] and "tiny-demo" in written["description"]
    assert "studio profile check mine" in proc.stdout and "studio run mine" in proc.stdout


async def test_the_monitor_of_a_completed_run_offers_export(studio_env: Path) -> None:
    run_dir = record_run(studio_env, status="completed")
    async with StudioApp(inventory=fake_inventory(), open_run=Run(run_dir)).run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: "Export" in screen_text(pilot.app), "x Export in the footer")

