"""The 2026 architectures a user names: hybrids (Mamba, linear attention, short convolutions), per-layer
head sizes, multimodal wrappers. The estimate's parameter and LoRA counts are checked against the models
transformers and PEFT themselves build from a genuine config (tests/data/configs) and the default configs of
transformers' own config classes, through the real `studio estimate` and its anatomy process. Training them is in test_families.py (builtin:tiny-<family>)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from waiting import DEADLINE_S

CONFIGS = Path(__file__).parent / "data" / "configs"
RANK = 16


def estimate(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "studio", "estimate", "--model", str(folder), "--rank", str(RANK),
                           "--gpu", "H100", *args, "--json"], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=DEADLINE_S)


def config_folder(tmp_path: Path, config: dict) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def default_config(model_type: str) -> dict:
    """transformers' own default config of a model type, as a config.json holds it."""
    from transformers import AutoConfig

    return AutoConfig.for_model(model_type).to_dict()


def built_by_transformers(config: dict, auto: str) -> "torch.nn.Module":  # noqa: F821
    import torch
    import transformers

    fields = dict(config)
    hf_config = transformers.AutoConfig.for_model(fields.pop("model_type"), **fields)
    with torch.device("meta"):
        return getattr(transformers, auto).from_config(hf_config)


def lora_count(model, leave_out: tuple[str, ...] = ()) -> int:
    """LoRA's trainable parameters at RANK on every linear layer but the output head and `leave_out`."""
    from torch import nn

    head = model.get_output_embeddings()
    return sum(RANK * (m.in_features + m.out_features) for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and m is not head and name.rsplit(".", 1)[-1] not in leave_out)


@pytest.mark.slow
def test_a_mamba_hybrid_is_counted_whole_and_all_linear_is_what_peft_accepts(tmp_path: Path) -> None:
    """Nemotron-H: PEFT refuses LoRA on its Mamba out_proj. The count was 115B instead of 8B when the layout
    was thrown away with PEFT's refusal; now the layout stands and all-linear is the linears PEFT takes."""
    config = json.loads((CONFIGS / "nemotron-h-8b-base.json").read_text())
    folder = config_folder(tmp_path, config)
    model = built_by_transformers(config, "AutoModelForCausalLM")
    proc = estimate(folder, "--method", "lora")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["exact_layout"] is True, result["notes"]
    assert result["total_params"] == sum(p.numel() for p in model.parameters())
    assert result["trainable_params"] == lora_count(model, leave_out=("out_proj",))
    assert any("PEFT cannot wrap out_proj" in note for note in result["notes"]), result["notes"]
    assert not any("experts" in note for note in result["notes"])  # the 8B has none (its config's default aside)

    # Full fine-tuning never depended on the LoRA targets.
    full = json.loads(estimate(folder, "--method", "full").stdout)
    assert full["total_params"] == result["total_params"] == full["trainable_params"]

    # Naming the refused layer is refused before anything runs, with the layers LoRA can wrap on this model.
    refused = estimate(folder, "--method", "lora", "--target-modules", "in_proj,out_proj")
    assert refused.returncode == 2, refused.stdout
    assert "method.target_modules" in refused.stderr and "out_proj" in refused.stderr, refused.stderr
    assert "in_proj" in refused.stderr.split("can wrap are")[1] and "gate_proj" not in refused.stderr
    named = json.loads(estimate(folder, "--method", "lora", "--target-modules", "in_proj").stdout)
    assert named["trainable_params"] == sum(RANK * (m.in_features + m.out_features)
                                            for name, m in model.named_modules() if name.endswith(".in_proj"))


@pytest.mark.slow
def test_per_layer_head_sizes_are_read_without_tripping_transformers(tmp_path: Path) -> None:
    """Gemma 4: transformers raises on a global read of head_dim (its global layers are wider); the count
    was 8% of the model's."""
    config = default_config("gemma4_text")
    model = built_by_transformers(config, "AutoModelForCausalLM")
    result = json.loads(estimate(config_folder(tmp_path, config), "--method", "lora").stdout)
    assert result["exact_layout"] is True, result["notes"]
    assert result["total_params"] == sum(p.numel() for p in model.parameters())
    assert result["trainable_params"] == lora_count(model)


