"""The app as a whole: themes, quitting and reattaching, the command palette, help, dialogs and colours."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ui_fixtures import long_profile, record_run, screen_text
from ui_fixtures import studio_app as app
from waiting import front, until

from studio.runs.folder import list_runs
from studio.runs.launcher import stop_run
from studio.runs.liveness import is_alive
from studio.runs.state import run_status
from studio.ui.app import StudioApp, load_themes
from studio.ui.dashboard import Dashboard
from studio.ui.dialogs import Confirm
from studio.ui.editor import ProfileEditor
from studio.ui.monitor import RunMonitor
from studio.ui.raw_editor import RawProfileEditor


def contrast(a, b) -> float:
    """WCAG contrast ratio of two textual Colors."""
    def luminance(c) -> float:
        def channel(v: int) -> float:
            v = v / 255
            return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4
        return 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b)

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.slow
async def test_quit_leaves_the_run_going_and_a_new_app_reattaches(studio_env: Path) -> None:
    long_profile(studio_env)
    async with app().run_test(size=(100, 30)) as pilot:
        await pilot.press("r")
        await until(pilot, lambda: isinstance(pilot.app.screen, RunMonitor))
        monitor = pilot.app.screen
        await until(pilot, lambda: len(monitor.timeline.steps) >= 2)
        await pilot.press("q")
    assert pilot.app.return_code == 0
    run = list_runs()[-1]
    try:
        assert run_status(run) == "running"  # quitting the app never stops a run
        async with app().run_test(size=(100, 30)) as pilot:
            # the monitor that was open at quit opens again by itself (the run still trains)
            await until(pilot, lambda: isinstance(pilot.app.screen, RunMonitor), "the monitor reattached")
            monitor = pilot.app.screen
            assert monitor.run.id == run.id
            await until(pilot, lambda: monitor.status == "running" and len(monitor.timeline.steps) > 2)
            seen = max(monitor.timeline.steps)
            await until(pilot, lambda: max(monitor.timeline.steps) > seen)
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


async def test_quit_reads_no_run_folder_on_the_way_out(studio_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runs still training are named from the list the dashboard already read (in a worker): quitting
    checks no run's status on the UI thread, which took seconds with many runs."""
    import studio.runs.state

    for i in range(3):
        record_run(studio_env, f"2026091{i}-090000-run", status="completed")
    async with app().run_test(size=(100, 30)) as pilot:
        dash = pilot.app.screen
        await until(pilot, lambda: len(dash.run_dirs) == 3, "the runs listed")

        def no_reads(run):
            raise AssertionError(f"quit read {run.id}'s status")

        monkeypatch.setattr(studio.runs.state, "run_status", no_reads)
        await pilot.press("q")
    assert pilot.app.return_code == 0


async def test_the_themes_offered_are_studios_and_the_one_chosen_is_the_one_saved(studio_env: Path) -> None:
    """Defect (issue 36 #12): the palette mixed about 20 of Textual's themes with studio's 3, and choosing
    studio-light saved textual-light."""
    from studio.paths import themes_dir
    from studio.settings import Settings

    ours = {t.name for t in load_themes(themes_dir())}
    async with app().run_test() as pilot:
        assert set(pilot.app.available_themes) - {"textual-ansi"} == ours
        pilot.app.theme = "studio-light"
        await pilot.pause()
    assert Settings.load().theme == "studio-light"
    async with app().run_test() as pilot:
        assert pilot.app.theme == "studio-light"


@pytest.mark.parametrize("theme", ["studio-dark", "studio-light", "studio-high-contrast"])  # the themes offered
async def test_borders_and_rules_stand_out_from_the_background_in_256_colours_too(studio_env: Path,
                                                                                  theme: str) -> None:
    """Borders, separators and the progress track use $rule: at least 3:1 against the background (WCAG's
    figure for lines), and still another colour once a 256-colour terminal rounds both."""
    from rich.color import Color as RichColor
    from rich.color import ColorSystem
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


