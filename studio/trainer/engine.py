"""One training run, top to bottom: profile -> data -> tokenizer -> preflight ->
model -> SFTTrainer -> events, checkpoints and the final adapter or model."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import resource
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from studio.atomic import write_json
from studio.data import Dataset, DataError, build_dataset, check_bad_rows, is_local, load_local
from studio.events import EventWriter
from studio.hardware import GIB
from studio.profile import TINY_MODEL, Profile, load_profile
from studio.runs import CHECKPOINTS, FINAL, Run, last_complete_checkpoint
from studio.trainer.failures import ConfigError, classify
from studio.trainer.hub import DownloadError, describe_hub_error, fetch_model
from studio.trainer.telemetry import StopRequest, Telemetry

BASE_MODEL = "base-model"  # where the built-in tiny model is written, inside the run
HF_OPTIM = {"adamw": "adamw_torch_fused", "adamw_8bit": "adamw_bnb_8bit", "paged_adamw_8bit": "paged_adamw_8bit",
            "sgd": "sgd", "adafactor": "adafactor"}


def resolve_dtype(profile: Profile, device: str) -> str:
    want = profile.model.dtype
    if device == "cpu":
        if want == "fp16":
            raise ConfigError("model.dtype: fp16 training needs a GPU; on the CPU use \"fp32\" or \"auto\"")
        return "fp32" if want == "auto" else want
    bf16_ok = torch.cuda.is_bf16_supported()
    if want == "auto":
        return "bf16" if bf16_ok else "fp16"
    if want == "bf16" and not bf16_ok:
        raise ConfigError("model.dtype: this GPU has no bf16 support; use \"fp16\" or \"auto\"")
    return want


TORCH_DTYPE = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def check_requirements(profile: Profile, device: str) -> None:
    """What the profile asks of this machine, checked before anything large loads."""
    if profile.method.type == "qlora":
        check_bitsandbytes(device)
    if profile.train.liger_kernel:
        if device != "cuda":
            raise ConfigError("train.liger_kernel: Liger's kernels need an NVIDIA GPU; set it to false on the CPU")
        if importlib.util.find_spec("liger_kernel") is None:
            raise ConfigError("train.liger_kernel: liger-kernel is not installed: pip install -e '.[fast]' "
                              "(or set train.liger_kernel = false)")


def check_bitsandbytes(device: str) -> None:
    """QLoRA needs a bitsandbytes backend for this device; say so before anything loads."""
    try:
        import bitsandbytes.cextension as ce
    except Exception as e:  # not installed, or its library fails to load
        raise ConfigError(f"method.type = \"qlora\" needs bitsandbytes, which failed to load ({e}); "
                          "`pip install bitsandbytes` or use method.type = \"lora\"") from e
    backend = str(getattr(ce, "BNB_BACKEND", "")).upper()
    wanted = {"cuda": ("CUDA", "ROCM"), "cpu": ("CPU",)}[device]
    if backend and backend not in wanted:
        raise ConfigError(f"method.type = \"qlora\": bitsandbytes has no {device.upper()} backend here "
                          f"(it loaded the {backend} one); use method.type = \"lora\" or install a matching bitsandbytes")


def load_data(profile: Profile, split: str, writer: EventWriter | None = None) -> Dataset:
    d = profile.data
    if is_local(d.path):
        return load_local(d.path, d.format)
    try:
        import datasets

        from studio.trainer.hub import download_progress, hub_cache_blobs

        progress = (download_progress(writer, "dataset", d.path, hub_cache_blobs("datasets", d.path), None)
                    if writer is not None else contextlib.nullcontext())
        with progress:
            hub = datasets.load_dataset(d.path, split=split)
    except FileNotFoundError as e:
        raise DataError(f"data.path: dataset {d.path!r} not found locally or on the hub ({e}); check the path or id") from e
    except ValueError as e:
        raise DataError(f"data.split: {e}") from e
    except Exception as e:
        raise DownloadError(describe_hub_error(d.path, "dataset", e)) from e
    return build_dataset(enumerate(hub, start=1), d.format)


def split_eval(profile: Profile, ds: Dataset) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    d = profile.data
    rows = list(ds.rows)
    if d.eval_split:
        eval_ds = load_local(d.eval_split, ds.format) if is_local(d.eval_split) else load_data(profile, d.eval_split)
        check_bad_rows(eval_ds, d.on_bad_rows)
        return rows, eval_ds.rows
    if d.eval_fraction > 0:
        order = list(range(len(rows)))
        random.Random(profile.train.seed).shuffle(order)
        n_eval = max(1, int(len(rows) * d.eval_fraction))
        held = set(order[:n_eval])
        return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]
    return rows, []


def model_folder(profile: Profile, run: Run, rows: list[dict[str, Any]], writer: EventWriter) -> Path:
    """A local folder with the model's config, weights and tokenizer."""
    name = profile.model.name
    if name == TINY_MODEL:
        folder = run.dir / BASE_MODEL
        if not (folder / "config.json").is_file():  # a resumed run keeps its base weights
            from studio.trainer.tiny import build_tiny_model

            build_tiny_model(folder, rows, seed=profile.train.seed)
        return folder
    if name.startswith("builtin:"):
        raise ConfigError(f"model.name: unknown built-in model {name!r}; the built-in one is {TINY_MODEL!r}")
    if profile.model.random_init:
        folder = run.dir / BASE_MODEL
        if not (folder / "config.json").is_file():
            from studio.trainer.random_model import prepare_random_model

            prepare_random_model(profile, folder, rows, qlora=profile.method.type == "qlora")
        return folder
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ConfigError(f"model.name: {local} has no config.json; point it at a saved model folder")
        return local
    if name.startswith(("/", "./", "../", "~")):
        raise ConfigError(f"model.name: folder {local} does not exist")
    return fetch_model(name, profile.model.revision, writer)


