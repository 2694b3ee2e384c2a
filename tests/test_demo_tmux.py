"""End to end: the real `studio demo` in tmux (TERM inside tmux, 256 colours), driven with
send-keys and read with capture-pane, until the run completes; then q quits the app."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time

import pytest

from conftest import studio

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]


def tmux(socket: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True)


def test_studio_demo_runs_to_completion_in_tmux() -> None:
    socket = f"studio-test-{os.getpid()}"
    env = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in ("STUDIO_HOME", "HF_HOME", "HF_HUB_OFFLINE"))
    command = f"env {env} TERM=xterm-256color {shlex.quote(sys.executable)} -m studio demo --max-steps 40"
    assert tmux(socket, "new-session", "-d", "-s", "demo", "-x", "100", "-y", "30", command).returncode == 0
    try:
        deadline, screen = time.monotonic() + 180, ""
        while time.monotonic() < deadline:
            screen = tmux(socket, "capture-pane", "-p", "-t", "demo").stdout
            if "completed" in screen and "step 40/40" in screen:
                break
            time.sleep(0.5)
        assert "completed" in screen and "step 40/40" in screen, screen
        assert "loss" in screen and "tokens/s" in screen and "Traceback" not in screen
        tmux(socket, "send-keys", "-t", "demo", "q")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and tmux(socket, "has-session", "-t", "demo").returncode == 0:
            time.sleep(0.2)
        assert tmux(socket, "has-session", "-t", "demo").returncode != 0, "q did not quit the app"
    finally:
        tmux(socket, "kill-server")
    runs = json.loads(studio("runs", "--json").stdout)
    assert runs and runs[-1]["status"] == "completed" and runs[-1]["step"] == 40
