"""python -m studio.trainer.export RUN_DIR OUT [--merge] [--gguf QUANT] [--ollama] [--push ORG/NAME [--private]]

Writes a run's result where people run models: the PEFT adapter (and tokenizer), or a merged model that
AutoModelForCausalLM.from_pretrained(OUT) loads, or a GGUF file for llama.cpp (with an Ollama Modelfile), and
always a model card (README.md). Everything is written into a folder beside OUT and renamed into place
once complete: a failure, a full disk or a kill leaves no half-written export, and the message names the
cause. A full fine-tune is already a whole model; --merge has nothing to fold in.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from studio.profiles.profile import Profile, load_profile
from studio.profiles.vocabulary import TORCH_NAMES, auto_dtype
from studio.runs.files import EXPORT_MARKER
from studio.runs.folder import Run

TRAINING_STATE = ("optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "training_args.bin")


class ExportError(Exception):
    """An export that cannot be made; the message says what to do."""


def source_folder(run: Run, checkpoint: int | None = None) -> Path:
    from studio.runs.folder import RunError

    try:
        folder = run.trained_weights(checkpoint)
    except RunError as e:
        raise ExportError(str(e)) from None
    if folder != run.final_dir and checkpoint is None:
        print(f"note: no final/ folder; exporting {folder.name}")
    return folder


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


def base_model(run: Run, profile: Profile) -> str:
    """The base model the run trained on; a base made inside the run must still be there."""
    if profile.model.builds_in_run and not (run.base_model_dir / "config.json").is_file():
        raise ExportError(f"run {run.id}'s base-model/ folder is missing: the run built its base model there "
                          f"({profile.model.name}{', random weights' if profile.model.random_init else ''}), and its "
                          "adapter only fits that model. A new run of the same profile builds it again; this "
                          "run's adapter cannot be merged without it")
    return run.base_model(profile.model)


def check_not_prequantized(base_ref: str, revision: str | None) -> None:
    """A base saved already quantized (a bnb-4bit or GPTQ checkpoint) has no 16-bit weights to fold the adapter
    into: refused with what to do instead."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(base_ref, revision=revision)
    quantized = getattr(config, "quantization_config", None)
    if quantized:
        method = quantized.get("quant_method", "?") if isinstance(quantized, dict) else getattr(quantized,
                                                                                              "quant_method", "?")
        raise ExportError(f"the base model {base_ref} is saved quantized ({method}): it has no 16-bit weights to "
                          "merge the adapter into. Export the adapter alone (no --merge), or train on the "
                          "unquantized model (QLoRA quantizes it while loading) to merge")


def copy_result(src: Path, out: Path) -> None:
    for item in src.iterdir():
        if item.name in TRAINING_STATE or item.name.startswith("rng_state"):
            continue  # training state, not part of the model
        if item.is_dir():
            shutil.copytree(item, out / item.name)
        else:
            shutil.copy2(item, out / item.name)


def merge(run: Run, profile: Profile, src: Path, out: Path) -> int:
    """The adapter folded into its 16-bit base (a QLoRA adapter too: merging into 4-bit weights would lose
    precision), saved with the tokenizer; returns the parameter count."""
    from peft import PeftModel

    from studio.anatomy.model_class import load_pretrained
    from studio.trainer.config import TORCH_DTYPE
    from studio.trainer.model import saved_tokenizer

    base_ref = base_model(run, profile)
    revision = None if Path(base_ref).is_dir() else profile.model.revision
    check_not_prequantized(base_ref, revision)
    base = load_pretrained(base_ref, profile.model.trust_remote_code, revision,
                           dtype=TORCH_DTYPE[trained_dtype(run, profile)])
    merged = PeftModel.from_pretrained(base, str(src)).merge_and_unload()
    merged.save_pretrained(out)
    tokenizer_src = src if (src / "tokenizer_config.json").is_file() else base_ref
    saved_tokenizer(tokenizer_src, profile.model.trust_remote_code).save_pretrained(out)
    return sum(p.numel() for p in merged.parameters())


