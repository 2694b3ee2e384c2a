"""Preference tuning: DPO, ORPO and KTO on the data shapes people have, planned, trained and recorded like SFT.

The fast set reads every data shape, refuses the wrong pairing of objective and data before a run folder
exists, checks what the estimate adds for each objective, and trains a few real steps of each objective
in this process (the trainer's own `train_run` on tiny models: LoRA, QLoRA and full for DPO). The slow set
runs the bundled tiny-dpo profile through the CLI, stops and resumes it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import REPO, studio, write_profile
from studio.data import build_dataset, load_local
from studio.hardware import Inventory
from studio.planning.catalog import lookup_model
from studio.planning.estimate import Setup, estimate_memory
from studio.planning.plan import plan_run
from studio.profiles.profile import load_profile
from studio.runs.events import End, Preflight, Start, Step, read_events
from studio.runs.folder import create_run
from studio.runs.launcher import write_plan_files

PAIRS = REPO / "profiles" / "data" / "tiny-preference.jsonl"
USER = "user"


def turns(role: str, text: str) -> list[dict[str, str]]:
    return [{"role": role, "content": text}]


def shapes(tmp_path: Path) -> dict[str, Path]:
    """The same pairs in each shape people bring: explicit prompt (conversations, text), an implicit prompt
    (conversations sharing their first turns; Anthropic HH's texts sharing their beginning), KTO's rows."""
    rows = [json.loads(line) for line in PAIRS.read_text().splitlines()][:48]
    out: dict[str, list[dict]] = {"explicit": rows, "text": [], "implicit": [], "hh": [], "unpaired": [],
                                  "ultrafeedback": []}
    for r in rows:
        question = r["prompt"][-1]["content"]
        good, bad = r["chosen"][0]["content"], r["rejected"][0]["content"]
        out["text"].append({"prompt": f"Q: {question}\nA: ", "chosen": good, "rejected": bad})
        out["implicit"].append({"chosen": r["prompt"] + r["chosen"], "rejected": r["prompt"] + r["rejected"]})
        out["ultrafeedback"].append({"prompt": question, "chosen": r["prompt"] + r["chosen"],
                                     "rejected": r["prompt"] + r["rejected"], "score_chosen": 8.0})
        out["hh"].append({"chosen": f"\n\nHuman: {question}\n\nAssistant: {good}",
                          "rejected": f"\n\nHuman: {question}\n\nAssistant: {bad}"})
        out["unpaired"] += [{"prompt": r["prompt"], "completion": r["chosen"], "label": True},
                            {"prompt": r["prompt"], "completion": r["rejected"], "label": "false"}]
    paths = {}
    for name, data in out.items():
        paths[name] = tmp_path / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(r) + "\n" for r in data))
    return paths


def test_each_shape_reads_as_pairs_with_the_prompt_found(tmp_path: Path) -> None:
    paths = shapes(tmp_path)
    for name in ("explicit", "text", "implicit", "hh", "ultrafeedback"):
        ds = load_local(paths[name])
        assert ds.format == "preference" and not ds.bad_rows and len(ds.rows) == 48, (name, ds.bad_rows[:2])
    assert load_local(paths["ultrafeedback"]).rows[0] == load_local(paths["implicit"]).rows[0]
    implicit = load_local(paths["implicit"]).rows[0]
    assert implicit["prompt"][-1]["role"] == USER and [t["role"] for t in implicit["chosen"]] == ["assistant"]
    hh = load_local(paths["hh"]).rows[0]
    assert hh["prompt"].endswith("\n\nAssistant: ") and not hh["chosen"].startswith(" ")
    kto = load_local(paths["unpaired"])
    assert kto.format == "unpaired" and [r["label"] for r in kto.rows[:2]] == [True, False]


def test_a_bad_pair_is_named_by_its_row(tmp_path: Path) -> None:
    rows = [(1, {"prompt": "Q", "chosen": "yes", "rejected": "no"}),
            (2, {"prompt": "Q", "chosen": "same", "rejected": "same"}),
            (3, {"chosen": "Paris is nice", "rejected": "London is big"}),
            (4, {"prompt": "Q", "chosen": turns("assistant", "a"), "rejected": "b"}),
            (5, {"prompt": "Q", "completion": "a", "label": "maybe"})]
    ds = build_dataset(rows[:4])
    assert ds.format == "preference" and [b.row for b in ds.bad_rows] == [2, 3, 4]
    assert "nothing to prefer" in ds.bad_rows[0].reason and "'prompt' column" in ds.bad_rows[1].reason
    bad_label = build_dataset(rows[4:])
    assert bad_label.bad_rows[0].row == 5 and "true" in bad_label.bad_rows[0].reason


def test_the_objective_and_the_data_must_go_together_before_a_run_folder_exists(tmp_path: Path,
                                                                                 studio_env: Path) -> None:
    chat = REPO / "profiles" / "data" / "tiny-chat.jsonl"
    dpo_on_chat = write_profile(tmp_path / "a.toml", chat, train={"objective": "dpo", "max_steps": 1})
    proc = studio("run", str(dpo_on_chat))
    assert proc.returncode == 2 and "train.objective" in proc.stderr and "chosen and rejected" in proc.stderr, \
        proc.stderr
    sft_on_pairs = write_profile(tmp_path / "b.toml", PAIRS, train={"max_steps": 1})
    proc = studio("run", str(sft_on_pairs))
    assert proc.returncode == 2 and 'train.objective = "dpo"' in proc.stderr, proc.stderr
    assert not (studio_env / "runs").exists() or not list((studio_env / "runs").iterdir())


def test_the_estimate_knows_what_each_objective_adds() -> None:
    spec = lookup_model("meta-llama/Llama-3.1-8B")

    def part(objective: str, method: str, name: str, **kw: object) -> float:
        return dict(estimate_memory(spec, Setup(method=method, objective=objective, batch=4, seq_len=1024,
                                                **kw)).parts()).get(name, 0.0)

    # chosen and rejected go through the model together: twice SFT's activations for the same rows
    assert part("dpo", "lora", "activations") == pytest.approx(2 * part("sft", "lora", "activations"), rel=0.01)
    # the reference: the adapter turned off costs nothing; full fine-tuning keeps a frozen copy...
    assert part("dpo", "lora", "reference") == 0 and part("kto", "qlora", "reference") == 0
    assert part("dpo", "full", "reference") == pytest.approx(part("dpo", "full", "weights"))
    assert part("orpo", "full", "reference") == 0
    # ...unless its log-probs are computed once before training
    assert part("dpo", "full", "reference", reference="precompute") == 0
    # ORPO builds the logits (TRL's ORPO has no fused LM head)
    assert part("orpo", "lora", "logits") > 1.0 > part("dpo", "lora", "logits")


def one_run(tmp_path: Path, data: Path, method: str, objective: str, steps: int = 2, **sections: dict) -> Path:
    from studio.trainer.main import train_run
    from studio.trainer.stop import StopRequest

    path = write_profile(tmp_path / f"{objective}-{method}.toml", data,
                         method={"type": method, "rank": 8, "alpha": 16.0, "dropout": 0.0},
                         data={"max_length": 64, "eval_fraction": 0.1},
                         train={"objective": objective, "max_steps": steps, "batch_size": 4, "save_steps": 100,
                                "eval_steps": 0, "learning_rate": 3e-3},
                         **sections)
    profile = load_profile(path)
    plan = plan_run(profile, Inventory([], reason="the CPU"))
    run = create_run(profile.to_toml(), f"{objective}-{method}")
    write_plan_files(run, plan.record())
    assert train_run(run.dir, stop=StopRequest()) == 0, (run.dir / "trainer.log").read_text()[-3000:]
    return run.dir


@pytest.mark.parametrize("method", ["lora", "qlora", "full"])
def test_dpo_trains_with_each_method_and_records_its_figures(tmp_path: Path, studio_env: Path, method: str) -> None:
    run_dir = one_run(tmp_path, PAIRS, method, "dpo")
    events = read_events(run_dir / "events.jsonl")
    end = [e for e in events if isinstance(e, End)][-1]
    assert end.status == "completed" and end.step == 2, end
    steps = [e for e in events if isinstance(e, Step)]
    assert steps and all(s.reward_margin is not None and s.reward_accuracy is not None for s in steps)
    preflight = next(e for e in events if isinstance(e, Preflight))
    assert preflight.format == "preference" and "chosen and rejected" in (preflight.loss_on or "")
    start = next(e for e in events if isinstance(e, Start))
    plan = plan_run(load_profile(run_dir / "profile.toml"), Inventory([], reason="the CPU"))
    if method != "full":
        assert start.trainable_params == plan.memory.trainable_params
    assert (run_dir / "final").is_dir()


@pytest.mark.parametrize("shape,objective", [("implicit", "dpo"), ("hh", "dpo"), ("ultrafeedback", "dpo"),
                                             ("text", "orpo"), ("unpaired", "kto"), ("explicit", "kto")])
def test_every_shape_trains_with_its_objective(tmp_path: Path, studio_env: Path, shape: str, objective: str) -> None:
    run_dir = one_run(tmp_path, shapes(tmp_path)[shape], "lora", objective)
    events = read_events(run_dir / "events.jsonl")
    assert [e for e in events if isinstance(e, End)][-1].status == "completed"
    steps = [e for e in events if isinstance(e, Step)]
    assert steps and steps[-1].reward_margin is not None
    if objective == "kto":
        assert steps[-1].kl is not None


@pytest.mark.slow
def test_the_bundled_tiny_dpo_profile_trains_stops_and_resumes(tmp_path: Path, studio_env: Path) -> None:
    """`studio run tiny-dpo` as the README shows it: stopped at its first checkpoint, resumed to the end,
    its steps carrying the reward margin and accuracy, which rise."""
    import subprocess
    import sys

    from waiting import DEADLINE_S, wait_for

    proc = subprocess.Popen([sys.executable, "-m", "studio", "run", "tiny-dpo", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    runs = studio_env / "runs"
    wait_for(lambda: runs.exists() and any((d / "checkpoints" / "checkpoint-20").is_dir() for d in runs.iterdir()),
             "the first checkpoint")
    run_dir = next(runs.iterdir())
    assert studio("stop", run_dir.name).returncode == 0
    proc.communicate(timeout=DEADLINE_S)
    ended = [e for e in read_events(run_dir / "events.jsonl") if isinstance(e, End)][-1]
    assert ended.status == "stopped", ended
    resumed = studio("resume", run_dir.name, "--json")
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["status"] == "completed", resumed.stderr[-2000:]
    steps = [e for e in read_events(run_dir / "events.jsonl") if isinstance(e, Step)]
    assert steps[-1].step == 40 and all(s.reward_accuracy is not None for s in steps)
    first, last = steps[:5], steps[-5:]
    assert sum(s.reward_margin for s in last) / 5 > sum(s.reward_margin for s in first) / 5

    # Judged on its held-out pairs, before and after: the tuned model prefers the chosen answers more often.
    judged = studio("eval", run_dir.name, "--compare", "--json")
    assert judged.returncode == 0, judged.stderr[-2000:]
    pref = json.loads(judged.stdout.strip().splitlines()[-1])["preference"]
    assert pref["pairs"] == 48 and pref["tuned"]["prefers_chosen"] > pref["base"]["prefers_chosen"], pref
    assert pref["reward_accuracy"] > 0.5 and pref["reward_margin"] > 0
    said = studio("eval", run_dir.name, "--compare").stdout
    assert "better than the base model" in said and "not better" not in said, said


@pytest.mark.slow
def test_a_two_process_dpo_run_trains_with_one_writer(tmp_path: Path, studio_env: Path) -> None:
    """DPO under accelerate, two ranks on the CPU (gloo DDP): each logged step once, with its rewards."""
    path = write_profile(tmp_path / "ddp-dpo.toml", PAIRS, data={"max_length": 64},
                         train={"objective": "dpo", "max_steps": 6, "batch_size": 2, "save_steps": 100},
                         hardware={"gpus": "2"})
    proc = studio("run", str(path), "--json")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == "completed", proc.stderr[-3000:]
    run_dir = Path(result["dir"])
    assert (run_dir / "accelerate_config.yaml").is_file()
    steps = [e for e in read_events(run_dir / "events.jsonl") if isinstance(e, Step)]
    assert [s.step for s in steps] == list(range(1, 7)) and all(s.reward_accuracy is not None for s in steps)


# ------------------------------------------------------------------------------------------------- GRPO

def math_prompts(tmp_path: Path, rows: int = 32) -> Path:
    path = tmp_path / "math.jsonl"
    path.write_text("".join(json.dumps({"prompt": turns(USER, f"What is {i} plus {i + 3}?"), "answer": str(2 * i + 3)})
                            + "\n" for i in range(rows)))
    (tmp_path / "my_rewards.py").write_text(
        "def says_plus(prompts, completions, **kwargs):\n"
        "    return [1.0 if 'plus' in c[0]['content'] else 0.0 for c in completions]\n\n"
        "def breaks_on_odd_rows(prompts, completions, studio_row, **kwargs):\n"
        "    if any(r % 2 for r in studio_row):\n"
        "        raise KeyError('score')\n"
        "    return [0.0] * len(completions)\n")
    return path


def grpo_profile(tmp_path: Path, functions: list[str], **train: object) -> Path:
    return write_profile(tmp_path / "grpo.toml", math_prompts(tmp_path), data={"max_length": 64},
                         train={"objective": "grpo", "max_steps": 2, "batch_size": 4, "grad_accum": 1,
                                "save_steps": 100, **train},
                         reward={"functions": functions, "num_generations": 4, "max_completion_length": 8,
                                 "length_limit": 20})


def test_rewards_score_answers_as_people_write_them() -> None:
    from studio.trainer.rewards import checked, exact_answer, format_reward, length_reward

    answers = ["So the total is 1,000.", "#### 12", "It is 7 or 8, finally 9", "no number here"]
    assert exact_answer(answers, answer=["1000", "12", "9", "#### 12"]) == [1.0, 1.0, 1.0, 0.0]
    assert exact_answer([[{"role": "assistant", "content": "Paris."}]], answer=["paris"]) == [1.0]
    assert format_reward(r"<answer>.*</answer>")(["<answer>4</answer>", "4"]) == [1.0, 0.0]
    assert length_reward(10)(["short", "x" * 15, "x" * 40]) == [0.0, -0.5, -1.0]
    with pytest.raises(Exception, match="reward exact_answer raised ValueError: needs an 'answer' column"):
        checked("exact_answer", exact_answer)(prompts=["q"], completions=["4"])


def test_grpo_settings_are_checked_with_the_rest(tmp_path: Path) -> None:
    bad = write_profile(tmp_path / "p.toml", PAIRS, train={"objective": "grpo", "batch_size": 3, "grad_accum": 1},
                        reward={"functions": ["exact_answer", "format", "rewards.py"]})
    said = studio("profile", "check", str(bad))
    out = said.stdout + said.stderr
    assert said.returncode == 2 and "reward.num_generations" in out and "multiple of 4" in out
    assert "reward.format_pattern" in out and "'rewards.py' is neither a built-in reward" in out


def test_grpo_trains_with_built_in_and_own_rewards_and_records_them(tmp_path: Path, studio_env: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from studio.trainer.main import train_run
    from studio.trainer.stop import StopRequest

    profile = load_profile(grpo_profile(tmp_path, ["exact_answer", "my_rewards.py:says_plus", "length"]))
    assert profile.reward.functions[1] == f"{tmp_path / 'my_rewards.py'}:says_plus"  # beside the profile
    plan = plan_run(profile, Inventory([], reason="the CPU"))
    run = create_run(profile.to_toml(), "grpo")
    write_plan_files(run, plan.record())
    assert train_run(run.dir, stop=StopRequest()) == 0, (run.dir / "trainer.log").read_text()[-3000:]
    events = read_events(run.events_path)
    assert [e for e in events if isinstance(e, End)][-1].status == "completed"
    steps = [e for e in events if isinstance(e, Step)]
    assert steps and set(steps[-1].rewards) == {"exact_answer", "says_plus", "length"}
    assert steps[-1].reward is not None and steps[-1].completion_length is not None
    log = capsys.readouterr().out  # the trainer's log (the monitor's log pane): what was sampled, its rewards
    assert "sampled for 'What is" in log and "says_plus" in log.split("sampled for", 1)[1].splitlines()[0]


@pytest.mark.slow
def test_a_reward_that_raises_ends_the_run_naming_the_function_and_the_row(tmp_path: Path,
                                                                          studio_env: Path) -> None:
    proc = studio("run", str(grpo_profile(tmp_path, ["exact_answer", "my_rewards.py:breaks_on_odd_rows"])), "--json")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == "failed"
    end = [e for e in read_events(Path(result["dir"]) / "events.jsonl") if isinstance(e, End)][-1]
    assert end.error_kind == "reward" and "reward breaks_on_odd_rows raised KeyError" in end.message
    assert "data row" in end.message and "resume" in end.advice


def test_the_estimate_holds_grpo_sampling() -> None:
    from studio.planning.estimate import generation_bytes

    spec = lookup_model("meta-llama/Llama-3.1-8B")
    setup = Setup(objective="grpo", batch=8, seq_len=2048, completion=1024, generation_batch=64)
    cache = generation_bytes(spec, setup)
    assert cache == pytest.approx(64 * (2 * 32 * 1024 * 2 * 2048 + 4 * 128256))  # 64 answers' KV cache
    memory = estimate_memory(spec, setup)
    assert memory.phase == "sampling answers" and memory.peak_vram_gib > 16 + cache / 2**30


@pytest.mark.slow
def test_grpo_stops_resumes_and_trains_with_two_processes(tmp_path: Path, studio_env: Path) -> None:
    """A GRPO run stopped at a checkpoint resumes to the end; two processes (gloo DDP) train with one writer."""
    from test_training_runs import run_json
    from waiting import wait_for

    path = grpo_profile(tmp_path, ["exact_answer", "my_rewards.py:says_plus"], max_steps=24, save_steps=4,
                        logging_steps=1)
    run_dir = Path(run_json(studio("run", str(path), "--detach", "--json"))["dir"])
    wait_for(lambda: (run_dir / "checkpoints" / "checkpoint-4").is_dir(), "the first checkpoint")
    assert studio("stop", run_dir.name).returncode == 0
    ended = [e for e in read_events(run_dir / "events.jsonl") if isinstance(e, End)][-1]
    assert ended.status == "stopped", ended
    resumed = studio("resume", run_dir.name, "--json")
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["status"] == "completed", resumed.stderr[-2000:]
    steps = [e.step for e in read_events(run_dir / "events.jsonl") if isinstance(e, Step)]
    assert steps[-1] == 24 and steps.count(ended.step + 1) == 1

    two = write_profile(tmp_path / "ddp.toml", math_prompts(tmp_path), data={"max_length": 64},
                        train={"objective": "grpo", "max_steps": 3, "batch_size": 4, "grad_accum": 1,
                               "save_steps": 100}, hardware={"gpus": "2"},
                        reward={"functions": ["exact_answer"], "num_generations": 4, "max_completion_length": 8})
    result = json.loads(studio("run", str(two), "--json").stdout.strip().splitlines()[-1])
    assert result["status"] == "completed", result
    logged = [e for e in read_events(Path(result["dir"]) / "events.jsonl") if isinstance(e, Step)]
    assert [s.step for s in logged] == [1, 2, 3] and all(s.reward is not None for s in logged)


@pytest.mark.slow
def test_a_dpo_step_saves_what_sfts_forward_of_both_answers_saves() -> None:
    """The estimate counts a DPO step as SFT's forward of the chosen and rejected rows together (twice the
    rows' tokens, each token's saves as SFT's: those are checked against autograd per family in
    test_estimate.py) and the reference as keeping nothing. Measured here with autograd's hooks on one block
    of the tiny Llama in TRL's own DPO loss: the same bytes as SFT's forward of the batch, to the byte."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(Path(__file__).parent / "saved_bytes.py"), "--dpo"],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    measured = json.loads(proc.stdout.strip().splitlines()[-1])
    assert measured["same_batch"] and measured["dpo_block_bytes"] == measured["sft_block_bytes"] > 0
    setup = Setup(method="lora", objective="dpo", batch=measured["sequences"] // 2, seq_len=measured["length"])
    from studio.planning.estimate import objective_tokens

    assert objective_tokens(setup) == measured["sequences"] * measured["length"]  # both answers, together


def test_grpo_sampling_holds_the_kv_cache_the_estimate_counts() -> None:
    """GRPO's sampling phase: the KV cache of every answer sampled at once, measured from what generation keeps
    on the tiny Llama (its cache's key and value tensors), within a token of the estimate."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from studio.planning.estimate import generation_bytes

    spec = lookup_model("builtin:tiny-llama")
    fields = dict(spec.config)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(fields.pop("model_type"), **fields),
                                             dtype=torch.bfloat16)
    sequences, prompt, answer = 6, 20, 12
    out = model.generate(torch.randint(5, 1000, (sequences, prompt)), min_new_tokens=answer, max_new_tokens=answer,
                         do_sample=False, return_dict_in_generate=True, pad_token_id=0)
    cache = sum(t.numel() * t.element_size() for layer in out.past_key_values.layers for t in (layer.keys, layer.values))
    setup = Setup(objective="grpo", batch=sequences, generation_batch=sequences, seq_len=prompt + answer,
                  completion=answer, dtype="bf16")
    counted = generation_bytes(spec, setup) - sequences * 4 * spec.vocab  # less the next-token logits
    assert cache <= counted <= cache * (prompt + answer) / (prompt + answer - 1) + 1


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["dpo", "grpo"])  # KTO and ORPO take DPO's path (test_every_shape...)
def test_studio_probe_measures_each_objective(tmp_path: Path, studio_env: Path, objective: str) -> None:
    """`studio probe` trains a few steps of random weights on synthetic rows in the objective's own shape."""
    data = math_prompts(tmp_path) if objective == "grpo" else PAIRS
    path = write_profile(tmp_path / f"{objective}.toml", data, data={"max_length": 48},
                         train={"objective": objective, "batch_size": 4, "grad_accum": 1},
                         reward={"num_generations": 4, "max_completion_length": 8})
    proc = studio("probe", str(path), "--steps", "6")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "measured on the CPU: peak RSS" in proc.stdout, proc.stdout


def test_the_preview_shows_each_side_with_the_answer_trained(tmp_path: Path, studio_env: Path) -> None:
    """`studio profile preview` (F3 in the editor) of pairs: the prompt as context, each answer trained."""
    from studio.trainer.preview import preview

    result = preview(load_profile(write_profile(tmp_path / "p.toml", PAIRS, train={"objective": "dpo"})), 2)
    assert [(r["row"], r["side"]) for r in result["rows"]] == [(1, "chosen"), (1, "rejected"), (2, "chosen"),
                                                                 (2, "rejected")]
    chosen = result["rows"][0]
    trained = "".join(text for text, kind in chosen["segments"] if kind == "trained")
    context = "".join(text for text, kind in chosen["segments"] if kind == "context")
    assert "11 plus 5 is 16." in trained and "What is 11 plus 5?" in context and "What is" not in trained
    said = studio("profile", "preview", str(tmp_path / "p.toml"), "--rows", "1").stdout
    assert "row 1 · rejected" in said and "[+The opposite of old is new." in said


def test_the_preflight_names_the_data_rows_it_cut_when_some_are_held_out(tmp_path: Path) -> None:
    """With rows held out for evaluation, the pairs too long for max_length are named by their own row
    numbers in the file, not by their place among the training rows."""
    from studio.trainer.dataset import split_eval
    from studio.trainer.preference import preference_preflight
    from studio.trainer.tiny import train_tokenizer

    rows = [{"prompt": f"Q{i}", "chosen": ("long answer " * 40 if i % 5 == 0 else "yes"), "rejected": "no"}
            for i in range(1, 41)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    profile = load_profile(write_profile(tmp_path / "p.toml", data, data={"max_length": 32, "eval_fraction": 0.25},
                                         train={"objective": "dpo"}))
    ds = load_local(data)
    train, held = split_eval(profile, ds)
    stats = preference_preflight(train_tokenizer(ds.rows, 256), ds, train, held, profile)
    long_in_training = [i for i in range(5, 41, 5) if any(r["prompt"] == f"Q{i}" for r in train)]
    assert long_in_training and list(stats.truncated_row_numbers) == long_in_training
