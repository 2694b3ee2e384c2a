"""What a power user does to runs besides training them: describe one (its frozen profile, the plan and
why each auto was decided, devices and versions), delete one (never a running one), copy its id."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from textual.widgets import DataTable

from conftest import studio
from studio.planning.plan import plan_run
from studio.planning.record import Trained
from studio.profiles.decision import Decision
from studio.profiles.profile import load_profile
from studio.runs.folder import Run
from studio.ui.app import StudioApp
from studio.ui.dialogs import Confirm
from ui_fixtures import fake_inventory, record_run, screen_text
from waiting import until


def test_describe_prints_the_profile_the_decisions_and_the_devices(studio_env: Path) -> None:
    run_dir = record_run(studio_env)
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    for e in events:  # what a trainer's start record also holds
        if e["event"] == "start":
            e.update(torch="2.13.0")
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    plan = plan_run(load_profile(run_dir / "profile.toml"), fake_inventory()).record()
    trained = Trained(plan.resolved, (Decision("data.packing", True, "rows average 19.3 tokens"),))
    Run(run_dir).write_plan(replace(plan, trained=trained))  # what the trainer writes when it starts
    proc = studio("describe", run_dir.name)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "run 20260911-090000-llama-qlora" in out and "status completed" in out
    assert "data.packing = on: rows average 19.3 tokens" in out
    assert "NVIDIA A100-SXM4-80GB" in out and "torch 2.13.0" in out and "paged_adamw_8bit" in out
    assert 'name = "meta-llama/Llama-3.1-8B"' in out  # the frozen profile, as the run holds it
    as_json = json.loads(studio("describe", run_dir.name, "--json").stdout)
    assert as_json["id"] == run_dir.name and as_json["decisions"][0]["key"] == "data.packing"


def test_delete_removes_a_finished_run_and_refuses_a_running_one(studio_env: Path) -> None:
    done = record_run(studio_env, "20260911-090000-done")
    proc = studio("delete", done.name)
    assert proc.returncode == 2 and "--yes" in proc.stderr and done.is_dir()  # asks for the confirmation flag
    proc = studio("delete", done.name, "--yes")
    assert proc.returncode == 0 and not done.exists(), proc.stderr
    outside = studio_env.parent / "keep-me"
    outside.mkdir()
    linked = studio_env / "runs" / "20260911-100000-link"
    linked.symlink_to(outside, target_is_directory=True)
    proc = studio("delete", linked.name, "--yes")
    assert proc.returncode == 2 and outside.is_dir()  # a link is never followed out of the runs folder


async def test_the_app_describes_deletes_and_copies_a_run(studio_env: Path) -> None:
    from studio.ui.dialogs import Help

    keep = record_run(studio_env, "20260911-090000-keep")
    gone = record_run(studio_env, "20260912-090000-gone")
    async with StudioApp(inventory=fake_inventory()).run_test(size=(120, 40)) as pilot:
        runs = pilot.app.screen.query_one("#runs", DataTable)
        await until(pilot, lambda: runs.row_count == 2, "both runs")
        runs.focus()
        runs.move_cursor(row=runs.get_row_index(gone.name))
        await pilot.press("d")
        await until(pilot, lambda: isinstance(pilot.app.screen, Help) and "decisions" in screen_text(pilot.app),
                    "the description")
        await pilot.press("escape")
        await until(pilot, lambda: runs.has_focus, "the list again")
        copied: list[str] = []
        pilot.app.copy_to_clipboard = copied.append
        await pilot.press("y")
        await until(pilot, lambda: copied == [gone.name], "the id copied (OSC 52)")
        await pilot.press("D")
        await until(pilot, lambda: isinstance(pilot.app.screen, Confirm), "a question first")
        await pilot.press("y")
        await until(pilot, lambda: not gone.exists() and runs.row_count == 1, "the run deleted and unlisted")
        assert keep.is_dir() and Run(keep).id in pilot.app.screen.run_dirs


def test_a_note_on_a_run_and_archiving_it_from_the_cli(studio_env: Path) -> None:
    run_dir = record_run(studio_env, "20260911-090000-tried")
    assert "has no note" in studio("note", run_dir.name, check=True).stdout
    studio("note", run_dir.name, "lr 2e-4 overfits after step 30", check=True)
    assert studio("note", run_dir.name, check=True).stdout.strip() == "lr 2e-4 overfits after step 30"
    assert "note: lr 2e-4 overfits" in studio("describe", run_dir.name, check=True).stdout
    assert json.loads(studio("runs", "--json", check=True).stdout)[0]["note"] == "lr 2e-4 overfits after step 30"
    proc = studio("note", run_dir.name, "x" * 3000)
    assert proc.returncode == 2 and "at most 2000" in proc.stderr  # refused, the note kept
    assert (run_dir / "note.txt").read_text().strip() == "lr 2e-4 overfits after step 30"

    proc = studio("archive", run_dir.name)
    assert proc.returncode == 0 and "unarchive" in proc.stdout, proc.stderr
    archived = studio_env / "archive" / run_dir.name
    assert not run_dir.exists() and (archived / "events.jsonl").is_file()
    assert json.loads(studio("runs", "--json", check=True).stdout) == []
    assert run_dir.name in studio("unarchive", check=True).stdout  # the archive, listed
    assert "no run" in studio("unarchive", "20260101-nothing").stderr
    studio("unarchive", run_dir.name, check=True)
    assert run_dir.is_dir() and not archived.exists() and Run(run_dir).note().startswith("lr 2e-4")


async def test_the_app_keeps_a_note_on_a_run_finds_it_and_archives_the_run(studio_env: Path) -> None:
    from studio.ui.dialogs import NoteDialog

    run_dir = record_run(studio_env, "20260911-090000-tried")
    other = record_run(studio_env, "20260912-090000-other")
    async with StudioApp(inventory=fake_inventory()).run_test(size=(120, 40)) as pilot:
        runs = pilot.app.screen.query_one("#runs", DataTable)
        await until(pilot, lambda: runs.row_count == 2, "both runs")
        runs.focus()
        runs.move_cursor(row=runs.get_row_index(run_dir.name))
        await pilot.press("t")
        await until(pilot, lambda: isinstance(pilot.app.screen, NoteDialog), "the note dialog")
        await pilot.press(*"overfits", "enter")
        await until(pilot, lambda: Run(run_dir).note() == "overfits", "the note kept in the run")
        await pilot.press("slash", *"overfit", "enter")
        await until(pilot, lambda: runs.row_count == 1 and run_dir.name in pilot.app.screen.run_dirs,
                    "the filter finds the run by its note")
        runs.focus()
        await pilot.press("A")
        await until(pilot, lambda: isinstance(pilot.app.screen, Confirm), "a question first")
        await pilot.press("y")
        await until(pilot, lambda: not run_dir.exists() and runs.row_count == 0, "archived and unlisted")
        assert (studio_env / "archive" / run_dir.name / "note.txt").is_file() and other.is_dir()
