"""The studio Textual app: one App, screens in their own modules, themes from files.

Slow or risky work (NVML polling, starting a trainer) happens in workers or in
other processes; errors end up in a notification, never as a traceback over the UI.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from textual import events, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.reactive import var
from textual.screen import Screen
from textual.theme import Theme

from studio.hardware import HostLoad, Inventory, host_load
from studio.paths import themes_dir
from studio.settings import DEFAULT_THEME, Settings
from studio.ui.dashboard import Dashboard
from studio.ui.screens import StudioScreen
from studio.runs.status import RunStatus

if TYPE_CHECKING:
    from studio.runs.folder import Run

# Only what the first frame needs is imported above (the first frame is a start-up target:
# bench/ui_speed.py); the rest is imported where it is used.

GPU_REFRESH_S = 1.0
WIDE_HELP = 120  # columns from which the help lays its keys out in two columns
THEME_KEYS = ("primary", "secondary", "warning", "error", "success", "accent", "foreground", "background",
              "surface", "panel", "boost", "dark")


MIN_SIZE = (80, 24)  # the smallest terminal every screen is laid out for
ANSI_THEME = "textual-ansi"  # Textual's theme of the terminal's own palette: kept beside studio's


def load_themes(folder: Path) -> list[Theme]:
    """Every themes/*.toml that parses; a broken theme file is skipped, not fatal."""
    themes = []
    for path in sorted(folder.glob("*.toml")):
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
            themes.append(Theme(name=raw.get("name", path.stem), **{k: raw[k] for k in THEME_KEYS if k in raw}))
        except (OSError, tomllib.TOMLDecodeError, TypeError, ValueError):
            continue
    return themes


class GpusSampled(Message):
    """One poll's GPUs and host load, from the polling worker to the App."""

    def __init__(self, inventory: Inventory, host: HostLoad | None):
        super().__init__()
        self.inventory, self.host = inventory, host


class StudioApp(App[None]):
    """Screens watch `inventory` (refreshed every second by a worker) for the GPUs."""

    CSS_PATH = "studio.tcss"
    TITLE = "studio"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("f1", "help", "Help", show=False, priority=True),  # help from inside any text field too
        Binding("ctrl+p", "command_palette", "Commands", show=False),
    ]

    # `var`, not `reactive`: a reactive of the App repaints the whole screen on each change, once a second.
    inventory: var[Inventory] = var(Inventory([], reason="detecting GPUs"), always_update=False)
    host: var[HostLoad | None] = var(None, always_update=False)  # polled with the GPUs

    def __init__(self, open_run: Run | None = None, inventory: Inventory | None = None, poll_gpus: bool = True):
        from studio.ui.glyphs import plain

        # A terminal that draws ASCII only gets ASCII borders on top of the stylesheet (studio/ui/glyphs.py).
        super().__init__(css_path=[self.CSS_PATH, "plain.tcss"] if plain() else None)
        self.ansi_bases = (self.ansi_theme_dark, self.ansi_theme_light)  # Textual's palettes, before studio's
        self.settings = Settings.load()
        self.first_run = open_run
        self.watched_run_id: str | None = None
        self.starting: set[Path] = set()  # profiles whose start is on its way
        self.told_endings: set[tuple[str, float | None]] = set()  # (run id, end time): each ending toasted once
        self.exports: dict[int, tuple[Any, str]] = {}  # pid -> (process, what): exports running, for the quit
        self.fixed_inventory = inventory
        self.poll_gpus = poll_gpus
        if inventory is not None:
            self.set_reactive(StudioApp.inventory, inventory)
        # Themes before the stylesheet is first parsed: a theme set later re-parses it (start-up time).
        # The palette offers studio's themes (and textual-ansi, the terminal's own 16 colours), not Textual's
        # twenty: the one chosen there is the one saved.
        ours = [theme.name for theme in load_themes(themes_dir()) if not self.register_theme(theme)]
        self.theme = self.settings.theme if self.settings.theme in ours + [ANSI_THEME] else (
            DEFAULT_THEME if DEFAULT_THEME in ours else self.theme)
        if self.theme in ours:
            for name in list(self.available_themes):
                if name not in ours and name != ANSI_THEME:
                    self.unregister_theme(name)

    # ----------------------------------------------------------- start-up

    too_small = False  # the terminal is below 80x24 (said once each time it gets there)

    def on_resize(self, event: events.Resize) -> None:
        small = event.size.width < MIN_SIZE[0] or event.size.height < MIN_SIZE[1]
        if small and not self.too_small:
            self.notify(f"the terminal is {event.size.width}x{event.size.height}: studio is laid out for "
                        f"{MIN_SIZE[0]}x{MIN_SIZE[1]} or more. Below it the lists drop their method and model "
                        "columns, ids and names are cut, and the panes scroll; widen it to see everything",
                        severity="warning", timeout=10)
        self.too_small = small

    def on_mount(self) -> None:
        import asyncio

        from studio.ui.worker_threads import WorkerThreads

        asyncio.get_running_loop().set_default_executor(WorkerThreads())  # q never waits on a worker's read
        self.push_screen(Dashboard())
        if self.first_run is not None:
            self.open_run(self.first_run)
            self.reattach_checked = True
        else:  # the run watched at the last quit, or else the one run training
            self.call_after_refresh(self.reattach, self.settings.watching)
        if self.fixed_inventory is None and self.poll_gpus:
            self.call_after_refresh(self.poll_inventory)  # after the first frame: NVML's import and init take time
            self.set_interval(GPU_REFRESH_S, self.poll_inventory)

    def on_ready(self) -> None:
        """The first frame is drawn. `studio` turned garbage collection off for the start (studio/cli): what the
        start built lives as long as the app, so it is frozen out of every later collection, and collection resumes."""
        if not gc.isenabled():
            gc.freeze()
            gc.enable()

    def get_css_variables(self) -> dict[str, str]:
        """Textual's variables for the theme, and `$rule` (borders, separators), derived unless the theme sets it."""
        from textual.color import Color, ColorParseError

        from studio.ui.colours import luminance, readable, rule_colour

        variables = super().get_css_variables()
        if "rule" not in self.current_theme.variables:
            rule = rule_colour(Color.parse(variables["background"]), Color.parse(variables["foreground"]))
            variables["rule"] = rule.hex
        cursor = variables.get("block-cursor-background")
        if cursor and "block-cursor-foreground" not in self.current_theme.variables:
            # the selected row's text, readable in 256 colours too (studio-light's was 4.2:1 there)
            back = Color.parse(variables["background"]) + Color.parse(cursor)
            toward = Color(0, 0, 0) if luminance(back) > 0.18 else Color(255, 255, 255)
            try:
                start = Color.parse(variables["block-cursor-foreground"])
            except ColorParseError:  # Textual's "auto 87%": black or white, 87% over the background
                start = back.blend(toward, 0.87)
            variables["block-cursor-foreground"] = readable(start, [back], toward).hex
        return variables

    def validate_theme(self, name: str) -> str:
        """The chosen theme's ANSI colours (the ones Rich text names: "red", "green"...) are set before Textual
        applies the theme, whose own watcher builds the colour filter from them. (Set from a watcher after it,
        they made Textual re-parse the stylesheet a second time at every start and every theme change.)"""
        from studio.ui.colours import ansi_palette

        theme = self.get_theme(name)
        bases = getattr(self, "ansi_bases", None)  # None while Textual's __init__ sets its default theme
        if theme is None or theme.ansi or bases is None:  # unknown (Textual refuses it), or the terminal's own
            return name
        variables = {**theme.to_color_system().generate(), **theme.variables}  # as Textual derives them
        palette = ansi_palette(variables, theme.dark, bases[0 if theme.dark else 1])
        self.set_reactive(App.ansi_theme_dark if theme.dark else App.ansi_theme_light, palette)
        return name

    def watch_theme(self, theme: str) -> None:
        """Any theme chosen (studio's, Textual's own, from the palette) is the one the next start opens with."""
        if getattr(self, "settings", None) and theme != self.settings.theme:
            self.settings.theme = theme
            try:
                self.settings.save()
            except OSError:
                pass  # the theme still applies; it just is not remembered

    @work(thread=True, group="reattach")
    def reattach(self, run_id: str) -> None:
        """Back to the monitor that was open at quit, while its run still trains; else, when exactly one run is
        training, to its monitor (esc goes to the dashboard). After the first frame; `reattach_checked` says
        it has decided."""
        from studio.paths import runs_dir
        from studio.runs.folder import Run
        from studio.runs.state import run_status
        from studio.runs.summary_cache import training_runs

        try:
            run = Run(runs_dir() / run_id) if run_id and "/" not in run_id else None
            if run and run.dir.is_dir() and not run.dir.is_symlink() and run_status(run) == RunStatus.RUNNING:
                self.call_from_thread(self.open_run, run)
                return
            training = training_runs()
            if len(training) == 1:
                self.call_from_thread(self.open_run, training[0])
        finally:
            self.call_from_thread(setattr, self, "reattach_checked", True)

    reattach_checked = False

    @work(thread=True, exclusive=True, group="gpus")
    def poll_inventory(self) -> None:
        """NVML calls block: off the UI thread. The samples come back as a message: `call_from_thread` would
        inspect its callback's signature on every call (bench/ui_speed.py: a tenth of the idle CPU)."""
        from studio.planning.inventory import current_inventory

        self.post_message(GpusSampled(current_inventory(), host_load()))

    def on_gpus_sampled(self, message: GpusSampled) -> None:
        self.inventory = message.inventory
        self.host = message.host

    # ----------------------------------------------------------- commands

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("New profile", "Create a profile and open it in the editor", self.action_new_profile)
        yield SystemCommand("Help", "Keys and what they do", self.action_help)
        yield SystemCommand("GPU processes", "Every process on the GPUs: pid, user, memory, run; K kills one",
                            self.action_gpu_processes)
        if isinstance(screen, StudioScreen):
            yield from screen.commands()

    def action_gpu_processes(self) -> None:
        from studio.ui.processes import GpuProcesses

        if not isinstance(self.screen, GpuProcesses):
            self.push_screen(GpuProcesses())

    def action_help(self) -> None:
        """The keys of the screen in front (the others list theirs there), then the app-wide ones."""
        from rich.console import Group
        from rich.text import Text

        from studio.ui.actions import GENERAL_KEYS, help_table
        from studio.ui.dialogs import Help

        screen = next((s for s in reversed(self.screen_stack) if isinstance(s, StudioScreen)), None)
        columns = 2 if self.size.width >= WIDE_HELP else 1  # a screen of many keys then fits without scrolling
        parts: list[Any] = [Text("Quitting never stops a run: it goes on in the background; type `studio` again to "
                                 "reattach. Every action has a key (in the footer) and a command (ctrl+p).\n")]
        if screen is not None:
            parts += [Text(screen.HELP_TITLE, style="bold"),
                      help_table(list(type(screen).BINDINGS), self.get_key_display, columns=columns), Text("")]
            if screen.LEGEND:  # one paragraph: the keys above must still fit a 120x40 terminal
                legend = Text("What the marks mean: ", style="bold")
                for i, (mark, meaning) in enumerate(screen.LEGEND):
                    legend.append(("; " if i else "") + mark, style="bold")
                    legend.append(f" {meaning}", style="")
                parts += [legend, Text("")]
        parts += [Text("Anywhere", style="bold"), help_table(list(StudioApp.BINDINGS), self.get_key_display,
                                                            general=GENERAL_KEYS, columns=columns)]
        self.push_screen(Help(Group(*parts), wide=columns == 2))

    def action_new_profile(self) -> None:
        """A name and a starting point (the profile under the Profiles cursor first), then the editor."""
        from dataclasses import replace

        from studio.paths import bundled_profiles_dir
        from studio.profiles.library import all_profiles
        from studio.profiles.profile import Profile, ProfileError, load_profile
        from studio.ui.dialogs import FROM_MODEL, NewProfileDialog
        from studio.ui.editor import ProfileEditor

        demo = bundled_profiles_dir() / "tiny-demo.toml"
        templates = [(f"{e.name} ({'yours' if e.origin == 'user' else 'bundled'})", str(e.path))
                     for e in all_profiles()]
        selected = self.screen.selected_profile() if isinstance(self.screen, Dashboard) else None
        start = str(selected) if selected else str(demo)

        def done(answer: tuple[Path, str] | None) -> None:
            if answer is None:
                return
            path, source = answer
            if path.exists():
                self.notify(f"{path.name} exists; opening it", severity="warning")
                self.edit_profile(path)
                return
            template = demo if source == FROM_MODEL else Path(source)
            try:
                base = load_profile(template)
            except ProfileError:
                base = Profile()
            base = replace(base, description=f"from {template.stem}" if source != FROM_MODEL else "")
            editor = ProfileEditor(None, base, self.gpu_names(), new_path=path)
            self.push_screen(editor)
            if source == FROM_MODEL:
                editor.call_after_refresh(editor.action_pick_model)

        self.push_screen(NewProfileDialog(templates, start if any(v == start for _, v in templates) else str(demo)),
                         done)

    def gpu_names(self) -> list[str]:
        return [g.name for g in self.inventory.gpus]

    def edit_profile(self, path: Path) -> None:
        """The form for a profile that loads; its text, with the problems, for one that does not."""
        from studio.profiles.profile import ProfileError, load_profile
        from studio.ui.editor import ProfileEditor

        try:
            profile = load_profile(path)
        except ProfileError as e:
            from studio.ui.raw_editor import RawProfileEditor

            self.push_screen(RawProfileEditor(path, e.problems))
            return
        self.push_screen(ProfileEditor(path, profile, self.gpu_names()))

    def profiles_changed(self) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, Dashboard):
                screen.reload_profiles()

    def start_profile(self, path: Path, ignore_disk: bool = False) -> None:
        """Check the data, plan and launch in a worker (a big dataset takes seconds); open the monitor. A second
        start of the same profile while the first is still on its way is refused (a double key press)."""
        if path in self.starting:
            self.notify(f"{path.stem} is already starting", severity="warning")
            return
        self.starting.add(path)
        self.notify(f"starting {path.stem}: checking the data and planning the run...", timeout=4)
        self.start_in_background(path, ignore_disk)

    @work(thread=True, group="start")
    def start_in_background(self, path: Path, ignore_disk: bool = False) -> None:
        try:
            self.start_and_open(path, ignore_disk)
        finally:
            self.call_from_thread(lambda: self.starting.discard(path))

    def start_and_open(self, path: Path, ignore_disk: bool = False) -> None:
        from studio.runs.start import START_ERRORS, LowDisk, start_run

        try:
            run = start_run(path, ignore_disk=ignore_disk).run
        except LowDisk as e:  # the user may know better (space about to be freed): asked, not refused
            self.call_from_thread(self.confirm_low_disk, path, str(e))
            return
        except START_ERRORS as e:
            self.call_from_thread(self.tell_start_failure, e, "cannot start")
            return
        self.call_from_thread(self.notify, f"started run {run.id}")
        self.call_from_thread(self.open_run, run)

    def tell_ending(self, text: str, status: str, failed: bool) -> None:
        """A run ended: a toast, the terminal's bell and a desktop notification (studio/ui/desktop_notice.py)."""
        self.notify(text, title=f"run {status}", severity="error" if failed else "information", timeout=8)
        self.bell()
        self.desktop_notice(f"studio: run {status}", text)

    def desktop_notice(self, title: str, body: str) -> None:
        from studio.ui.desktop_notice import notice_sequence

        sequence = notice_sequence(title, body, os.environ)
        if sequence:
            self.write_to_terminal(sequence)

    def write_to_terminal(self, data: str) -> None:
        """Raw bytes to the terminal between frames, as Textual writes its bell and clipboard sequences."""
        if not self.is_headless and self._driver is not None:
            self._driver.write(data)

    def confirm_low_disk(self, path: Path, problem: str) -> None:
        from studio.ui.dialogs import Confirm

        def done(yes: bool | None) -> None:
            if yes:
                self.start_profile(path, ignore_disk=True)

        self.push_screen(Confirm(f"{path.stem}: {problem}. Start it anyway?"), done)

    def tell_start_failure(self, e: Exception, title: str) -> None:
        """Why a start or a revision did not go ahead (a profile's problems, the first three of them)."""
        from studio.profiles.profile import ProfileError

        text = "; ".join(e.problems[:3]) if isinstance(e, ProfileError) else str(e)
        self.notify(text, title=title, severity="error", timeout=10)

    def open_run(self, run: Run) -> None:
        from studio.ui.monitor import RunMonitor

        self.watched_run_id = run.id  # back on the dashboard, the Runs list's cursor goes to it
        self.push_screen(RunMonitor(run))

    def open_comparison(self, runs: list[Run]) -> None:
        from studio.ui.compare import Comparison

        self.push_screen(Comparison(runs))

    def open_chat(self, run: Run) -> None:
        from studio.ui.chat import ChatScreen

        self.push_screen(ChatScreen(run))

    def leave_monitor_of(self, run: Run) -> None:
        """Back from the monitor of a run that left the runs folder (deleted, archived)."""
        from studio.ui.monitor import RunMonitor

        if isinstance(self.screen, RunMonitor) and self.screen.run.id == run.id:
            self.pop_screen()

    def refresh_dashboards(self) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, Dashboard):
                screen.refresh_lists()

    def action_quit(self) -> None:
        """Leave at once, or, while an export runs (it would stop, writing nothing), after asking."""
        if not self.exports:
            self.quit_now()
            return
        from studio.ui.dialogs import Confirm

        running = "; ".join(what for _, what in list(self.exports.values())[:2])

        def done(yes: bool | None) -> None:
            if yes:
                for proc, _ in list(self.exports.values()):
                    proc.kill()  # the export writes into a staging folder: nothing half-written is left
                self.quit_now()

        self.push_screen(Confirm(f"an export is running ({running}); quitting stops it and writes nothing. "
                                 "Quit anyway?"), done)

    def quit_now(self) -> None:
        """The runs still training are named from what the dashboard last read (in a worker) and from the
        monitors open. (No import here: quitting from the dashboard need not load the monitor.)"""
        dashboard = next((s for s in self.screen_stack if isinstance(s, Dashboard)), None)
        running = [s.id for s in dashboard.last_summaries if s.status == RunStatus.RUNNING] if dashboard else []
        watched = [s.training_run_id() for s in self.screen_stack if isinstance(s, StudioScreen)]
        running += [run_id for run_id in watched if run_id and run_id not in running]
        front = (self.screen.training_run_id() if isinstance(self.screen, StudioScreen) else None) or ""
        if front != self.settings.watching:
            self.settings.watching = front  # the next start reattaches to it
            try:
                self.settings.save()
            except OSError:
                pass
        message = None
        if running:
            message = (f"{len(running)} run(s) still training in the background ({', '.join(running[:3])}); "
                       "type `studio` to reattach.")
        self.exit(message=message)


def run_app(open_run: Run | None = None) -> int:
    """The app until it quits; an app that crashed exits non-zero (Textual prints the traceback)."""
    app = StudioApp(open_run=open_run)
    app.run()
    return app.return_code or 0