def chat_rows_for_loss(tokenizer: Any, ds: Dataset, rows: list[dict[str, Any]], profile: Profile) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Decide how chat rows are trained, returning the rows and SFTConfig loss settings."""
    if ds.format not in ("messages", "sharegpt"):
        return rows, {"completion_only_loss": profile.data.completion_only_loss}
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise ConfigError(f"data: the rows are chat conversations but {profile.model.name}'s tokenizer has no chat "
                          "template; use an instruct/chat model, or a prompt/completion or text dataset")
    if not profile.data.completion_only_loss:
        return rows, {"assistant_only_loss": False}
    if "{% generation %}" in template or "{%- generation %}" in template:
        return rows, {"assistant_only_loss": True}
    # Without generation markers TRL cannot find every assistant turn; train on the
    # last assistant turn of each conversation as the completion instead.
    converted = []
    for r in rows:
        msgs = r["messages"]
        last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
        converted.append({"prompt": msgs[:last], "completion": [msgs[last]]})
    return converted, {"completion_only_loss": True, "loss_note": "the chat template has no {% generation %} "
                       "markers, so the loss covers the last assistant turn of each conversation"}


def token_lengths(tokenizer: Any, rows: list[dict[str, Any]]) -> list[int]:
    out: list[int] = []
    for i in range(0, len(rows), 512):
        batch = rows[i:i + 512]
        first = batch[0]
        if "messages" in first:
            ids = tokenizer.apply_chat_template([r["messages"] for r in batch], tokenize=True, return_dict=False)
            out.extend(len(x) for x in ids)
        elif "prompt" in first and isinstance(first["prompt"], list):
            ids = tokenizer.apply_chat_template([r["prompt"] + r["completion"] for r in batch], tokenize=True,
                                                return_dict=False)
            out.extend(len(x) for x in ids)
        elif "prompt" in first:
            enc = tokenizer([r["prompt"] + r["completion"] for r in batch])["input_ids"]
            out.extend(len(x) + 1 for x in enc)  # + EOS
        else:
            enc = tokenizer([r["text"] for r in batch])["input_ids"]
            out.extend(len(x) + 1 for x in enc)
    return out


def preflight(tokenizer: Any, ds: Dataset, rows: list[dict[str, Any]], eval_rows: list[dict[str, Any]],
              profile: Profile, loss: dict[str, Any]) -> dict[str, Any]:
    lengths = token_lengths(tokenizer, rows)
    max_len = profile.data.max_length
    truncated = [ds.row_numbers[i] for i, n in enumerate(lengths) if n > max_len] if len(rows) == len(ds.row_numbers) else []
    n_trunc = sum(1 for n in lengths if n > max_len)
    sorted_lens = sorted(lengths)
    return {
        "format": ds.format,
        "rows": len(rows) + len(eval_rows),
        "train_rows": len(rows),
        "eval_rows": len(eval_rows),
        "tokens": sum(lengths),
        "tokens_trained": sum(min(n, max_len) for n in lengths),
        "mean_tokens": round(sum(lengths) / len(lengths), 1) if lengths else 0,
        "p95_tokens": sorted_lens[int(0.95 * (len(sorted_lens) - 1))] if lengths else 0,
        "max_tokens": max(lengths, default=0),
        "max_length": max_len,
        "truncated_rows": n_trunc,
        "truncated_row_numbers": truncated[:100],
        "bad_rows": [{"row": b.row, "reason": b.reason} for b in ds.bad_rows[:100]],
        "bad_rows_count": len(ds.bad_rows),
        "loss_on": "assistant turns" if loss.get("assistant_only_loss") else (
            "completions" if loss.get("completion_only_loss") and ds.format != "text" else "all tokens"),
        **({"note": loss["loss_note"]} if "loss_note" in loss else {}),
    }


def load_model(profile: Profile, folder: Path, device: str, dtype: str, sharded: bool = False) -> Any:
    """The base model on the device; `sharded` when FSDP or ZeRO-3 will split it over GPUs."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"trust_remote_code": profile.model.trust_remote_code}
    if profile.model.attn_implementation != "auto":
        kwargs["attn_implementation"] = profile.model.attn_implementation
    if profile.method.type == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=profile.method.quant_type,
            bnb_4bit_use_double_quant=profile.method.double_quant, bnb_4bit_compute_dtype=TORCH_DTYPE[dtype],
            # FSDP and ZeRO-3 shard the 4-bit weights only when they are stored in the compute dtype.
            **({"bnb_4bit_quant_storage": TORCH_DTYPE[dtype]} if sharded else {}))
        kwargs["dtype"] = TORCH_DTYPE[dtype]
        if device == "cuda":
            kwargs["device_map"] = {"": torch.cuda.current_device()}
        model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
        # k-bit preparation: freeze the quantized base. PEFT's prepare_model_for_kbit_training
        # would also upcast embeddings, LM head and norms to fp32 (+2 bytes a parameter: +2.1 GB
        # on Llama 3 8B) for no measured gain; TRL enables input gradients for checkpointing.
        for param in model.parameters():
            param.requires_grad = False
    else:
        # Full fine-tuning in fp16 keeps fp32 master weights (AMP); fp16 weights cannot be unscaled.
        load_dtype = "fp32" if (profile.method.type == "full" and dtype == "fp16") else dtype
        kwargs["dtype"] = TORCH_DTYPE[load_dtype]
        if profile.model.random_init and not any(folder.glob("*.safetensors")):
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(folder, trust_remote_code=profile.model.trust_remote_code)
            init_device = torch.device("cuda") if device == "cuda" else torch.device("cpu")
            with init_device:
                model = AutoModelForCausalLM.from_config(config, **kwargs)
        else:
            model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    model.config.use_cache = False
    return model


