"""Any model a user names: a Hub id resolved online through the real huggingface_hub client (against a local
server on 127.0.0.1 posing as the Hub, HF_ENDPOINT pointing at it), a local folder, and families studio
has no word of. Parameter counts are checked against the model built by transformers itself in this
process, and the LoRA count against what PEFT itself reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub_server import FakeHub
from waiting import DEADLINE_S

# Families named nowhere in studio: their layout must come from transformers' own code.
STARCODER2 = {"model_type": "starcoder2", "hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 6,
              "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 49152, "use_bias": True,
              "tie_word_embeddings": True}
NEMOTRON = {"model_type": "nemotron", "hidden_size": 384, "intermediate_size": 1536, "num_hidden_layers": 4,
            "num_attention_heads": 6, "num_key_value_heads": 2, "vocab_size": 32000, "head_dim": 64}
COHERE = {"model_type": "cohere", "hidden_size": 512, "intermediate_size": 1408, "num_hidden_layers": 5,
          "num_attention_heads": 8, "num_key_value_heads": 8, "vocab_size": 25600, "use_qk_norm": True}


def run_studio(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "studio", *args], capture_output=True, text=True, env=env,
                          timeout=DEADLINE_S)


def counted_by_transformers(config: dict, rank: int = 16) -> tuple[int, int]:
    """(total parameters, PEFT's all-linear LoRA trainable parameters at `rank`) of the model transformers and
    PEFT themselves build from `config` (on the meta device)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = dict(config)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(fields.pop("model_type"), **fields))
        total = sum(p.numel() for p in model.parameters())
        peft = get_peft_model(model, LoraConfig(r=rank, target_modules="all-linear", task_type="CAUSAL_LM"))
    trainable, _ = peft.get_nb_trainable_parameters()
    return total, trainable


@pytest.fixture
def hub(tmp_path: Path):
    fake = FakeHub()
    fake.add("acme/Nova-3B", STARCODER2, params=None)
    fake.add("acme/Gated-4B", NEMOTRON, gated=True)
    fake.add("acme/Nova-GGUF", None, extra={"nova.Q4_K_M.gguf": b"GGUF"})
    fake.add("acme/Custom-7B", {"model_type": "acme_custom", "hidden_size": 4096, "num_hidden_layers": 32,
                                "num_attention_heads": 32, "vocab_size": 32000, "auto_map": {}},
             params=7_000_000_000)
    url = fake.start()
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_TOKEN")}
    env.update(HF_ENDPOINT=url, HF_HOME=str(tmp_path / "hf"))  # no stored login: a token only when a test sets one
    yield fake, env
    fake.stop()


def estimate_json(*args: str, env: dict[str, str]) -> dict:
    proc = run_studio("estimate", *args, "--gpu", "RTX 4090", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_a_hub_id_of_an_unknown_family_is_fetched_counted_exactly_and_cached(hub) -> None:
    fake, env = hub
    result = estimate_json("--model", "acme/Nova-3B", "--method", "lora", env=env)
    total, trainable = counted_by_transformers(STARCODER2)
    assert result["total_params"] == total and result["trainable_params"] == trainable
    assert result["exact_layout"] is True
    assert any(r.endswith("/resolve/main/config.json") for r in fake.requests)
    assert not any("safetensors\"" in r or r.endswith(".safetensors") for r in fake.requests)  # never the weights
    # The next start is offline and instant: the config and the anatomy are cached in the studio home.
    offline = dict(env, HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9")
    again = estimate_json("--model", "acme/Nova-3B", "--method", "lora", env=offline)
    assert again["total_params"] == total


@pytest.mark.slow
def test_a_gated_model_says_to_accept_the_licence_then_works_with_a_token(hub) -> None:
    fake, env = hub
    refused = run_studio("estimate", "--model", "acme/Gated-4B", "--gpu", "RTX 4090", env=env)
    assert refused.returncode == 2
    assert "gated" in refused.stderr and "accept" in refused.stderr and "HF_TOKEN" in refused.stderr
    assert "Traceback" not in refused.stderr
    result = estimate_json("--model", "acme/Gated-4B", "--method", "qlora", env=dict(env, HF_TOKEN=fake.token))
    assert result["total_params"] == counted_by_transformers(NEMOTRON)[0]


@pytest.mark.slow
def test_missing_repo_offline_no_config_and_a_bad_revision_each_say_what_to_do(hub) -> None:
    _, env = hub
    missing = run_studio("estimate", "--model", "acme/Nova-3b-instrcut", "--gpu", "RTX 4090", env=env)
    assert missing.returncode == 2 and "not found on the Hub" in missing.stderr and "acme/Nova-3B" in missing.stderr
    offline = run_studio("estimate", "--model", "acme/Other-1B", "--gpu", "RTX 4090",
                         env=dict(env, HF_HUB_OFFLINE="1"))
    assert offline.returncode == 2 and "HF_HUB_OFFLINE" in offline.stderr and "auth login" not in offline.stderr
    gguf = run_studio("estimate", "--model", "acme/Nova-GGUF", "--gpu", "RTX 4090", env=env)
    assert gguf.returncode == 2 and "no config.json" in gguf.stderr
    revision = run_studio("estimate", "--model", "acme/Nova-3B", "--revision", "v9", "--gpu", "RTX 4090", env=env)
    assert revision.returncode == 2 and "revision" in revision.stderr
    for proc in (missing, offline, gguf, revision):
        assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_model_transformers_cannot_build_gets_an_approximate_estimate_from_its_reported_size(hub) -> None:
    _, env = hub
    result = estimate_json("--model", "acme/Custom-7B", "--method", "qlora", env=env)
    assert result["exact_layout"] is False
    assert any("approximate" in note for note in result["notes"])
    assert 0.9 < result["total_params"] / 7e9 < 1.1


@pytest.mark.slow
@pytest.mark.parametrize("config", [STARCODER2, NEMOTRON, COHERE], ids=["starcoder2", "nemotron", "cohere"])
def test_a_local_folder_of_any_family_is_exact(tmp_path: Path, config: dict) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    result = estimate_json("--model", str(folder), "--method", "lora", env=dict(os.environ))
    total, trainable = counted_by_transformers(config)
    assert (result["total_params"], result["trainable_params"]) == (total, trainable)
