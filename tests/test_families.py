"""Every family studio claims trains: its built-in tiny model (builtin:tiny-<family>, random weights built from
the family's own config in transformers) with LoRA, QLoRA and full fine-tuning.

The fast set runs one optimizer step of each in this process (the trainer's own `train_run`, real files,
the real model): the trainable count PEFT reports must be the estimator's, exactly; after LoRA, a merged
export and a generation as `studio chat` loads it. The slow set runs a short real run of four kinds of family
through the CLI, then what users do next: the chat-template preview, the packing check, a merged export and
`studio chat`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import DEMO_DATA, studio, write_profile
from studio.planning.catalog import catalog_models, lookup_model
from studio.planning.estimate import lora_params
from studio.planning.plan import plan_run
from studio.planning.record import read_plan
from studio.profiles.profile import load_profile
from studio.runs.events import End, Start, read_events
from studio.runs.folder import create_run
from studio.runs.launcher import write_plan_files
from studio.hardware import Inventory

FAMILIES = [s.id.removeprefix("builtin:tiny-") for s in catalog_models() if s.id.startswith("builtin:tiny-")]
METHODS = ("lora", "qlora", "full")


def family_profile(path: Path, family: str, method: str, **train: object) -> Path:
    spec = lookup_model(f"builtin:tiny-{family}")
    # PEFT's adapters on fused expert weights take no dropout (the plan says so; see test_moe_dropout...).
    dropout = 0.0 if spec.anatomy and spec.anatomy.experts_targeted else 0.05
    return write_profile(path, DEMO_DATA, model={"name": f"builtin:tiny-{family}"},
                         method={"type": method, "rank": 8, "alpha": 16.0, "dropout": dropout},
                         data={"max_length": 64}, train={"max_steps": 1, "batch_size": 4, "save_steps": 100, **train})


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("family", FAMILIES)
def test_one_step_of_each_family_and_method(tmp_path: Path, family: str, method: str) -> None:
    from studio.trainer.main import train_run
    from studio.trainer.stop import StopRequest

    profile = load_profile(family_profile(tmp_path / "p.toml", family, method))
    plan = plan_run(profile, Inventory([], reason="the CPU"))
    run = create_run(profile.to_toml(), f"{family}-{method}")
    write_plan_files(run, plan.record())
    assert train_run(run.dir, stop=StopRequest()) == 0, (run.dir / "trainer.log").read_text()[-3000:]
    events = read_events(run.events_path)
    end = [e for e in events if isinstance(e, End)][-1]
    start = [e for e in events if isinstance(e, Start)][-1]
    assert end.status == "completed" and end.step == 1, end
    if method != "full":
        assert start.trainable_params == plan.memory.trainable_params == lora_params(plan.model, plan.setup), \
            (start.trainable_params, plan.memory.trainable_params)
    if method == "lora":  # what users do next, in this process: a merged export, then the chat's generation
        from studio.generate.server import DEFAULTS, Models
        from studio.trainer.export import export

        out = tmp_path / "merged"
        assert export(run.dir, out, merge_it=True) and (out / "config.json").is_file()
        models = Models(run, None, "tuned")
        done = models.generate(0, "tuned", models.prompt_ids("What is 2 plus 2?", None),
                               {**DEFAULTS, "temperature": 0.0, "max_new_tokens": 4})
        assert done["tokens"] > 0, done


def test_moe_dropout_is_refused_up_front_where_peft_cannot(tmp_path: Path) -> None:
    moe = [f for f in FAMILIES if (a := lookup_model(f"builtin:tiny-{f}").anatomy) and a.experts_targeted]
    assert moe
    path = family_profile(tmp_path / "p.toml", moe[0], "lora")
    text = path.read_text().replace("dropout = 0.0", "dropout = 0.1")
    path.write_text(text)
    proc = studio("run", str(path))
    assert proc.returncode == 2 and "method.dropout" in proc.stderr and "experts" in proc.stderr, proc.stderr
    assert not list((Path(studio_home()) / "runs").glob("*")) if (Path(studio_home()) / "runs").exists() else True


def studio_home() -> str:
    import os

    return os.environ["STUDIO_HOME"]


# Through the CLI, real processes each: a dense model, a multimodal wrapper, experts, a hybrid of attention and
# state-space layers. Every family's merged export and generation is checked in the fast set above.
CLI_FAMILIES = [f for f in ("llama", "gemma3-vision", "qwen3-moe", "nemotron-h") if f in FAMILIES]


@pytest.mark.slow
@pytest.mark.parametrize("family", CLI_FAMILIES)
def test_a_short_run_of_each_family_then_preview_export_and_chat(tmp_path: Path, family: str) -> None:
    path = family_profile(tmp_path / "p.toml", family, "lora", max_steps=6, logging_steps=1)
    data = json.loads(studio("run", str(path), "--json").stdout.strip().splitlines()[-1])
    assert data["status"] == "completed", data
    run_dir = Path(data["dir"])
    packing = read_plan(run_dir / "plan.json").trained.decision("data.packing")  # what the trainer trained
    assert packing.reason and not packing.pending  # decided, and checked on the real model when on
    preview = studio("profile", "preview", str(path), "--rows", "1")
    assert preview.returncode == 0 and "trained" in preview.stdout.lower(), preview.stdout + preview.stderr
    out = tmp_path / "merged"
    exported = studio("export", run_dir.name, "--out", str(out), "--merge")
    assert exported.returncode == 0 and (out / "config.json").is_file(), exported.stderr
    chat = studio("chat", run_dir.name, "--prompt", "What is 2 plus 2?", "--max-new-tokens", "4", "--json")
    assert chat.returncode == 0, chat.stderr
    assert json.loads(chat.stdout.strip().splitlines()[-1])["tokens"]["tuned"] > 0
