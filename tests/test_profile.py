from __future__ import annotations

from pathlib import Path

import pytest
import tomli_w

from studio.cli import main
from studio.paths import bundled_profiles_dir
from studio.profiles.profile import Profile, ProfileError, load_profile, profile_from_dict, save_profile


def problems(raw: dict) -> list[str]:
    with pytest.raises(ProfileError) as e:
        profile_from_dict(raw)
    return e.value.problems


def test_defaults_are_applied() -> None:
    p = profile_from_dict({"data": {"path": "x.jsonl"}})
    assert p.method.type == "lora" and p.method.rank == 16 and p.method.target_modules == ["all-linear"]
    assert p.model.trust_remote_code is False
    assert p.train.learning_rate == 2e-4 and p.optimizer == "adamw"


def test_qlora_optimizer_auto_is_paged_8bit() -> None:
    p = profile_from_dict({"data": {"path": "x.jsonl"}, "method": {"type": "qlora"}})
    assert p.optimizer == "paged_adamw_8bit"


def test_each_problem_names_its_key() -> None:
    found = problems({"data": {"path": "x.jsonl"},
                      "train": {"learning_rate": -1, "batch_size": 0, "scheduler": "cosin"},
                      "method": {"type": "lorra", "rank": "8"}})
    assert "train.learning_rate: must be > 0, got -1" in found
    assert any(p.startswith("train.batch_size: must be >= 1") for p in found)
    assert any(p.startswith("train.scheduler:") and "did you mean 'cosine'" in p for p in found)
    assert any(p.startswith("method.type:") and "did you mean 'lora'" in p for p in found)
    assert any(p.startswith("method.rank: must be an integer") for p in found)
    assert len(found) == 5


def test_unknown_keys_get_a_suggestion() -> None:
    found = problems({"data": {"path": "x.jsonl"}, "train": {"lerning_rate": 1e-4}, "modle": {}})
    assert "train.lerning_rate: unknown key; did you mean 'learning_rate'?" in found
    assert "modle: unknown key; did you mean 'model'?" in found


def test_missing_data_path() -> None:
    assert any(p.startswith("data.path: missing") for p in problems({"model": {"name": "x/y"}}))


def test_roundtrip_through_toml(tmp_path: Path) -> None:
    p = profile_from_dict({"data": {"path": "/d.jsonl"}, "method": {"type": "qlora", "target_modules": ["q_proj"]},
                           "description": "hello"})
    save_profile(p, tmp_path / "p.toml")
    assert load_profile(tmp_path / "p.toml") == p


def test_relative_data_path_is_taken_from_the_profile_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "p.toml").write_text(tomli_w.dumps({"data": {"path": "data/x.jsonl"}}))
    p = load_profile(tmp_path / "sub" / "p.toml")
    assert p.data.path == str(tmp_path / "sub" / "data" / "x.jsonl")


def test_failed_save_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "p.toml"
    target.write_text("# precious\n")

    def boom(self: Profile) -> str:
        raise RuntimeError("disk full")

    monkeypatch.setattr(Profile, "to_toml", boom)
    with pytest.raises(RuntimeError):
        save_profile(profile_from_dict({"data": {"path": "x.jsonl"}}), target)
    assert target.read_text() == "# precious\n"
    assert [f.name for f in tmp_path.iterdir()] == ["p.toml"]


def test_check_cli_reports_problems_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[data]\npath = "x.jsonl"\n[train]\nlearning_rate = -1\nepochz = 2\n')
    assert main(["profile", "check", str(bad)]) == 2
    out = capsys.readouterr().out.splitlines()
    assert f"{bad}: train.learning_rate: must be > 0, got -1" in out
    assert f"{bad}: train.epochz: unknown key; did you mean 'epochs'?" in out


def test_check_cli_broken_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text('[data\npath = "x"\n')
    assert main(["profile", "check", str(bad)]) == 2
    out = capsys.readouterr().out
    assert "not valid TOML" in out and "line 1" in out and "Traceback" not in out


def test_check_cli_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "check", "/nonexistent/p.toml"]) == 2
    assert "not found" in capsys.readouterr().out


def test_every_bundled_profile_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(bundled_profiles_dir().glob("*.toml"))
    assert len(files) >= 10
    assert main(["profile", "check", *map(str, files)]) == 0
    assert main(["profile", "check", "--data", "tiny-demo"]) == 0


def test_profile_new_list_show(studio_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "hello"}\n')
    assert main(["profile", "new", "mine", "--model", "Qwen/Qwen2.5-7B", "--method", "qlora", "--data", str(data)]) == 0
    written = studio_env / "profiles" / "mine.toml"
    p = load_profile(written)
    assert (p.model.name, p.method.type, p.data.path) == ("Qwen/Qwen2.5-7B", "qlora", str(data))
    # never overwrite without --force
    written.write_text(written.read_text() + "# my notes\n")
    assert main(["profile", "new", "mine"]) == 2
    assert "# my notes" in written.read_text()
    capsys.readouterr()
    assert main(["profile", "list"]) == 0
    listing = capsys.readouterr().out
    assert "mine" in listing and "tiny-demo" in listing
    assert main(["profile", "show", "mine"]) == 0
    assert 'type = "qlora"' in capsys.readouterr().out


def test_profile_new_from_template(studio_env: Path) -> None:
    assert main(["profile", "new", "demo-copy", "--from", "tiny-demo"]) == 0
    p = load_profile(studio_env / "profiles" / "demo-copy.toml")
    assert p.model.name == "builtin:tiny-llama" and Path(p.data.path).is_file()


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    from conftest import REPO

    readme = (REPO / "README.md").read_text().splitlines()
    blocks = [readme[i + 1] for i, line in enumerate(readme) if line.strip() == "```bash"]
    demo_command, test_command = blocks[0], blocks[1]
    assert "studio demo" in demo_command and "pytest" in test_command
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert test_command in ci
    assert ci.index("pip install torch==2.13.0") < ci.index(test_command)
