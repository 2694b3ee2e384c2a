"""Waiting in tests: for an event (a file appears, a status changes, the screen shows a thing),
never for a fixed time. A deadline is only a generous upper bound against a hang, and when it
fires it says what was awaited and what the state was, so a slow machine passes and a hung
test explains itself.

STUDIO_TEST_DEADLINE (seconds, default 600: several times the slowest wait on a loaded 2-core machine, and
short enough that one hung test cannot run CI past its limit) sets the bound for every wait."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

DEADLINE_S = float(os.environ.get("STUDIO_TEST_DEADLINE", "600"))
POLL_S = 0.05  # how often a wait looks again: not a wait of its own


def wait_for(check: Callable[[], Any], what: str = "condition", state: Callable[[], str] | None = None,
             timeout: float | None = None, poll: float = 0.05) -> Any:
    """Poll `check` until it returns something true, and return that; fail after the deadline with
    `what` and `state()` in the message."""
    deadline = time.monotonic() + (timeout if timeout is not None else DEADLINE_S)
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f"\nstate:\n{state()}" if state else ""))
        time.sleep(poll)


async def until(pilot: Any, check: Callable[[], Any], what: str = "condition", timeout: float | None = None) -> Any:
    """`wait_for` for a Pilot test: the app keeps running between polls; the screen is printed on a timeout."""
    from ui_fixtures import screen_text

    deadline = time.monotonic() + (timeout if timeout is not None else DEADLINE_S)
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; the screen:\n{screen_text(pilot.app)}")
        await asyncio.sleep(POLL_S)  # the app runs meanwhile (same event loop); the check is the wait


async def front(pilot: Any, kind: type, what: str = "") -> Any:
    """The screen in front, once it is a `kind` ready for keys: an editor settled (its form built and advised),
    a monitor that has read its run, the dashboard with its profiles listed."""
    def ready() -> Any:
        screen = pilot.app.screen
        if not isinstance(screen, kind) or not screen.is_mounted or not getattr(screen, "settled", True):
            return None
        if getattr(screen, "status", "") is None or getattr(screen, "profile_paths", True) == {}:
            return None
        return screen
    return await until(pilot, ready, what or f"the {kind.__name__}, ready")
