from __future__ import annotations

import json
from studio.cli import main
from studio.events import EventWriter
from studio.history import correction_for, save_estimate
from studio.runs import create_run


def fake_gpu_run(estimated: float, measured: float) -> None:
    run = create_run('[data]\npath = "x.jsonl"\n', "fake")
    save_estimate(run, {"gpu": "RTX 4090", "method": "lora", "peak_reserved_gib": estimated, "tokens_per_s": 1000})
    w = EventWriter(run.events_path)
    w.write("end", status="completed", gpu_mem_peak_reserved_gib=[measured], train_tokens_per_s=900.0)
    w.close()


def test_runs_on_this_machine_correct_the_estimate(capsys) -> None:
    assert correction_for("RTX 4090", "lora") is None
    fake_gpu_run(10.0, 11.0)
    fake_gpu_run(10.0, 12.0)
    fake_gpu_run(10.0, 11.5)
    c = correction_for("RTX 4090", "lora")
    assert c == {"vram_factor": 1.15, "runs": 3, "gpu": "RTX 4090", "method": "lora"}
    assert correction_for("RTX 4090", "qlora") is None and correction_for("A10G", "lora") is None
    assert main(["estimate", "--model", "llama-3.1-8b", "--gpu", "RTX 4090", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["machine_correction"]["vram_factor"] == 1.15
    assert out["peak_vram_gib"] > 0
    assert main(["estimate", "--model", "llama-3.1-8b", "--gpu", "RTX 4090"]) == 0
    assert "corrected x1.150 from 3 run(s)" in capsys.readouterr().out


def test_the_advisor_uses_the_machine_corrections(capsys) -> None:
    for _ in range(2):
        fake_gpu_run(10.0, 13.0)  # this machine measures 30% above the estimate for LoRA on a 4090
    assert main(["suggest", "--model", "llama-3.1-8b", "--gpu", "RTX 4090", "--json"]) == 0
    corrected = json.loads(capsys.readouterr().out)
    assert main(["suggest", "--model", "llama-3.1-8b", "--gpu", "RTX 4090"]) == 0
    assert "corrected by runs measured on this machine: lora x1.30" in capsys.readouterr().out
    from studio.advisor import Target, suggest_method
    from studio.catalog import lookup_gpu, lookup_model

    gpu = lookup_gpu("RTX 4090")
    plain = suggest_method(lookup_model("llama-3.1-8b"), [Target(gpu.name, gpu.memory_gib, gpu.memory_gib, gpu)])
    lora_plain = plain.peak_vram_gib if plain.method == "lora" else next(
        a["peak_vram_gib"] for a in plain.alternatives if a["method"] == "lora")
    lora_corrected = corrected["peak_vram_gib"] if corrected["method"] == "lora" else next(
        a["peak_vram_gib"] for a in corrected["alternatives"] if a["method"] == "lora")
    assert lora_corrected > lora_plain
