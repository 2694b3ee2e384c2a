"""The model picker: type to search studio's catalog at once and, online, the Hub's model search (in a worker,
a moment after the typing stops). Each match shows its size and whether it is gated; Enter picks it."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from studio.planning.catalog import ModelMatch, search_models

SEARCH_DELAY_S = 0.4


def describe(match: ModelMatch) -> str:
    size = f"{match.params / 1e9:.1f}B" if match.params else "size ?"
    gated = "  gated: accept the licence on its Hub page" if match.gated else ""
    return f"{match.id}  ({size}, {match.family or match.where}){gated}"


class ModelPicker(ModalScreen["str | None"]):
    """Answers the chosen model id, or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("down", "focus_list", "Matches", show=False)]

    def __init__(self, query: str = ""):
        super().__init__()
        self.query_text = query
        self._timer = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog picker"):
            yield Label("model: type to search the catalog and the Hub; enter picks", classes="question")
            yield Input(self.query_text, placeholder="e.g. qwen3 8b, gemma 3, llama-3.2", id="picker-query")
            yield Static("", id="picker-state", classes="hint")
            yield OptionList(id="picker-matches")

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        self.show_catalog(self.query_text)

    def show_catalog(self, query: str) -> None:
        self.fill(search_models(query), "catalog" if query else "the catalog; type to search")

    def fill(self, matches: list[ModelMatch], state: str) -> None:
        options = self.query_one(OptionList)
        options.clear_options()
        options.add_options([Option(describe(m), id=m.id) for m in matches])
        self.query_one("#picker-state", Static).update(f"{len(matches)} match(es) · {state}")

    @on(Input.Changed, "#picker-query")
    def typed(self, event: Input.Changed) -> None:
        self.show_catalog(event.value)
        if self._timer is not None:
            self._timer.stop()
        if event.value.strip():
            self._timer = self.set_timer(SEARCH_DELAY_S, lambda: self.search_hub(event.value))

    @work(thread=True, exclusive=True, group="model-search")
    def search_hub(self, query: str) -> None:
        self.app.call_from_thread(self.query_one("#picker-state", Static).update, "looking up the Hub...")
        matches = search_models(query, online=True)
        hub = any(m.where == "hub" for m in matches)
        state = "catalog and the Hub" if hub else "catalog (the Hub found nothing more, or is out of reach)"
        self.app.call_from_thread(self.fill, matches, state)

    @on(Input.Submitted, "#picker-query")
    def submitted(self, event: Input.Submitted) -> None:
        options = self.query_one(OptionList)
        if options.option_count:
            self.dismiss(options.get_option_at_index(options.highlighted or 0).id)
        elif event.value.strip():
            self.dismiss(event.value.strip())  # a name the search does not know: a local folder, a private repo

    @on(OptionList.OptionSelected)
    def chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_focus_list(self) -> None:
        self.query_one(OptionList).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)
