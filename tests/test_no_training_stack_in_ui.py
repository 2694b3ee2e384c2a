"""The CLI and the app must never import the training stack: start-up stays fast and a crash in
training cannot take them down. (The one check of it; tests/test_architecture.py holds the layers.)"""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets")

SCRIPT = """
import sys, io, contextlib
from studio.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    main(["profile", "list"])
    main(["profile", "check", "tiny-demo", "--data"])
    main(["runs"])
    main(["profile", "show", "qwen2.5-7b-qlora-12gb"])
    main(["estimate", "--model", "llama-3.1-8b", "--gpu", "RTX 4090"])
    main(["suggest", "--model", "llama-3.1-8b", "--vram", "12"])
    main(["gpus"])
import studio.runs.folder, studio.runs.events, studio.runs.launcher, studio.runs.start, studio.data
import studio.profiles.library, studio.planning.plan, studio.hardware, studio.display, studio.paths
import studio.ui.app, studio.ui.monitor, studio.ui.editor, studio.ui.dashboard, studio.ui.chat, studio.ui.compare
studio.hardware.detect_gpus()
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {heavy})
print(",".join(loaded))
"""


def test_cli_and_app_import_no_training_stack() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT.replace("{heavy}", repr(set(HEAVY)))],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"the CLI imported: {out.stdout.strip()}"


def test_trainer_package_import_is_light() -> None:
    code = "import sys, studio.trainer; print(any(m in sys.modules for m in %r))" % (HEAVY,)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