def count_params(model: Any) -> tuple[int, int]:
    total = trainable = 0
    for p in model.parameters():
        n = p.numel() * (2 if type(p).__name__ == "Params4bit" else 1)  # two 4-bit values per byte
        total += n
        if p.requires_grad:
            trainable += n
    return total, trainable


def sft_config(profile: Profile, run: Run, device: str, dtype: str, loss: dict[str, Any], has_eval: bool,
               probe: bool = False) -> Any:
    from trl import SFTConfig

    t, d = profile.train, profile.data
    eval_strategy = "steps" if has_eval and t.eval_steps > 0 else "no"
    return SFTConfig(
        output_dir=str(run.dir / CHECKPOINTS),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps if t.max_steps > 0 else -1,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay,
        optim=HF_OPTIM[profile.optimizer],
        activation_checkpointing=t.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if t.gradient_checkpointing else None,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        eval_strategy=eval_strategy,
        eval_steps=t.eval_steps if eval_strategy == "steps" else None,
        save_strategy="no" if probe else "steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        report_to=[] if profile.output.report_to == "none" else [profile.output.report_to],
        bf16=dtype == "bf16",
        fp16=dtype == "fp16",
        use_cpu=device == "cpu",
        max_length=d.max_length,
        packing=d.packing,
        assistant_only_loss=loss.get("assistant_only_loss", False),
        completion_only_loss=loss.get("completion_only_loss"),
        disable_tqdm=True,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False if world_size() > 1 else None,
        use_liger_kernel=t.liger_kernel,
    )


