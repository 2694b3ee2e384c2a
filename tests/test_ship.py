"""Shipping a result: GGUF for llama.cpp (checked in llama.cpp itself when llama-cpp-python is installed, and
always read back with the gguf package and compared tensor by tensor), the Ollama Modelfile, the model card,
`studio eval`, and the Hub push's answers."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import DEMO_DATA, studio, write_profile

pytestmark = pytest.mark.slow
LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None
NO_RUNTIME = ("llama-cpp-python is not installed here (no wheel fits this machine and .ci/run could not build it "
              "in time); the GGUF is read back with the gguf package instead and every tensor compared")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("ship")
    profile = write_profile(tmp / "p.toml", DEMO_DATA, train={"max_steps": 30, "learning_rate": 5e-3},
                            data={"eval_fraction": 0.1})
    with pytest.MonkeyPatch.context() as env:
        env.setenv("STUDIO_HOME", str(tmp / "home"))
        result = json.loads(studio("run", str(profile), "--json").stdout.strip().splitlines()[-1])
        assert result["status"] == "completed"
        for quant in ("f16", "q8_0"):
            out = studio("export", result["id"], "--out", str(tmp / quant), "--gguf", "--quant", quant, "--ollama")
            assert out.returncode == 0, out.stderr
        merged = studio("export", result["id"], "--out", str(tmp / "merged"), "--merge")
        assert merged.returncode == 0, merged.stderr
    return Path(result["dir"]), tmp


def gguf_file(folder: Path) -> Path:
    return next(folder.glob("*.gguf"))


def hf_weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return {k: v.astype(np.float32) for k, v in load_file(folder / "model.safetensors").items()}


@pytest.mark.parametrize("quant, tolerance", [("f16", 2e-3), ("q8_0", 2e-2)])
def test_every_tensor_of_the_gguf_is_the_merged_model(trained, quant: str, tolerance: float) -> None:
    """Read back with llama.cpp's gguf package: every tensor equals the merged weights (f16: to fp16 rounding;
    q8_0: within 2% of the largest weight of the tensor), in llama.cpp's layout."""
    from gguf import get_tensor_name_map, MODEL_ARCH

    from studio.trainer.gguf_export import permute, read_back

    _, tmp = trained
    back = read_back(gguf_file(tmp / quant))
    weights = hf_weights(tmp / "merged")
    config = json.loads((tmp / "merged" / "config.json").read_text())
    names = get_tensor_name_map(MODEL_ARCH.LLAMA, config["num_hidden_layers"])
    assert len(back["tensors"]) == len(weights)
    for key, value in weights.items():
        if key.endswith("q_proj.weight"):
            value = permute(value, config["num_attention_heads"])
        elif key.endswith("k_proj.weight"):
            value = permute(value, config["num_key_value_heads"])
        got = back["tensors"][names.get_name(key, try_suffixes=(".weight", ".bias"))]
        assert got.shape == value.shape, key
        assert np.abs(got - value).max() <= tolerance * max(1.0, float(np.abs(value).max())), key


def test_the_vocabulary_and_the_chat_template_round_trip(trained) -> None:
    from transformers import AutoTokenizer

    from studio.trainer.gguf_export import read_back

    _, tmp = trained
    tokenizer = AutoTokenizer.from_pretrained(tmp / "merged")
    back = read_back(gguf_file(tmp / "f16"))
    ids = tokenizer.get_vocab()
    expected = [t.encode() for t, _ in sorted(ids.items(), key=lambda kv: kv[1])]
    assert back["tokens"] == expected
    assert back["fields"]["tokenizer.chat_template"] == tokenizer.chat_template
    assert back["fields"]["tokenizer.ggml.eos_token_id"] == [tokenizer.eos_token_id]


