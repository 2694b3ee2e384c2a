"""The transformers versions users get: the suite runs on the newest release pyproject.toml allows (what a
fresh install gets); this runs the anatomy and one step of every family on the oldest it allows, installed
beside it (pip --target, on PYTHONPATH, nothing else changed). A release in the range that breaks studio's
counts or training fails here before a user meets it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from waiting import DEADLINE_S

REPO = Path(__file__).resolve().parent.parent
CONFIGS = Path(__file__).parent / "data" / "configs"


def oldest_allowed() -> str:
    spec = re.search(r'"transformers>=([0-9.]+)', (REPO / "pyproject.toml").read_text())
    assert spec, "pyproject.toml names no lower bound for transformers"
    return spec.group(1)


@pytest.fixture(scope="module")
def oldest(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The oldest transformers allowed, installed into a folder of its own (skipped, saying why, where pip
    cannot fetch it)."""
    version = oldest_allowed()
    target = tmp_path_factory.mktemp("transformers-oldest")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                           f"transformers=={version}.*"], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.skip(f"pip cannot install transformers {version} here: {proc.stderr.strip().splitlines()[-1:]}")
    return version, target


def anatomies(configs: list[Path], pythonpath: str | None) -> list[dict]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    proc = subprocess.run([sys.executable, "-m", "studio.anatomy", *map(str, configs)], capture_output=True,
                          text=True, env=env, timeout=DEADLINE_S * 4)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_the_anatomy_is_the_same_on_the_oldest_transformers_allowed(oldest: tuple[str, Path],
                                                                    tmp_path: Path) -> None:
    from studio.planning.catalog import catalog_models

    version, target = oldest
    configs = []
    named = {s.id.removeprefix("builtin:"): s.config for s in catalog_models() if s.id.startswith("builtin:tiny-")}
    named["nemotron-h-8b"] = json.loads((CONFIGS / "nemotron-h-8b-base.json").read_text())
    for name, config in named.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(config))
        configs.append(folder / "config.json")
    newest, old = anatomies(configs, None), anatomies(configs, str(target))
    assert all(a["anatomy"]["transformers"].startswith(version) for a in old if "anatomy" in a), old[0]
    for new, before in zip(newest, old):
        assert "anatomy" in before, (before["config"], before.get("error"))
        n, o = new["anatomy"], before["anatomy"]
        assert (o["total_params"], o["lora_per_rank"]["total"], o["lora_targets"], o["head_dim"]) == \
            (n["total_params"], n["lora_per_rank"]["total"], n["lora_targets"], n["head_dim"]), new["config"]


@pytest.mark.slow
def test_every_family_trains_a_lora_step_on_the_oldest_transformers_allowed(oldest: tuple[str, Path]) -> None:
    """test_families.py's one LoRA step of each family, run by pytest with the oldest release first on the path
    (the trainer it calls imports that one); QLoRA and full load the model the same way."""
    version, target = oldest
    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                           str(Path(__file__).parent / "test_families.py"), "-k", "one_step and lora and not qlora"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=DEADLINE_S * 20)
    assert proc.returncode == 0, proc.stdout[-4000:]
    check = subprocess.run([sys.executable, "-c", "import transformers; print(transformers.__version__)"],
                           capture_output=True, text=True, env=env)
    assert check.stdout.strip().startswith(version)
