"""What every full screen of the app has: its section of the help, and its commands in the palette."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from textual.app import SystemCommand
from textual.screen import ModalScreen, Screen


class StudioScreen(Screen):
    """A full screen (not a dialog). The app asks the screen in front for both; it tests for no class."""

    HELP_TITLE: ClassVar[str] = ""   # the help's heading over this screen's keys
    # What the marks and badges on this screen mean, (mark, meaning): the help shows them under its keys.
    LEGEND: ClassVar[tuple[tuple[str, str], ...]] = ()

    @property
    def in_view(self) -> bool:
        """In front, or under dialogs only. (Textual's `is_current` also counts the full screen just under the
        front one, which is hidden: worth reading for, not worth drawing for.)"""
        stack = self.app.screen_stack
        if self not in stack:
            return False
        return all(isinstance(s, ModalScreen) for s in stack[stack.index(self) + 1:])

    def training_run_id(self) -> str | None:
        """The id of the run this screen watches while it trains (a run's monitor), else None."""
        return None

    def commands(self) -> Iterable[SystemCommand]:
        """This screen's commands in the palette (ctrl+p), besides the app-wide ones."""
        yield SystemCommand("Back", "Back to the screen before", self.app.pop_screen)