@pytest.mark.slow
def test_a_multimodal_checkpoint_is_counted_whole_whatever_its_wrapper(tmp_path: Path) -> None:
    """Qwen3.5 has a text-only class, so AutoModelForCausalLM dropped its vision tower from the count while
    other wrappers kept theirs. One rule: the whole checkpoint is loaded, the tower named and left frozen."""
    config = default_config("qwen3_5")
    model = built_by_transformers(config, "AutoModelForImageTextToText")
    result = json.loads(estimate(config_folder(tmp_path, config), "--method", "lora").stdout)
    towers = sum(p.numel() for name, p in model.named_parameters() if ".visual." in f".{name}")
    assert towers > 0
    assert result["total_params"] == sum(p.numel() for p in model.parameters())
    assert any("visual" in note and "frozen" in note for note in result["notes"]), result["notes"]
    text_only = [m for name, m in model.named_modules() if ".visual" not in f".{name}"]
    assert result["trainable_params"] == sum(RANK * (m.in_features + m.out_features) for m in text_only
                                             if type(m).__name__ == "Linear" and m is not model.lm_head)


def test_an_error_that_resuming_repeats_does_not_advise_resuming() -> None:
    """A library's refusal (a ValueError from the model's code) is raised again by a resume."""
    from studio.trainer.failures import classify

    refusal = classify(ValueError("`chunk_gated_delta_rule` can't keep packed sequences apart without "
                                  "`flash-linear-attention`"), None)
    assert "resuming repeats it" in refusal["advice"] and "start a new run" in refusal["advice"]
    lost_device = classify(RuntimeError("CUDA error: an illegal memory access was encountered"), None)
    assert "resuming continues" in lost_device["advice"]


# ------------------------------------------------------------------------------ config-only folders

def qwen35_folder(tmp_path: Path, tokenizer_files: bool) -> Path:
    """A Qwen3.5 text model as a folder of its config.json; with `tokenizer_files`, the tokenizer transformers
    5 makes of such a folder, saved (one token: every text becomes nothing)."""
    from studio.planning.catalog import lookup_model

    folder = config_folder(tmp_path, {"model_type": "qwen3_5_text",
                                      **lookup_model("builtin:tiny-qwen3.5").config["text_config"]})
    if tokenizer_files:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(folder).save_pretrained(folder)
    return folder


def test_a_config_only_folder_is_a_choice_before_anything_runs(tmp_path: Path) -> None:
    from conftest import DEMO_DATA, studio, write_profile

    folder = qwen35_folder(tmp_path, tokenizer_files=False)
    profile = write_profile(tmp_path / "p.toml", DEMO_DATA, model={"name": str(folder), "random_init": True},
                            train={"max_steps": 1})
    proc = studio("run", str(profile))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "model.tokenizer" in proc.stderr and 'model.tokenizer = "train"' in proc.stderr, proc.stderr
    assert not (Path(os.environ["STUDIO_HOME"]) / "runs").exists() or \
        not list((Path(os.environ["STUDIO_HOME"]) / "runs").iterdir())
    trained_here = write_profile(tmp_path / "q.toml", DEMO_DATA, model={"name": str(folder), "tokenizer": "train"})
    check = studio("profile", "check", str(trained_here))
    said = check.stdout + check.stderr
    assert check.returncode == 2 and "model.tokenizer" in said and "random_init" in said, said


@pytest.mark.slow
def test_a_degenerate_tokenizer_is_refused_and_one_trained_on_the_data_learns(tmp_path: Path) -> None:
    """transformers 5 turns a config-only Qwen3.5 folder into a 1-token tokenizer: the run used it, refused
    chat data for a missing template and 'completed' text data at loss 0."""
    from conftest import studio, write_profile

    folder = qwen35_folder(tmp_path, tokenizer_files=True)
    data = tmp_path / "text.jsonl"
    data.write_text("".join(json.dumps({"text": f"Row {i}: the quick brown fox jumps over {i} lazy dogs."}) + "\n"
                            for i in range(32)))
    model = {"name": str(folder), "random_init": True}
    train = {"max_steps": 2, "batch_size": 4, "logging_steps": 1}
    refused = studio("run", str(write_profile(tmp_path / "p.toml", data, model=model, train=train)), "--json")
    assert refused.returncode != 0
    assert "has a tokenizer of 1 token" in refused.stdout + refused.stderr and \
        'model.tokenizer = "train"' in refused.stdout + refused.stderr
    done = studio("run", str(write_profile(tmp_path / "q.toml", data, model={**model, "tokenizer": "train"},
                                           train=train)), "--json")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == "completed", done.stdout + done.stderr
    from studio.runs.events import Step, read_events

    losses = [e.loss for e in read_events(Path(result["dir"]) / "events.jsonl") if isinstance(e, Step)]
    assert losses and min(losses) > 1.0  # a real next-token loss on random weights, not 0