@pytest.mark.skipif(not LLAMA_CPP, reason=NO_RUNTIME)
@pytest.mark.parametrize("quant, agree", [("f16", 1.0), ("q8_0", 0.75)])
def test_llama_cpp_continues_prompts_as_the_merged_model_does(trained, quant: str, agree: float) -> None:
    """llama.cpp's greedy continuation of three prompts against the merged HF model's: the same tokens in f16;
    at least 75% of them for q8_0 (8-bit weights move near-tied logits)."""
    import torch
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, tmp = trained
    tokenizer = AutoTokenizer.from_pretrained(tmp / "merged")
    model = AutoModelForCausalLM.from_pretrained(tmp / "merged", dtype=torch.float32)
    llm = Llama(model_path=str(gguf_file(tmp / quant)), n_ctx=256, verbose=False, logits_all=False)
    same = total = 0
    for question in ("What is 11 plus 5?", "Name a colour.", "What is the capital of France?"):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                            return_dict=True)["input_ids"]
        hf = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)[0][len(ids):].tolist()
        llm.reset()
        out = []
        for token in llm.generate(ids, temp=0.0, top_k=1, reset=True):
            out.append(token)
            if len(out) == len(hf) or token == tokenizer.eos_token_id:
                break
        same += sum(a == b for a, b in zip(hf, out))
        total += len(hf)
    assert same / total >= agree, (same, total)


def test_the_modelfile_and_the_card(trained) -> None:
    run_dir, tmp = trained
    modelfile = (tmp / "q8_0" / "Modelfile").read_text()
    assert modelfile.startswith(f"FROM ./{gguf_file(tmp / 'q8_0').name}")
    assert ".Messages" in modelfile and "{{ .Content }}" in modelfile and 'PARAMETER stop "<|eos|>"' in modelfile
    # the tiny tokenizer adds no BOS when it encodes, so the GGUF does not either and the TEMPLATE writes it once
    assert 'TEMPLATE """<|bos|>' in modelfile
    card = (tmp / "merged" / "README.md").read_text()
    # a built-in model is no Hub id: the Hub would refuse it as base_model, so the card names it in its text
    assert "base_model:" not in card and "`builtin:tiny-llama`" in card and "license:" in card
    assert "library_name: transformers" in card and "library_name: gguf" in (tmp / "q8_0" / "README.md").read_text()
    assert "| steps | 30 |" in card and "tiny-chat.jsonl" in card and str(DEMO_DATA) not in card
    assert "AutoModelForCausalLM.from_pretrained" in card and "[model]" in card


def test_an_export_killed_or_failing_leaves_nothing_half_written(trained) -> None:
    run_dir, tmp = trained
    out = tmp / "refused"
    proc = studio("export", str(run_dir), "--out", str(out), "--gguf", "--quant", "q4_k_m")
    assert proc.returncode != 0 and "llama-quantize" in proc.stderr
    assert not out.exists() and not list(tmp.glob(".refused.partial-*"))


def test_an_export_killed_partway_leaves_no_export_and_the_next_one_clears_its_leftovers(trained) -> None:
    """SIGKILL (no clean-up runs) while the merged model is being written: the target is not there at all, and
    the next export to it removes the dead export's staging folder and writes the whole model."""
    import signal
    import subprocess
    import sys

    from waiting import wait_for

    run_dir, tmp = trained
    out = tmp / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "studio", "export", str(run_dir), "--out", str(out), "--merge"],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staging = wait_for(lambda: list(tmp.glob(".killed.partial-*")), what="the export's staging folder", timeout=600)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    assert staging[0].exists()  # a kill runs no clean-up
    again = studio("export", str(run_dir), "--out", str(out), "--merge")
    assert again.returncode == 0, again.stderr
    assert not list(tmp.glob(".killed.partial-*")), "the killed export's staging folder is still there"
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()


def test_eval_compares_the_base_and_the_tuned_model(trained) -> None:
    run_dir, _ = trained
    env = dict(os.environ, STUDIO_HOME=str(run_dir.parent.parent))
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "studio", "eval", run_dir.name, "--compare", "--json"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["tuned"]["loss"] < result["base"]["loss"]  # training moved it on held-out rows
    assert result["tuned"]["perplexity"] > 1 and 0 <= result["tuned"]["exact"] <= 1
    assert result["samples"] and {"prompt", "base", "tuned"} <= set(result["samples"][0])
    assert (run_dir / "eval.json").is_file()


