"""The data preview: rows through the model's own tokenizer and chat template (a real subprocess
with the training stack), the trained tokens marked; from the CLI and from the editor (F3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import demo_rows, studio, write_jsonl, write_profile
from studio.paths import bundled_profiles_dir
from studio.ui.app import StudioApp
from studio.ui.dialogs import DataPreview
from ui_fixtures import fake_inventory


def test_the_preview_marks_the_assistant_answer_as_trained(studio_env: Path) -> None:
    proc = studio("profile", "preview", "tiny-demo", "--rows", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    first = demo_rows(1)[0]["messages"]
    answer = next(m["content"] for m in first if m["role"] == "assistant")
    question = next(m["content"] for m in first if m["role"] == "user")
    row = result["rows"][0]
    trained = "".join(text for text, kind in row["segments"] if kind == "trained")
    context = "".join(text for text, kind in row["segments"] if kind == "context")
    assert answer in trained and question in context and question not in trained
    assert result["loss_on"] == "assistant turns" and len(result["rows"]) == 2


@pytest.mark.slow  # over 10 s on the 2-core VM (the fast set's budget is 5 min)
def test_the_preview_shows_what_max_length_cuts(studio_env: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "long.jsonl", [{"text": "word " * 200}] * 8)
    profile = write_profile(tmp_path / "p.toml", data, data={"path": str(data), "max_length": 16})
    result = json.loads(studio("profile", "preview", str(profile), "--rows", "1", "--json", check=True).stdout)
    kinds = [kind for _, kind in result["rows"][0]["segments"]]
    assert kinds == ["trained", "cut"] and result["rows"][0]["trained_tokens"] == 16
    text = studio("profile", "preview", str(profile), "--rows", "1", check=True).stdout
    assert "cut (past max_length)" in text and "1 trained" not in text


def test_a_preview_of_data_that_does_not_load_says_why(studio_env: Path, tmp_path: Path) -> None:
    profile = write_profile(tmp_path / "p.toml", tmp_path / "missing.jsonl")
    proc = studio("profile", "preview", str(profile))
    assert proc.returncode == 2 and "data.path" in proc.stderr


async def test_f3_in_the_editor_shows_the_preview(studio_env: Path) -> None:
    from studio.ui.editor import ProfileEditor
    from waiting import until

    async with StudioApp(inventory=fake_inventory()).run_test(size=(120, 40)) as pilot:
        pilot.app.edit_profile(bundled_profiles_dir() / "tiny-demo.toml")
        await until(pilot, lambda: isinstance(pilot.app.screen, ProfileEditor) and pilot.app.screen.settled,
                    "the editor")
        await pilot.press("f3")
        dialog = await until(pilot, lambda: isinstance(pilot.app.screen, DataPreview) and pilot.app.screen,
                             "the preview dialog")

        def body() -> str:
            return str(dialog.query_one("#preview-body").render())

        # the tokenizer loads in a process of its own: a minute on a loaded machine
        text = await until(pilot, lambda: "row 1" in body() and body(), "the preview's rows")
        assert "loss on assistant turns" in text and "trained" in text
        assert not dialog.profile_file.parent.exists()  # the form's profile, written for the preview, is gone
