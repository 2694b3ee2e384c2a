"""One validated record per run: every change to a profile passes the field's rules (a file's, a flag's, a
fix's), and the plan a run was started with is a typed record the trainer trains."""

from __future__ import annotations


import pytest

from studio.cli import main
from studio.paths import runs_dir
from studio.profiles.profile import Profile, ProfileError, with_changes


@pytest.mark.parametrize("argv, field", [
    (["estimate", "--model", "llama-3.1-8b", "--gpu", "RTX 4090", "--rank", "-5"], "method.rank"),
    (["estimate", "--model", "llama-3.1-8b", "--gpu", "RTX 4090", "--batch", "0"], "train.batch_size"),
    (["estimate", "--model", "llama-3.1-8b", "--gpu", "RTX 4090", "--batch", "100000"], "train.batch_size"),
    (["estimate", "--model", "llama-3.1-8b", "--gpu", "RTX 4090", "--seq-len", "-1"], "data.max_length"),
    (["suggest", "tiny-demo", "--gpu", "RTX 4090", "--rank", "0"], "method.rank"),
    (["probe", "tiny-demo", "--batch", "-3"], "train.batch_size"),
    (["run", "tiny-demo", "--max-steps", "-1"], "train.max_steps"),
], ids=["rank", "batch-0", "batch-huge", "seq-len", "suggest-rank", "probe-batch", "run-steps"])
def test_bad_values_on_the_command_line_are_refused_before_anything_runs(
        argv: list[str], field: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert field in err and "Traceback" not in err
    assert not runs_dir().exists() or not any(runs_dir().iterdir())  # no run folder, no process


def test_every_change_passes_the_field_rules_and_the_cross_checks() -> None:
    base = Profile()
    with pytest.raises(ProfileError, match="method.rank: must be >= 1"):
        with_changes(base, {"method.rank": -5})
    with pytest.raises(ProfileError, match="hardware.main_address"):
        with_changes(base, {"hardware.num_machines": 2})
    with pytest.raises(KeyError):
        with_changes(base, {"train.batchsize": 2})
    assert with_changes(base, {"train.batch_size": 2}).train.batch_size == 2
