from __future__ import annotations

import json
import re

import pytest

from studio.cli import main
from studio.paths import bundled_profiles_dir
from studio.hardware import GpuInfo
from studio.planning.advisor import review_profile, suggest_method
from studio.planning.catalog import lookup_gpu, lookup_model
from studio.planning.inventory import planning_inventory
from studio.planning.plan import SAFETY
from studio.profiles.profile import load_profile


def target(name: str, free: float | None = None, index: int = 0) -> GpuInfo:
    """A GPU of the catalog as the inventory would list it (all its memory free, unless `free` says)."""
    spec = lookup_gpu(name)
    return GpuInfo(index=index, name=spec.name, memory_total_gib=spec.memory_gib,
                   memory_free_gib=free if free is not None else spec.memory_gib, bf16=spec.bf16)


def test_suggestion_never_exceeds_the_safety_margin() -> None:
    for model in ("meta-llama/Llama-3.1-8B", "qwen2.5-7b", "gemma-2-9b", "phi-3-mini", "llama-3.2-1b"):
        for gpu in ("RTX 3060", "RTX 4090", "A100 40GB", "H100 80GB"):
            t = target(gpu)
            s = suggest_method(lookup_model(model), [t], seq_len=1024)
            if s.fits:
                assert s.peak_vram_gib <= SAFETY * t.memory_free_gib, (model, gpu)


def test_bigger_cards_get_better_methods() -> None:
    spec = lookup_model("meta-llama/Llama-3.1-8B")
    assert suggest_method(spec, [target("RTX 3060")]).method == "qlora"
    assert suggest_method(spec, [target("RTX 4090")]).method in ("lora", "qlora")
    assert suggest_method(spec, [target("H100 80GB")]).method == "full"


def test_smallest_gpu_that_fits_is_chosen() -> None:
    spec = lookup_model("meta-llama/Llama-3.2-1B")
    gpus = [target("H100 80GB", index=0), target("RTX 4090", index=1), target("A100 40GB", index=2)]
    s = suggest_method(spec, gpus)
    assert s.fits and s.method == "full" and s.gpu == "RTX 4090" and s.gpu_index == 1
    assert any("smallest card" in r for r in s.reasons)


def test_rank_follows_model_size_and_data_size() -> None:
    assert suggest_method(lookup_model("llama-3.1-70b"), [target("H100 80GB")]).settings["method.rank"] == 32
    s = suggest_method(lookup_model("llama-3.1-8b"), [target("RTX 3060")], rows=500)
    assert s.settings["method.rank"] == 8 and s.settings["method.alpha"] == 16


def test_nothing_fits_says_so() -> None:
    s = suggest_method(lookup_model("llama-3.1-405b"), [target("RTX 4090")])
    assert not s.fits and "nothing fits" in s.reasons[0]


def test_review_names_the_fix_and_its_saving() -> None:
    profile = load_profile(bundled_profiles_dir() / "llama-3.1-8b-lora-24gb.toml")
    small = review_profile(profile, planning_inventory("RTX 3060"))
    assert not small.fits and small.message.startswith("will run out of memory at ~")
    assert "switch to QLoRA" in small.message and small.fixes[0].fits
    assert small.fixes[0].changes == {"method.type": "qlora", "train.optimizer": "auto"}
    big = review_profile(profile, planning_inventory("RTX 4090"))
    assert big.fits and re.match(r"fits with \d+\.\d GiB to spare", big.message)


@pytest.mark.parametrize("path", sorted(bundled_profiles_dir().glob("*-*gb.toml")), ids=lambda p: p.stem)
def test_bundled_profiles_fit_the_card_they_are_named_for(path) -> None:
    gb = float(re.search(r"-(\d+)gb$", path.stem).group(1))
    review = review_profile(load_profile(path), planning_inventory(vram=gb))
    assert review.fits, review.message


