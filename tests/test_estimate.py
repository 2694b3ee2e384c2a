from __future__ import annotations

import pytest

from studio.planning.catalog import CatalogError, lookup_gpu, lookup_model
from studio.planning.estimate import EstimateError, Setup, estimate_memory, estimate_speed, lora_params, quant_bits
from studio.planning.reference import default_reference_csv, error_summary, load_measurements, relative_error


def test_estimator_error_on_every_usable_hf_row() -> None:
    """Like with like: allocated vs allocated, reserved vs reserved, nvidia-smi vs peak_vram_gib."""
    path = default_reference_csv()
    assert path is not None
    measurements, skipped = load_measurements(path)
    assert len(measurements) >= 40
    assert all(m.row["stack"] == "hf" for m in measurements)
    errors = [relative_error(m) for m in measurements]
    summary = error_summary(errors)
    worst = sorted(zip(errors, measurements), key=lambda x: -abs(x[0]))[:5]
    detail = "; ".join(f"row {m.id} {m.kind} {e * 100:+.1f}%" for e, m in worst)
    assert summary["median_abs"] <= 0.10, f"median {summary['median_abs']:.3f}; worst: {detail}"
    assert summary["p90_abs"] <= 0.20, f"p90 {summary['p90_abs']:.3f}; worst: {detail}"


def test_lora_parameter_count_matches_peft_exactly() -> None:
    # PEFT MetaMathQA: Llama-3.2-3B, r=32 on q_proj,v_proj -> 9,175,040 trainable
    spec = lookup_model("meta-llama/Llama-3.2-3B")
    assert lora_params(spec, Setup(rank=32, targets=("q_proj", "v_proj"))) == 9_175_040
    # litgpt: Llama-2-7B r=8 on q,v -> 4,194,304
    assert lora_params(lookup_model("llama-2-7b"), Setup(rank=8, targets=("q_proj", "v_proj"))) == 4_194_304


def test_nf4_double_quant_bits() -> None:
    assert quant_bits(Setup(method="qlora", double_quant=True)) == pytest.approx(4.127, abs=1e-3)
    assert quant_bits(Setup(method="qlora", double_quant=False)) == 4.5


def test_methods_order_and_breakdown_adds_up() -> None:
    spec = lookup_model("meta-llama/Llama-3.1-8B")
    base = Setup(batch=1, seq_len=1024, grad_ckpt=True)
    full = estimate_memory(spec, Setup(method="full", batch=1, seq_len=1024))
    lora = estimate_memory(spec, base)
    qlora = estimate_memory(spec, Setup(method="qlora", batch=1, seq_len=1024, optimizer="paged_adamw_8bit"))
    assert qlora.peak_vram_gib < lora.peak_vram_gib < full.peak_vram_gib
    assert lora.breakdown["weights"] == pytest.approx(8.03e9 * 2 / 2**30, rel=0.01)
    assert full.trainable_params == full.total_params and lora.trainable_params < 0.01 * lora.total_params
    assert set(lora.breakdown) == {"cuda_context", "weights", "trainable", "gradients", "optimizer",
                                   "activations", "logits", "overhead"}
    assert lora.peak_allocated_gib <= lora.peak_reserved_gib < lora.peak_vram_gib


def test_memory_grows_with_tokens_and_checkpointing_saves_it() -> None:
    spec = lookup_model("mistral-7b")
    def vram(seq_len: int, ckpt: bool) -> float:
        return estimate_memory(spec, Setup(seq_len=seq_len, grad_ckpt=ckpt)).peak_vram_gib

    assert vram(512, False) < vram(4096, False)
    assert vram(512, True) < vram(4096, True) < vram(4096, False)


@pytest.mark.parametrize("stage,expected", [
    ("deepspeed-zero1", lambda n: 2 + 2 + 12 / n),
    ("deepspeed-zero2", lambda n: 2 + (2 + 12) / n),
    ("deepspeed-zero3", lambda n: (2 + 2 + 12) / n),
])
def test_zero_stages_match_the_paper(stage, expected) -> None:
    """Rajbhandari et al. 2020, figure 1: bytes per parameter per GPU for mixed-precision Adam."""
    spec = lookup_model("meta-llama/Llama-2-7b-hf")
    for n in (1, 4, 64):
        est = estimate_memory(spec, Setup(method="full", dtype="bf16", batch=1, seq_len=64, n_gpus=n,
                                          strategy=stage if n > 1 else "deepspeed-zero1"))
        b = est.breakdown
        per_param = (b["weights"] + b["gradients"] + b["optimizer"]) * 2**30 / spec.total_params
        gathered = 0.0 if stage != "deepspeed-zero3" or n == 1 else 0.05  # one gathered layer
        assert per_param == pytest.approx(expected(n) + gathered, abs=0.05 + gathered), (stage, n)


def test_fsdp_shards_weights_gradients_and_optimizer() -> None:
    # FSDP FULL_SHARD of a pure-bf16 model: 2 + 2 + 4 bytes per parameter, divided by N.
    spec = lookup_model("meta-llama/Llama-2-7b-hf")
    one = estimate_memory(spec, Setup(method="full", dtype="bf16", batch=1, seq_len=128))
    eight = estimate_memory(spec, Setup(method="full", dtype="bf16", batch=1, seq_len=128, n_gpus=8,
                                        strategy="fsdp"))
    states = lambda e: e.breakdown["weights"] + e.breakdown["gradients"] + e.breakdown["optimizer"]  # noqa: E731
    assert states(eight) == pytest.approx(states(one) / 8, rel=0.15)


def test_unknown_target_module_names_the_field() -> None:
    with pytest.raises(EstimateError, match="method.target_modules: c_attn not in"):
        estimate_memory(lookup_model("llama-2-7b"), Setup(targets=("c_attn",)))


def test_speed_is_positive_and_faster_on_faster_gpus() -> None:
    spec = lookup_model("llama-3.1-8b")
    setup = Setup(batch=4, seq_len=2048)
    a100 = estimate_speed(spec, setup, lookup_gpu("A100-80GB"))
    h100 = estimate_speed(spec, setup, lookup_gpu("H100 80GB"))
    assert 0 < a100.tokens_per_s < h100.tokens_per_s


def test_catalog_lookups() -> None:
    assert lookup_model("META-LLAMA/llama-3.1-8b").id == "meta-llama/Llama-3.1-8B"
    assert lookup_model("qwen2.5-7b").vocab == 152064
    with pytest.raises(CatalogError, match="unknown model"):
        lookup_model("nobody/nothing-7b")
    for name in ("A100-80GB", "a100 80gb", "NVIDIA A100-SXM4-80GB"):
        assert lookup_gpu(name).name == "A100 80GB"
    assert lookup_gpu("NVIDIA A100-SXM4-40GB").name == "A100 40GB"
    assert lookup_gpu("NVIDIA RTX 6000 Ada Generation").name == "RTX 6000 Ada"
    assert lookup_gpu("NVIDIA RTX A6000").name == "RTX A6000"
    with pytest.raises(CatalogError, match="unknown GPU"):
        lookup_gpu("Voodoo 3")


def test_local_config_folder(tmp_path) -> None:
    import json

    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000, "tie_word_embeddings": True}))
    spec = lookup_model(str(tmp_path))
    assert spec.layers == 2 and spec.kv_heads == 2 and spec.tied
    assert spec.total_params == 2 * (256 * 256 * 2 + 256 * 128 * 2 + 3 * 256 * 512) + 1000 * 256 + 5 * 256
