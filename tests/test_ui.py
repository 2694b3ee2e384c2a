"""Pilot tests of the app's flows, with real files and (for runs) the real trainer process."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomli_w
from textual.widgets import DataTable, Input, Select

from conftest import DEMO_DATA
from studio.paths import bundled_profiles_dir
from studio.profiles.profile import load_profile
from studio.runs.folder import Run, list_runs
from studio.runs.launcher import stop_run
from studio.runs.liveness import is_alive
from studio.runs.state import run_status
from studio.ui.app import StudioApp, load_themes
from studio.ui.dashboard import Dashboard
from studio.ui.editor import ProfileEditor
from studio.ui.monitor import RunMonitor
from ui_fixtures import fake_inventory, notifications, record_run, screen_text
from waiting import until


def app() -> StudioApp:
    return StudioApp(inventory=fake_inventory())


async def wait_until(pilot, check, what: str = "condition") -> None:
    """`until` under its old name here: the shared deadline, the screen printed when it fires."""
    await until(pilot, check, what)


async def test_create_profile_in_the_form_save_and_reopen(studio_env: Path) -> None:
    async with app().run_test(size=(120, 40)) as pilot:
        await new_profile_named(pilot, "mine")
        editor = pilot.app.screen
        editor.query_one("#f-train-learning_rate", Input).value = "0.0005"
        editor.query_one("#f-method-type", Select).value = "qlora"
        await until(pilot, lambda: editor.dirty, "the edits")
        await pilot.press("ctrl+s")
        saved = studio_env / "profiles" / "mine.toml"
        await until(pilot, lambda: saved.is_file() and not editor.dirty, "the save")
        p = load_profile(saved)
        assert p.train.learning_rate == 0.0005 and p.method.type == "qlora"
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(pilot.app.screen, Dashboard)
                    and "user:mine" in pilot.app.screen.profile_paths, "the dashboard listing it")
        pilot.app.edit_profile(saved)
        await until(pilot, lambda: isinstance(pilot.app.screen, ProfileEditor) and pilot.app.screen.settled,
                    "the saved profile's editor")
        assert pilot.app.screen.query_one("#f-train-learning_rate", Input).value == "0.0005"


async def new_profile_named(pilot, name: str) -> None:
    """n, the name, enter: the editor of the new profile, mounted."""
    from studio.ui.dialogs import NewProfileDialog

    await pilot.press("n")
    await until(pilot, lambda: isinstance(pilot.app.screen, NewProfileDialog), "the new-profile dialog")
    await pilot.press(*name, "enter")
    await until(pilot, lambda: isinstance(pilot.app.screen, ProfileEditor) and pilot.app.screen.settled, "the editor")


async def test_bad_value_is_shown_next_to_the_field_and_not_saved(studio_env: Path) -> None:
    path = studio_env / "profiles" / "p.toml"
    path.parent.mkdir(parents=True)
    original = f'# my notes on this profile\n[data]\npath = "{DEMO_DATA}"  # the demo data\n[train]\nbatch_size = 4\n'
    path.write_text(original)
    async with app().run_test(size=(120, 40)) as pilot:
        pilot.app.edit_profile(path)
        await pilot.pause(0.3)
        editor = pilot.app.screen
        editor.query_one("#f-train-learning_rate", Input).value = "-1"
        await pilot.pause(0.3)
        problem = editor.query_one("#e-train-learning_rate")
        assert "must be > 0" in str(problem.render()) and problem.display
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        assert path.read_text() == original  # nothing on disk was lost
        editor.query_one("#f-train-learning_rate", Input).value = "0.001"
        editor.query_one("#f-train-batch_size", Input).value = "2"
        await pilot.pause(0.3)
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
    text = path.read_text()
    assert "# my notes on this profile" in text and "# the demo data" in text  # comments survive
    p = load_profile(path)
    assert p.train.batch_size == 2 and p.train.learning_rate == 0.001


async def test_apply_the_suggestion_that_makes_it_fit(studio_env: Path) -> None:
    async with app().run_test(size=(120, 40)) as pilot:
        pilot.app.edit_profile(bundled_profiles_dir() / "llama-3.1-8b-lora-24gb.toml")
        editor = await until(pilot, lambda: isinstance(pilot.app.screen, ProfileEditor) and pilot.app.screen.settled
                             and pilot.app.screen, "the editor")
        editor.query_one("#advice-gpu", Select).value = "RTX 3060 12GB"
        advice = lambda: str(editor.query_one("#advice-body").render())  # noqa: E731
        await until(pilot, lambda: "does not fit" in advice() and "F4 applies" in advice(), "advice with a fix")
        await pilot.press("f4")
        await until(pilot, lambda: editor.query_one("#f-method-type", Select).value == "qlora", "the fix applied")
        await until(pilot, lambda: "does not fit" not in advice(), "the advice for the fixed profile")
        await pilot.press("ctrl+s")  # a bundled template is saved as the user's copy
        await pilot.pause(0.3)
    assert load_profile(studio_env / "profiles" / "llama-3.1-8b-lora-24gb.toml").method.type == "qlora"
    assert load_profile(bundled_profiles_dir() / "llama-3.1-8b-lora-24gb.toml").method.type == "lora"


async def test_oom_run_shows_the_revised_profile(studio_env: Path) -> None:
    run_dir = record_run(studio_env, status="oom")
    async with StudioApp(open_run=Run(run_dir), inventory=fake_inventory()).run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.5)
        text = str(pilot.app.screen.query_one("#error-panel").render())
        assert "failed (oom)" in text and "+batch_size = 2" in text and "+grad_accum = 8" in text


def long_profile(home: Path) -> Path:
    path = home / "profiles" / "long.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps({
        "model": {"name": "builtin:tiny-llama"}, "method": {"type": "lora", "rank": 8},
        "data": {"path": str(DEMO_DATA), "max_length": 64},
        "train": {"max_steps": 5000, "batch_size": 4, "grad_accum": 1, "learning_rate": 3e-3,
                  "gradient_checkpointing": False, "logging_steps": 1, "save_steps": 100000}}))
    return path


@pytest.mark.slow
async def test_start_watch_and_stop_a_run(studio_env: Path) -> None:
    long_profile(studio_env)
    async with app().run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.3)
        table = pilot.app.screen.query_one("#profiles", DataTable)
        assert table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value == "user:long"
        await pilot.press("r", "r")  # a double press starts one run
        await pilot.pause(0.3)
        monitor = pilot.app.screen
        assert isinstance(monitor, RunMonitor)
        await wait_until(pilot, lambda: len(monitor.timeline.steps) >= 3)
        first = len(monitor.timeline.steps)
        await wait_until(pilot, lambda: len(monitor.timeline.steps) > first + 2)  # the monitor keeps updating
        await pilot.press("s")
        await pilot.pause(0.2)
        await pilot.press("y")
        await wait_until(pilot, lambda: monitor.status == "stopped")
        assert "stopped" in str(monitor.query_one("#run-status").render())
    assert len(list_runs()) == 1
    run = list_runs()[-1]
    assert run_status(run) == "stopped" and run.last_complete_checkpoint() is not None


@pytest.mark.slow
async def test_quit_leaves_the_run_going_and_a_new_app_reattaches(studio_env: Path) -> None:
    long_profile(studio_env)
    async with app().run_test(size=(100, 30)) as pilot:
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, RunMonitor))
        monitor = pilot.app.screen
        await wait_until(pilot, lambda: len(monitor.timeline.steps) >= 2)
        await pilot.press("q")
    assert pilot.app.return_code == 0
    run = list_runs()[-1]
    try:
        assert run_status(run) == "running"  # quitting the app never stops a run
        async with app().run_test(size=(100, 30)) as pilot:
            # the monitor that was open at quit opens again by itself (the run still trains)
            await wait_until(pilot, lambda: isinstance(pilot.app.screen, RunMonitor), "the monitor reattached")
            monitor = pilot.app.screen
            assert monitor.run.id == run.id
            await wait_until(pilot, lambda: monitor.status == "running" and len(monitor.timeline.steps) > 2)
            seen = max(monitor.timeline.steps)
            await wait_until(pilot, lambda: max(monitor.timeline.steps) > seen)
    finally:
        if is_alive(run):
            stop_run(run, force=True)


def test_themes_load_from_files_and_the_choice_is_remembered(studio_env: Path) -> None:
    from studio.paths import themes_dir
    from studio.settings import Settings

    names = {t.name for t in load_themes(themes_dir())}
    assert {"studio-dark", "studio-light", "studio-high-contrast"} <= names

    async def switch() -> None:
        async with app().run_test() as pilot:
            pilot.app.theme = "studio-light"
            await pilot.pause()

    import asyncio

    asyncio.run(switch())
    assert Settings.load().theme == "studio-light"


async def test_broken_events_and_deleted_run_do_not_crash(studio_env: Path) -> None:
    run_dir = record_run(studio_env)
    with (run_dir / "events.jsonl").open("a") as f:
        f.write("{corrupt\n")
    async with StudioApp(open_run=Run(run_dir), inventory=fake_inventory()).run_test(size=(80, 24)) as pilot:
        texts = notifications(pilot.app)
        await until(pilot, lambda: len(pilot.app.screen.timeline.steps) == 40, "the 40 good steps")
        import shutil

        shutil.rmtree(run_dir)
        # The app says what happened, on screen and once as a notice, and keeps working.
        await until(pilot, lambda: "folder deleted" in screen_text(pilot.app), "the deleted folder on screen")
        assert sum("folder deleted" in t for t in texts) == 1 and pilot.app.is_running


async def test_the_palette_offers_every_action_that_applies_to_the_run(studio_env: Path) -> None:
    record_run(studio_env)  # a completed run: nothing to stop, kill or resume
    async with app().run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: pilot.app.screen.last_summaries, "the runs listed")
        titles = {c.title for c in pilot.app.get_system_commands(pilot.app.screen)}
        assert {"New profile", "Edit profile", "Run profile", "Open run", "Export run", "Describe run", "Help", "Quit",
                "GPU processes", "Compare runs"} <= titles
        assert not {"Stop run", "Kill run", "Resume run"} & titles
        await pilot.press("tab", "o")
        await until(pilot, lambda: isinstance(pilot.app.screen, RunMonitor) and pilot.app.screen.status, "the monitor")
        titles = {c.title for c in pilot.app.get_system_commands(pilot.app.screen)}
        assert {"Export run", "Chat with run", "Describe run", "Back"} <= titles
        assert not {"Stop run", "Kill run", "Resume run"} & titles


async def test_editor_advice_plans_for_every_gpu_the_profile_asks_for(studio_env: Path) -> None:
    """Defect: the editor estimated every profile on one GPU, whatever hardware.gpus said."""
    path = studio_env / "profiles" / "big.toml"
    path.parent.mkdir(parents=True)
    path.write_text(tomli_w.dumps({"model": {"name": "meta-llama/Llama-3.1-8B"}, "method": {"type": "full"},
                                   "data": {"path": str(DEMO_DATA)}, "hardware": {"gpus": "4"}}))
    async with app().run_test(size=(120, 40)) as pilot:
        pilot.app.edit_profile(path)
        await pilot.pause(0.3)
        editor = pilot.app.screen
        editor.query_one("#advice-gpu", Select).value = "H100 80GB"
        await pilot.pause(0.5)
        text = str(editor.query_one("#advice-body").render())
        assert "per GPU" in text and "4 GPUs, fsdp" in text and "fits" in text


async def test_a_new_profile_is_saved_under_the_name_it_was_given(studio_env: Path) -> None:
    async with app().run_test(size=(120, 40)) as pilot:
        await new_profile_named(pilot, "my-first")
        editor = pilot.app.screen
        assert editor.dirty  # nothing is on disk yet
        await pilot.press("ctrl+s")
        await until(pilot, lambda: (studio_env / "profiles" / "my-first.toml").is_file() and not editor.dirty,
                    "the save")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(pilot.app.screen, Dashboard)
                    and "user:my-first" in pilot.app.screen.profile_paths, "the dashboard listing it")


async def test_ctrl_arrows_jump_between_sections(studio_env: Path) -> None:
    async with app().run_test(size=(120, 40)) as pilot:
        pilot.app.edit_profile(bundled_profiles_dir() / "tiny-demo.toml")
        await pilot.pause(0.4)
        await pilot.press("ctrl+down")
        assert pilot.app.screen.focused.id == "f-model-name"
        await pilot.press("ctrl+down")
        assert pilot.app.screen.focused.id == "f-method-type"
        await pilot.press("ctrl+up", "ctrl+up")
        assert pilot.app.screen.focused.id.startswith("f-output-")  # wraps around to the last section


async def test_editor_key_without_a_terminal_to_hand_over_says_so(studio_env: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDITOR", "true")
    path = studio_env / "profiles" / "mine.toml"
    path.parent.mkdir(parents=True)
    path.write_text(f'[data]\npath = "{DEMO_DATA}"\n')
    async with app().run_test(size=(120, 40)) as pilot:
        texts = notifications(pilot.app)
        pilot.app.edit_profile(path)
        await until(pilot, lambda: isinstance(pilot.app.screen, ProfileEditor), "the editor")
        await pilot.press("ctrl+e")
        await until(pilot, lambda: any("edit" in t and str(path) in t for t in texts), "the notice")
        # the form again, reloaded from the file: left only once it has mounted (an app closed half-way
        # through mounting a screen fails in Textual's Header)
        await until(pilot, lambda: isinstance(pilot.app.screen, ProfileEditor) and pilot.app.screen.settled,
                    "the editor again")
        assert path.read_text().startswith("[data]")


async def test_quit_reads_no_run_folder_on_the_way_out(studio_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runs still training are named from the list the dashboard already read (in a worker): quitting
    checks no run's status on the UI thread, which took seconds with many runs."""
    import studio.runs.state

    for i in range(3):
        record_run(studio_env, f"2026091{i}-090000-run", status="completed")
    async with app().run_test(size=(100, 30)) as pilot:
        dash = pilot.app.screen
        await wait_until(pilot, lambda: len(dash.run_dirs) == 3, "the runs listed")

        def no_reads(run):
            raise AssertionError(f"quit read {run.id}'s status")

        monkeypatch.setattr(studio.runs.state, "run_status", no_reads)
        await pilot.press("q")
    assert pilot.app.return_code == 0


