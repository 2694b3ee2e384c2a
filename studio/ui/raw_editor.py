"""A profile as text: what opens when a file does not load as a profile (a TOML syntax error,
an unknown key, a value out of range), so nothing in it is hidden behind a form of defaults
and nothing is lost by saving. Also `$EDITOR` on any profile (ctrl+e).

The text is written back only when it changed, atomically; then it is checked again and the
problems (or "ok") show above the text.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header, Static, TextArea

from studio.profiles.library import editable_path, write_profile_text
from studio.profiles.profile import ProfileError, load_profile
from studio.ui.screens import StudioScreen


def profile_problems(path: Path) -> list[str]:
    """What stops `path` from loading as a profile, each with its line in the file where it has one; empty
    when it loads."""
    try:
        load_profile(path)
    except ProfileError as e:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError):
            return list(e.problems)
        return [with_line(problem, text) for problem in e.problems]
    return []


TOML_LINE = re.compile(r"^line (\d+):|at line (\d+)")
TABLE = re.compile(r"\s*\[\s*([A-Za-z0-9_.-]+)\s*\]")


def stated_line(problem: str) -> int | None:
    """The line a problem names itself: TOML's own `at line N`, or the `line N:` with_line put before it."""
    found = TOML_LINE.search(problem)
    return int(found.group(1) or found.group(2)) if found else None


def problem_line(problem: str, text: str) -> int | None:
    """The line (from 1) a problem is about: the one it states, else the line setting its key
    (`section.key: ...` is `key = ` under `[section]`; a whole section's problem, its header)."""
    stated = stated_line(problem)
    if stated:
        return stated
    dotted = problem.split(":", 1)[0].strip()
    section, _, key = dotted.partition(".")
    current = ""
    for number, line in enumerate(text.splitlines(), 1):
        table = TABLE.match(line)
        if table:
            current = table.group(1)
            if current == section and not key:
                return number
            continue
        name = line.split("=", 1)[0].strip().strip('"')
        if "=" in line and ((current == section and name == key) or (not current and name == dotted)):
            return number
    return None


def with_line(problem: str, text: str) -> str:
    number = problem_line(problem, text)
    return f"line {number}: {problem}" if number and not problem.startswith("line ") else problem


def open_in_editor(app, path: Path) -> str | None:
    """Run $VISUAL/$EDITOR on `path` with the app suspended; an error message, or None when it ran."""
    from textual.app import SuspendNotSupported

    command = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    try:
        with app.suspend():
            code = subprocess.call([*shlex.split(command), str(path)])
    except SuspendNotSupported:
        return f"this terminal cannot hand over to {command}; edit {path} outside the app"
    except (OSError, ValueError) as e:
        return f"cannot run {command!r}: {e}; set $EDITOR to your editor"
    return None if code == 0 else f"{command} exited with status {code}"


class RawProfileEditor(StudioScreen):
    """The file's text with its problems; ctrl+s saves it, esc goes back without writing."""

    HELP_TITLE = "Profile text"

    BINDINGS = [
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+e", "external", "$EDITOR"),
        Binding("f8", "next_problem", "Next problem", tooltip="put the cursor on the line of the next problem"),
        Binding("f4", "form", "Form", tooltip="once the profile loads: edit it in the form"),
        Binding("escape", "back", "Back", priority=True),  # the text area would take esc to move focus
    ]

    def __init__(self, path: Path, problems: list[str] | None = None):
        super().__init__()
        self.path = Path(path)
        self.unreadable = ""
        try:
            self.saved_text = self.path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as e:
            self.saved_text, self.unreadable = "", f"cannot show the file as text ({e}); fix it in a text editor"
        self.problems = ([with_line(p, self.saved_text) for p in problems] if problems is not None
                         else profile_problems(self.path))

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="raw-problems")
        yield TextArea(self.saved_text, id="raw-text", show_line_numbers=True, read_only=bool(self.unreadable),
                       soft_wrap=False, tab_behavior="indent")
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"profile {self.path.stem} (text)"
        self.show_problems()
        self.query_one(TextArea).focus()

    def show_problems(self) -> None:
        if self.unreadable:
            text = Text(self.unreadable, style="bold red")
        elif self.problems:
            text = Text("this file does not load as a profile; fix it here (ctrl+s saves, esc leaves it as it is):\n",
                        style="bold")
            for p in self.problems[:6]:
                text.append(f"  ✗ {p}\n", style="red")
        else:
            text = Text("ok: the profile loads. f4 opens it in the form; esc goes back.", style="green")
        self.query_one("#raw-problems", Static).update(text)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "form":
            return not self.problems and not self.unreadable  # offered once the profile loads
        if action == "next_problem":
            return bool(self.problem_lines())
        return True

    def problem_lines(self) -> list[int]:
        """The lines the problems name (with_line found each one's when they were read)."""
        return sorted({n for p in self.problems if (n := stated_line(p))})

    def action_next_problem(self) -> None:
        area = self.query_one(TextArea)
        lines = self.problem_lines()
        here = area.cursor_location[0] + 1
        target = next((n for n in lines if n > here), lines[0] if lines else None)
        if target is not None:
            area.move_cursor((target - 1, 0))
            area.focus()

    def action_form(self) -> None:
        if self.changed:
            self.notify("save (ctrl+s) first: the form opens the file on disk", severity="warning")
            return
        self.app.pop_screen()
        self.app.edit_profile(self.path)

    @property
    def changed(self) -> bool:
        return self.query_one(TextArea).text != self.saved_text

    def action_save(self) -> None:
        if self.unreadable:
            self.notify(self.unreadable, severity="error")
            return
        text = self.query_one(TextArea).text
        target = editable_path(self.path)
        if text == self.saved_text and target == self.path:
            self.notify("no change to save")
            return
        try:
            write_profile_text(target, text)
        except ProfileError as e:
            self.notify("; ".join(e.problems), title="not saved", severity="error", timeout=10)
            return
        if target != self.path:
            self.notify(f"saved your copy to {target} (bundled templates are read-only)")
        self.path, self.saved_text = target, text
        self.problems = profile_problems(target)
        self.show_problems()
        self.refresh_bindings()
        self.notify(f"saved {target.name}" + ("" if not self.problems else f": {len(self.problems)} problem(s) left"),
                    severity="information" if not self.problems else "warning")
        self.app.profiles_changed()

    def action_external(self) -> None:
        if self.changed:
            self.notify("save (ctrl+s) or undo your changes here first: the editor opens the file on disk",
                        severity="warning")
            return
        error = open_in_editor(self.app, self.path)
        if error:
            self.notify(error, severity="error")
        try:
            self.saved_text = self.path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError):
            return
        self.query_one(TextArea).text = self.saved_text
        self.problems = profile_problems(self.path)
        self.show_problems()
        self.refresh_bindings()
        self.app.profiles_changed()

    def action_back(self) -> None:
        from studio.ui.dialogs import leave

        leave(self, self.changed, "discard the changes to the text?")
