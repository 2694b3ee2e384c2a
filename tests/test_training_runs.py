"""End to end on the tiny model: the real CLI, the real trainer process, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import demo_rows, studio, write_jsonl, write_profile
from studio.planning.record import read_plan
from studio.runs.events import Start, Step, load_timeline, read_events
from studio.runs.folder import Run, create_run, find_run
from studio.runs.launcher import launch
from studio.runs.liveness import is_alive
from studio.runs.state import run_status
from waiting import DEADLINE_S, wait_for

pytestmark = pytest.mark.slow


def run_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def steps_of(run_dir: Path) -> list[dict[str, Any]]:
    return [e for e in read_events(run_dir / "events.jsonl") if isinstance(e, Step)]


def processes_working_on(run_dir: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(run_dir).encode() in (proc / "cmdline").read_bytes():
                    stat = (proc / "stat").read_text()
                    if stat.rsplit(")", 1)[1].split()[0] != "Z":
                        pids.append(int(proc.name))
            except OSError:
                pass
    return pids


@pytest.fixture
def chat_data(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "chat.jsonl", demo_rows(160))


def test_lora_run_completes_then_exports(tmp_path: Path, chat_data: Path) -> None:
    profile = write_profile(tmp_path / "lora.toml", chat_data, train={"max_steps": 16})
    proc = studio("run", str(profile), "--json")
    assert proc.returncode == 0, proc.stderr
    result = run_json(proc)
    assert result["status"] == "completed"
    run_dir = Path(result["dir"])
    for name in ("profile.toml", "status.json", "trainer.log", "preflight.json", "events.jsonl"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "final" / "adapter_config.json").is_file()
    assert (run_dir / "final" / "adapter_model.safetensors").is_file()

    tl = load_timeline(run_dir)
    assert tl.start and 0 < tl.start.trainable_params < tl.start.total_params
    assert tl.start.max_steps == 16 and tl.start.device == "cpu"
    trained = read_plan(run_dir / "plan.json").trained  # the trainer's record of what it trains
    decided = {d.key: d for d in trained.decisions}  # every auto, decided for this run, with its reason
    assert trained.profile.data.packing is True and tl.start.method == "lora"
    assert {"train.gradient_checkpointing", "train.liger_kernel", "data.packing"} <= set(decided)
    assert decided["train.liger_kernel"].value is False and "GPU" in decided["train.liger_kernel"].reason
    assert decided["data.packing"].value is True and "exact" not in decided["data.packing"].reason
    assert not any(d.pending for d in decided.values())  # the trainer decided what the plan left to it
    # decided from the rows' token counts, so its figures are the preflight's, not an estimate beside them
    why = decided["data.packing"].reason
    assert "~" not in why and f"{tl.preflight.mean_tokens}" in why, (why, tl.preflight)
    assert sorted(tl.steps) == list(range(1, 17))
    losses = [tl.steps[s].loss for s in sorted(tl.steps)]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.3, losses
    step = tl.steps[16]
    assert step.tokens > 0 and step.tokens_per_s > 0 and step.rss_gib > 0
    assert step.eta_s == 0 and step.elapsed_s > 0 and step.learning_rate >= 0
    assert tl.end and tl.end.status == "completed" and tl.end.train_tokens_per_s > 0
    assert tl.preflight and tl.preflight.rows == 160 and tl.preflight.loss_on == "assistant turns"

    listed = {r["id"]: r for r in run_json_list(studio("runs", "--json"))}
    assert listed[run_dir.name]["status"] == "completed" and listed[run_dir.name]["step"] == 16

    # Export: the adapter, then a merged model that plain transformers loads.
    adapter_out, merged_out = tmp_path / "adapter", tmp_path / "merged"
    assert studio("export", run_dir.name, "--out", str(adapter_out)).returncode == 0
    assert (adapter_out / "adapter_model.safetensors").is_file()
    assert studio("export", run_dir.name, "--out", str(merged_out), "--merge").returncode == 0
    refuse = studio("export", run_dir.name, "--out", str(merged_out))
    assert refuse.returncode == 2 and "not empty" in refuse.stderr

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(merged_out)
    ids = tok("What is 2 plus 3?", return_tensors="pt")["input_ids"]
    merged = AutoModelForCausalLM.from_pretrained(merged_out)
    base = AutoModelForCausalLM.from_pretrained(run_dir / "base-model")
    with torch.no_grad():
        base_logits = base(ids).logits
        peft_logits = PeftModel.from_pretrained(base, adapter_out)(ids).logits
        merged_logits = merged(ids).logits
    assert torch.allclose(peft_logits, merged_logits, atol=1e-4)
    assert not torch.allclose(base_logits, merged_logits, atol=1e-3)  # the adapter changed something


def run_json_list(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_full_fine_tune(tmp_path: Path, chat_data: Path) -> None:
    profile = write_profile(tmp_path / "full.toml", chat_data, method={"type": "full"},
                            train={"max_steps": 12, "learning_rate": 1e-3})
    result = run_json(studio("run", str(profile), "--json"))
    run_dir = Path(result["dir"])
    assert result["status"] == "completed"
    tl = load_timeline(run_dir)
    assert tl.start.trainable_params == tl.start.total_params
    losses = [tl.steps[s].loss for s in sorted(tl.steps)]
    assert losses[-1] < losses[0] - 0.5, losses
    assert (run_dir / "final" / "config.json").is_file()
    assert (run_dir / "final" / "model.safetensors").is_file()


def test_qlora_on_cpu(tmp_path: Path, chat_data: Path) -> None:
    profile = write_profile(tmp_path / "qlora.toml", chat_data, method={"type": "qlora"},
                            train={"max_steps": 6, "optimizer": "auto"})
    result = run_json(studio("run", str(profile), "--json"))
    run_dir = Path(result["dir"])
    tl = load_timeline(run_dir)
    assert result["status"] == "completed", tl.end
    assert tl.start.optimizer == "paged_adamw_8bit"
    assert 0 < tl.start.trainable_params < tl.start.total_params
    assert (run_dir / "final" / "adapter_model.safetensors").is_file()
    assert sorted(tl.steps) == list(range(1, 7))


def test_graceful_stop_then_resume_continues_the_step_count(tmp_path: Path, chat_data: Path) -> None:
    # 60 steps: room to stop after step 5, and a resume short enough for a loaded 2-core machine (150 steps
    # took over 7 minutes there, beside another suite)
    steps = 60
    profile = write_profile(tmp_path / "long.toml", chat_data, train={"max_steps": steps, "save_steps": 50})
    run_dir = Path(run_json(studio("run", str(profile), "--detach", "--json"))["dir"])
    wait_for(lambda: len(steps_of(run_dir)) >= 5, what="5 steps")
    stop = studio("stop", run_dir.name)
    assert stop.returncode == 0, stop.stderr
    assert "stopped at step" in stop.stdout
    tl = load_timeline(run_dir)
    assert tl.end.status == "stopped"
    stopped_at = tl.end.step
    assert 5 <= stopped_at < steps
    assert (run_dir / "checkpoints" / f"checkpoint-{stopped_at}" / "trainer_state.json").is_file()
    assert (run_dir / "final" / "adapter_model.safetensors").is_file()
    assert not processes_working_on(run_dir)
    assert run_json_list(studio("runs", "--json"))[0]["status"] == "stopped"

    resumed = studio("resume", run_dir.name, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert run_json(resumed)["status"] == "completed"
    events = read_events(run_dir / "events.jsonl")
    starts = [i for i, e in enumerate(events) if isinstance(e, Start)]
    assert len(starts) == 2
    after = [e for e in events[starts[1]:] if isinstance(e, Step)]
    assert after[0].step == stopped_at + 1 and after[-1].step == steps
    before = tl.steps[stopped_at]
    assert after[0].tokens > before.tokens  # the token count carries on across the resume
    assert after[0].elapsed_s >= before.elapsed_s
    assert events[starts[1]].resumed_from.endswith(f"checkpoint-{stopped_at}")
    # The final line counts the whole run's tokens, as its steps do, not only the last attempt's.
    end = load_timeline(run_dir).end
    assert end.train_tokens == after[-1].tokens
    log = (run_dir / "trainer.log").read_text()
    assert "Warning" not in log  # no library deprecations in a run's log
    # a line of studio's own per logged step (what the app's log pane shows by default), and per checkpoint
    assert f"step {steps}/{steps} · loss {after[-1].loss:.4f}" in log and f"step {stopped_at + 1}/{steps}" in log
    assert f"checkpoint saved at step {stopped_at}" in log
    # every line the trainer wrote says when: its local date and time, between the run's start and now
    import re
    from datetime import datetime

    stamped = re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) step \d+/", log, re.MULTILINE)
    assert len(stamped) == log.count(" · loss "), log[-2000:]
    times = [datetime.strptime(t, "%Y-%m-%d %H:%M:%S") for t in stamped]
    assert times == sorted(times) and times[0] >= datetime.fromtimestamp(events[0].time).replace(microsecond=0)
    assert times[-1] <= datetime.now()


def test_sigkill_is_crashed_and_resume_replays_from_the_checkpoint(tmp_path: Path, chat_data: Path) -> None:
    # 60 steps: killed after step 14, the resume replays about 50 (200 ran past the 600 s bound under load)
    profile = write_profile(tmp_path / "kill.toml", chat_data, train={"max_steps": 60, "save_steps": 10})
    run_dir = Path(run_json(studio("run", str(profile), "--detach", "--json"))["dir"])
    run = Run(run_dir)
    wait_for(lambda: any(s.step >= 14 for s in steps_of(run_dir)), what="step 14")
    os.kill(run.pid, signal.SIGKILL)
    wait_for(lambda: not is_alive(run), what="the trainer to die")
    summary = run_json_list(studio("runs", "--json"))[0]
    assert summary["status"] == "crashed"
    killed_at = summary["step"]
    checkpoint = run.last_complete_checkpoint()
    assert checkpoint is not None
    ckpt_step = int(checkpoint.name.split("-")[1])
    assert ckpt_step <= killed_at

    # A half-written checkpoint (no trainer_state.json) must be skipped on resume.
    (run_dir / "checkpoints" / f"checkpoint-{ckpt_step + 1000}").mkdir()
    resumed = studio("resume", run_dir.name, "--json")
    assert run_json(resumed)["status"] == "completed", resumed.stderr
    events = read_events(run_dir / "events.jsonl")
    second_start = [e for e in events if isinstance(e, Start)][1]
    assert second_start.resumed_from.endswith(checkpoint.name)
    tl = load_timeline(run_dir)
    assert sorted(tl.steps) == list(range(1, 61))  # replayed steps replace the earlier ones


def test_force_stop_kills_the_whole_group(tmp_path: Path, chat_data: Path) -> None:
    profile = write_profile(tmp_path / "force.toml", chat_data, train={"max_steps": 2000})
    run_dir = Path(run_json(studio("run", str(profile), "--detach", "--json"))["dir"])
    wait_for(lambda: len(steps_of(run_dir)) >= 3, what="3 steps")
    proc = studio("stop", run_dir.name, "--force")
    assert proc.returncode == 0, proc.stderr
    assert not processes_working_on(run_dir)
    end = load_timeline(run_dir).end
    assert end.status == "stopped" and end.forced is True
    again = studio("stop", run_dir.name)
    assert again.returncode == 2 and "not running" in again.stderr


def test_run_survives_sighup(tmp_path: Path, chat_data: Path) -> None:
    from studio.profiles.profile import load_profile

    profile = load_profile(write_profile(tmp_path / "hup.toml", chat_data, train={"max_steps": 2000}))
    run = create_run(profile.to_toml(), "hup")
    proc = launch(run)
    hup_at = len(wait_for(lambda: len(s := steps_of(run.dir)) >= 2 and s, what="2 steps"))
    os.killpg(proc.pid, signal.SIGHUP)  # what a closing terminal or a dropped SSH session sends
    wait_for(lambda: len(steps_of(run.dir)) >= hup_at + 3 or proc.poll() is not None, what="3 more steps")
    assert proc.poll() is None and run_status(run) == "running"
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=DEADLINE_S) == 0
    assert run_status(run) == "stopped"


FORMAT_ROWS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "sharegpt": lambda r: {"conversations": [{"from": {"user": "human", "assistant": "gpt"}.get(m["role"], m["role"]),
                                              "value": m["content"]} for m in r["messages"]]},
    "alpaca": lambda r: {"instruction": r["messages"][-2]["content"], "input": "", "output": r["messages"][-1]["content"]},
    "prompt_completion": lambda r: {"prompt": r["messages"][-2]["content"], "completion": r["messages"][-1]["content"]},
    "text": lambda r: {"text": r["messages"][-2]["content"] + " " + r["messages"][-1]["content"]},
}


@pytest.mark.parametrize("fmt", sorted(FORMAT_ROWS))
def test_each_data_format_trains(tmp_path: Path, fmt: str) -> None:
    data = write_jsonl(tmp_path / f"{fmt}.jsonl", [FORMAT_ROWS[fmt](r) for r in demo_rows(64)])
    profile = write_profile(tmp_path / "p.toml", data, train={"max_steps": 3})
    result = run_json(studio("run", str(profile), "--json"))
    tl = load_timeline(Path(result["dir"]))
    assert result["status"] == "completed", tl.end
    assert tl.preflight.format == fmt and tl.preflight.rows == 64
    expected = {"sharegpt": "assistant turns", "text": "all tokens"}.get(fmt, "completions")
    assert tl.preflight.loss_on == expected


def test_bad_rows_are_reported_with_row_numbers(tmp_path: Path, chat_data: Path) -> None:
    rows = [json.dumps(r) for r in demo_rows(20)]
    rows[4] = "{broken"
    rows[9] = json.dumps({"messages": [{"role": "user", "content": "no answer"}]})
    data = tmp_path / "bad.jsonl"
    data.write_text("\n".join(rows) + "\n")
    profile = write_profile(tmp_path / "bad.toml", data)
    # The CLI refuses before making a run folder.
    proc = studio("run", str(profile))
    assert proc.returncode == 2
    assert "row 5 not valid JSON" in proc.stderr and "row 10 has no non-empty assistant turn" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not find_runs()

    # The trainer makes the same check for a run folder made another way (e.g. data changed since).
    from studio.profiles.profile import load_profile

    run = create_run(load_profile(profile).to_toml(), "bad")
    assert subprocess.run([sys.executable, "-m", "studio.trainer", str(run.dir)], capture_output=True).returncode == 1
    tl = load_timeline(run.dir)
    assert tl.end.status == "failed" and tl.end.error_kind == "data"
    assert tl.end.rows == (5, 10)
    assert [b["row"] for b in tl.preflight.bad_rows] == [5, 10]

    skip = write_profile(tmp_path / "skip.toml", data, data={"on_bad_rows": "skip"}, train={"max_steps": 2})
    assert run_json(studio("run", str(skip), "--json"))["status"] == "completed"


def find_runs() -> list[str]:
    home = Path(os.environ["STUDIO_HOME"]) / "runs"
    return sorted(p.name for p in home.iterdir()) if home.exists() else []


def test_unknown_model_is_refused_before_a_run_and_fails_as_download_in_the_trainer(
        tmp_path: Path, chat_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub_server import FakeHub

    secret = "hf_studioTestSecretToken123"
    monkeypatch.setenv("HF_TOKEN", secret)
    profile = write_profile(tmp_path / "m.toml", chat_data, model={"name": "nobody-here/no-such-model"})
    offline = studio("run", str(profile), "--json")  # HF_HUB_OFFLINE=1 here, nothing cached
    assert offline.returncode == 2 and "HF_HUB_OFFLINE" in offline.stderr and not find_runs()
    hub = FakeHub()  # the Hub, on 127.0.0.1, without that repo
    monkeypatch.setenv("HF_ENDPOINT", hub.start())
    monkeypatch.delenv("HF_HUB_OFFLINE")
    try:
        missing = studio("run", str(profile), "--json")
        assert missing.returncode == 2 and "not found on the Hub" in missing.stderr and not find_runs()
        assert secret not in offline.stderr + offline.stdout + missing.stderr + missing.stdout
        # A run folder made another way (the repo gone since) fails in the trainer as a download error.
        from studio.profiles.profile import load_profile

        run = create_run(load_profile(profile).to_toml(), "gone")
        trainer = subprocess.run([sys.executable, "-m", "studio.trainer", str(run.dir)], capture_output=True,
                                 text=True, timeout=DEADLINE_S)
    finally:
        hub.stop()
    assert trainer.returncode == 1
    end = load_timeline(run.dir).end
    assert end.status == "failed" and end.error_kind == "download"
    assert "nobody-here/no-such-model" in end.message and "HF_TOKEN" in end.advice
    assert secret not in trainer.stdout + trainer.stderr
    for f in run.dir.rglob("*"):
        if f.is_file():
            assert secret not in f.read_text(errors="replace"), f


def test_fp16_on_cpu_is_a_config_error(tmp_path: Path, chat_data: Path) -> None:
    profile = write_profile(tmp_path / "fp16.toml", chat_data, model={"dtype": "fp16"})
    proc = studio("run", str(profile), "--json")  # refused before a run folder is made
    assert proc.returncode == 2 and "model.dtype" in proc.stderr and not find_runs()
    # A run folder made another way still fails as a config error in the trainer.
    from studio.profiles.profile import load_profile

    run = create_run(load_profile(profile).to_toml(), "fp16")
    assert subprocess.run([sys.executable, "-m", "studio.trainer", str(run.dir)], capture_output=True).returncode == 1
    end = load_timeline(run.dir).end
    assert end.error_kind == "config" and "model.dtype" in end.message


def test_find_run_by_prefix_and_last(tmp_path: Path, chat_data: Path) -> None:
    from studio.profiles.profile import load_profile

    p = load_profile(write_profile(tmp_path / "x.toml", chat_data)).to_toml()
    a, b = create_run(p, "alpha"), create_run(p, "beta")
    assert find_run("last") == b
    assert find_run("alpha") == a and find_run(str(b.dir)) == b
    assert run_status(a) == "crashed"  # a folder whose trainer never wrote `end`


def test_probe_builds_random_weights_from_a_config(tmp_path: Path, chat_data: Path) -> None:
    model_dir = tmp_path / "cfg"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 2000, "tie_word_embeddings": False,
        "max_position_embeddings": 512}))
    profile = write_profile(tmp_path / "p.toml", chat_data, model={"name": str(model_dir)}, method={"type": "qlora"},
                            train={"optimizer": "auto"})
    proc = studio("probe", str(profile), "--steps", "8", "--seq-len", "64", "--batch", "2", "--json")
    result = json.loads(proc.stdout)
    assert result["status"] == "completed", proc.stderr
    assert result["steps"] == 8 and result["measured"]["rss_peak_gib"] > 0
    # Steady state: the first two steps warm up; steps 3 to 8 are averaged.
    assert result["measured"]["warmup_steps"] == 2 and result["measured"]["steps_averaged"] == 5
    assert result["measured"]["tokens_per_s"] > 0
    run_dir = Path(os.environ["STUDIO_HOME"]) / "runs" / result["run"]
    tl = load_timeline(run_dir)
    assert tl.start.total_params > 2000 * 128 * 2  # the config's vocabulary, untied
    assert tl.preflight.truncated_rows == tl.preflight.rows  # rows fill max_length
    assert not (run_dir / "final").exists() and not list(run_dir.glob("checkpoints/checkpoint-*"))
    assert (run_dir / "launch.json").is_file() and (run_dir / "plan.json").is_file()  # the one start path


def test_hub_model_from_the_local_cache(tmp_path: Path, chat_data: Path) -> None:
    """The hub code path, offline: a model already in the Hugging Face cache is used as it is."""
    from studio.trainer.tiny import build_tiny_model

    hub = Path(os.environ["HF_HOME"]) / "hub" / "models--studio-test--tiny-chat"
    snapshot = hub / "snapshots" / ("0" * 40)
    build_tiny_model(snapshot, demo_rows(160), seed=1)
    (hub / "refs").mkdir(parents=True)
    (hub / "refs" / "main").write_text("0" * 40)
    profile = write_profile(tmp_path / "hub.toml", chat_data, model={"name": "studio-test/tiny-chat"},
                            train={"max_steps": 4})
    result = run_json(studio("run", str(profile), "--json"))
    tl = load_timeline(Path(result["dir"]))
    assert result["status"] == "completed", tl.end
    assert tl.download and tl.download.done and tl.download.name == "studio-test/tiny-chat"
    assert not (Path(result["dir"]) / "base-model").exists()


def test_missing_hub_dataset_says_what_to_do(tmp_path: Path) -> None:
    profile = write_profile(tmp_path / "d.toml", "nobody-here/no-such-dataset", train={"max_steps": 2})
    proc = studio("run", str(profile), "--json")
    assert proc.returncode == 1
    end = load_timeline(Path(run_json(proc)["dir"])).end
    assert end.status == "failed" and end.error_kind in ("data", "download")
    assert "nobody-here/no-such-dataset" in end.message