def export(run_dir: Path, out: Path, merge_it: bool, gguf: str | None = None, ollama: bool = False,
           force: bool = False, checkpoint: int | None = None) -> str:
    """Build the export in a folder beside `out`, then rename it into place; returns what was written."""
    run = Run(run_dir)
    run.check_contained()
    profile = load_profile(run.profile_path)
    src = source_folder(run, checkpoint)
    is_adapter = (src / "adapter_config.json").is_file()
    check_finite_weights(src)  # a diverged run ships nothing, whatever the format
    if gguf:
        check_gguf_request(run, profile, src, is_adapter, gguf)  # refused before the merge starts
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_staging(out)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-", dir=out.parent))
    try:
        what = build(run, profile, src, is_adapter, staging, merge_it, gguf, ollama)
        from studio.runs.card import write_card

        write_card(run, profile, staging, what)
        os.chmod(staging, 0o700)
        (staging / EXPORT_MARKER).write_text(json.dumps({"run": run.id, "what": what}) + "\n", encoding="utf-8")
        if out.exists():
            check_replaceable(out, force)
            shutil.rmtree(out)
        os.replace(staging, out)  # complete, or not there at all
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return what


def check_replaceable(out: Path, force: bool) -> None:
    """An existing --out is replaced only when --force is given and it holds an earlier export (its marker),
    so that --force never deletes files studio did not write."""
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return
    if not force:
        raise ExportError(f"{out} is not empty; choose another --out or pass --force")
    if EXPORT_MARKER not in entries:
        raise ExportError(f"--out {out} holds files studio did not write ({', '.join(entries[:3])}"
                          f"{' ...' if len(entries) > 3 else ''}); --force replaces only an earlier studio export. "
                          "Choose a new or empty folder")


def check_finite_weights(src: Path) -> None:
    """Every weight of the adapter or model being exported is a number: a run that diverged (NaN or inf) is
    refused here, naming the tensor, before anything is merged or written."""
    from safetensors import safe_open

    for path in sorted(src.glob("*.safetensors")):
        with safe_open(path, framework="pt") as f:
            for key in f.keys():
                tensor = f.get_tensor(key)
                if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
                    bad = int((~tensor.isfinite()).sum())
                    raise ExportError(f"{path.name}: tensor {key} has {bad} non-finite value(s) (NaN or inf): the "
                                      f"run diverged and this result is not a model. Export an earlier checkpoint "
                                      "that is finite, or train again with a lower train.learning_rate and "
                                      "train.max_grad_norm set (gradient clipping)")


def check_gguf_request(run: Run, profile: Profile, src: Path, is_adapter: bool, quant: str) -> None:
    """The family, the quantization, the RoPE type and the tokenizer, checked before the merge starts."""
    from studio.trainer.gguf_export import check_model

    base = Path(base_model(run, profile)) if is_adapter else src
    tokenizer_folder = src if (src / "tokenizer.json").is_file() else base
    check_model(base if base.is_dir() else str(base), tokenizer_folder if tokenizer_folder.is_dir() else None,
                quant, revision=profile.model.revision)


def remove_abandoned_staging(out: Path) -> None:
    """The staging folders an export to `out` left when it was killed (SIGKILL runs no clean-up): each is named
    after its process, and one whose process is gone is removed. One still being written is left alone."""
    import re

    pattern = re.compile(rf"\.{re.escape(out.name)}\.partial-(\d+)-")
    for entry in out.parent.iterdir():
        found = pattern.match(entry.name)
        if not found or entry.is_symlink() or not entry.is_dir():
            continue
        if export_at_work(int(found.group(1)), out):
            continue
        print(f"note: removing {entry.name}, left by an export that was killed")
        shutil.rmtree(entry, ignore_errors=True)