def test_cli_estimate_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", "--model", "meta-llama/Llama-3.1-8B", "--method", "qlora", "--rank", "16",
                 "--target-modules", "q_proj,v_proj", "--batch", "2", "--seq-len", "2048", "--no-grad-ckpt",
                 "--optim", "paged_adamw_8bit", "--dtype", "bf16", "--gpu", "RTX 4090", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("peak_vram_gib", "peak_reserved_gib", "peak_allocated_gib", "breakdown", "trainable_params",
                "total_params", "tokens_per_s"):
        assert key in out
    assert set(out["breakdown"]) >= {"cuda_context", "weights", "trainable", "gradients", "optimizer",
                                     "activations", "logits", "overhead"}
    assert out["setup"]["targets"] == ["q_proj", "v_proj"] and out["setup"]["grad_ckpt"] is False


def test_cli_suggest_json_and_fake_inventory(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STUDIO_GPUS", "A100 80GB, RTX 4090")
    assert main(["gpus", "--json"]) == 0
    inv = json.loads(capsys.readouterr().out)
    assert [g["name"] for g in inv["gpus"]] == ["A100 80GB", "RTX 4090"] and inv["source"] == "STUDIO_GPUS"
    assert main(["suggest", "--model", "qwen2.5-7b", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    for key in ("method", "fits", "peak_vram_gib", "gpu", "settings", "alternatives", "reasons"):
        assert key in s
    assert all({"method", "fits", "peak_vram_gib"} <= set(a) for a in s["alternatives"])


def test_cli_planning_errors_are_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STUDIO_GPUS", raising=False)
    assert main(["estimate", "--model", "nobody/nothing"]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert main(["suggest", "--model", "llama-3.1-8b", "--gpu", "Voodoo 3"]) == 2
    assert "unknown GPU" in capsys.readouterr().err
    assert main(["gpus"]) == 0  # no GPU here is not an error


def test_sharding_over_several_gpus_when_one_is_not_enough() -> None:
    spec = lookup_model("llama-3.1-70b")
    gpus = [target("RTX 4090", index=i) for i in range(8)]
    s = suggest_method(spec, gpus, seq_len=1024)
    assert s.fits and s.settings["hardware.strategy"] == "fsdp" and 2 <= int(s.settings["hardware.gpus"]) <= 8
    assert s.peak_vram_gib <= SAFETY * 23.99
    assert "sharded with FSDP" in s.reasons[0]


def test_a_suggestion_is_dotted_profile_keys_that_apply_to_a_profile(capsys) -> None:
    from studio.profiles.library import profile_path
    from studio.profiles.profile import Profile, load_profile, with_changes

    s = suggest_method(lookup_model("llama-3.1-8b"), [target("RTX 4090")], seq_len=2048)
    applied = with_changes(Profile(), s.settings)
    assert applied.method.type == s.method and applied.train.batch_size == s.settings["train.batch_size"]
    assert main(["suggest", "--model", "llama-3.1-8b", "--gpu", "RTX 4090", "--save", "mine", "--json"]) == 0
    out = capsys.readouterr().out
    suggested = json.loads(out[out.index("{"):])["settings"]
    saved = load_profile(profile_path("mine"))
    assert saved.model.name == "llama-3.1-8b" and saved.method.type == suggested["method.type"]
    assert saved.train.batch_size == suggested["train.batch_size"] and "studio run mine" in out


def test_probe_refuses_a_model_too_big_for_ram_on_the_cpu(capsys, monkeypatch) -> None:
    import collections

    import psutil

    monkeypatch.delenv("STUDIO_GPUS", raising=False)
    memory = collections.namedtuple("memory", "available total")
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory(24 * 2**30, 24 * 2**30))
    assert main(["probe", "llama-3.1-8b-lora-24gb"]) == 2
    err = capsys.readouterr().err
    assert "needs about" in err and "GiB of RAM" in err and "studio estimate --model" in err
