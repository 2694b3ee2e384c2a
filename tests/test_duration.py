"""How long a run takes: steps from max_steps or from the epochs over the data, times the real tokens
of a step, over the estimated tokens per second."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from studio.paths import bundled_profiles_dir
from studio.planning.decisions import DataShape
from studio.planning.duration import human_seconds, run_duration
from studio.planning.inventory import described_inventory
from studio.planning.plan import plan_run
from studio.profiles.profile import load_profile, with_changes

SHAPE = DataShape(rows=1000, mean_tokens=200.0, p95_tokens=400.0, fill=0.5)


def plan(changes: dict, data: DataShape | None = SHAPE):
    profile = with_changes(load_profile(bundled_profiles_dir() / "llama-3.1-8b-qlora-12gb.toml"), changes)
    return plan_run(profile, described_inventory("1x RTX 4090", source="test"), data=data)


def test_max_steps_sets_the_steps_and_the_data_does_not() -> None:
    p = plan({"train.max_steps": 60, "train.batch_size": 2, "train.grad_accum": 4, "data.packing": False,
              "data.max_length": 1024})
    d = run_duration(p)
    assert d and d.from_max_steps and d.steps == 60
    assert d.tokens == pytest.approx(60 * 2 * 4 * 200)
    assert d.seconds == pytest.approx(d.tokens / p.speed.tokens_per_s)


def test_epochs_over_the_data_without_max_steps() -> None:
    p = plan({"train.max_steps": 0, "train.epochs": 2.0, "train.batch_size": 4, "train.grad_accum": 2,
              "data.packing": False, "data.max_length": 1024})
    d = run_duration(p)
    assert d and not d.from_max_steps and d.steps == math.ceil(1000 * 2 / 8)


def test_packed_rows_fill_their_sequences() -> None:
    p = plan({"train.max_steps": 0, "train.epochs": 1.0, "train.batch_size": 2, "train.grad_accum": 1,
              "data.packing": True, "data.max_length": 1000})
    d = run_duration(p)
    # 1000 rows x 200 tokens = 200k tokens in sequences of ~980: about 204 sequences, 2 a step
    assert d and 100 <= d.steps <= 103


def test_no_time_without_steps_or_data() -> None:
    assert run_duration(plan({"train.max_steps": 0}, data=None)) is None
    p = plan({"train.max_steps": 10})
    assert run_duration(replace(p, speed=None)) is None


def test_human_seconds() -> None:
    assert [human_seconds(s) for s in (5, 600, 7200, 5 * 86400)] == ["5 s", "10 min", "2.0 h", "5.0 days"]