def export_at_work(pid: int, out: Path) -> bool:
    """Whether `pid` is an export to `out` still running (not a zombie, not a reused pid); True when it cannot be
    told (another user's process), so that nothing of theirs is removed."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        argv = proc.cmdline()
    except (psutil.NoSuchProcess, OverflowError, ValueError):
        return False
    except psutil.Error:
        return True
    return "studio.trainer.export" in argv and str(out) in argv


def build(run: Run, profile: Profile, src: Path, is_adapter: bool, staging: Path, merge_it: bool,
          gguf: str | None, ollama: bool) -> str:
    if gguf:
        with tempfile.TemporaryDirectory(dir=staging.parent, prefix=f"{staging.name}-hf-") as hf:
            if is_adapter:
                merge(run, profile, src, Path(hf))
            else:
                copy_result(src, Path(hf))
            from studio.trainer.gguf_export import write_gguf

            name = f"{run.id}-{gguf}.gguf"
            write_gguf(Path(hf), staging / name, gguf, name=run.id)
            if ollama:
                write_modelfile(Path(hf), staging, name)
        return f"gguf:{gguf}:{name}"
    if not is_adapter or not merge_it:
        copy_result(src, staging)
        return "adapter" if is_adapter else "full"
    merge(run, profile, src, staging)
    return "merged"


def write_modelfile(model_dir: Path, staging: Path, gguf_name: str) -> None:
    """The Ollama Modelfile beside the GGUF; what a user must know about it is printed."""
    from studio.trainer.gguf_vocab import adds_bos_eos
    from studio.trainer.model import saved_tokenizer
    from studio.trainer.ollama import TemplateError, end_tokens, ollama_modelfile

    tokenizer = saved_tokenizer(model_dir)
    if not tokenizer.chat_template:
        raise ExportError("--ollama: the model's tokenizer has no chat template, so there is no prompt format to "
                          "write into the Modelfile; export without --ollama, or set tokenizer.chat_template")
    try:
        text, notes = ollama_modelfile(gguf_name, tokenizer, adds_bos_eos(tokenizer)[0],
                                       end_tokens(model_dir, tokenizer), 0.7, 0.9)
    except TemplateError as e:
        raise ExportError(f"--ollama: {e}") from None
    (staging / "Modelfile").write_text(text, encoding="utf-8")
    for note in notes:
        print(f"note: {note}")


def disk_full(e: BaseException) -> bool:
    text = str(e)
    return "No space left on device" in text or "StorageFull" in text or "errno: 28" in text.lower()


def quiet_hub_kernels() -> None:
    """An export needs no kernels from the Hub and no 4-bit code (a QLoRA adapter is merged into the 16-bit
    base): transformers is told to use no Hub kernels, and bitsandbytes is kept out of this process, since on
    importing it probes the Hub for a CPU kernel (on CPUs with AVX512-BF16) and prints its failure."""
    os.environ.setdefault("USE_HUB_KERNELS", "NO")
    sys.modules.setdefault("bitsandbytes", None)  # type: ignore[arg-type] - `import bitsandbytes` then fails
    # at once, and peft and transformers see it as not installed


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.trainer.export")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--merge", action="store_true")
    parser.add_argument("--gguf", metavar="QUANT")
    parser.add_argument("--ollama", action="store_true")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--push", metavar="ORG/NAME")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--checkpoint", type=int)
    args = parser.parse_args()
    quiet_hub_kernels()
    out = args.out.resolve()
    from studio.trainer.gguf_export import GgufError

    try:
        what = export(args.run_dir.resolve(), out, args.merge, args.gguf, args.ollama, args.force, args.checkpoint)
        kind, _, rest = what.partition(":")
        described = {"adapter": "the adapter", "full": "the full model", "merged": "the merged model"}.get(
            kind, f"a GGUF ({rest.split(':')[0]})")
        note = " (a full fine-tune is already a whole model; --merge has nothing to fold in)" \
            if args.merge and kind == "full" else ""
        print(f"exported {described} of run {args.run_dir.name} to {out}{note}, with a model card (README.md)")
        if kind == "gguf":
            gguf_file = rest.split(":", 1)[1]
            print(f"  llama.cpp: llama-cli -m {out / gguf_file} -cnv")
            if args.ollama:
                print(f"  ollama:    cd {out} && ollama create {args.run_dir.name.lower()} -f Modelfile && "
                      f"ollama run {args.run_dir.name.lower()}")
        if args.push:
            from studio.trainer.push import push

            url = push(out, args.push, args.private)
            print(f"pushed to {url}")
    except (ExportError, GgufError) as e:
        print(f"export failed: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"export failed, nothing was written to {out}: {e.strerror or e}"
              + (" (free disk space and export again)" if getattr(e, "errno", None) == 28 else ""), file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - the push's errors arrive as the Hub's own types
        from studio.trainer.push import PushError

        if isinstance(e, PushError):
            print(f"push failed (the export in {out} is complete): {e}", file=sys.stderr)
            return 1
        if disk_full(e):  # safetensors and torch report a full disk as their own errors, not OSError
            print(f"export failed, nothing was written to {out}: No space left on device (free disk space and "
                  "export again)", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