@pytest.mark.parametrize("theme", ["studio-dark", "studio-light", "studio-high-contrast"])
async def test_fit_badges_read_at_4_5_to_1_on_every_row_selected_or_not_in_256_colours_too(studio_env: Path,
                                                                                         theme: str) -> None:
    """The fit badges as drawn (their colour over the row's, as the terminal gets them): at least WCAG's 4.5:1,
    with the list focused (the selected row in the cursor's colours) and not, in truecolor and once a 256-colour
    terminal rounds both. (Red was 3.6:1 on studio-dark's rows, yellow 2.5:1 on studio-light's, the selected
    row 4.2:1 in 256 colours.)"""
    from rich.color import Color as RichColor
    from rich.color import ColorSystem
    from textual.color import Color
    from textual.widgets import DataTable

    def shown(colour, palette, eight_bit: bool) -> Color:
        t = colour.get_truecolor(palette)  # a named ANSI colour as the app's palette maps it
        if eight_bit:
            t = RichColor.from_rgb(t.red, t.green, t.blue).downgrade(ColorSystem.EIGHT_BIT).get_truecolor()
        return Color(t.red, t.green, t.blue)

    badges = {"fits", "tight", "too big", "invalid", "cpu"}
    seen = []
    async with app().run_test(size=(120, 40)) as pilot:
        pilot.app.theme = theme
        table = pilot.app.screen.query_one("#profiles", DataTable)
        await until(pilot, lambda: {str(table.get_row_at(i)[-1]) for i in range(table.row_count)} >= {"fits", "too big"},
                    "the bundled profiles' fits")
        for focused in (table, pilot.app.screen.query_one("#runs", DataTable)):
            focused.focus()
            for row in range(min(table.row_count, 8)):
                table.move_cursor(row=row)
                await pilot.pause()
                for y in range(1, min(table.row_count, 8) + 1):  # under the header
                    for segment in table.render_line(y):
                        style = segment.style
                        if segment.text.strip() not in badges or style is None:
                            continue
                        for eight_bit in (False, True):
                            fg, bg = (shown(c, pilot.app.ansi_theme, eight_bit) for c in (style.color, style.bgcolor))
                            seen.append((round(contrast(fg, bg), 2), segment.text.strip(), fg.hex, bg.hex,
                                         "selected" if y == row + 1 else "row", eight_bit))
    assert seen and min(seen)[0] >= 4.5, (theme, sorted(seen)[:5])


def test_no_key_is_bound_twice_on_a_screen() -> None:
    """Two bindings of one key on a screen: one of them can never be reached (the log scale's Y once lost to
    a run action's Y)."""
    from studio.ui.chat import ChatScreen
    from studio.ui.compare import Comparison
    from studio.ui.monitor import RunMonitor
    from studio.ui.processes import GpuProcesses
    from studio.ui.screens import StudioScreen

    screens = StudioScreen.__subclasses__()
    assert {Dashboard, RunMonitor, ProfileEditor, RawProfileEditor, ChatScreen, Comparison, GpuProcesses} <= set(screens)
    for screen in screens:
        keys = [k.strip() for b in screen.BINDINGS for k in b.key.split(",")]
        assert len(keys) == len(set(keys)), (screen.__name__, sorted(k for k in set(keys) if keys.count(k) > 1))


async def test_enter_in_a_confirmation_means_no(studio_env: Path) -> None:
    answers = []
    async with app().run_test(size=(100, 30)) as pilot:
        pilot.app.push_screen(Confirm("kill it?"), answers.append)
        await front(pilot, Confirm)
        await pilot.press("enter")
        await until(pilot, lambda: answers, "the answer")
    assert answers == [False]


async def test_help_names_keys_as_they_are_typed_and_lists_tab_and_enter(studio_env: Path) -> None:
    from textual.containers import VerticalScroll

    from studio.ui.dialogs import Help

    async with app().run_test(size=(120, 40)) as pilot:
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(pilot.app.screen, Help) and "tab" in screen_text(pilot.app), "the help")
        text = screen_text(pilot.app)
        await pilot.press("end")  # a long help scrolls, from the keyboard too
        await until(pilot, lambda: screen_text(pilot.app) != text or pilot.app.screen.query_one(VerticalScroll)
                    .max_scroll_y == 0, "the help scrolled to its end")
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
    from studio.ui.dashboard import Dashboard
    from studio.ui.dialogs import Help

    async with app().run_test(size=(120, 40)) as pilot:
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(pilot.app.screen, Help) and "reattach" in screen_text(pilot.app),
                    "the help")
        await pilot.pause()  # laid out
        assert pilot.app.screen.query_one(VerticalScroll).max_scroll_y == 0, "the help scrolls at 120x40"
        text = " ".join(screen_text(pilot.app).split())
        run_actions = {a.name: a.help for a in RUN_ACTIONS}
        for binding in [*Dashboard.BINDINGS, *StudioApp.BINDINGS]:
            said = run_actions.get(binding.action.split(".")[-1], binding.tooltip or binding.description)
            words = " ".join(said.split()[:2])
            assert words in text, (words, text)


