"""Issue 13's defects, each reproduced with Pilot on the real app and real files."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest
import tomli_w
from textual.widgets import DataTable, Input, Select

from conftest import DEMO_DATA, studio
from studio.data import DataError
from studio.runs.events import Start, Step, Timeline
from studio.runs.folder import Run
from studio.ui.app import StudioApp
from studio.ui.dashboard import Dashboard
from studio.ui.dialogs import Confirm
from studio.ui.editor import ProfileEditor
from studio.ui.monitor import RunMonitor
from ui_fixtures import eight_gpus, fake_inventory, live_trainer, notifications, record_run, screen_text
from waiting import until


def app(**kw) -> StudioApp:
    return StudioApp(inventory=fake_inventory(), **kw)


def write(home: Path, name: str, text: str) -> Path:
    path = home / "profiles" / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


GOOD = f'# my notes\n[data]\npath = "{DEMO_DATA}"\n[train]\nbatch_size = 2  # small\n'


# 1 ------------------------------------------------------------------ a broken file is never overwritten

@pytest.mark.parametrize("text,shown", [
    ('[train\nbatch_size = 4\n', "line 1"),                                    # not TOML
    (GOOD + "learning_rate = -1\nfavourite_colour = \"blue\"\n", "train.learning_rate"),  # TOML, not a profile
])
async def test_a_profile_that_does_not_load_opens_as_text_and_nothing_is_lost(studio_env: Path, text: str,
                                                                              shown: str) -> None:
    from textual.widgets import TextArea

    path = write(studio_env, "broken", text)
    async with app().run_test(size=(120, 40)) as pilot:
        pilot.app.edit_profile(path)
        await pilot.pause(0.3)
        screen = pilot.app.screen
        assert not isinstance(screen, ProfileEditor), "a broken file must not open as a form of defaults"
        assert shown in str(screen.query_one("#raw-problems").render())
        assert screen.query_one(TextArea).text == text
        await pilot.press("ctrl+s")  # saving the text as it is changes nothing
        await pilot.pause(0.2)
        assert path.read_text() == text
        screen.query_one(TextArea).text = GOOD
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        assert path.read_text() == GOOD and "ok" in str(screen.query_one("#raw-problems").render())


# 2 ------------------------------------------------------------------ a deleted run folder

async def test_resume_after_the_run_folder_was_deleted_does_not_crash(studio_env: Path) -> None:
    run_dir = record_run(studio_env, status="crashed")
    async with app(open_run=Run(run_dir)).run_test(size=(100, 30)) as pilot:
        texts = notifications(pilot.app)
        await pilot.pause()
        shutil.rmtree(run_dir)
        await pilot.press("u")
        await until(pilot, lambda: any("no longer exists" in t for t in texts), "the answer to resume")
        assert isinstance(pilot.app.screen, RunMonitor) and not run_dir.exists()


# 3 ------------------------------------------------------------------ names are names

def test_the_cli_refuses_a_profile_name_that_is_a_path(studio_env: Path, tmp_path: Path) -> None:
    for name in ("../evil", "/tmp/x", "a/b", ".hidden", "..", "my run"):
        proc = studio("profile", "new", name)
        assert proc.returncode == 2 and "plain name" in proc.stderr, name
    assert not (studio_env / "evil.toml").exists() and not Path("/tmp/x.toml").exists()


async def test_the_app_refuses_a_profile_name_that_is_a_path(studio_env: Path) -> None:
    from studio.ui.dialogs import NewProfileDialog

    async with app().run_test(size=(100, 30)) as pilot:
        await pilot.press("n")
        await until(pilot, lambda: isinstance(pilot.app.screen, NewProfileDialog), "the dialog")
        dialog = pilot.app.screen
        await pilot.press(*"../evil", "enter")
        await until(pilot, lambda: "plain name" in str(dialog.query_one("#name-problem").render()), "the refusal")
        assert pilot.app.screen is dialog
    assert not (studio_env / "evil.toml").exists()


# 4 ------------------------------------------------------------------ destructive answers are not the default

async def test_enter_in_a_confirmation_means_no(studio_env: Path) -> None:
    answers = []
    async with app().run_test(size=(100, 30)) as pilot:
        pilot.app.push_screen(Confirm("kill it?"), answers.append)
        await pilot.pause(0.2)
        await pilot.press("enter")
        await pilot.pause(0.2)
    assert answers == [False]


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


# 5 ------------------------------------------------------------------ starting does not freeze the app

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


# 6 ------------------------------------------------------------------ no edit, no question

async def test_opening_and_leaving_a_profile_without_an_edit_asks_nothing(studio_env: Path) -> None:
    write(studio_env, "calm", GOOD)
    async with app().run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.3)
        await pilot.press("e")
        await pilot.pause(0.5)
        assert isinstance(pilot.app.screen, ProfileEditor)
        await pilot.press("escape")
        await pilot.pause(0.3)
        assert isinstance(pilot.app.screen, Dashboard)


# 7 ------------------------------------------------------------------ enter, j/k, g/G

async def test_enter_opens_and_vim_keys_move(studio_env: Path) -> None:
    record_run(studio_env, "20260911-090000-a")
    record_run(studio_env, "20260911-090000-b")
    async with app().run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.3)
        profiles = pilot.app.screen.query_one("#profiles", DataTable)
        await pilot.press("j", "j")
        assert profiles.cursor_row == 2
        await pilot.press("k")
        assert profiles.cursor_row == 1
        await pilot.press("G")
        assert profiles.cursor_row == profiles.row_count - 1
        await pilot.press("g")
        assert profiles.cursor_row == 0
        await pilot.press("enter")
        await pilot.pause(0.4)
        assert isinstance(pilot.app.screen, ProfileEditor)
        await pilot.press("escape")
        await pilot.pause(0.3)
        await pilot.press("tab", "enter")
        await pilot.pause(0.4)
        assert isinstance(pilot.app.screen, RunMonitor)


# 8 ------------------------------------------------------------------ after a resume

def test_no_stall_alert_counts_from_before_a_resume() -> None:
    from studio.runs.health import health_alerts

    old = [Step(step=s, time=1000.0 + s, tokens_per_s=100.0, loss=2.0) for s in range(1, 11)]
    tl = Timeline().extend([*old, Start(time=5000.0, step=10)])
    assert not [a for a in health_alerts(tl, running=True, now=5005.0) if a.kind == "stall"]


def test_the_step_shown_is_the_latest_written_while_steps_replay() -> None:
    tl = Timeline().extend([Step(step=s, time=float(s)) for s in range(1, 31)] + [Start(time=40.0, step=20)]
                           + [Step(step=21, time=41.0), Step(step=22, time=42.0)])
    assert tl.current_step.step == 22 and tl.last_step.step == 30


async def test_a_resumed_run_drops_the_old_banner_and_alert_text_is_whole(studio_env: Path) -> None:
    run_dir = record_run(studio_env, status="completed")
    events = run_dir / "events.jsonl"
    lines = events.read_text().splitlines()
    lines[-1] = json.dumps({"event": "end", "time": 1.0, "status": "stopped", "step": 40,
                            "message": "stopped at step 40", "advice": "resume continues from step 40"})
    lines.append(json.dumps({"event": "start", "time": 2.0, "step": 40, "max_steps": 80}))
    lines.append(json.dumps({"event": "step", "time": 3.0, "step": 41, "max_steps": 80, "loss": float("nan"),
                             "tokens_per_s": 100.0}))
    events.write_text("\n".join(lines) + "\n")
    async with app(open_run=Run(run_dir)).run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        screen = pilot.app.screen
        assert "stopped at step 40" not in str(screen.query_one("#error-panel").render())
        alerts = " ".join(str(screen.query_one("#alerts").render()).split())
        assert "loss is nan at step 41: lower train.learning_rate or check the data" in alerts


# 9 ------------------------------------------------------------------ status and wording

async def test_finished_runs_show_no_live_parts_and_offer_no_stop(studio_env: Path) -> None:
    run_dir = record_run(studio_env, status="oom")
    async with app(open_run=Run(run_dir)).run_test(size=(100, 30)) as pilot:
        screen = await until(pilot, lambda: isinstance(pilot.app.screen, RunMonitor) and pilot.app.screen.status
                             and pilot.app.screen, "the monitor of the failed run")
        assert not screen.query_one("#progress").display
        assert "waiting for the first step" not in str(screen.query_one("#memory-text").render())
        assert "ETA" not in str(screen.query_one("#progress-text").render())
        footer = lambda: screen_text(pilot.app).splitlines()[-1]  # noqa: E731
        await until(pilot, lambda: "u Resume" in footer(), "the footer of a failed run")
        assert "Stop" not in footer() and "Kill" not in footer(), footer()
        texts = notifications(pilot.app)
        for key in ("s", "K"):
            await pilot.press(key)
            await pilot.pause()
            assert pilot.app.screen is screen and not texts, f"{key} did something on a finished run"


async def test_the_monitor_names_the_apps_keys_not_cli_commands(studio_env: Path) -> None:
    run_dir = record_run(studio_env, status="oom")
    async with app(open_run=Run(run_dir)).run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: isinstance(pilot.app.screen, RunMonitor)
                    and "what to do" in str(pilot.app.screen.query_one("#error-panel").render()), "the advice")
        text = str(pilot.app.screen.query_one("#error-panel").render())
        assert "studio " not in text and "keys: f saves the revised profile" in text


# 10 ----------------------------------------------------------------- 80x24

async def test_80x24_keeps_the_words_whole(studio_env: Path) -> None:
    record_run(studio_env, status="completed")
    async with app().run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        runs = pilot.app.screen.query_one("#runs", DataTable)
        assert str(runs.get_row_at(0)[1]) == "completed" and "completed" in screen_text(pilot.app)
        await pilot.press("question_mark")
        await pilot.pause(0.3)
        assert "reattach" in screen_text(pilot.app)  # the help's last words are on screen


async def test_the_log_pane_shows_studios_own_lines(studio_env: Path) -> None:
    run_dir = record_run(studio_env, status="completed")
    (run_dir / "trainer.log").write_text(
        "studio trainer pid 1 run x resume=False probe=False\n"
        "{'loss': '2.1', 'grad_norm': '0.6', 'learning_rate': '0.0002', 'epoch': '0.1'}\n"
        "Tokenizing train dataset:  45%|████▌     | 450/1000 [00:01<00:02, 300 examples/s]\r\n"
        "run completed at step 40\n")
    async with app(open_run=Run(run_dir)).run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.6)
        lines = list(pilot.app.screen.log_view.shown)
        assert any("run completed at step 40" in line for line in lines)
        assert not any("'grad_norm'" in line or "examples/s]" in line for line in lines)


# 11 ----------------------------------------------------------------- the editor's advice

async def test_the_editor_advises_on_the_tiny_model_and_a_machine_without_gpus(studio_env: Path) -> None:
    from studio.hardware import Inventory
    from studio.paths import bundled_profiles_dir

    async with StudioApp(inventory=Inventory([], reason="no NVIDIA driver")).run_test(size=(120, 40)) as pilot:
        pilot.app.edit_profile(bundled_profiles_dir() / "tiny-demo.toml")
        await pilot.pause(0.6)
        advice = str(pilot.app.screen.query_one("#advice-body").render())
        assert "no estimate" not in advice and "GiB" in advice
        assert "no GPU here: planning for" in str(pilot.app.screen.query_one("#advice-note").render())
        # max_steps is set: the time comes from the steps, not from the epochs over the data
        assert "60 steps" in advice


async def test_the_editor_offers_several_changes_when_one_is_not_enough(studio_env: Path) -> None:
    path = write(studio_env, "huge", tomli_w.dumps({
        "model": {"name": "meta-llama/Llama-3.1-8B"}, "method": {"type": "full"},
        "data": {"path": str(DEMO_DATA), "max_length": 4096},
        "train": {"batch_size": 8, "gradient_checkpointing": False, "optimizer": "adamw"}}))
    async with app().run_test(size=(120, 40)) as pilot:
        pilot.app.edit_profile(path)
        await pilot.pause(0.3)
        editor = pilot.app.screen
        editor.query_one("#advice-gpu", Select).value = "RTX 4090"
        await pilot.pause(0.6)
        advice = str(editor.query_one("#advice-body").render())
        assert "together" in advice, advice
        await pilot.press("f4")
        await pilot.pause(0.6)
        assert "does not fit" not in str(editor.query_one("#advice-body").render())


# 12 ----------------------------------------------------------------- the lists keep up

async def test_the_cursor_stays_on_the_saved_profile_and_new_files_appear(studio_env: Path) -> None:
    for name in ("a", "b", "c"):
        write(studio_env, name, GOOD)
    async with app().run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.3)
        await pilot.press("j", "j", "e")
        await pilot.pause(0.4)
        editor = pilot.app.screen
        editor.query_one("#f-train-learning_rate", Input).value = "0.001"
        await pilot.pause(0.3)
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        await pilot.press("escape")
        await pilot.pause(0.3)
        table = pilot.app.screen.query_one("#profiles", DataTable)
        assert table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value == "user:c"
        write(studio_env, "made-by-cli", GOOD)
        await pilot.pause(3.0)
        assert "user:made-by-cli" in pilot.app.screen.profile_paths


# issue 18 #3 ------------------------------------------------------------- absurd values read as missing

async def test_absurd_but_well_typed_event_values_neither_crash_nor_print_300_digits(studio_env: Path) -> None:
    run_dir = record_run(studio_env)
    with (run_dir / "events.jsonl").open("a") as f:
        f.write(json.dumps({"event": "step", "time": 2e9, "step": 41, "loss": 1e308, "tokens_per_s": 1e300,
                            "tokens": 10**30}) + "\n")
    listed = studio("runs")
    assert listed.returncode == 0 and max(len(line) for line in listed.stdout.splitlines()) < 200
    assert "1e+308" not in listed.stdout and "000000000000000000" not in listed.stdout
    async with app(open_run=Run(run_dir)).run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: 41 in pilot.app.screen.timeline.steps, "the absurd step")
        await pilot.pause()
        assert pilot.app.screen.timeline.steps[41].loss is None  # read as missing
        assert isinstance(pilot.app.screen, RunMonitor) and "Traceback" not in screen_text(pilot.app)


# issue 18 #11 ------------------------------------------------------------ q in the editor

async def test_q_types_into_an_editor_field_and_elsewhere_leaves_the_editor_not_the_app(studio_env: Path) -> None:
    write(studio_env, "calm", GOOD)
    async with app().run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.3)
        await pilot.press("e")
        await until(pilot, lambda: isinstance(pilot.app.screen, ProfileEditor), "the editor")
        editor = pilot.app.screen
        field = editor.query_one("#f-top-description", Input)
        field.focus()
        await pilot.press("end", "q")
        await pilot.pause()
        assert field.value.endswith("q") and pilot.app.screen is editor
        editor.query_one("#advice-gpu", Select).focus()
        await pilot.press("q")
        await pilot.pause(0.3)
        # the description was edited, so leaving asks first, and the app is still there
        assert pilot.app.is_running and isinstance(pilot.app.screen, Confirm)


async def test_z_zooms_the_log_on_a_short_terminal_too(studio_env: Path) -> None:
    run_dir = record_run(studio_env, status="completed")
    async with app(open_run=Run(run_dir)).run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(pilot.app.screen, RunMonitor), "the monitor")
        box = pilot.app.screen.query_one("#log-box")
        await pilot.pause(0.3)
        small = box.size.height
        await pilot.press("z")
        await until(pilot, lambda: box.size.height > 2 * small, f"the log to take the rows (was {small} high)")


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


async def test_the_export_dialogs_switch_label_is_whole_at_120_columns(studio_env: Path) -> None:
    from studio.ui.dialogs import ExportDialog

    run_dir = record_run(studio_env, status="completed")
    (run_dir / "final").mkdir()
    (run_dir / "final" / "adapter_config.json").write_text("{}")
    async with app(open_run=Run(run_dir)).run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: isinstance(pilot.app.screen, RunMonitor), "the monitor")
        await pilot.press("x")
        await until(pilot, lambda: isinstance(pilot.app.screen, ExportDialog), "the export dialog")
        await until(pilot, lambda: "bigger)" in screen_text(pilot.app), "the whole label, wrapped")


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
        await until(pilot, lambda: "[0]" in screen_text(pilot.app), "the GPU pane")
        await pilot.pause(0.3)
        text = screen_text(pilot.app)
        assert all(f"[{i}]" in text for i in range(8)), text


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
async def test_the_dashboard_tables_use_the_width_and_show_every_column(studio_env: Path, size) -> None:
    record_run(studio_env, "20260911-090000-a-profile-with-a-really-long-descriptive-name")
    long_name = "my-qwen2.5-coder-32b-instruct-qlora-with-a-long-name"
    write(studio_env, long_name, GOOD)
    async with app().run_test(size=size) as pilot:
        profiles = pilot.app.screen.query_one("#profiles", DataTable)
        runs = pilot.app.screen.query_one("#runs", DataTable)
        await until(pilot, lambda: runs.row_count and pilot.app.screen.profile_fits, "both lists and the fits")
        await pilot.pause(0.3)
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


async def test_f5_on_an_unchanged_template_runs_it_without_making_a_copy(studio_env: Path) -> None:
    from studio.paths import bundled_profiles_dir

    template = bundled_profiles_dir() / "tiny-demo.toml"
    async with app().run_test(size=(120, 40)) as pilot:
        started: list[Path] = []
        pilot.app.start_profile = started.append  # what F5 asks the app to start, without training here
        pilot.app.edit_profile(template)
        await until(pilot, lambda: isinstance(pilot.app.screen, ProfileEditor), "the editor")
        await pilot.press("f5")
        await until(pilot, lambda: started, "the start")
        assert started == [template]
    assert not (studio_env / "profiles").exists() or not list((studio_env / "profiles").iterdir())


async def test_chat_answers_wrap_in_their_pane(studio_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from studio.ui.chat import ChatScreen

    monkeypatch.setattr(ChatScreen, "open_session", lambda screen: None)  # the layout, without a model
    run_dir = record_run(studio_env, status="completed")
    answer = " ".join(f"word{i}" for i in range(40)) + " THE-END"
    async with app().run_test(size=(80, 24)) as pilot:
        pilot.app.open_chat(Run(run_dir))
        await until(pilot, lambda: isinstance(pilot.app.screen, ChatScreen) and pilot.app.screen.query("#log-tuned"),
                    "the chat")
        pilot.app.screen.write("tuned", f"\n> a question\n{answer}\n")
        await until(pilot, lambda: "THE-END" in screen_text(pilot.app), "the end of a long answer, wrapped")


@pytest.mark.slow  # the preview's worker (building the demo's tokenizer, about 30 s) finishes before the app exits
async def test_the_data_preview_is_centred_and_counts_the_seconds(studio_env: Path) -> None:
    import re

    from studio.paths import bundled_profiles_dir
    from studio.ui.dialogs import DataPreview

    async with app().run_test(size=(120, 40)) as pilot:
        pilot.app.edit_profile(bundled_profiles_dir() / "tiny-demo.toml")
        await until(pilot, lambda: isinstance(pilot.app.screen, ProfileEditor) and pilot.app.screen.settled,
                    "the editor")
        await pilot.press("f3")
        await until(pilot, lambda: isinstance(pilot.app.screen, DataPreview), "the preview")
        box = pilot.app.screen.query_one(".dialog").region
        assert box.y >= 2 and box.x >= 10, f"the dialog sits at {box}, over the header"
        await until(pilot, lambda: re.search(r"\(\d+ s\)|no preview|tokens", screen_text(pilot.app)),
                    "a counter while it tokenizes (or the preview)")
        await pilot.press("escape")


async def test_a_resuming_run_counts_its_preparation_and_drops_the_old_eta(studio_env: Path) -> None:
    """Just after `u`: a live trainer launched 7 s ago that has written nothing yet. The monitor says it is
    resuming, counts the seconds, and shows no ETA left over from the attempt before."""
    import re

    run_dir = record_run(studio_env, status="completed")
    async with app(open_run=Run(run_dir)).run_test(size=(120, 40)) as pilot:
        monitor = pilot.app.screen
        await until(pilot, lambda: isinstance(monitor, RunMonitor) and monitor.status == "completed", "the monitor")
        with live_trainer(run_dir, launched_at=time.time() - 7):
            await until(pilot, lambda: monitor.status == "running" and re.search(r"resuming[^\n]*\b\d+ s\b",
                                                                                 screen_text(pilot.app)),
                        "the monitor to say the run is resuming, with its seconds")
            text = screen_text(pilot.app)
            assert "ETA" not in text, text
            seconds = int(re.search(r"resuming[^\n]*\b(\d+) s\b", text).group(1))
            assert seconds >= 7, text  # counted from the launch, not from when the monitor noticed


async def test_a_training_run_shows_its_bar_and_the_percentage_done(studio_env: Path) -> None:
    """A live trainer at step 20 of 40: the bar is half full and says 50%; at step 40 it says 100%. (Textual's
    progress bar, 28 cells wide, had no room left for its percentage.)"""
    run_dir = record_run(studio_env, status="running")
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    events = [e for e in events if e.get("step", 0) <= 20]
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    with live_trainer(run_dir, launched_at=events[0]["time"]):  # this attempt logged the steps
        async with app(open_run=Run(run_dir)).run_test(size=(100, 30)) as pilot:
            monitor = pilot.app.screen
            await until(pilot, lambda: isinstance(monitor, RunMonitor) and monitor.status == "running",
                        "the monitor of a training run")
            await until(pilot, lambda: "step 20/40" in screen_text(pilot.app), "step 20 of 40")
            line = next(row for row in screen_text(pilot.app).splitlines() if "step 20/40" in row)
            assert "50%" in line and line.count("━") >= 20, line
            last = [e for e in events if e["event"] == "step"][-1]
            with (run_dir / "events.jsonl").open("a") as f:
                f.write(json.dumps(dict(last, step=40, time=last["time"] + 190)) + "\n")
            await until(pilot, lambda: "step 40/40" in screen_text(pilot.app), "step 40 of 40")
            line = next(row for row in screen_text(pilot.app).splitlines() if "step 40/40" in row)
            assert "100%" in line, line


async def test_log_search_highlights_counts_and_steps_through_matches(studio_env: Path) -> None:
    run_dir = record_run(studio_env, status="completed")
    (run_dir / "trainer.log").write_text("".join(
        f"step {i}/40 · loss {2 - i / 40:.4f}\n" + (f"checkpoint saved at step {i}\n" if i % 10 == 0 else "")
        for i in range(1, 41)))
    async with app(open_run=Run(run_dir)).run_test(size=(100, 30)) as pilot:
        monitor = pilot.app.screen
        await until(pilot, lambda: isinstance(monitor, RunMonitor) and len(monitor.log_view.shown) == 44, "the log")
        box = monitor.query_one("#log-box")
        await pilot.press("slash", *"checkpoint", "enter")
        await until(pilot, lambda: "4 matches" in str(box.border_title), "the count of matches")
        assert len(monitor.log_view.shown) == 44  # a search finds; the lines around a match stay
        await pilot.press("n")
        await until(pilot, lambda: "2 of 4" in str(box.border_title), "the next match")
        await pilot.press("N", "N")
        await until(pilot, lambda: "4 of 4" in str(box.border_title), "the previous match, wrapping round")
        log = monitor.query_one("#trainer-log")
        assert not log.auto_scroll  # reading a match: new lines do not pull the view away
        await pilot.press("G")
        await until(pilot, lambda: log.auto_scroll, "G follows the end again")


async def test_failed_download_advice_says_it_once_and_names_offline_mode(studio_env: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from studio.runs.events import End, append_event
    from studio.trainer.failures import classify
    from studio.trainer.hub import DownloadError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    said = classify(DownloadError("meta-llama/Llama-3.1-8B is not in the local cache"), None)
    assert "HF_HUB_OFFLINE" in said["advice"] and "auth login" not in said["advice"]
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert "auth login" in classify(DownloadError("401 for meta-llama/Llama-3.1-8B"), None)["advice"]

    run_dir = record_run(studio_env, status="completed")
    append_event(run_dir / "events.jsonl", End(status="failed", error_kind="download", step=40,
                                               message="cannot download the model", advice=said["advice"]))
    async with app(open_run=Run(run_dir)).run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: "what to do" in screen_text(pilot.app), "the advice")
        text = " ".join(screen_text(pilot.app).split())
        assert text.count("resume") <= 2 and "then press u" not in text, text
        assert "u resumes" in text, text


async def test_help_names_keys_as_they_are_typed_and_lists_tab_and_enter(studio_env: Path) -> None:
    from studio.ui.dialogs import Help

    async with app().run_test(size=(120, 40)) as pilot:
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(pilot.app.screen, Help), "the help")
        await pilot.pause(0.2)
        text = screen_text(pilot.app)
        await pilot.press("end")  # a long help scrolls, from the keyboard too
        await pilot.pause(0.2)
        text += screen_text(pilot.app)
        for raw in ("slash", "question mark", "g,home", "G,end"):
            assert raw not in text, text
        for shown in ("/", "?", "tab", "enter", "g / home"):
            assert shown in text, text


async def test_at_120_columns_the_dashboard_help_fits_on_one_screen_in_two_columns(studio_env: Path) -> None:
    """The dashboard has over two dozen keys: at 120x40 they are laid out side by side, so every one of them (and
    the app-wide ones) shows without scrolling."""
    from textual.containers import VerticalScroll

    from studio.ui.actions import RUN_ACTIONS
    from studio.ui.app import StudioApp
    from studio.ui.dashboard import Dashboard
    from studio.ui.dialogs import Help

    async with app().run_test(size=(120, 40)) as pilot:
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(pilot.app.screen, Help), "the help")
        await pilot.pause(0.3)
        assert pilot.app.screen.query_one(VerticalScroll).max_scroll_y == 0, "the help scrolls at 120x40"
        text = " ".join(screen_text(pilot.app).split())
        run_actions = {a.name: a.help for a in RUN_ACTIONS}
        for binding in [*Dashboard.BINDINGS, *StudioApp.BINDINGS]:
            said = run_actions.get(binding.action.split(".")[-1], binding.tooltip or binding.description)
            words = " ".join(said.split()[:2])
            assert words in text, (words, text)


async def test_n_starts_from_a_template_or_a_model_and_refuses_a_name_with_spaces(studio_env: Path) -> None:
    from studio.paths import bundled_profiles_dir
    from studio.ui.dialogs import NewProfileDialog
    from studio.ui.model_picker import ModelPicker

    template = bundled_profiles_dir() / "llama-3.1-8b-qlora-12gb.toml"
    async with app().run_test(size=(120, 40)) as pilot:
        await pilot.press("n")
        await until(pilot, lambda: isinstance(pilot.app.screen, NewProfileDialog), "the new-profile dialog")
        dialog = pilot.app.screen
        dialog.query_one("#new-from", Select).value = str(template)
        dialog.query_one("#answer", Input).focus()
        await pilot.press(*"my run", "enter")
        await until(pilot, lambda: "space" in screen_text(pilot.app), "the name refused, with the reason")
        dialog.query_one("#answer", Input).value = "llama-try"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, ProfileEditor) and pilot.app.screen.settled,
                    "the editor")
        editor = pilot.app.screen
        profile = editor.current_profile()
        assert profile.model.name == "meta-llama/Llama-3.1-8B-Instruct" and profile.method.type == "qlora"
        assert profile.description != load_template_description(template)  # not the template's own words
        assert editor.new_path.name == "llama-try.toml"
        await pilot.press("escape")  # a new profile is unsaved: leaving asks first
        await until(pilot, lambda: isinstance(pilot.app.screen, Confirm), "the question")
        await pilot.press("y")
        await until(pilot, lambda: isinstance(pilot.app.screen, Dashboard), "the dashboard")
        await pilot.press("n")
        await until(pilot, lambda: isinstance(pilot.app.screen, NewProfileDialog), "the dialog again")
        pilot.app.screen.query_one("#new-from", Select).value = "model"
        pilot.app.screen.query_one("#answer", Input).value = "from-a-model"
        pilot.app.screen.query_one("#answer", Input).focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, ModelPicker), "the model picker, over the editor")


def load_template_description(path: Path) -> str:
    from studio.profiles.profile import load_profile

    return load_profile(path).description


async def test_export_of_a_run_with_nothing_to_export_says_so_before_asking_for_a_folder(studio_env: Path) -> None:
    run_dir = record_run(studio_env, status="completed")  # no final/ and no checkpoint
    async with app(open_run=Run(run_dir)).run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: isinstance(pilot.app.screen, RunMonitor), "the monitor")
        said = notifications(pilot.app)
        await pilot.press("x")
        await until(pilot, lambda: any("nothing to export" in t for t in said), "the reason")
        assert isinstance(pilot.app.screen, RunMonitor)  # no dialog to type a folder into for nothing


async def test_back_from_a_runs_monitor_the_runs_list_has_the_focus_on_that_run_and_shows_it(studio_env: Path) -> None:
    record_run(studio_env, "20260911-090000-llama-qlora")
    watched = record_run(studio_env, "20260912-090000-other")
    async with app(open_run=Run(watched)).run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: isinstance(pilot.app.screen, RunMonitor), "the monitor")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(pilot.app.screen, Dashboard), "the dashboard")
        dash = pilot.app.screen
        runs = dash.query_one("#runs", DataTable)
        await until(pilot, lambda: runs.has_focus and dash.selected_run_id() == watched.name,
                    "the focus on the watched run")
        focused_title = dash.query_one("#runs-title").styles.background
        other_title = dash.query_one("#profiles-box .section").styles.background
        assert focused_title != other_title  # which list has the focus shows in its title


async def test_toasts_leave_the_error_panel_and_the_log_readable_at_80x24(studio_env: Path) -> None:
    run_dir = record_run(studio_env, "20260911-100000-llama-qlora", status="oom")
    async with app(open_run=Run(run_dir)).run_test(size=(80, 24), notifications=True) as pilot:
        await until(pilot, lambda: isinstance(pilot.app.screen, RunMonitor)
                    and "what to do" in str(pilot.app.screen.query_one("#error-panel").render()), "the advice")
        pilot.app.notify("a message long enough to take a few lines of a toast at eighty columns, as they do")
        await until(pilot, lambda: pilot.app.screen.query("Toast"), "the toast")
        await pilot.pause(0.3)
        toast = pilot.app.screen.query("Toast").first().region
        for part in ("#error-panel", "#log-box"):
            region = pilot.app.screen.query_one(part).region
            assert not toast.overlaps(region), f"the toast {toast} covers {part} {region}"


async def test_the_editor_shows_its_verdict_and_the_f4_fix_above_the_fold_at_80x24(studio_env: Path) -> None:
    from studio.paths import bundled_profiles_dir

    async with app().run_test(size=(80, 24)) as pilot:
        said = notifications(pilot.app)
        pilot.app.edit_profile(bundled_profiles_dir() / "llama-3.1-8b-full-80gb.toml")  # 18.8 GiB free: too big
        await until(pilot, lambda: "F4 applies" in screen_text(pilot.app), "the fix, without scrolling")
        text = screen_text(pilot.app)
        assert "does not fit" in text and "GiB free" in text and "checkpointing on (auto)" in text, text
        await pilot.press("f4")
        await until(pilot, lambda: any(t.startswith("applied:\n• ") for t in said), "the changes, one a line")


async def test_the_monitor_gives_elapsed_time_s_per_step_the_last_checkpoint_and_eval_losses(studio_env: Path) -> None:
    run_dir = record_run(studio_env, status="completed")  # 40 steps of 9.5 s; evals every 10 steps; checkpoints too
    async with app(open_run=Run(run_dir)).run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: isinstance(pilot.app.screen, RunMonitor) and pilot.app.screen.status == "completed",
                    "the monitor")
        await until(pilot, lambda: "s/step" in screen_text(pilot.app), "the speed figures")
        text = screen_text(pilot.app)
        assert "elapsed 6:20" in text and "9.50 s/step" in text, text
        assert "eval loss 1.265" in text and "best eval 1.265 at step 40" in text, text
        assert "checkpoint step 40" in text, text


async def test_up_and_down_in_the_chat_prompt_walk_its_history(studio_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from studio.ui.chat import ChatScreen

    monkeypatch.setattr(ChatScreen, "open_session", lambda screen: None)  # the prompt box, without a model
    run_dir = record_run(studio_env, status="completed")
    async with app().run_test(size=(100, 30)) as pilot:
        pilot.app.open_chat(Run(run_dir))
        await until(pilot, lambda: isinstance(pilot.app.screen, ChatScreen) and pilot.app.screen.query("#chat-prompt"),
                    "the chat")
        box = pilot.app.screen.query_one("#chat-prompt", Input)
        box.focus()
        for prompt in ("first question", "second question"):
            box.value = prompt
            await pilot.press("enter")
            box.value = ""
        await pilot.press("up")
        await until(pilot, lambda: box.value == "second question", "the last prompt")
        await pilot.press("up")
        await until(pilot, lambda: box.value == "first question", "the one before")
        await pilot.press("down", "down")
        await until(pilot, lambda: box.value == "", "back to an empty prompt")


async def test_the_loss_chart_marks_each_eval_even_a_single_one_and_keeps_its_key_off_the_curve(
        studio_env: Path) -> None:
    from studio.ui.charts import EVAL_MARK

    run_dir = record_run(studio_env, status="completed")
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    kept = [e for e in events if e["event"] != "eval" or e["step"] == 20]  # one eval only
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in kept))
    async with app(open_run=Run(run_dir)).run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: isinstance(pilot.app.screen, RunMonitor) and pilot.app.screen.status == "completed",
                    "the monitor")
        await until(pilot, lambda: EVAL_MARK in screen_text(pilot.app), "the single eval point")
        chart_rows = screen_text(pilot.app).splitlines()
        assert not any("smoothed" in row and "┤" in row for row in chart_rows)  # no legend box among the curves


async def test_the_dashboard_tells_when_any_run_ends(studio_env: Path) -> None:
    from dataclasses import replace

    run_dir = record_run(studio_env, status="completed")
    async with app().run_test(size=(120, 40)) as pilot:
        dash = pilot.app.screen
        await until(pilot, lambda: dash.last_summaries, "the runs read")
        said = notifications(pilot.app)
        ended = dash.last_summaries[0]
        dash.show_runs([replace(ended, status="running")])  # a read while it trained...
        dash.show_runs([ended])                               # ...and the next, once it ended
        await until(pilot, lambda: any(run_dir.name in t and "completed" in t for t in said), "the notice")
        dash.show_runs([ended])
        await pilot.pause(0.1)
        assert sum(run_dir.name in t for t in said) == 1  # said once


async def test_the_monitor_charts_learning_rate_and_throughput_the_last_steps_and_a_log_scale(
        studio_env: Path) -> None:
    from studio.ui.charts import LossChart

    run_dir = record_run(studio_env, status="running")
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    last = [e for e in events if e["event"] == "step"][-1]
    for step in range(41, 401):  # a longer run: 400 steps
        events.append(dict(last, step=step, time=last["time"] + step, max_steps=400, loss=1.0 + 100 / step))
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    async with app(open_run=Run(run_dir)).run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: isinstance(pilot.app.screen, RunMonitor), "the monitor")

        def chart() -> list[str]:
            widget = pilot.app.screen.query_one(LossChart)
            return [widget.render_line(y).text for y in range(widget.size.height)]

        def title() -> str:
            return chart()[0]

        def ticks() -> list[int]:
            axis = next(row for row in chart() if row.strip() == "step")
            return [int(t) for t in chart()[chart().index(axis) - 1].split() if t.isdigit()]

        await until(pilot, lambda: title().strip().startswith("loss:"), "the loss chart")
        assert ticks()[0] == 1  # every step
        await pilot.press("v")
        await until(pilot, lambda: "learning rate" in title(), "the learning-rate chart")
        await pilot.press("v")
        await until(pilot, lambda: "tokens/s" in title(), "the throughput chart")
        await pilot.press("v")
        await until(pilot, lambda: title().strip().startswith("loss:"), "back to loss")
        await pilot.press("w")
        await until(pilot, lambda: "last 200 steps" in title(), "the last 200 steps")
        assert ticks()[0] == 201 and ticks()[-1] == 400
        await pilot.press("Y")
        await until(pilot, lambda: "log scale" in title(), "the log scale")
        await pilot.press("question_mark")
        await until(pilot, lambda: "log scale" in screen_text(pilot.app) and "Chart" in screen_text(pilot.app),
                    "the chart keys in the help")


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
    from studio.ui.widgets import SPARKS

    inv = fake_inventory()
    run_dir = record_run(studio_env)
    async with StudioApp(inventory=inv).run_test(size=(120, 40)) as pilot:
        pilot.app.host = HostLoad(cpu_pct=11.0, cpus=16, ram_used_gib=20.0, ram_total_gib=125.0)
        await until(pilot, lambda: "11% of 16 cores" in screen_text(pilot.app), "the host's CPU")
        pilot.app.open_run(Run(run_dir))
        await until(pilot, lambda: isinstance(pilot.app.screen, RunMonitor), "the monitor")
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


async def test_the_editor_folds_advanced_fields_jumps_to_a_field_undoes_and_shows_the_diff(studio_env: Path) -> None:
    from textual.widgets import Collapsible

    path = write(studio_env, "mine", GOOD + "[hardware]\nnum_machines = 2\nmain_address = \"10.0.0.1\"\n")
    async with app().run_test(size=(120, 40)) as pilot:
        pilot.app.edit_profile(path)
        await until(pilot, lambda: isinstance(pilot.app.screen, ProfileEditor) and pilot.app.screen.settled,
                    "the editor")
        editor = pilot.app.screen
        # folded and not built where the profile leaves them alone; open where it sets one (multi-node here)
        assert editor.query_one("#more-model", Collapsible).collapsed and not editor.query("#f-model-random_init")
        assert not editor.query_one("#more-hardware", Collapsible).collapsed
        assert editor.query_one("#f-hardware-main_address", Input).value == "10.0.0.1"

        await pilot.press("ctrl+f")
        await until(pilot, lambda: pilot.app.screen is not editor, "the field finder")
        await pilot.press(*"seed", "enter")
        await until(pilot, lambda: pilot.app.focused is not None and pilot.app.focused.id == "f-train-seed",
                    "the seed field, unfolded")
        assert not editor.query_one("#more-train", Collapsible).collapsed and not editor.dirty

        rate = editor.query_one("#f-train-learning_rate", Input)
        before = rate.value
        rate.focus()
        await pilot.press("end", "5")
        await until(pilot, lambda: editor.dirty, "the change")
        await pilot.press("ctrl+z")
        await until(pilot, lambda: rate.value == before, "the change undone")

        editor.query_one("#f-train-batch_size", Input).value = "8"
        await until(pilot, lambda: editor.dirty, "the change")
        await pilot.press("f7")
        await until(pilot, lambda: "+batch_size = 8" in screen_text(pilot.app), "the diff")
        assert "-batch_size = 2  # small" in screen_text(pilot.app)
        await pilot.press("escape")
        await until(pilot, lambda: pilot.app.screen is editor, "back in the editor")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: not editor.dirty, "saved")
    text = path.read_text()
    assert "batch_size = 8" in text and "# my notes" in text and 'main_address = "10.0.0.1"' in text
    assert "seed" not in text and "random_init" not in text  # folded fields nobody touched stay out of the file


async def test_w_in_the_monitor_turns_the_logs_wrapping_off_and_on(studio_env: Path) -> None:
    run_dir = record_run(studio_env, status="completed")
    long = "a traceback line that goes on " + "and on " * 40
    (run_dir / "trainer.log").write_text(f"short line\n{long}\nrun completed at step 40\n")
    async with app(open_run=Run(run_dir)).run_test(size=(100, 30)) as pilot:
        monitor = pilot.app.screen
        await until(pilot, lambda: isinstance(monitor, RunMonitor) and len(monitor.log_view.shown) == 3, "the log")
        log = monitor.query_one("#trainer-log")
        await until(pilot, lambda: len(log.lines) > 3, "the long line wrapped")
        await pilot.press("W")
        await until(pilot, lambda: len(log.lines) == 3 and log.virtual_size.width > log.size.width,
                    "one line each, wider than the pane")
        await pilot.press("W")
        await until(pilot, lambda: len(log.lines) > 3, "wrapped again")


async def test_the_monitor_says_the_runs_settings_in_one_line(studio_env: Path) -> None:
    from studio.atomic import write_json
    from studio.planning.plan import plan_run
    from studio.profiles.profile import load_profile

    run_dir = record_run(studio_env, status="completed")
    plan = plan_run(load_profile(run_dir / "profile.toml"), fake_inventory())
    write_json(run_dir / "plan.json", plan.record().to_dict())  # what a start writes
    async with app(open_run=Run(run_dir)).run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: "Llama-3.1-8B · qlora r16 · batch" in screen_text(pilot.app),
                    "the settings' line")
        side = str(pilot.app.screen.query_one("#plan-text").render())
        # max_length's default; the optimizer the trainer made; gradient_checkpointing = true in its profile
        assert "len 1024 · paged_adamw_8bit · checkpointing" in side, side
