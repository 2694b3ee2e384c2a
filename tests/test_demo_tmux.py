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


def studio_command(*args: str, env: str = "") -> str:
    """`studio ARGS` as the tmux session runs it: this test's studio home, xterm-256color, and `env` (VAR=value)."""
    kept = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in ("STUDIO_HOME", "HF_HOME", "HF_HUB_OFFLINE"))
    return " ".join(["env", kept, env, "TERM=xterm-256color", shlex.quote(sys.executable), "-m", "studio", *args])


def test_studio_demo_runs_to_completion_in_tmux() -> None:
    socket = f"studio-test-{os.getpid()}"
    command = studio_command("demo", "--max-steps", "40")
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


def test_bang_opens_a_shell_in_the_run_folder_and_exit_comes_back(studio_env) -> None:
    from ui_fixtures import record_run

    run_dir = record_run(studio_env)
    where = studio_env / "pwd.txt"
    socket = f"studio-shell-{os.getpid()}"
    command = studio_command(env="SHELL=/bin/sh")
    assert tmux(socket, "new-session", "-d", "-s", "app", "-x", "120", "-y", "40", command).returncode == 0
    try:
        def pane() -> str:
            return tmux(socket, "capture-pane", "-p", "-t", "app").stdout

        wait_for(lambda: "completed" in pane(), what="the run listed", state=pane, poll=0.3)
        tmux(socket, "send-keys", "-t", "app", "Tab")  # the Runs list, its cursor on the one run
        tmux(socket, "send-keys", "-t", "app", "!")
        wait_for(lambda: "exit comes back to studio" in pane(), what="the shell", state=pane, poll=0.3)
        tmux(socket, "send-keys", "-t", "app", f"pwd > {shlex.quote(str(where))}; exit", "Enter")
        wait_for(lambda: where.is_file() and "Profiles" in pane(), what="the pwd, then the app back", state=pane,
                 poll=0.3)
        assert where.read_text().strip() == str(run_dir.resolve())
        tmux(socket, "send-keys", "-t", "app", "q")
        wait_for(lambda: tmux(socket, "has-session", "-t", "app").returncode != 0, what="q to quit the app",
                 state=pane, timeout=120, poll=0.2)
    finally:
        tmux(socket, "kill-server")


def test_q_quits_at_once_while_the_editor_still_reads_the_data(studio_env) -> None:
    """Defect: the editor reads the data in a thread worker; q while that read was blocked (a network mount, a
    FIFO, a big file) cleared the screen, but the process waited for the read before the shell came back."""
    profiles = studio_env / "profiles"
    profiles.mkdir(parents=True)
    data = studio_env / "never-written.jsonl"
    os.mkfifo(data)  # opened for reading, it waits for a writer that never comes
    (profiles / "p.toml").write_text(f'[data]\npath = "{data}"\n')
    socket = f"studio-quit-{os.getpid()}"
    command = studio_command()
    assert tmux(socket, "new-session", "-d", "-s", "app", "-x", "120", "-y", "40", command).returncode == 0
    try:
        def pane() -> str:
            return tmux(socket, "capture-pane", "-p", "-t", "app").stdout

        wait_for(lambda: " p " in pane() and "Profiles" in pane(), what="the profile listed", state=pane, poll=0.3)
        tmux(socket, "send-keys", "-t", "app", "Enter")  # the Profiles list, its cursor on the user's profile
        wait_for(lambda: "Advice" in pane(), what="the editor", state=pane, poll=0.3)
        tmux(socket, "send-keys", "-t", "app", "Escape")
        wait_for(lambda: "Profiles" in pane() and "Advice" not in pane(), what="the dashboard", state=pane, poll=0.3)
        tmux(socket, "send-keys", "-t", "app", "q")
        wait_for(lambda: tmux(socket, "has-session", "-t", "app").returncode != 0, what="q to quit the app",
                 state=pane, timeout=60, poll=0.2)
    finally:
        tmux(socket, "kill-server")
