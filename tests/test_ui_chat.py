"""The chat screen: answers side by side, the prompt's history."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input
from ui_fixtures import record_run, screen_text
from ui_fixtures import studio_app as app
from waiting import until

from studio.runs.folder import Run


async def test_chat_answers_wrap_in_their_pane(studio_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from studio.ui.chat import ChatScreen

    monkeypatch.setattr(ChatScreen, "open_session", lambda screen: None)  # the layout, without a model
    run_dir = record_run(studio_env, status="completed")
    answer = " ".join(f"word{i}" for i in range(40)) + " THE-END"
    async with app().run_test(size=(80, 24)) as pilot:
        pilot.app.open_chat(Run(run_dir))
        await until(pilot, lambda: isinstance(pilot.app.screen, ChatScreen) and pilot.app.screen.query("#log-tuned"),
                    "the chat")
        pilot.app.screen.write("tuned", f"\n> a question\n{answer}\n")
        await until(pilot, lambda: "THE-END" in screen_text(pilot.app), "the end of a long answer, wrapped")


async def test_up_and_down_in_the_chat_prompt_walk_its_history(studio_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from studio.ui.chat import ChatScreen

    monkeypatch.setattr(ChatScreen, "open_session", lambda screen: None)  # the prompt box, without a model
    run_dir = record_run(studio_env, status="completed")
    async with app().run_test(size=(100, 30)) as pilot:
        pilot.app.open_chat(Run(run_dir))
        await until(pilot, lambda: isinstance(pilot.app.screen, ChatScreen) and pilot.app.screen.query("#chat-prompt"),
                    "the chat")
        box = pilot.app.screen.query_one("#chat-prompt", Input)
        box.focus()
        for prompt in ("first question", "second question"):
            box.value = prompt
            await pilot.press("enter")
            box.value = ""
        await pilot.press("up")
        await until(pilot, lambda: box.value == "second question", "the last prompt")
        await pilot.press("up")
        await until(pilot, lambda: box.value == "first question", "the one before")
        await pilot.press("down", "down")
        await until(pilot, lambda: box.value == "", "back to an empty prompt")
