"""Talking to a run: a real generation process streams tokens to the CLI and the app, compares the tuned
model with its base, loads a checkpoint of a stopped run, and explains what it cannot do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import demo_rows, studio, write_jsonl, write_profile
from studio.hardware import GpuInfo, Inventory
from studio.runs.chat import ChatSession, place, starting_prompts
from studio.runs.folder import Run, RunError, create_run

pytestmark = pytest.mark.slow
ROW = demo_rows(2)[1]["messages"]           # a training row: a question and its answer
PROMPT = ROW[0]["content"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA run that learned the demo data, with checkpoints along the way."""
    tmp = tmp_path_factory.mktemp("chat")
    data = write_jsonl(tmp / "d.jsonl", demo_rows(64))
    profile = write_profile(tmp / "p.toml", data, train={"max_steps": 40, "save_steps": 20, "learning_rate": 5e-3},
                            data={"eval_fraction": 0.1})
    with pytest.MonkeyPatch.context() as env:  # this module's home, for this run only
        env.setenv("STUDIO_HOME", str(tmp / "home"))
        result = json.loads(studio("run", str(profile), "--json").stdout.strip().splitlines()[-1])
    assert result["status"] == "completed"
    return Path(result["dir"])


@pytest.fixture
def home_of(trained: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STUDIO_HOME", str(trained.parent.parent))
    return trained


def chat_json(*args: str) -> dict:
    proc = studio("chat", *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_one_prompt_streams_an_answer_with_its_timings(home_of: Path) -> None:
    proc = studio("chat", home_of.name, "--prompt", PROMPT, "--temperature", "0", "--max-new-tokens", "16")
    assert proc.returncode == 0, proc.stderr
    assert "tokens · first after" in proc.stdout and "tokens/s" in proc.stdout
    result = chat_json(home_of.name, "--prompt", PROMPT, "--temperature", "0", "--max-new-tokens", "16")
    assert result["answers"]["tuned"].strip() and result["ttft_s"]["tuned"] > 0
    assert result["tokens"]["tuned"] > 0 and result["adapter"].endswith("final")
    transcripts = list((home_of / "chats").glob("*.jsonl"))
    assert transcripts and PROMPT in transcripts[0].read_text()


def test_compare_shows_that_training_changed_the_answers(home_of: Path) -> None:
    result = chat_json(home_of.name, "--compare", "--prompt", PROMPT, "--temperature", "0", "--max-new-tokens", "24")
    assert set(result["answers"]) == {"base", "tuned"}
    assert result["answers"]["base"] != result["answers"]["tuned"]
    # The tuned model answers a training prompt in the data's words.
    assert ROW[1]["content"].split()[1] in result["answers"]["tuned"]  # "capital"


def test_a_checkpoint_loads_and_a_missing_one_is_named(home_of: Path) -> None:
    result = chat_json(home_of.name, "--checkpoint", "20", "--prompt", PROMPT, "--max-new-tokens", "8")
    assert result["adapter"].endswith("checkpoint-20")
    missing = studio("chat", home_of.name, "--checkpoint", "7", "--prompt", "hi")
    assert missing.returncode == 2 and "no complete checkpoint at step 7" in missing.stderr
    assert "20" in missing.stderr and "40" in missing.stderr


def test_a_prompt_longer_than_the_context_is_refused(home_of: Path) -> None:
    proc = studio("chat", home_of.name, "--prompt", "word " * 3000, "--max-new-tokens", "8", "--json")
    assert proc.returncode == 1
    assert "over the model's context" in json.loads(proc.stdout.strip().splitlines()[-1])["errors"][0]


def test_a_run_with_nothing_trained_yet_says_so(tmp_path: Path) -> None:
    run = create_run(write_profile(tmp_path / "p.toml", tmp_path / "d.jsonl").read_text(), "empty")
    proc = studio("chat", run.id, "--prompt", "hi")
    assert proc.returncode == 2 and "nothing trained to talk to yet" in proc.stderr
    base = studio("chat", run.id, "--base", "--prompt", "hi")
    assert base.returncode == 2 and "has not built its model yet" in base.stderr


def test_a_model_that_does_not_fit_next_to_training_is_refused(tmp_path: Path) -> None:
    run = create_run(write_profile(tmp_path / "p.toml", tmp_path / "d.jsonl",
                                   model={"name": "meta-llama/Llama-3.1-8B"}).read_text(), "big")
    busy = Inventory([GpuInfo(index=0, name="NVIDIA GeForce RTX 4090", memory_total_gib=24, memory_free_gib=6.0)])
    with pytest.raises(RunError, match="needs about .* GiB to answer; the most free on a GPU is 6.0 GiB"):
        place(Run(run.dir), "tuned", busy)
    roomy = Inventory([GpuInfo(index=0, name="NVIDIA H100 80GB HBM3", memory_total_gib=80, memory_free_gib=60.0)])
    assert "loading another copy of the model on GPU 0" in place(Run(run.dir), "tuned", roomy).notice


def test_starting_prompts_come_from_the_runs_eval_rows(home_of: Path) -> None:
    prompts = starting_prompts(Run(home_of))
    assert 1 <= len(prompts) <= 5 and all(p.strip() for p in prompts)


async def test_the_app_streams_both_answers_and_switches_modes_without_a_reload(home_of: Path) -> None:
    from textual.widgets import Input, OptionList

    from studio.ui.app import StudioApp
    from studio.ui.chat import ChatScreen
    from studio.ui.dialogs import WeightsPicker
    from ui_fixtures import fake_inventory, screen_text
    from waiting import until

    app = StudioApp(open_run=Run(home_of), inventory=fake_inventory())
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: getattr(pilot.app.screen, "status", None) is not None, "the monitor's run read")
        await pilot.press("c")
        screen = await until(pilot, lambda: isinstance(pilot.app.screen, ChatScreen) and pilot.app.screen, "the chat")
        await until(pilot, lambda: screen.session is not None, "the model to load")
        assert "the final result" in str(screen.query_one("#chat-status").render())
        screen.query_one("#set-temperature", Input).value = "0"
        screen.query_one("#chat-prompt", Input).value = PROMPT
        await pilot.press("enter")
        panes = {side: screen.query_one(f"#log-{side}") for side in ("base", "tuned")}
        await until(pilot, lambda: all("tokens/s" in p.text for p in panes.values()), "both answers")
        tuned, base = panes["tuned"].text, panes["base"].text
        assert tuned != base
        process = screen.session.proc
        await pilot.press("ctrl+o")  # compare -> tuned: the same process answers
        await until(pilot, lambda: "no reload" in str(screen.query_one("#chat-status").render()), "the switch")
        assert screen.session.proc is process and not screen.query_one("#pane-base").display
        screen.query_one("#chat-prompt", Input).value = PROMPT
        await pilot.press("enter")
        await until(pilot, lambda: panes["tuned"].text.count("tokens/s") == 2, "the tuned answer alone")
        assert panes["base"].text == base
        await pilot.press("f2")  # another of the run's weights: the checkpoint of step 20
        await until(pilot, lambda: isinstance(pilot.app.screen, WeightsPicker), "the weights picker")
        assert "the checkpoint of step 20" in screen_text(pilot.app)
        while "step 20" not in str(pilot.app.screen.query_one(OptionList).highlighted_option.prompt):
            await pilot.press("down")
        await pilot.press("enter")
        await until(pilot, lambda: screen.session is not None and screen.checkpoint == 20
                    and "the checkpoint of step 20" in str(screen.query_one("#chat-status").render()),
                    "the checkpoint loaded")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(pilot.app.screen, ChatScreen) and screen.session is None,
                    "the session to close with the screen")


def test_a_session_object_talks_too(home_of: Path) -> None:
    session = ChatSession(Run(home_of), mode="tuned")
    try:
        session.start()
        records = list(session.ask(PROMPT))
        assert records[-1]["event"] == "done" and any(r["event"] == "token" for r in records)
    finally:
        session.close()
    assert session.proc is None


def test_chat_on_a_read_only_run_folder_answers_and_says_what_is_not_kept(home_of: Path) -> None:
    """The run folder mounted read-only (root can write through a chmod, not through a read-only mount)."""
    import subprocess

    bind = subprocess.run(["mount", "--bind", str(home_of), str(home_of)], capture_output=True, text=True)
    if bind.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {bind.stderr.strip()}")
    try:
        ro = subprocess.run(["mount", "-o", "remount,bind,ro", str(home_of)], capture_output=True, text=True)
        assert ro.returncode == 0, ro.stderr
        proc = studio("chat", home_of.name, "--prompt", PROMPT, "--max-new-tokens", "4")
        assert proc.returncode == 0, proc.stderr
        assert "tokens/s" in proc.stdout and "chat.log cannot be written" in proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        subprocess.run(["umount", str(home_of)], capture_output=True)
