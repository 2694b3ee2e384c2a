from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from studio.planning.catalog import CatalogError, catalog_models, lookup_gpu, lookup_model
from studio.planning.estimate import EstimateError, Setup, estimate_memory, lora_params, quant_bits
from studio.planning.speed import estimate_speed
from studio.planning.reference import (all_measurements, all_speeds, error_summary, held_out, relative_error,
                                       speed_error)


# The targets for studio's own stack, on rows kept out of every fit (reference.held_out).
MEDIAN, WORST, UNDER = 0.05, 0.12, 0.06  # UNDER: see the README (one reserved row sits at -5.8%)
SPEED_MEDIAN = 0.15


def held_out_errors(stack: str) -> tuple[list[float], list[str]]:
    rows = [m for m in all_measurements() if m.setup.stack == stack and held_out(m.row)]
    return [relative_error(m) for m in rows], [f"{m.id} {m.kind}" for m in rows]


def studio_accuracy() -> str | None:
    """None when studio's stack meets its targets on held-out rows and keeps its accuracy on the fit rows."""
    fit = [relative_error(m) for m in all_measurements() if m.setup.stack == "studio" and not held_out(m.row)]
    if error_summary(fit)["median_abs"] > 0.025 or error_summary(fit)["p90_abs"] > 0.08 or min(fit) < -0.03:
        return f"memory on the fit rows: {error_summary(fit)}, lowest {min(fit):+.3f}"
    fit_speed = [speed_error(m) for m in all_speeds() if m.setup.stack == "studio" and not held_out(m.row)]
    if error_summary(fit_speed)["median_abs"] > 0.03 or error_summary(fit_speed)["p90_abs"] > 0.10:
        return f"tokens/s on the fit rows: {error_summary(fit_speed)}"
    errors, names = held_out_errors("studio")
    s = error_summary(errors)
    worst = max(zip(errors, names), key=lambda x: abs(x[0]))
    if s["median_abs"] > MEDIAN or abs(worst[0]) > WORST or min(errors) < -UNDER:
        return f"memory median {s['median_abs']:.3f}, worst {worst[0]:+.3f} ({worst[1]}), lowest {min(errors):+.3f}"
    speeds = [speed_error(m) for m in all_speeds() if m.setup.stack == "studio" and held_out(m.row)]
    if error_summary(speeds)["median_abs"] > SPEED_MEDIAN:
        return f"tokens/s median {error_summary(speeds)['median_abs']:.3f}"
    return None


def test_held_out_accuracy_on_studios_stack() -> None:
    """Fitted on the Llama-3.2-1B runs, judged on Qwen2.5-1.5B, Llama-3.2-3B and the Liger runs (H100)."""
    errors, _ = held_out_errors("studio")
    assert len(errors) >= 6
    assert studio_accuracy() is None, studio_accuracy()


def test_held_out_accuracy_on_the_older_stack() -> None:
    """The published HF runs, fitted without the fms-acceleration benchmark and judged on it."""
    errors, names = held_out_errors("hf-legacy")
    s = error_summary(errors)
    assert len(errors) >= 20 and s["median_abs"] <= 0.12 and s["p90_abs"] <= 0.20, s