def progress_before(run: Run, checkpoint: Path | None) -> tuple[float, int]:
    """Training time and tokens already spent up to `checkpoint`, from earlier step events."""
    if checkpoint is None:
        return 0.0, 0
    step = int(checkpoint.name.split("-")[1])
    steps = run.timeline().steps
    earlier = [steps[s] for s in sorted(steps) if s <= step]
    if not earlier:
        return 0.0, 0
    return float(earlier[-1].get("elapsed_s") or 0.0), int(earlier[-1].get("tokens") or 0)


def _train(run: Run, writer: EventWriter, stop: StopRequest, resume: bool, state: dict[str, Any],
           probe: bool = False) -> dict[str, Any]:
    from datasets import Dataset as HFDataset
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    profile = load_profile(run.profile_path)
    state["profile"] = profile
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = resolve_dtype(profile, device)
    check_requirements(profile, device)
    if probe:
        from studio.trainer.random_model import probe_rows

        t = profile.train
        count = max(t.max_steps, 1) * t.batch_size * t.grad_accum + t.batch_size
        ds = build_dataset(enumerate(probe_rows(profile.data.max_length, count, t.seed), start=1), "text")
        profile = replace(profile, data=replace(profile.data, eval_fraction=0.0, eval_split=""))
        state["profile"] = profile
    else:
        ds = load_data(profile, profile.data.split, writer)
    if ds.bad_rows and profile.data.on_bad_rows == "error":
        bad = [{"row": b.row, "reason": b.reason} for b in ds.bad_rows[:100]]
        writer.write("preflight", format=ds.format, rows=len(ds.rows) + len(ds.bad_rows), bad_rows=bad,
                     bad_rows_count=len(ds.bad_rows))
    check_bad_rows(ds, profile.data.on_bad_rows)
    rows, eval_rows = split_eval(profile, ds)

    from accelerate import PartialState

    # Under several processes the main one builds or downloads the model first; the others reuse it.
    with PartialState(cpu=device == "cpu").main_process_first():
        folder = model_folder(profile, run, ds.rows, writer)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=profile.model.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows, loss = chat_rows_for_loss(tokenizer, ds, rows, profile)
    eval_rows, _ = chat_rows_for_loss(tokenizer, ds, eval_rows, profile) if eval_rows else ([], {})
    stats = preflight(tokenizer, ds, rows, eval_rows, profile, loss)
    write_json(run.dir / "preflight.json", stats)
    writer.write("preflight", **stats)

    from studio.distributed import read_layout

    layout = read_layout(run.dir)
    model = load_model(profile, folder, device, dtype,
                       sharded=layout is not None and layout.strategy in ("fsdp", "deepspeed-zero3"))
    peft_config = None
    if profile.method.type in ("lora", "qlora"):
        from peft import LoraConfig

        targets = profile.method.target_modules
        peft_config = LoraConfig(
            r=profile.method.rank, lora_alpha=profile.method.alpha, lora_dropout=profile.method.dropout,
            target_modules="all-linear" if targets == ["all-linear"] else targets,
            use_dora=profile.method.use_dora, task_type="CAUSAL_LM")
    loss.pop("loss_note", None)
    checkpoint = last_complete_checkpoint(run.dir / CHECKPOINTS) if resume else None
    elapsed_s, tokens_before = progress_before(run, checkpoint)
    telemetry = Telemetry(writer, stop, elapsed_before_s=elapsed_s, tokens_before=tokens_before)
    trainer = SFTTrainer(
        model=model,
        args=sft_config(profile, run, device, dtype, loss, bool(eval_rows), probe),
        train_dataset=HFDataset.from_list(rows),
        eval_dataset=HFDataset.from_list(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[telemetry],
    )
    total, trainable = count_params(trainer.model)
    devices = ([torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if device == "cuda"
               else ["cpu"] * world_size())
    # Written by the callback once the trainer knows max_steps.
    telemetry.start_record = dict(
        config=profile.to_dict(), total_params=total, trainable_params=trainable, dataset=stats, devices=devices,
        device=device, dtype=dtype, optimizer=profile.optimizer, resumed_from=str(checkpoint) if checkpoint else None,
        pid=os.getpid(), torch=torch.__version__)
    if stop.requested:
        return {"status": "stopped", "message": "stopped before training began"}
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    st = trainer.state
    stopped = stop.requested and st.global_step < st.max_steps
    if not probe:
        trainer.save_model(str(run.dir / FINAL))
    if eval_rows and not stopped and st.global_step not in telemetry.evaluated_steps:
        trainer.evaluate()  # the callback writes the eval event
    return end_record(run, trainer, telemetry, result.metrics, stopped, probe)


def end_record(run: Run, trainer: Any, telemetry: Telemetry, metrics: dict[str, Any], stopped: bool,
               probe: bool) -> dict[str, Any]:
    """The `end` event of a run that trained: status, throughput, peak memory, what to do next."""
    st = trainer.state
    runtime = metrics.get("train_runtime") or (time.monotonic() - telemetry.train_started)
    tokens = int(getattr(trainer, "_total_train_tokens", telemetry.attempt_tokens))
    end: dict[str, Any] = {
        "status": "stopped" if stopped else "completed", "step": st.global_step, "max_steps": st.max_steps,
        "final": None if probe else str(run.dir / FINAL),
        "rss_peak_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB, 3),
        "train_runtime_s": round(runtime, 3), "train_tokens": tokens,
        "train_tokens_per_s": round(tokens / runtime, 1) if runtime else None,
        "train_loss": metrics.get("train_loss"),
    }
    if torch.cuda.is_available():
        dev = torch.cuda.current_device()  # rank 0's GPU; the step events carry every rank's
        end["gpu_mem_peak_gib"] = [round(torch.cuda.max_memory_allocated(dev) / GIB, 3)]
        end["gpu_mem_peak_reserved_gib"] = [round(torch.cuda.max_memory_reserved(dev) / GIB, 3)]
    if stopped:
        where = last_complete_checkpoint(run.dir / CHECKPOINTS)
        end["message"] = (f"stopped at step {st.global_step}; saved {where.name if where else 'no checkpoint'} "
                          "and the adapter in final/")
        end["advice"] = f"`studio resume {run.id}` continues from step {st.global_step}"
    return end


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


class NullWriter(EventWriter):
    """What ranks other than 0 write with: nothing, so the log has one writer."""

    def __init__(self) -> None:  # noqa: D107 - no file
        pass

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        return {"event": event, **fields}

    def close(self) -> None:
        pass


def train_run(run_dir: Path, resume: bool = False, probe: bool = False) -> int:
    """Run the trainer for `run_dir`; always ends the event log with an `end` record."""
    run = Run(run_dir)
    main = is_main_process()
    writer = EventWriter(run.events_path) if main else NullWriter()
    stop = StopRequest()
    stop.install()
    if main:
        run.update_status_file(trainer_pid=os.getpid(), state="running", world_size=world_size())
    state: dict[str, Any] = {}
    print(f"studio trainer pid {os.getpid()} run {run.dir} resume={resume}", flush=True)
    try:
        end = _train(run, writer, stop, resume, state, probe)
    except BaseException as e:  # noqa: BLE001 - every failure must end the log
        traceback.print_exc()
        info = classify(e, state.get("profile"))
        writer.write("end", status="failed", **info)
        if main:
            run.update_status_file(state="failed")
        print(f"run failed ({info['error_kind']}): {info['message']}\n  what to do: {info['advice']}", file=sys.stderr, flush=True)
        return 1
    writer.write("end", **end)
    if main:
        run.update_status_file(state=end["status"])
    print(f"run {end['status']} at step {end.get('step')}", flush=True)
    return 0
