"""Any model from the editor: the picker searches the catalog at once and the Hub in a worker (a local server
posing as the Hub), shows size and gating, and the estimate follows the choice; a model the catalog does
not know is looked up in a worker, with a "looking up" state, never on the UI thread."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import DEMO_DATA
from hub_server import FakeHub
from studio.ui.app import StudioApp
from studio.ui.editor import ProfileEditor
from studio.ui.model_picker import ModelPicker
from test_hub_models import STARCODER2
from ui_fixtures import fake_inventory, screen_text
from waiting import until


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    fake = FakeHub()
    fake.add("acme/Nova-3B", STARCODER2, params=1_400_000_000)
    fake.add("acme/Nova-Gated-7B", STARCODER2, gated=True, params=7_000_000_000)
    url = fake.start()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", url)
    import huggingface_hub.constants as constants

    # Read once at import, and this process imported the client already (with HF_HUB_OFFLINE=1 in CI).
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    yield fake
    fake.stop()


@pytest.mark.slow
async def test_pick_a_hub_model_in_the_editor_and_the_estimate_follows(studio_env: Path, hub) -> None:
    path = studio_env / "profiles" / "p.toml"
    path.parent.mkdir(parents=True)
    path.write_text(f'[model]\nname = "meta-llama/Llama-3.1-8B"\n[data]\npath = "{DEMO_DATA}"\n')
    async with StudioApp(inventory=fake_inventory()).run_test(size=(120, 40)) as pilot:
        pilot.app.edit_profile(path)
        await until(pilot, lambda: isinstance(pilot.app.screen, ProfileEditor), "the editor")
        await pilot.press("f6")
        await until(pilot, lambda: isinstance(pilot.app.screen, ModelPicker), "the picker")
        await pilot.press(*"qwen3 8b")
        await until(pilot, lambda: "Qwen/Qwen3-8B" in screen_text(pilot.app), "the catalog's match")
        await pilot.press(*" ", "backspace")  # a new query: the catalog has no Nova, the Hub has
        pilot.app.screen.query_one("#picker-query").value = "nova"
        await until(pilot, lambda: "acme/Nova-Gated-7B" in screen_text(pilot.app), "the Hub's matches")
        text = screen_text(pilot.app)
        assert "7.0B" in text and "gated" in text
        await pilot.press("enter")  # the first match
        await until(pilot, lambda: isinstance(pilot.app.screen, ProfileEditor), "back in the editor")
        editor = pilot.app.screen
        assert editor.query_one("#f-model-name").value.startswith("acme/Nova")
        # Looked up in a worker (its config from the Hub, its layout from its code), then estimated.
        await until(pilot, lambda: "looking up acme/Nova" in screen_text(pilot.app), "the looking-up state")
        await until(pilot, lambda: "GiB peak" in screen_text(pilot.app), "the new estimate")
        assert any(r.endswith("/acme/Nova-3B/resolve/main/config.json") for r in hub.requests)
