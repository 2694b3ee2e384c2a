"""What every full screen of the app has: its section of the help, and its commands in the palette."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from textual.app import SystemCommand
from textual.screen import Screen


class StudioScreen(Screen):
    """A full screen (not a dialog). The app asks the screen in front for both; it tests for no class."""

    HELP_TITLE: ClassVar[str] = ""   # the help's heading over this screen's keys

    def commands(self) -> Iterable[SystemCommand]:
        """This screen's commands in the palette (ctrl+p), besides the app-wide ones."""
        yield SystemCommand("Back", "Back to the screen before", self.app.pop_screen)
