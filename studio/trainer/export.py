"""Export a run's result: `python -m studio.trainer.export RUN_DIR OUT [--merge]`.

Without --merge: the PEFT adapter (adapter_config.json + adapter_model.safetensors)
and the tokenizer. With --merge: the base model with the adapter folded in, saved
so that AutoModelForCausalLM.from_pretrained(OUT) loads it. A full fine-tune is
already a whole model and is copied either way.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from studio.profiles.profile import Profile, load_profile
from studio.profiles.vocabulary import TORCH_NAMES, auto_dtype
from studio.runs.folder import Run


def source_folder(run: Run) -> Path:
    if run.has_result():
        return run.final_dir
    checkpoint = run.last_complete_checkpoint()
    if checkpoint is None:
        raise SystemExit(f"run {run.id} has no final/ folder and no complete checkpoint to export")
    print(f"note: no final/ folder; exporting {checkpoint.name}")
    return checkpoint


def trained_dtype(run: Run, profile: Profile) -> str:
    """The dtype the run trained in (its `start` record), so the merged model is the one that was trained;
    the profile's rule on this machine for a run that never started."""
    try:
        start = run.timeline().start
    except OSError:
        start = None
    if start is not None and start.dtype in TORCH_NAMES:
        return start.dtype
    import torch

    gpu = torch.cuda.is_available()
    return auto_dtype(profile.model.dtype, gpu, gpu and torch.cuda.is_bf16_supported())


def export(run_dir: Path, out: Path, merge: bool) -> None:
    run = Run(run_dir)
    profile = load_profile(run.profile_path)
    src = source_folder(run)
    out.mkdir(parents=True, exist_ok=True)
    is_adapter = (src / "adapter_config.json").is_file()
    if not is_adapter or not merge:
        for item in src.iterdir():
            if item.name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json",
                             "training_args.bin") or item.name.startswith("rng_state"):
                continue  # training state, not part of the model
            dest = out / item.name
            if item.is_dir():
                shutil.copytree(item, dest, dirs_exist_ok=True)
            else:
                shutil.copy2(item, dest)
        kind = "adapter" if is_adapter else "full model"
        note = " (a full fine-tune is already a whole model; --merge has nothing to fold in)" if merge else ""
        print(f"exported the {kind} of run {run.id} to {out}{note}")
        return

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from studio.trainer.config import TORCH_DTYPE

    dtype = TORCH_DTYPE[trained_dtype(run, profile)]
    base_ref = run.base_model(profile.model)
    # QLoRA adapters merge into the 16-bit base: merging into 4-bit weights would lose precision.
    revision = None if Path(base_ref).is_dir() else profile.model.revision
    base = AutoModelForCausalLM.from_pretrained(base_ref, dtype=dtype, revision=revision,
                                                trust_remote_code=profile.model.trust_remote_code)
    merged = PeftModel.from_pretrained(base, str(src)).merge_and_unload()
    merged.save_pretrained(out)
    tokenizer_src = src if (src / "tokenizer_config.json").is_file() else base_ref
    AutoTokenizer.from_pretrained(tokenizer_src, trust_remote_code=profile.model.trust_remote_code).save_pretrained(out)
    print(f"exported the merged model of run {run.id} to {out} ({sum(p.numel() for p in merged.parameters()):,} params)")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.trainer.export")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--merge", action="store_true")
    args = parser.parse_args()
    try:
        export(args.run_dir.resolve(), args.out.resolve(), args.merge)
    except OSError as e:
        print(f"export failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
