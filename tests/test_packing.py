"""Fast by default, proven on the tiny model: studio's one tokenization equals TRL's own, padding-free
packing gives every row the loss it has unpacked (and a path that mixes rows is caught), and the
auto rules decide checkpointing, Liger and packing as documented."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import demo_rows
from studio.hardware import GpuInfo
from studio.planning import decisions as rules
from studio.planning.catalog import lookup_model

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from studio.trainer.tiny import build_tiny_model

    folder = tmp_path_factory.mktemp("tiny")
    build_tiny_model(folder, demo_rows(120), seed=3)
    return folder


def chat(r: dict) -> dict:
    return r


FORMATS = {
    "messages": lambda r: r,
    "prompt_completion": lambda r: {"prompt": r["messages"][-2]["content"], "completion": r["messages"][-1]["content"]},
    "text": lambda r: {"text": r["messages"][-2]["content"] + " " + r["messages"][-1]["content"]},
    "chat_prompt_completion": lambda r: {"prompt": r["messages"][:-1], "completion": r["messages"][-1:]},
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_one_tokenization_equals_trls_own(tiny: Path, tmp_path: Path, fmt: str) -> None:
    """studio tokenizes once for its preflight and hands TRL the ids; TRL's labels must come out the same."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from studio.trainer.tokenize import columns, tokenize_rows

    tok = AutoTokenizer.from_pretrained(tiny)
    rows = [FORMATS[fmt](r) for r in demo_rows(24)]
    assistant_only = fmt == "messages"

    completion_only = "prompt" in rows[0]  # as the trainer sets it (studio.trainer.dataset.rows_for_loss)

    def prepared(dataset: Any, assistant_only_loss: bool) -> Any:
        args = SFTConfig(output_dir=str(tmp_path / fmt), max_steps=1, use_cpu=True, bf16=False, report_to=[],
                         max_length=64, assistant_only_loss=assistant_only_loss, completion_only_loss=completion_only)
        trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny), args=args, train_dataset=dataset,
                             processing_class=tok)
        return trainer.train_dataset

    ours_raw = Dataset.from_dict(columns(tokenize_rows(tok, rows, assistant_only)))  # before TRL touches the tokenizer
    theirs = prepared(Dataset.from_list(rows), assistant_only)
    ours = prepared(ours_raw, False)
    assert theirs["input_ids"] == ours["input_ids"]
    assert theirs["labels"] == ours["labels"]
    assert any(-100 in labels for labels in ours["labels"]) == (fmt != "text")


def rows_of(tok: Any, n: int = 5) -> list[list[int]]:
    return [tok.apply_chat_template(r["messages"], tokenize=True, return_dict=False) for r in demo_rows(n)]


def per_row_losses(model: Any, batch: dict[str, Any]) -> list[float]:
    """Mean next-token loss of each row in a batch (padded or packed: rows are split by position id 0)."""
    with torch.no_grad():
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "seq_idx")}
        logits = model(**inputs, use_cache=False).logits
    labels = batch["labels"]
    out = []
    for b in range(logits.shape[0]):
        logp = torch.log_softmax(logits[b, :-1].float(), -1)
        target = labels[b, 1:]
        valid = target != -100
        token_loss = -logp.gather(-1, target.clamp(min=0)[:, None]).squeeze(-1)
        starts = (batch["position_ids"][b] == 0).nonzero().flatten().tolist() + [labels.shape[1]] \
            if "position_ids" in batch else [0, labels.shape[1]]
        for s, e in zip(starts, starts[1:]):
            sel = valid[s:e - 1] if e - 1 > s else valid[s:s]
            if sel.any():
                out.append(float(token_loss[s:e - 1][sel].mean()))
    return out


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_rows_have_their_unpacked_loss(tiny: Path, attention: str) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    tok = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny, attn_implementation=attention).eval()
    examples = [{"input_ids": ids} for ids in rows_of(tok)]
    padded = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id)(examples)
    packed = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id, padding_free=True)(examples)
    unpacked_losses = [per_row_losses(model, {k: v[i:i + 1] for k, v in padded.items()})[0]
                       for i in range(len(examples))]
    assert per_row_losses(model, packed) == pytest.approx(unpacked_losses, abs=1e-5)

    from studio.trainer.packing import packing_is_exact

    exact, why = packing_is_exact(model, rows_of(tok), tok.pad_token_id)
    assert exact, why


