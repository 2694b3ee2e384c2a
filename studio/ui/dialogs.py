"""Modal dialogs: confirm, a profile name, export, help, the data preview."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import RenderableType
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Input, Label, Select, Static, Switch

from studio.data_preview import PreviewError, data_preview, preview_lines
from studio.profiles.library import user_profile_path
from studio.profiles.profile import ProfileError


class Confirm(ModalScreen[bool]):
    """Yes or no; "No" has the focus, so a stray Enter never does the destructive thing."""

    BINDINGS = [Binding("y", "yes", "Yes"), Binding("n,escape", "no", "No")]

    def __init__(self, question: str):
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="question")
            with Horizontal(classes="buttons"):
                yield Button("No (n)", id="no")
                yield Button("Yes (y)", id="yes", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)


def leave(screen: Screen, changed: bool, question: str) -> None:
    """Back from an editing screen: at once when nothing changed, else only if the user discards."""
    if not changed:
        screen.app.pop_screen()
        return

    def done(discard: bool | None) -> None:
        if discard:
            screen.app.pop_screen()

    screen.app.push_screen(Confirm(question), done)


class ProfileNameDialog(ModalScreen["Path | None"]):
    """A name for a user profile; a name that is not one (a path, `..`) is explained here and not accepted."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, value: str = ""):
        super().__init__()
        self.question = question
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="question")
            yield Input(value=self.value, id="answer")
            yield Static("", id="name-problem", classes="problem")
            yield Label("a plain name, like llama-qlora; enter to accept, esc to cancel", classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            self.dismiss(None)
            return
        try:
            self.dismiss(user_profile_path(event.value))
        except ProfileError as e:
            self.query_one("#name-problem", Static).update(e.problems[0])

    def action_cancel(self) -> None:
        self.dismiss(None)


def find_field(typed: str, names: list[str]) -> str | None:
    """The dotted field name `typed` means: itself, the one field it names after the dot, or the one it is
    part of; None when it names none or several."""
    typed = typed.strip().lower()
    for rule in (lambda n: n == typed, lambda n: n.split(".")[1] == typed, lambda n: typed in n):
        found = [n for n in names if rule(n)]
        if len(found) == 1:
            return found[0]
        if found:
            return None
    return None


class FieldFinder(ModalScreen["str | None"]):
    """Jump to a profile field by name: typing completes it (section.key, or the key alone)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, names: list[str]):
        super().__init__()
        self.names = names

    def compose(self) -> ComposeResult:
        from textual.suggester import SuggestFromList

        suggestions = self.names + sorted({n.split(".")[1] for n in self.names})
        with Vertical(classes="dialog"):
            yield Label("go to the field (right arrow takes the suggestion):", classes="question")
            yield Input(id="answer", placeholder="batch_size, data.path, seed...",
                        suggester=SuggestFromList(suggestions, case_sensitive=False))
            yield Static("", id="name-problem", classes="problem")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        name = find_field(event.value, self.names)
        if name is None:
            matches = [n for n in self.names if event.value.strip().lower() in n]
            self.query_one("#name-problem", Static).update(
                f"several fields match: {', '.join(matches[:6])}" if matches else f"no field is called {event.value!r}")
            return
        self.dismiss(name)

    def action_cancel(self) -> None:
        self.dismiss(None)


class NoteDialog(ModalScreen["str | None"]):
    """The user's note on a run: enter keeps it (empty removes it), esc leaves it as it was."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, run_id: str, note: str):
        super().__init__()
        self.run_id, self.note = run_id, note

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(f"your note on run {self.run_id}:", classes="question")
            yield Input(value=self.note, id="answer", placeholder="why it ran, what it showed...")
            yield Label("enter keeps it (empty removes it), esc cancels", classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


NEWEST = -1  # the weights picker's answer for "what the run trained last" (final, or a later checkpoint)


class WeightsPicker(ModalScreen["int | None"]):
    """Which of a run's weights a chat loads: the newest, or one complete checkpoint by its step. Answers
    NEWEST, a step, or None (cancelled)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, steps: list[int], has_result: bool, current: int | None):
        super().__init__()
        self.steps, self.has_result, self.current = steps, has_result, current

    def compose(self) -> ComposeResult:
        from textual.widgets import OptionList
        from textual.widgets.option_list import Option

        newest = "the final result" if self.has_result else "the newest checkpoint"
        options = [Option(f"newest: {newest} (or a checkpoint saved after it)", id="newest")]
        options += [Option(f"the checkpoint of step {s}", id=str(s)) for s in sorted(self.steps, reverse=True)]
        with Vertical(classes="dialog"):
            yield Label("load which weights? (enter picks, esc cancels)", classes="question")
            yield OptionList(*options, id="weights")

    def on_mount(self) -> None:
        from textual.widgets import OptionList

        weights = self.query_one(OptionList)
        order = sorted(self.steps, reverse=True)
        weights.highlighted = 1 + order.index(self.current) if self.current in order else 0  # what is loaded now
        weights.focus()

    def on_option_list_option_selected(self, event: Any) -> None:
        self.dismiss(NEWEST if event.option.id == "newest" else int(event.option.id))

    def action_cancel(self) -> None:
        self.dismiss(None)


FROM_MODEL = "model"  # the start-from choice that opens the model picker


class NewProfileDialog(ModalScreen["tuple[Path, str] | None"]):
    """A new profile: its name, and what it starts from (a bundled template, one of yours, or a model
    picked from the Hub). Answers (where it will be saved, the template's path or FROM_MODEL)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, templates: list[tuple[str, str]], start: str):
        super().__init__()
        self.templates, self.start = templates, start

    def compose(self) -> ComposeResult:
        from textual.widgets import Select

        with Vertical(classes="dialog wide"):
            yield Label("start from:", classes="question")
            yield Select([("a model from the Hub (the model picker opens)", FROM_MODEL), *self.templates],
                         value=self.start, id="new-from", allow_blank=False)
            yield Label("name of the new profile:", classes="question")
            yield Input(id="answer", placeholder="a plain name, like llama-qlora")
            yield Static("", id="name-problem", classes="problem")
            yield Label("tab moves between the two; enter creates it, esc cancels", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#answer", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        from textual.widgets import Select

        if not event.value.strip():
            self.query_one("#name-problem", Static).update("type a name first (esc cancels)")
            return
        try:
            path = user_profile_path(event.value)
        except ProfileError as e:
            self.query_one("#name-problem", Static).update(e.problems[0])
            return
        self.dismiss((path, str(self.query_one("#new-from", Select).value)))

    def action_cancel(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True)
class ExportChoice:
    """What the export dialog asks for: everything `studio export` can do."""
    folder: str
    merge: bool = False
    gguf: str | None = None      # the GGUF type (q8_0, a k-quant...), or None for no GGUF
    ollama: bool = False
    push: str | None = None      # ORG/NAME on the Hub
    private: bool = False


GGUF_CHOICES = (("no GGUF", ""), ("GGUF q8_0", "q8_0"), ("GGUF f16", "f16"), ("GGUF bf16", "bf16"),
                ("GGUF q4_k_m (llama-quantize)", "q4_k_m"), ("GGUF q5_k_m (llama-quantize)", "q5_k_m"),
                ("GGUF q6_k (llama-quantize)", "q6_k"), ("GGUF f32", "f32"))


class ExportDialog(ModalScreen["ExportChoice | None"]):
    """Where to export a run and as what: the adapter, a merged model, a GGUF (with its type) and an Ollama
    Modelfile, and a push to the Hub. Enter exports from any field (space toggles a switch), esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"),
                Binding("enter", "export", "Export", priority=True)]  # before a switch's own enter (toggle)

    def __init__(self, run_id: str, folder: str, heading: str = ""):
        super().__init__()
        self.run_id = run_id
        self.folder = folder
        self.heading = heading or f"export run {run_id} to the folder:"

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.heading, classes="question")
            yield Input(value=self.folder, id="export-folder", compact=True)  # compact: it all fits 80x24
            with Horizontal(classes="switch-row"):
                yield Switch(False, id="export-merge")
                yield Label("merge the adapter into the base model (a whole model; bigger)")
            yield Select(GGUF_CHOICES, value="", allow_blank=False, id="export-gguf", compact=True)
            with Horizontal(classes="switch-row"):
                yield Switch(False, id="export-ollama")
                yield Label("with an Ollama Modelfile (needs a GGUF)")
            yield Input(placeholder="push to the Hub as ORG/NAME (empty: no push)", id="export-push", compact=True)
            with Horizontal(classes="switch-row"):
                yield Switch(False, id="export-private")
                yield Label("a private repository")
            yield Label("enter exports (from any field), space toggles a switch, esc cancels", classes="hint")

    def choice(self) -> ExportChoice | None:
        folder = self.query_one("#export-folder", Input).value.strip()
        if not folder:
            return None
        gguf = self.query_one("#export-gguf", Select).value
        return ExportChoice(folder, merge=self.query_one("#export-merge", Switch).value,
                            gguf=gguf if isinstance(gguf, str) and gguf else None,
                            ollama=self.query_one("#export-ollama", Switch).value,
                            push=self.query_one("#export-push", Input).value.strip() or None,
                            private=self.query_one("#export-private", Switch).value)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Enter picks an option while the GGUF list is open; it exports everywhere else.
        return not (action == "export" and self.query_one("#export-gguf", Select).expanded)

    def action_export(self) -> None:
        choice = self.choice()
        if choice is None:
            self.notify("name the folder to export to", severity="warning")
            self.query_one("#export-folder", Input).focus()
            return
        if choice.ollama and not choice.gguf:
            self.notify("an Ollama Modelfile goes beside a GGUF: choose a GGUF type", severity="warning")
            self.query_one("#export-gguf", Select).focus()
            return
        self.dismiss(choice)

    def action_cancel(self) -> None:
        self.dismiss(None)


class Help(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def __init__(self, text: RenderableType, wide: bool = False):
        super().__init__()
        self.text = text
        self.wide = wide  # the keys in two columns, on a terminal of WIDE_HELP columns or more

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog wide" + (" two-column" if self.wide else "")):
            yield Static(self.text)

    def action_close(self) -> None:
        self.dismiss(None)


class DataPreview(ModalScreen[None]):
    """The first rows as the model sees them; made in a worker (the tokenizer takes seconds to load)."""

    BINDINGS = [Binding("escape,q,f3", "close", "Close")]

    def __init__(self, profile_file: Path, rows: int = 3):
        super().__init__()
        self.profile_file = profile_file
        self.rows = rows

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog wide"):
            yield Static(id="preview-body")

    def on_mount(self) -> None:
        self.started = time.monotonic()
        self.done = False
        self.tick()
        self.ticker = self.set_interval(1.0, self.tick)
        self.make_preview()

    def tick(self) -> None:
        """Loading a tokenizer (or building the run's own) takes seconds to a minute: say how long so far."""
        if self.done:
            return
        elapsed = int(time.monotonic() - self.started)
        spinner = "|/-\\"[elapsed % 4]
        self.query_one("#preview-body", Static).update(Text(
            f"{spinner} tokenizing the first rows with the model's tokenizer and chat template ({elapsed} s); "
            "esc closes", style="yellow"))

    def show(self, text: Text) -> None:
        self.done = True
        self.ticker.stop()
        self.query_one("#preview-body", Static).update(text)

    @work(thread=True)
    def make_preview(self) -> None:
        try:
            result = data_preview(self.profile_file, self.rows)
            text = Text.assemble(*preview_lines(result))
        except PreviewError as e:
            text = Text(f"no preview: {e}", style="red")
        finally:
            shutil.rmtree(self.profile_file.parent, ignore_errors=True)  # the form's profile, written for this
        self.app.call_from_thread(self.show, text)

    def action_close(self) -> None:
        self.dismiss(None)
