"""Modal dialogs: confirm, ask for a line of text, help."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

HELP = """\
[b]studio[/b] — every action has a key (shown in the footer) and a command (ctrl+p).

Dashboard   n new profile · e edit profile · r run profile · o/enter open run
            s stop run · k kill run · u resume run · x export run · tab: next list
Editor      ctrl+s save · f2 save as · f4 apply the suggestion · f5 run · esc back
Monitor     s stop (graceful: checkpoint + adapter) · k kill · u resume · x export
            f save the OOM fix and resume · esc back
Anywhere    ? help · ctrl+p command palette (themes too) · q quit

Quitting never stops a run: it goes on in the background.
Type `studio` again to reattach.
"""


class Confirm(ModalScreen[bool]):
    BINDINGS = [Binding("y", "yes", "Yes"), Binding("n,escape", "no", "No")]

    def __init__(self, question: str):
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question)
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", id="yes", variant="warning")
                yield Button("No (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)


class Ask(ModalScreen[str | None]):
    """One line of text, e.g. a profile name or an export folder."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, value: str = ""):
        super().__init__()
        self.question = question
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question)
            yield Input(value=self.value, id="answer")
            yield Label("enter to accept, esc to cancel", classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class Help(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Static(HELP)

    def action_close(self) -> None:
        self.dismiss(None)