def test_a_path_that_mixes_packed_rows_is_caught(tiny: Path) -> None:
    """If position ids are lost (attention without the block mask), rows attend to the row before:
    the loss changes and studio's check refuses to pack."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from studio.trainer.packing import packing_is_exact

    tok = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny)
    forward = model.forward

    def leaky(*args: Any, position_ids: Any = None, **kwargs: Any) -> Any:
        for key in ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k"):
            kwargs.pop(key, None)
        return forward(*args, **kwargs)

    model.forward = leaky
    exact, why = packing_is_exact(model, rows_of(tok), tok.pad_token_id)
    assert not exact and "mixes packed rows" in why


def gpu(free: float) -> GpuInfo:
    return GpuInfo(index=0, name="NVIDIA GeForce RTX 4090", memory_total_gib=24, memory_free_gib=free, bf16=True)


def test_checkpointing_is_on_only_when_the_run_needs_it() -> None:
    spec = lookup_model("llama-3.1-8b")
    assert rules.checkpointing("auto", spec, (gpu(24),), lambda: 12.0, 21.6)[0] is False
    on, why = rules.checkpointing("auto", spec, (gpu(24),), lambda: 30.0, 21.6)
    assert on and "30.0 GiB" in why
    assert rules.checkpointing("auto", None, (gpu(24),), lambda: None, 21.6)[0] is True  # no estimate: safe
    assert rules.checkpointing("auto", spec, (), lambda: 1.0, None)[0] is False          # CPU
    assert rules.checkpointing(True, spec, (gpu(24),), lambda: 1.0, 21.6) == (True, "set in the profile")


def test_liger_is_on_where_it_can_be(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    llama, phi2 = lookup_model("llama-3.1-8b"), lookup_model("microsoft/phi-2")
    assert rules.liger("auto", llama, ())[0] is False
    assert "no kernels" in rules.liger("auto", phi2, (gpu(24),))[1]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert "not installed" in rules.liger("auto", llama, (gpu(24),))[1]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    assert rules.liger("auto", llama, (gpu(24),))[0] is True


def test_packing_when_padding_or_room_would_waste_work() -> None:
    varied = rules.data_shape([30, 900, 120, 60, 2000, 45, 300, 80] * 20, batch=8, max_length=2048)
    assert varied.fill < 0.9 and rules.packing("auto", varied, 2048)[0] is True
    short = rules.data_shape([100] * 160, batch=8, max_length=2048)
    assert short.fill == 1.0 and rules.packing("auto", short, 2048)[0] is True  # room to fill
    full = rules.data_shape([5000] * 160, batch=8, max_length=2048)
    assert rules.packing("auto", full, 2048)[0] is False
    assert rules.packing("auto", None, 2048)[0] is False
    assert rules.packing(False, varied, 2048) == (False, "set in the profile")


def test_the_plan_estimates_the_run_that_will_happen() -> None:
    """Advice uses the same decisions as the run: checkpointing off where it fits, padding counted."""
    from studio.hardware import Inventory
    from studio.planning.plan import plan_run
    from studio.profiles.profile import profile_from_dict

    profile = profile_from_dict({"model": {"name": "llama-3.2-1b"}, "data": {"path": "x.jsonl", "max_length": 1024},
                                 "train": {"batch_size": 8}})
    big = plan_run(profile, Inventory([gpu(80.0)]))
    small = plan_run(profile, Inventory([gpu(12.0)]))
    assert big.setup.grad_ckpt is False and small.setup.grad_ckpt is True
    assert big.decision("train.gradient_checkpointing").value is False
    varied = rules.data_shape([30, 900, 120, 60, 1024, 45, 300, 80] * 20, batch=8, max_length=1024)
    unpacked = plan_run(profile_from_dict({**profile.to_dict(), "data": {"path": "x.jsonl", "max_length": 1024,
                                                                         "packing": False}}),
                        Inventory([gpu(80.0)]), data=varied)
    packed = plan_run(profile, Inventory([gpu(80.0)]), data=varied)
    assert packed.setup.fill == 1.0 and packed.tokens_per_s > unpacked.tokens_per_s * 1.5
