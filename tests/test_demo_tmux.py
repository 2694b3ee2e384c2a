"""End to end: the real `studio demo` in tmux (TERM inside tmux, 256 colours), driven with
send-keys and read with capture-pane, until the run completes; then q quits the app."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest

from conftest import studio
from waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]


def tmux(socket: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True)


def test_studio_demo_runs_to_completion_in_tmux() -> None:
    socket = f"studio-test-{os.getpid()}"
    env = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in ("STUDIO_HOME", "HF_HOME", "HF_HUB_OFFLINE"))
    command = f"env {env} TERM=xterm-256color {shlex.quote(sys.executable)} -m studio demo --max-steps 40"
    assert tmux(socket, "new-session", "-d", "-s", "demo", "-x", "100", "-y", "30", command).returncode == 0
    try:
        def pane() -> str:
            return tmux(socket, "capture-pane", "-p", "-t", "demo").stdout

        def completed() -> str:
            screen = pane()
            # "tokens/s" too: the end's toast covers the top of the side pane for its few seconds
            return screen if "completed" in screen and "step 40/40" in screen and "tokens/s" in screen else ""

        screen = wait_for(completed, what="the demo to complete on screen", state=pane, poll=0.5)
        assert "loss" in screen and "tokens/s" in screen and "Traceback" not in screen
        tmux(socket, "send-keys", "-t", "demo", "q")
        wait_for(lambda: tmux(socket, "has-session", "-t", "demo").returncode != 0, what="q to quit the app",
                 state=pane, timeout=120, poll=0.2)
    finally:
        tmux(socket, "kill-server")
    runs = json.loads(studio("runs", "--json").stdout)
    assert runs and runs[-1]["status"] == "completed" and runs[-1]["step"] == 40