async def test_the_dashboards_help_says_what_its_marks_mean(studio_env: Path) -> None:
    """Issue 36 #11: no legend for the bracketed eval loss, the `·` after template names or the `cpu` badge."""
    from studio.ui.dialogs import Help

    async with app().run_test(size=(120, 40)) as pilot:
        await front(pilot, Dashboard)
        await pilot.press("question_mark")
        help_screen = await until(pilot, lambda: isinstance(pilot.app.screen, Help) and pilot.app.screen, "the help")
        assert help_screen is pilot.app.screen
        text = " ".join(re.sub(r"[│█▌▐▀▄]", " ", screen_text(pilot.app)).split())  # the words, not the frame
        for mark in ("What the marks mean", "4.525 (4.577)", "train loss (eval loss)", "a bundled template",
                     "trains on the CPU"):
            assert mark in text, mark


async def test_studio_with_exactly_one_run_training_opens_its_monitor_and_esc_goes_to_the_dashboard(
        studio_env: Path) -> None:
    """Habit of the tools power users live in (issue 36): reattaching lands where the work is."""
    import time

    from ui_fixtures import live_trainer

    record_run(studio_env, "20260911-090000-done", status="completed")
    training = record_run(studio_env, "20260911-100000-going", status="running")
    with live_trainer(training, launched_at=time.time() - 5):
        async with app().run_test(size=(120, 40)) as pilot:
            monitor = await until(pilot, lambda: isinstance(pilot.app.screen, RunMonitor) and pilot.app.screen,
                                  "the monitor of the run training")
            assert monitor.run.id == training.name
            await pilot.press("escape")
            await front(pilot, Dashboard)


async def test_below_80x24_the_app_says_plainly_what_is_hidden(studio_env: Path) -> None:
    """Defect (issue 36 #13): below 80x24 nothing said what was cut or hidden."""
    from ui_fixtures import notifications

    async with app().run_test(size=(100, 30)) as pilot:
        await front(pilot, Dashboard)
        seen = notifications(pilot.app)
        await pilot.resize_terminal(60, 20)
        await until(pilot, lambda: any("60x20" in n and "widen it" in n for n in seen), "the warning")
        await pilot.resize_terminal(58, 20)
        await pilot.resize_terminal(100, 30)
        await pilot.pause()
        assert sum("widen it" in n for n in seen) == 1, seen  # once, not on every resize while small


def test_a_desktop_notification_is_the_terminal_s_own_sequence_and_cannot_be_broken_by_a_name() -> None:
    from studio.ui.desktop_notice import notice_sequence

    assert notice_sequence("studio: run failed", "run x failed", {"TERM": "xterm-256color"}) == \
        "\x1b]9;studio: run failed: run x failed\x07"
    assert notice_sequence("t", "b", {"TERM": "foot"}) == "\x1b]777;notify;t;b\x07"  # foot, rxvt, VTE: OSC 777
    assert notice_sequence("t", "b", {"TERM": "xterm-256color", "VTE_VERSION": "7600"}) == "\x1b]777;notify;t;b\x07"
    assert notice_sequence("t", "b", {"STUDIO_NOTIFY": "777"}) == "\x1b]777;notify;t;b\x07"
    assert notice_sequence("t", "b", {"STUDIO_NOTIFY": "off"}) is None
    assert notice_sequence("t", "b", {"TERM": "screen", "STY": "1.pts-0"}) == "\x1bP\x1b]9;t: b\x07\x1b\\"
    # a run id or message holding a BEL, an escape or a separator ends nothing early
    sent = notice_sequence("t", "run evil\x07\x1b]0;owned\x07; more", {"TERM": "xterm"})
    assert sent == "\x1b]9;t: run evil]0,owned, more\x07", sent