@pytest.mark.parametrize("table,stack,key", [
    *(("memory", "studio", k) for k in ("bwd_workspace", "allocator_slack")),
    *(("speed", "studio", k) for k in ("matmul_utilisation", "adapter_bytes", "activation_passes", "launch_us")),
])
def test_a_drifted_constant_fails_the_accuracy_test(table: str, stack: str, key: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The accuracy test can catch a regression: a constant off by 40% either way breaks it."""
    from studio.planning import estimate, speed

    constants = (estimate.CALIBRATION if table == "memory" else speed.SPEED_CALIBRATION)[stack]
    original = constants[key]
    caught = []
    for factor in (0.6, 1.4):
        monkeypatch.setitem(constants, key, original * factor)
        caught.append(studio_accuracy() is not None)
    assert all(caught), f"{key} x0.6 / x1.4 went unnoticed: {caught}"


def test_the_breakdown_adds_up_to_the_peak_and_needs_every_part() -> None:
    """Slack and context are real parts: the figures add up, and neither is zero."""
    spec = lookup_model("meta-llama/Llama-3.1-8B")
    for setup in (Setup(method="lora", batch=2, seq_len=2048), Setup(method="full", batch=1, seq_len=1024),
                  Setup(method="qlora", batch=4, seq_len=4096, optimizer="paged_adamw_8bit")):
        est = estimate_memory(spec, setup)
        parts = est.breakdown
        assert sum(parts.values()) == pytest.approx(est.peak_vram_gib, abs=0.02), (setup.method, parts)
        assert parts["cuda_context"] >= 0.5 and est.peak_reserved_gib > est.peak_allocated_gib * 1.02
        assert est.peak_vram_gib - est.peak_reserved_gib >= parts["cuda_context"] - 0.01


def test_the_safety_margin_decides_what_fits() -> None:
    """A plan fits when its peak is within 90% of the free memory: not 95%, not 85%."""
    from studio.planning.inventory import vram_inventory
    from studio.planning.plan import plan_run
    from studio.profiles.profile import profile_from_dict

    profile = profile_from_dict({"model": {"name": "llama-3.1-8b"}, "method": {"type": "qlora"},
                                 "data": {"path": "x.jsonl"}, "train": {"gradient_checkpointing": True}})
    peak = plan_run(profile, vram_inventory(80)).peak_vram_gib
    assert plan_run(profile, vram_inventory(peak / 0.87)).fits is True
    assert plan_run(profile, vram_inventory(peak / 0.93)).fits is False


FAMILIES = [s.id.removeprefix("builtin:tiny-") for s in catalog_models() if s.id.startswith("builtin:tiny-")]


@pytest.fixture(scope="module")
def autograd_saves(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """What autograd saves per block of every family's tiny model (tests/saved_bytes.py, in processes of its
    own: two at once, each on one thread; tiny models gain nothing from more, and a busy machine's spare core
    no longer stalls torch's threads waiting on each other)."""
    halves = [FAMILIES[0::2], FAMILIES[1::2]]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    logs = tmp_path_factory.mktemp("saved-bytes")

    def start(i: int, families: list[str]) -> subprocess.Popen:
        # into files, not pipes: neither process blocks on a full pipe while the other's is read
        with (logs / f"{i}.out").open("w") as out, (logs / f"{i}.err").open("w") as err:
            return subprocess.Popen([sys.executable, str(Path(__file__).parent / "saved_bytes.py"), *families],
                                    stdout=out, stderr=err, env=env)

    procs = [(start(i, half), i) for i, half in enumerate(halves)]
    saved: dict = {}
    for proc, i in procs:
        assert proc.wait() == 0, (logs / f"{i}.err").read_text()[-3000:]
        saved.update(json.loads((logs / f"{i}.out").read_text().strip().splitlines()[-1])["saved_per_token"])
    return saved


# Blocks the estimator does not count exactly yet: what it misses, and the band of counted / saved it was
# measured in on the CPU (all three methods, 128 to 512 tokens). The band holds the figures as they are: a
# change that moves one out of it fails here, and the note of issue 37 gives them.
NOT_MODELLED = {
    ("lfm2", "conv"): ("the short convolution's gated input and its output", 0.65, 0.85),
    ("qwen3.5", "linear_attention"): ("the gated delta rule's chunked state (torch's fallback kernel)", 0.28, 0.42),
    ("nemotron-h", "mamba"): ("the Mamba-2 scan's chunked states (torch's fallback kernel)", 0.15, 0.30),
    ("nemotron-h", "moe"): ("nothing: frozen, untargeted ungated experts are counted as if trained", 0.90, 1.50),
    ("deepseek-v3", None): ("multi-head latent attention's low-rank norms and split RoPE parts", 0.80, 0.97),
    ("gemma4", "full_attention"): ("the per-layer inputs, and global layers wider than the sliding ones", 0.88, 1.03),
    ("gemma4", "sliding_attention"): ("the per-layer inputs", 0.97, 1.06),
}


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_counted_block_bytes_match_what_autograd_saves(autograd_saves: dict, family: str) -> None:
    """What the estimator counts for one decoder block, against the tensors autograd really saves (hooks, on
    the CPU), in every family studio trains, and in each kind of block a hybrid has: its tiny model through
    PEFT and TRL's fused LM head, like studio's trainer builds it: bytes per token at 128, 256 and 512 tokens
    (what grows with the tokens; the weights, which every matmul saves too, are no extra memory). Dropout is
    0 (the CPU's dropout mask is a float, CUDA's a bool); QLoRA runs the adapters as under CUDA autocast."""
    from studio.planning.estimate import block_saved_bytes

    spec = lookup_model(f"builtin:tiny-{family}")
    assert spec.exact, spec.approximate
    for entry in autograd_saves[family]:
        block = next((b for b in spec.blocks() if b.params == entry["params"]), None)
        assert block is not None, (family, entry["kind"], entry["params"], [b.params for b in spec.blocks()])
        for method, measured in entry["methods"].items():
            for tokens in map(int, measured["saved"]):
                saved = measured["linear"] + measured["quadratic"] * tokens
                setup = Setup(method=method, dropout=0.0, rank=16, batch=1, seq_len=tokens, grad_ckpt=False)
                counted = block_saved_bytes(spec, block, setup)
                if (family, entry["kind"]) in NOT_MODELLED:
                    _, low, high = NOT_MODELLED[family, entry["kind"]]
                    assert low <= counted / saved <= high, (family, entry["kind"], method, tokens, counted, saved)
                else:
                    assert counted == pytest.approx(saved, rel=0.03), (family, entry["kind"], method, tokens, counted, saved)


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
    assert set(lora.breakdown) == {"cuda_context", "weights", "reference", "trainable", "gradients", "optimizer",
                                   "activations", "experts", "logits", "overhead"}
    assert "reference" not in dict(lora.parts())  # shown only when there is one (full DPO or KTO)
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
