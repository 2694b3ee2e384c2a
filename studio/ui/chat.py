"""The chat screen: talk to what a run trained, tokens streaming in, side by side with the base model.

The model runs in its own process (studio.runs.chat); a worker thread sends each prompt
and collects the tokens, which the screen shows a few times a second.
"""

from __future__ import annotations

import threading
from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Header, Input, Label, OptionList, Static, TextArea

from studio.runs.chat import ChatSession, ChatSettings, starting_prompts, weights_label
from studio.runs.folder import Run, RunError
from studio.ui.screens import StudioScreen

FLUSH_S = 0.1
MODES = ("compare", "tuned", "base")
KEEP_LINES = 4000  # a pane forgets its oldest lines past this (the transcript on disk keeps everything)


class Transcript(TextArea):
    """One side of the conversation: wrapped to the pane, following new text while the view is at the
    end, and selectable (shift+arrows or the mouse, then ctrl+c copies, over SSH too)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("", read_only=True, soft_wrap=True, show_cursor=False, **kwargs)

    def write(self, text: str) -> None:
        following = self.scroll_y >= self.max_scroll_y - 1
        self.insert(text, self.document.end)
        if self.document.line_count > KEEP_LINES:
            self.delete((0, 0), (self.document.line_count - KEEP_LINES, 0))
        if following:
            self.scroll_end(animate=False)


class ChatScreen(StudioScreen):
    HELP_TITLE = "Chat"

    BINDINGS = [
        Binding("ctrl+o", "cycle_mode", "Mode"),
        Binding("ctrl+l", "clear", "Clear"),
        Binding("f2", "pick_weights", "Weights", tooltip="load the final result or one of the run's checkpoints"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, run: Run, mode: str = "compare", checkpoint: int | None = None):
        super().__init__()
        self.run, self.mode, self.checkpoint = run, mode, checkpoint
        self.session: ChatSession | None = None
        self.loaded = ""  # what the session's process holds, in words
        self.history: list[str] = []  # the prompts typed, oldest first
        self.history_at = 0           # where up and down are in it (len: a new prompt)
        self.busy = False
        self._pending: dict[str, str] = {}
        self._lock = threading.Lock()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="chat-status")
        with Horizontal(id="chat-panes"):
            with Vertical(id="pane-base", classes="chat-pane"):
                yield Label("base model", classes="section")
                yield Transcript(id="log-base")
            with Vertical(id="pane-tuned", classes="chat-pane"):
                yield Label("tuned", classes="section")
                yield Transcript(id="log-tuned")
        with Horizontal(id="chat-settings"):
            yield Label("temp")
            yield Input("0.7", id="set-temperature", compact=True)
            yield Label("top-p")
            yield Input("0.9", id="set-top_p", compact=True)
            yield Label("max")
            yield Input("256", id="set-max_new_tokens", compact=True)
            yield Label("system")
            yield Input("", id="set-system", compact=True, placeholder="system prompt (chat models)")
        yield OptionList(id="chat-suggestions")
        yield Input(id="chat-prompt", placeholder="type a prompt, enter to send (a suggestion: pick it above)")
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"chat · {self.run.id}"
        self.show_mode()
        suggestions = self.query_one("#chat-suggestions", OptionList)
        for prompt in starting_prompts(self.run):
            suggestions.add_option(prompt[:200])
        suggestions.display = suggestions.option_count > 0
        self.set_interval(FLUSH_S, self.flush)
        self.query_one("#chat-prompt", Input).focus()
        self.open_session()

    def show_mode(self) -> None:
        self.query_one("#pane-base").display = self.mode in ("compare", "base")
        self.query_one("#pane-tuned").display = self.mode in ("compare", "tuned")

    def status(self, text: str, style: str = "") -> None:
        self.query_one("#chat-status", Static).update(Text(text, style=style))

    # ----------------------------------------------------------- the session (worker threads)

    @work(thread=True, exclusive=True, group="chat-session")
    def open_session(self) -> None:
        self.app.call_from_thread(self.status, f"loading the model ({self.mode})...", "yellow")
        try:
            session = ChatSession(self.run, self.checkpoint, self.mode)
            self.app.call_from_thread(self.status, session.placement.notice + " ...", "yellow")
            ready = session.start()
        except RunError as e:
            self.app.call_from_thread(self.status, f"cannot chat: {e}", "bold red")
            return
        self.session = session
        self.loaded = f"{weights_label(self.run, ready.get('adapter'))} on {ready.get('device')}"
        note = f" · {session.note}" if session.note else ""
        self.app.call_from_thread(self.status, f"{self.mode}: {self.loaded}, loaded in {ready.get('load_s')} s{note}",
                                  "yellow" if note else "green")

    def settings(self) -> ChatSettings:
        def number(key: str, default: float) -> float:
            try:
                return float(self.query_one(f"#set-{key}", Input).value)
            except ValueError:
                return default

        return ChatSettings(temperature=number("temperature", 0.7), top_p=number("top_p", 0.9),
                            max_new_tokens=int(number("max_new_tokens", 256)),
                            system=self.query_one("#set-system", Input).value)

    @work(thread=True, exclusive=True, group="chat-answer")
    def ask(self, prompt: str, settings: ChatSettings) -> None:
        session = self.session
        if session is None:
            return
        self.busy = True
        try:
            for record in session.ask(prompt, settings):
                kind, side = record.get("event"), record.get("side") or "tuned"
                with self._lock:
                    if kind == "token":
                        self._pending[side] = self._pending.get(side, "") + record["text"]
                    elif kind == "done":
                        rate = f"{record['tokens_per_s']:.1f} tokens/s" if record.get("tokens_per_s") else "-"
                        self._pending[side] = self._pending.get(side, "") + (
                            f"\n  [{record.get('tokens')} tokens · first after {record.get('ttft_s', 0):.2f} s · "
                            f"{rate}]\n")
                    elif kind == "error":
                        self._pending[side] = self._pending.get(side, "") + f"\n  error: {record.get('message')}\n"
        except RunError as e:
            self.app.call_from_thread(self.status, str(e), "bold red")
        finally:
            self.busy = False

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for side, text in pending.items():
            self.write(side, text)

    def write(self, side: str, text: str) -> None:
        self.query_one(f"#log-{side}", Transcript).write(text)

    # ----------------------------------------------------------- input

    @on(Input.Submitted, "#chat-prompt")
    def send(self, event: Input.Submitted) -> None:
        prompt = event.value.strip()
        if not prompt:
            return
        if not self.history or self.history[-1] != prompt:
            self.history.append(prompt)  # up recalls it, sent or not (typed while the model loads, say)
        self.history_at = len(self.history)
        if self.session is None:
            self.notify("the model is not loaded (yet): see the line at the top", severity="warning")
            return
        if self.busy:
            self.notify("still answering the last prompt", severity="warning")
            return
        event.input.value = ""
        for side in self.session.sides:
            self.write(side, f"\n> {prompt}\n")
        self.ask(prompt, self.settings())

    def on_key(self, event: events.Key) -> None:
        """Up and down in the prompt box walk the prompts typed before, like a shell's history."""
        box = self.query_one("#chat-prompt", Input)
        if event.key not in ("up", "down") or not box.has_focus or not self.history:
            return
        event.stop()
        event.prevent_default()
        step = -1 if event.key == "up" else 1
        self.history_at = max(0, min(len(self.history), self.history_at + step))
        box.value = self.history[self.history_at] if self.history_at < len(self.history) else ""
        box.cursor_position = len(box.value)

    @on(OptionList.OptionSelected, "#chat-suggestions")
    def pick(self, event: OptionList.OptionSelected) -> None:
        box = self.query_one("#chat-prompt", Input)
        box.value = str(event.option.prompt)
        box.focus()

    def action_clear(self) -> None:
        for pane in self.query(Transcript):
            pane.clear()

    def action_cycle_mode(self) -> None:
        """The next mode; from the model already loaded when it can answer that way (an adapter run: always)."""
        if self.busy:
            self.notify("still answering the last prompt", severity="warning")
            return
        self.mode = MODES[(MODES.index(self.mode) + 1) % len(MODES)]
        self.show_mode()
        if self.session is not None and self.session.switch(self.mode):
            self.status(f"{self.mode}: {self.loaded}, no reload needed", "green")
            return
        self.close_session()
        self.open_session()

    def action_pick_weights(self) -> None:
        from studio.ui.dialogs import NEWEST, WeightsPicker

        if self.busy:
            self.notify("still answering the last prompt", severity="warning")
            return
        steps = self.run.complete_checkpoints()
        if not steps and not self.run.has_result():
            self.notify(f"run {self.run.id} has no weights saved yet: no checkpoint, no final result", severity="warning")
            return

        def picked(step: int | None) -> None:
            if step is None:
                return
            checkpoint = None if step == NEWEST else step
            if checkpoint == self.checkpoint and self.session is not None:
                return
            self.checkpoint = checkpoint
            self.close_session()
            self.open_session()

        self.app.push_screen(WeightsPicker(steps, self.run.has_result(), self.checkpoint), picked)

    def close_session(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            threading.Thread(target=session.close, daemon=True).start()

    def action_back(self) -> None:
        self.close_session()
        self.app.pop_screen()

    def on_unmount(self) -> None:
        self.close_session()