def test_push_says_what_to_do_without_a_token(trained, monkeypatch) -> None:
    run_dir, tmp = trained
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_HUB_OFFLINE")}
    env.update(STUDIO_HOME=str(run_dir.parent.parent), HF_HOME=str(tmp / "no-login"))
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "studio", "export", run_dir.name, "--out", str(tmp / "pushed"),
                           "--push", "me/tiny"], capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "no Hugging Face token" in proc.stderr and "hf auth login" in proc.stderr
    assert (tmp / "pushed" / "README.md").is_file()  # the export itself is complete


def studio_in(run_dir: Path, *args: str, env: dict[str, str] | None = None):
    """`studio` with the trained run's home, and the environment given."""
    import subprocess
    import sys

    full = dict(os.environ, STUDIO_HOME=str(run_dir.parent.parent), **(env or {}))
    return subprocess.run([sys.executable, "-m", "studio", *args], capture_output=True, text=True, env=full)


def test_force_replaces_an_earlier_export_and_never_a_folder_of_other_files(trained) -> None:
    run_dir, tmp = trained
    mine = tmp / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    proc = studio_in(run_dir, "export", run_dir.name, "--out", str(mine), "--force")
    assert proc.returncode != 0 and "studio did not write" in proc.stderr and "notes.txt" in proc.stderr
    assert (mine / "notes.txt").read_text() == "keep me" and sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    again = tmp / "again"
    assert studio_in(run_dir, "export", run_dir.name, "--out", str(again)).returncode == 0
    second = studio_in(run_dir, "export", run_dir.name, "--out", str(again), "--force", "--merge")
    assert second.returncode == 0, second.stderr
    assert (again / "model.safetensors").is_file() and not (again / "adapter_config.json").exists()


def test_quant_without_gguf_and_a_bad_push_name_are_refused_before_anything_is_written(trained) -> None:
    run_dir, tmp = trained
    proc = studio_in(run_dir, "export", run_dir.name, "--out", str(tmp / "q"), "--merge", "--quant", "q8_0")
    assert proc.returncode != 0 and "add --gguf" in proc.stderr and not (tmp / "q").exists()
    proc = studio_in(run_dir, "export", run_dir.name, "--out", str(tmp / "p"), "--push", "me/bad..name")
    assert proc.returncode != 0 and "nothing was exported" in proc.stderr and not (tmp / "p").exists()


def test_a_full_disk_during_the_merge_says_so_and_leaves_nothing(trained, tmp_path: Path) -> None:
    import subprocess

    run_dir, _ = trained
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root): a full disk cannot be made")
    try:
        proc = studio_in(run_dir, "export", run_dir.name, "--out", str(small / "merged"), "--merge")
        assert proc.returncode != 0
        assert "No space left on device" in proc.stderr and "free disk space" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_push_uploads_the_export_to_a_hub_as_the_client_sends_it(trained, tmp_path: Path) -> None:
    """Against a local Hub that takes uploads the way the Hub's API does (repo create, the card's metadata
    check, preupload, commit): the files arrive byte for byte and the token is in none of them; a Hub that
    refuses the card's metadata is a clean message, the export in place."""
    from hub_server import FakeHub

    run_dir, _ = trained
    hub = FakeHub()
    url = hub.start()
    try:
        env = {"HF_ENDPOINT": url, "HF_TOKEN": hub.token, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf")}
        out = tmp_path / "pushed"
        proc = studio_in(run_dir, "export", run_dir.name, "--out", str(out), "--push", "me/tiny-adapter", env=env)
        assert proc.returncode == 0, proc.stderr
        assert f"pushed to {url}/me/tiny-adapter" in proc.stdout
        sent = hub.repos["me/tiny-adapter"].files
        local = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
        assert set(local) <= set(sent) and all(sent[name] == data for name, data in local.items())
        assert not any(hub.token.encode() in data for data in sent.values())
        hub.reject_commit = (400, "Invalid metadata in README.md")
        again = studio_in(run_dir, "export", run_dir.name, "--out", str(tmp_path / "refused"), "--push",
                          "me/tiny-2", env=env)
        assert again.returncode != 0 and "Traceback" not in again.stderr and "push failed" in again.stderr
        assert (tmp_path / "refused" / "README.md").is_file()
    finally:
        hub.stop()