async def test_any_theme_chosen_is_remembered(studio_env: Path) -> None:
    from studio.settings import Settings

    async with app().run_test() as pilot:
        pilot.app.theme = "nord"  # one of Textual's own
        await pilot.pause()
    assert Settings.load().theme == "nord"
    async with app().run_test() as pilot:
        assert pilot.app.theme == "nord"


@pytest.mark.parametrize("theme", ["studio-dark", "studio-light", "studio-high-contrast", "textual-dark", "nord"])
async def test_borders_and_rules_stand_out_from_the_background_in_256_colours_too(studio_env: Path,
                                                                                  theme: str) -> None:
    """Borders, separators and the progress track use $rule: at least 3:1 against the background (WCAG's
    figure for lines), and still another colour once a 256-colour terminal rounds both."""
    from rich.color import Color as RichColor, ColorSystem
    from textual.color import Color

    async with app().run_test() as pilot:
        pilot.app.theme = theme
        await pilot.pause()
        variables = pilot.app.get_css_variables()
        rule, background = Color.parse(variables["rule"]), Color.parse(variables["background"])
        if rule.a < 1:
            rule = background + rule  # a colour with alpha shows blended over the background
    assert contrast(rule, background) >= 3.0, (theme, rule.hex, background.hex)

    def eight_bit(c: Color) -> int:
        return RichColor.from_rgb(c.r, c.g, c.b).downgrade(ColorSystem.EIGHT_BIT).number

    assert eight_bit(rule) != eight_bit(background), theme


def contrast(a, b) -> float:
    """WCAG contrast ratio of two textual Colors."""
    def luminance(c) -> float:
        def channel(v: int) -> float:
            v = v / 255
            return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4
        return 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b)

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_no_key_is_bound_twice_on_a_screen() -> None:
    """Two bindings of one key on a screen: one of them can never be reached (the log scale's Y once lost to
    a run action's Y)."""
    from studio.ui.chat import ChatScreen
    from studio.ui.compare import Comparison
    from studio.ui.dashboard import Dashboard
    from studio.ui.editor import ProfileEditor
    from studio.ui.monitor import RunMonitor
    from studio.ui.processes import GpuProcesses
    from studio.ui.raw_editor import RawProfileEditor

    from studio.ui.screens import StudioScreen

    screens = StudioScreen.__subclasses__()
    assert {Dashboard, RunMonitor, ProfileEditor, RawProfileEditor, ChatScreen, Comparison, GpuProcesses} <= set(screens)
    for screen in screens:
        keys = [k.strip() for b in screen.BINDINGS for k in b.key.split(",")]
        assert len(keys) == len(set(keys)), (screen.__name__, sorted(k for k in set(keys) if keys.count(k) > 1))
