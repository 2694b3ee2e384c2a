"""The profile editor (the form, its advice and fixes), the raw text editor and the new-profile dialog."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomli_w
from conftest import DEMO_DATA, studio
from textual.widgets import Input, Select
from ui_fixtures import GOOD, notifications, screen_text, write
from ui_fixtures import studio_app as app
from waiting import front, until

from studio.paths import bundled_profiles_dir
from studio.profiles.profile import load_profile
from studio.ui.app import StudioApp
from studio.ui.dashboard import Dashboard
from studio.ui.dialogs import Confirm
from studio.ui.editor import ProfileEditor
from studio.ui.raw_editor import RawProfileEditor


def load_template_description(path: Path) -> str:
    from studio.profiles.profile import load_profile

    return load_profile(path).description


async def new_profile_named(pilot, name: str) -> None:
    """n, the name, enter: the editor of the new profile, mounted."""
    from studio.ui.dialogs import NewProfileDialog

    await pilot.press("n")
    await until(pilot, lambda: isinstance(pilot.app.screen, NewProfileDialog), "the new-profile dialog")
    await pilot.press(*name, "enter")
    await until(pilot, lambda: isinstance(pilot.app.screen, ProfileEditor) and pilot.app.screen.settled, "the editor")


async def test_create_profile_in_the_form_save_and_reopen(studio_env: Path) -> None:
    async with app().run_test(size=(120, 40)) as pilot:
        await new_profile_named(pilot, "mine")
        editor = pilot.app.screen
        editor.query_one("#f-train-learning_rate", Input).value = "0.0005"
        editor.query_one("#f-method-type", Select).value = "qlora"
        await until(pilot, lambda: editor.dirty, "the edits")
        await pilot.press("ctrl+s")
        saved = studio_env / "profiles" / "mine.toml"
        await until(pilot, lambda: saved.is_file() and not editor.dirty, "the save")
        p = load_profile(saved)
        assert p.train.learning_rate == 0.0005 and p.method.type == "qlora"
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(pilot.app.screen, Dashboard)
                    and "user:mine" in pilot.app.screen.profile_paths, "the dashboard listing it")
        pilot.app.edit_profile(saved)
        await until(pilot, lambda: isinstance(pilot.app.screen, ProfileEditor) and pilot.app.screen.settled,
                    "the saved profile's editor")
        assert pilot.app.screen.query_one("#f-train-learning_rate", Input).value == "0.0005"


async def test_bad_value_is_shown_next_to_the_field_and_not_saved(studio_env: Path) -> None:
    path = studio_env / "profiles" / "p.toml"
    path.parent.mkdir(parents=True)
    original = f'# my notes on this profile\n[data]\npath = "{DEMO_DATA}"  # the demo data\n[train]\nbatch_size = 4\n'
    path.write_text(original)
    async with app().run_test(size=(120, 40)) as pilot:
        pilot.app.edit_profile(path)
        editor = await front(pilot, ProfileEditor)
        said = notifications(pilot.app)
        editor.query_one("#f-train-learning_rate", Input).value = "-1"
        def problem():  # the line under the field, there once the field has a problem
            found = editor.query("#e-train-learning_rate")
            return found.first() if found else None

        await until(pilot, lambda: problem() and "must be > 0" in str(problem().render()) and problem().display,
                    "the field's problem")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: any("not saved" in t for t in said), "the refusal")
        assert path.read_text() == original  # nothing on disk was lost
        editor.query_one("#f-train-learning_rate", Input).value = "0.001"
        editor.query_one("#f-train-batch_size", Input).value = "2"
        await until(pilot, lambda: not problem().display, "the problem gone")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: not editor.dirty, "the save")
    text = path.read_text()
    assert "# my notes on this profile" in text and "# the demo data" in text  # comments survive
    p = load_profile(path)
    assert p.train.batch_size == 2 and p.train.learning_rate == 0.001


async def test_apply_the_suggestion_that_makes_it_fit(studio_env: Path) -> None:
    async with app().run_test(size=(120, 40)) as pilot:
        pilot.app.edit_profile(bundled_profiles_dir() / "llama-3.1-8b-lora-24gb.toml")
        editor = await until(pilot, lambda: isinstance(pilot.app.screen, ProfileEditor) and pilot.app.screen.settled
                             and pilot.app.screen, "the editor")
        editor.query_one("#advice-gpu", Select).value = "RTX 3060 12GB"
        advice = lambda: str(editor.query_one("#advice-body").render())  # noqa: E731
        await until(pilot, lambda: "does not fit" in advice() and "F4 applies" in advice(), "advice with a fix")
        await pilot.press("f4")
        await until(pilot, lambda: editor.query_one("#f-method-type", Select).value == "qlora", "the fix applied")
        await until(pilot, lambda: "does not fit" not in advice(), "the advice for the fixed profile")
        await pilot.press("ctrl+s")  # a bundled template is saved as the user's copy
        await until(pilot, lambda: (studio_env / "profiles" / "llama-3.1-8b-lora-24gb.toml").is_file()
                    and not editor.dirty, "the user's copy saved")
    assert load_profile(studio_env / "profiles" / "llama-3.1-8b-lora-24gb.toml").method.type == "qlora"
    assert load_profile(bundled_profiles_dir() / "llama-3.1-8b-lora-24gb.toml").method.type == "lora"


async def test_editor_advice_plans_for_every_gpu_the_profile_asks_for(studio_env: Path) -> None:
    """Defect: the editor estimated every profile on one GPU, whatever hardware.gpus said."""
    path = studio_env / "profiles" / "big.toml"
    path.parent.mkdir(parents=True)
    path.write_text(tomli_w.dumps({"model": {"name": "meta-llama/Llama-3.1-8B"}, "method": {"type": "full"},
                                   "data": {"path": str(DEMO_DATA)}, "hardware": {"gpus": "4"}}))
    async with app().run_test(size=(120, 40)) as pilot:
        pilot.app.edit_profile(path)
        editor = await front(pilot, ProfileEditor)
        editor.query_one("#advice-gpu", Select).value = "H100 80GB"
        await until(pilot, lambda: "per GPU" in str(editor.query_one("#advice-body").render()), "the advice on H100s")
        text = str(editor.query_one("#advice-body").render())
        assert "per GPU" in text and "4 GPUs, fsdp" in text and "fits" in text


async def test_a_new_profile_is_saved_under_the_name_it_was_given(studio_env: Path) -> None:
    async with app().run_test(size=(120, 40)) as pilot:
        await new_profile_named(pilot, "my-first")
        editor = pilot.app.screen
        assert editor.dirty  # nothing is on disk yet
        await pilot.press("ctrl+s")
        await until(pilot, lambda: (studio_env / "profiles" / "my-first.toml").is_file() and not editor.dirty,
                    "the save")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(pilot.app.screen, Dashboard)
                    and "user:my-first" in pilot.app.screen.profile_paths, "the dashboard listing it")


async def test_ctrl_arrows_jump_between_sections(studio_env: Path) -> None:
    async with app().run_test(size=(120, 40)) as pilot:
        pilot.app.edit_profile(bundled_profiles_dir() / "tiny-demo.toml")
        await front(pilot, ProfileEditor)
        await pilot.press("ctrl+down")
        assert pilot.app.screen.focused.id == "f-model-name"
        await pilot.press("ctrl+down")
        assert pilot.app.screen.focused.id == "f-method-type"
        await pilot.press("ctrl+up", "ctrl+up")
        assert pilot.app.screen.focused.id.startswith("f-output-")  # wraps around to the last section


async def test_editor_key_without_a_terminal_to_hand_over_says_so(studio_env: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDITOR", "true")
    path = studio_env / "profiles" / "mine.toml"
    path.parent.mkdir(parents=True)
    path.write_text(f'[data]\npath = "{DEMO_DATA}"\n')
    async with app().run_test(size=(120, 40)) as pilot:
        texts = notifications(pilot.app)
        pilot.app.edit_profile(path)
        await until(pilot, lambda: isinstance(pilot.app.screen, ProfileEditor), "the editor")
        await pilot.press("ctrl+e")
        await until(pilot, lambda: any("edit" in t and str(path) in t for t in texts), "the notice")
        # the form again, reloaded from the file: left only once it has mounted (an app closed half-way
        # through mounting a screen fails in Textual's Header)
        await until(pilot, lambda: isinstance(pilot.app.screen, ProfileEditor) and pilot.app.screen.settled,
                    "the editor again")
        assert path.read_text().startswith("[data]")


@pytest.mark.parametrize("text,shown", [
    ('[train\nbatch_size = 4\n', "line 1"),                                    # not TOML
    (GOOD + "learning_rate = -1\nfavourite_colour = \"blue\"\n", "train.learning_rate"),  # TOML, not a profile
])
async def test_a_profile_that_does_not_load_opens_as_text_and_nothing_is_lost(studio_env: Path, text: str,
                                                                              shown: str) -> None:
    from textual.widgets import TextArea

    path = write(studio_env, "broken", text)
    async with app().run_test(size=(120, 40)) as pilot:
        pilot.app.edit_profile(path)
        screen = await front(pilot, RawProfileEditor)  # a broken file never opens as a form of defaults
        assert shown in str(screen.query_one("#raw-problems").render())
        assert screen.query_one(TextArea).text == text
        said = notifications(pilot.app)
        await pilot.press("ctrl+s")  # saving the text as it is changes nothing
        await until(pilot, lambda: said, "the save's answer")
        assert path.read_text() == text
        screen.query_one(TextArea).text = GOOD
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "ok" in str(screen.query_one("#raw-problems").render()), "the problems cleared")
        assert path.read_text() == GOOD


async def test_the_text_editor_names_each_problems_line_jumps_to_it_and_offers_the_form_once_it_loads(
        studio_env: Path) -> None:
    """Defect (issue 36 #14): the raw editor listed problems without line numbers, though the README promises
    them, and after a fix did not offer to go back to the form."""
    from textual.widgets import TextArea

    text = GOOD + "learning_rate = -1\n"
    line = text.splitlines().index("learning_rate = -1") + 1
    path = write(studio_env, "broken", text)
    async with app().run_test(size=(120, 40)) as pilot:
        pilot.app.edit_profile(path)
        screen = await front(pilot, RawProfileEditor)
        assert f"line {line}: train.learning_rate" in str(screen.query_one("#raw-problems").render())
        area = screen.query_one(TextArea)
        area.move_cursor((0, 0))
        await pilot.press("f8")
        await until(pilot, lambda: area.cursor_location[0] == line - 1, "the cursor on the problem's line")
        area.text = text.replace("learning_rate = -1", "learning_rate = 0.001")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "f4 opens it in the form" in str(screen.query_one("#raw-problems").render()),
                    "the offer of the form")
        await pilot.press("f4")
        editor = await front(pilot, ProfileEditor)
        assert editor.query_one("#f-train-learning_rate", Input).value == "0.001"


def test_the_cli_refuses_a_profile_name_that_is_a_path(studio_env: Path, tmp_path: Path) -> None:
    for name in ("../evil", "/tmp/x", "a/b", ".hidden", "..", "my run"):
        proc = studio("profile", "new", name)
        assert proc.returncode == 2 and "plain name" in proc.stderr, name
    assert not (studio_env / "evil.toml").exists() and not Path("/tmp/x.toml").exists()


async def test_the_app_refuses_a_profile_name_that_is_a_path(studio_env: Path) -> None:
    from studio.ui.dialogs import NewProfileDialog

    async with app().run_test(size=(100, 30)) as pilot:
        await pilot.press("n")
        await until(pilot, lambda: isinstance(pilot.app.screen, NewProfileDialog), "the dialog")
        dialog = pilot.app.screen
        await pilot.press(*"../evil", "enter")
        await until(pilot, lambda: "plain name" in str(dialog.query_one("#name-problem").render()), "the refusal")
        assert pilot.app.screen is dialog
    assert not (studio_env / "evil.toml").exists()


async def test_opening_and_leaving_a_profile_without_an_edit_asks_nothing(studio_env: Path) -> None:
    write(studio_env, "calm", GOOD)
    async with app().run_test(size=(120, 40)) as pilot:
        await front(pilot, Dashboard)
        await pilot.press("e")
        await front(pilot, ProfileEditor)
        await pilot.press("escape")
        await front(pilot, Dashboard, "the dashboard again, without a question")


async def test_the_editor_advises_on_the_tiny_model_and_a_machine_without_gpus(studio_env: Path) -> None:
    from studio.hardware import Inventory
    from studio.paths import bundled_profiles_dir

    async with StudioApp(inventory=Inventory([], reason="no NVIDIA driver")).run_test(size=(120, 40)) as pilot:
        pilot.app.edit_profile(bundled_profiles_dir() / "tiny-demo.toml")
        editor = await front(pilot, ProfileEditor)
        await until(pilot, lambda: "GiB" in str(editor.query_one("#advice-body").render()), "the advice")
        advice = str(editor.query_one("#advice-body").render())
        assert "no estimate" not in advice and "GiB" in advice
        assert "no GPU here: planning for" in str(pilot.app.screen.query_one("#advice-note").render())
        # max_steps is set: the time comes from the steps, not from the epochs over the data
        assert "60 steps" in advice


async def test_the_editor_offers_several_changes_when_one_is_not_enough(studio_env: Path) -> None:
    path = write(studio_env, "huge", tomli_w.dumps({
        "model": {"name": "meta-llama/Llama-3.1-8B"}, "method": {"type": "full"},
        "data": {"path": str(DEMO_DATA), "max_length": 4096},
        "train": {"batch_size": 8, "gradient_checkpointing": False, "optimizer": "adamw"}}))
    async with app().run_test(size=(120, 40)) as pilot:
        pilot.app.edit_profile(path)
        editor = await front(pilot, ProfileEditor)
        editor.query_one("#advice-gpu", Select).value = "RTX 4090"
        await until(pilot, lambda: "together" in str(editor.query_one("#advice-body").render()), "the combined fix")
        await pilot.press("f4")
        await until(pilot, lambda: "does not fit" not in str(editor.query_one("#advice-body").render()),
                    "the advice for the fixed profile")


async def test_q_types_into_an_editor_field_and_elsewhere_leaves_the_editor_not_the_app(studio_env: Path) -> None:
    write(studio_env, "calm", GOOD)
    async with app().run_test(size=(120, 40)) as pilot:
        await front(pilot, Dashboard)
        await pilot.press("e")
        await until(pilot, lambda: isinstance(pilot.app.screen, ProfileEditor), "the editor")
        editor = pilot.app.screen
        field = editor.query_one("#f-top-description", Input)
        field.focus()
        await pilot.press("end", "q")
        await pilot.pause()
        assert field.value.endswith("q") and pilot.app.screen is editor
        editor.query_one("#advice-gpu", Select).focus()
        await pilot.press("q")
        # the description was edited, so leaving asks first, and the app is still there
        await front(pilot, Confirm, "the question before leaving")
        assert pilot.app.is_running


async def test_f5_on_an_unchanged_template_runs_it_without_making_a_copy(studio_env: Path) -> None:
    from studio.paths import bundled_profiles_dir

    template = bundled_profiles_dir() / "tiny-demo.toml"
    async with app().run_test(size=(120, 40)) as pilot:
        started: list[Path] = []
        pilot.app.start_profile = started.append  # what F5 asks the app to start, without training here
        pilot.app.edit_profile(template)
        await until(pilot, lambda: isinstance(pilot.app.screen, ProfileEditor), "the editor")
        await pilot.press("f5")
        await until(pilot, lambda: started, "the start")
        assert started == [template]
    assert not (studio_env / "profiles").exists() or not list((studio_env / "profiles").iterdir())


@pytest.mark.slow  # the preview's worker (building the demo's tokenizer, about 30 s) finishes before the app exits
async def test_the_data_preview_is_centred_and_counts_the_seconds(studio_env: Path) -> None:
    import re

    from studio.paths import bundled_profiles_dir
    from studio.ui.dialogs import DataPreview

    async with app().run_test(size=(120, 40)) as pilot:
        pilot.app.edit_profile(bundled_profiles_dir() / "tiny-demo.toml")
        await until(pilot, lambda: isinstance(pilot.app.screen, ProfileEditor) and pilot.app.screen.settled,
                    "the editor")
        await pilot.press("f3")
        await until(pilot, lambda: isinstance(pilot.app.screen, DataPreview), "the preview")
        box = pilot.app.screen.query_one(".dialog").region
        assert box.y >= 2 and box.x >= 10, f"the dialog sits at {box}, over the header"
        await until(pilot, lambda: re.search(r"\(\d+ s\)|no preview|tokens", screen_text(pilot.app)),
                    "a counter while it tokenizes (or the preview)")
        await pilot.press("escape")


async def test_n_starts_from_a_template_or_a_model_and_refuses_a_name_with_spaces(studio_env: Path) -> None:
    from studio.paths import bundled_profiles_dir
    from studio.ui.dialogs import NewProfileDialog
    from studio.ui.model_picker import ModelPicker

    template = bundled_profiles_dir() / "llama-3.1-8b-qlora-12gb.toml"
    async with app().run_test(size=(120, 40)) as pilot:
        await pilot.press("n")
        await until(pilot, lambda: isinstance(pilot.app.screen, NewProfileDialog), "the new-profile dialog")
        dialog = pilot.app.screen
        dialog.query_one("#new-from", Select).value = str(template)
        dialog.query_one("#answer", Input).focus()
        await pilot.press(*"my run", "enter")
        await until(pilot, lambda: "space" in screen_text(pilot.app), "the name refused, with the reason")
        dialog.query_one("#answer", Input).value = "llama-try"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, ProfileEditor) and pilot.app.screen.settled,
                    "the editor")
        editor = pilot.app.screen
        profile = editor.current_profile()
        assert profile.model.name == "meta-llama/Llama-3.1-8B-Instruct" and profile.method.type == "qlora"
        assert profile.description != load_template_description(template)  # not the template's own words
        assert editor.new_path.name == "llama-try.toml"
        await pilot.press("escape")  # a new profile is unsaved: leaving asks first
        await until(pilot, lambda: isinstance(pilot.app.screen, Confirm), "the question")
        await pilot.press("y")
        await until(pilot, lambda: isinstance(pilot.app.screen, Dashboard), "the dashboard")
        await pilot.press("n")
        await until(pilot, lambda: isinstance(pilot.app.screen, NewProfileDialog), "the dialog again")
        pilot.app.screen.query_one("#new-from", Select).value = "model"
        pilot.app.screen.query_one("#answer", Input).value = "from-a-model"
        pilot.app.screen.query_one("#answer", Input).focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, ModelPicker), "the model picker, over the editor")


async def test_the_editor_shows_its_verdict_and_the_f4_fix_above_the_fold_at_80x24(studio_env: Path) -> None:
    from studio.paths import bundled_profiles_dir

    async with app().run_test(size=(80, 24)) as pilot:
        said = notifications(pilot.app)
        pilot.app.edit_profile(bundled_profiles_dir() / "llama-3.1-8b-full-80gb.toml")  # 18.8 GiB free: too big
        await until(pilot, lambda: "F4 applies" in screen_text(pilot.app), "the fix, without scrolling")
        text = screen_text(pilot.app)
        assert "does not fit" in text and "GiB free" in text and "checkpointing on (auto)" in text, text
        await pilot.press("f4")
        await until(pilot, lambda: any(t.startswith("applied:\n• ") for t in said), "the changes, one a line")


async def test_the_slurm_section_is_folded_and_built_only_for_a_profile_that_sets_it(studio_env: Path) -> None:
    """Its 13 fields serve `studio run --slurm` alone: folded, and built only where the profile sets one."""
    from textual.widgets import Collapsible

    plain = write(studio_env, "plain", GOOD)
    slurm = write(studio_env, "cluster", GOOD + "[slurm]\nnodes = 2\npartition = \"gpu\"\n")
    async with app().run_test(size=(120, 40)) as pilot:
        for path, built in ((plain, False), (slurm, True)):
            pilot.app.edit_profile(path)
            await until(pilot, lambda: isinstance(pilot.app.screen, ProfileEditor) and pilot.app.screen.settled,
                        "the editor")
            editor = pilot.app.screen
            assert editor.query_one("#more-slurm", Collapsible).collapsed is not built
            assert bool(editor.query("#f-slurm-nodes")) is built
            if built:
                assert editor.query_one("#f-slurm-partition", Input).value == "gpu"
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(pilot.app.screen, ProfileEditor), "back")


async def test_the_editor_folds_advanced_fields_jumps_to_a_field_undoes_and_shows_the_diff(studio_env: Path) -> None:
    from textual.widgets import Collapsible

    path = write(studio_env, "mine", GOOD + "[hardware]\nnum_machines = 2\nmain_address = \"10.0.0.1\"\n")
    async with app().run_test(size=(120, 40)) as pilot:
        pilot.app.edit_profile(path)
        await until(pilot, lambda: isinstance(pilot.app.screen, ProfileEditor) and pilot.app.screen.settled,
                    "the editor")
        editor = pilot.app.screen
        # folded and not built where the profile leaves them alone; open where it sets one (multi-node here)
        assert editor.query_one("#more-model", Collapsible).collapsed and not editor.query("#f-model-random_init")
        assert not editor.query_one("#more-hardware", Collapsible).collapsed
        assert editor.query_one("#f-hardware-main_address", Input).value == "10.0.0.1"

        await pilot.press("ctrl+f")
        await until(pilot, lambda: pilot.app.screen is not editor, "the field finder")
        await pilot.press(*"seed", "enter")
        await until(pilot, lambda: pilot.app.focused is not None and pilot.app.focused.id == "f-train-seed",
                    "the seed field, unfolded")
        assert not editor.query_one("#more-train", Collapsible).collapsed and not editor.dirty

        rate = editor.query_one("#f-train-learning_rate", Input)
        before = rate.value
        rate.focus()
        await pilot.press("end", "5")
        await until(pilot, lambda: editor.dirty, "the change")
        await pilot.press("ctrl+z")
        await until(pilot, lambda: rate.value == before, "the change undone")

        editor.query_one("#f-train-batch_size", Input).value = "8"
        await until(pilot, lambda: editor.dirty, "the change")
        await pilot.press("f7")
        await until(pilot, lambda: "+batch_size = 8" in screen_text(pilot.app), "the diff")
        assert "-batch_size = 2  # small" in screen_text(pilot.app)
        await pilot.press("escape")
        await until(pilot, lambda: pilot.app.screen is editor, "back in the editor")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: not editor.dirty, "saved")
    text = path.read_text()
    assert "batch_size = 8" in text and "# my notes" in text and 'main_address = "10.0.0.1"' in text
    assert "seed" not in text and "random_init" not in text  # folded fields nobody touched stay out of the file


async def test_a_hub_dataset_offline_says_so_instead_of_reading_forever(studio_env: Path) -> None:
    """Issue 36 #7: "data: reading..." never resolved for a Hub dataset with the hub offline."""
    path = write(studio_env, "hubdata", '[data]\npath = "someone/chat-data"\n')  # HF_HUB_OFFLINE=1 in the tests
    async with app().run_test(size=(120, 40)) as pilot:
        pilot.app.edit_profile(path)
        editor = await front(pilot, ProfileEditor)
        advice = lambda: " ".join(str(editor.query_one("#advice-body").render()).split())  # noqa: E731
        await until(pilot, lambda: "HF_HUB_OFFLINE" in advice(), "what the editor can say of the dataset")
        assert "reading..." not in advice() and "someone/chat-data: a Hub dataset" in advice()


async def test_undo_and_redo_go_on_working_after_a_save_and_the_title_marks_unsaved_changes(studio_env: Path) -> None:
    """Defect (issue 36 #1): after ctrl+s, a change then ctrl+z said 'nothing to undo' and kept the value, while
    esc still warned of unsaved changes; there was no redo and no mark of unsaved changes."""
    path = write(studio_env, "mine", GOOD)
    async with app().run_test(size=(120, 40)) as pilot:
        pilot.app.edit_profile(path)
        await until(pilot, lambda: isinstance(pilot.app.screen, ProfileEditor) and pilot.app.screen.settled,
                    "the editor")
        editor = pilot.app.screen
        rank = editor.query_one("#f-method-rank", Input)
        before = rank.value
        seen = notifications(pilot.app)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: any("saved" in n for n in seen), "the save")
        rank.focus()
        await pilot.press("end", *["backspace"] * len(rank.value), "2", "4", "tab")
        await until(pilot, lambda: editor.dirty and rank.value == "24", "the change")
        assert editor.title.endswith("*"), editor.title  # unsaved, said where the eye is
        await pilot.press("ctrl+z")
        await until(pilot, lambda: rank.value == before, f"the change undone ({seen[-2:]})")
        await until(pilot, lambda: not editor.dirty, "the form back to what is saved")
        assert not editor.title.endswith("*")
        await pilot.press("ctrl+y")
        await until(pilot, lambda: rank.value == "24" and editor.dirty, "the change redone")


async def test_a_folds_title_that_does_not_fit_ends_with_an_ellipsis(studio_env: Path) -> None:
    """Defect (issue 36 #13): at 120x40 the model section's fold label ended "...random_i" with no ellipsis."""
    path = write(studio_env, "mine", GOOD)
    async with app().run_test(size=(120, 40)) as pilot:
        pilot.app.edit_profile(path)
        await until(pilot, lambda: isinstance(pilot.app.screen, ProfileEditor) and pilot.app.screen.settled,
                    "the editor")
        line = next(row for row in screen_text(pilot.app).splitlines() if "more: revision" in row)
        shown = line.split("│")[0].rstrip()
        assert shown.endswith("…") or shown.endswith("random_init, tokenizer"), shown
