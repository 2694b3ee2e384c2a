"""One training run, top to bottom: profile -> data -> tokenizer -> preflight -> model ->
TRL's trainer for the objective (SFTTrainer; DPO, ORPO and KTO in preference.py) -> events, checkpoints
and the final adapter or model.

`train_run` is the story; each step's details live in dataset.py, model.py and
config.py. Every way out of it, failures included, ends the event log with an
`end` record.
"""

from __future__ import annotations

import os
import resource
import sys
import traceback
from pathlib import Path
from dataclasses import replace
from typing import Any

import torch

from studio.atomic import write_json
from studio.data import DataError, check_bad_rows
from studio.planning.checks import objective_data_problem
from studio.hardware import GIB
from studio.profiles.profile import Profile, load_profile
from studio.profiles.vocabulary import SHARDED_STRATEGIES, unpacked_reason
from studio.runs.events import End, EventWriter, NullWriter, Start, to_record
from studio.runs.files import PREFLIGHT_FILE
from studio.runs.folder import Run, RunError, skipped_checkpoints
from studio.runs.lock import LockError, RunLock, inherited
from studio.trainer.config import (check_requirements, collective_timeout, is_machine_main, is_main_process,
                                   node_rank, resolve_dtype, sft_config, world_size)
from studio.planning.decisions import data_shape
from studio.planning.decisions import packing as packing_rule
from studio.planning.record import PlanRecord, Trained
from studio.profiles.decision import Decision
from studio.profiles.profile import with_changes
from studio.trainer.dataset import bad_rows_record, load_data, preflight, probe_dataset, rows_for_loss, split_eval
from studio.trainer.packing import packing_is_exact
from studio.trainer.preference import needs_reference_copy, preference_preflight, preference_trainer
from studio.trainer.rewards import ROW_COLUMN
from studio.trainer.tokenize import columns, tokenize_rows
from studio.trainer.failures import Diverged, LostPeer, failure_record, lost_peer
from studio.trainer.job_resume import job_checkpoint
from studio.trainer.model import count_params, load_model, load_tokenizer, lora_config, lora_modules, model_folder
from studio.trainer.stop import StopRequest
from studio.trainer.telemetry import Telemetry
from studio.runs.status import RunStatus

def train(run: Run, writer: EventWriter, stop: StopRequest, resume: bool, probe: bool) -> End:
    """Train the run's plan; returns its `end` record (completed or stopped)."""
    from datasets import Dataset as HFDataset
    from trl import SFTTrainer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    plan = run_plan(run)
    profile, decisions = plan.resolved, list(plan.decisions)  # every auto as the plan settled it for this machine
    dtype = resolve_dtype(profile, device)
    check_requirements(profile, device)

    # 1. Data: rows, an eval split, malformed rows refused or skipped.
    if probe:
        ds = probe_dataset(profile)
        profile = with_changes(profile, {"data.eval_fraction": 0.0, "data.eval_split": ""})
    else:
        ds = load_data(profile, profile.data.split, writer)
    if ds.bad_rows and profile.data.on_bad_rows == "error":
        writer.write(bad_rows_record(ds))
    check_bad_rows(ds, profile.data.on_bad_rows)
    if profile.train.objective == "grpo":  # a reward that fails names the data row it was scoring
        ds.rows = [{**row, ROW_COLUMN: number} for row, number in zip(ds.rows, ds.row_numbers)]
    rows, eval_rows = split_eval(profile, ds)

    # 2. Model folder and tokenizer; under several processes the main one builds or downloads first.
    from accelerate import PartialState

    # every machine makes its own copy; the timeout bounds every collective of the job (a lost machine)
    with PartialState(cpu=device == "cpu", timeout=collective_timeout(profile)).local_main_process_first():
        folder = model_folder(profile, run, ds.rows, writer, probe)
    tokenizer = load_tokenizer(folder, profile)

    # 3. Tokenize once (TRL trains on these ids), what the loss covers, and the preflight. Preference tuning:
    # TRL's trainers tokenize the pairs themselves; the preflight counts them in this model's tokens first.
    sft = profile.train.objective == "sft"
    if sft:
        rows, loss = rows_for_loss(tokenizer, ds, rows, profile)
        eval_rows, _ = rows_for_loss(tokenizer, ds, eval_rows, profile) if eval_rows else ([], loss)
        tokenized = tokenize_rows(tokenizer, rows, loss.assistant_only)
        eval_tokenized = tokenize_rows(tokenizer, eval_rows, loss.assistant_only) if eval_rows else None
        stats = preflight(tokenized, eval_tokenized, ds, profile, loss)
    else:
        check_objective_data(profile, ds.format)
        stats = preference_preflight(tokenizer, ds, rows, eval_rows, profile)
    write_json(run.dir / PREFLIGHT_FILE, to_record(stats))
    writer.write(stats)
    if sft:
        profile, decisions = decide_packing_from_data(profile, decisions, tokenized)
    elif profile.data.packing is not False:
        profile, decisions = overrule(profile, decisions, "data.packing", False, unpacked_reason(profile.train.objective))

    # 4. The model; packing only where this model keeps packed rows apart; then TRL's trainer.
    model = load_model(profile, folder, device, dtype, sharded=plan.layout.strategy in SHARDED_STRATEGIES,
                       random_init=probe or profile.model.random_init)
    if profile.data.packing is True:
        exact, why = packing_is_exact(model, [r["input_ids"] for r in tokenized.rows[:8]], tokenizer.pad_token_id)
        if not exact:
            profile, decisions = overrule(profile, decisions, "data.packing", False, why)
    if profile.train.liger_kernel is True:
        usable, why = liger_usable(model)
        if not usable:
            profile, decisions = overrule(profile, decisions, "train.liger_kernel", False, why)
    targets = lora_modules(profile, model)
    if targets.refused:  # all-linear, narrowed to what PEFT accepts on this model
        profile, decisions = overrule(profile, decisions, "method.target_modules", targets.modules, targets.note)
    checkpoint, agreed = job_checkpoint(run, resume, node_rank())  # every machine of a job from one step
    if agreed:
        print(agreed, flush=True)
    if resume:
        for name, why in skipped_checkpoints(run.checkpoints_dir):  # said, then passed over
            print(f"skipping {name}: {why}; resuming from "
                  f"{checkpoint.name if checkpoint else 'the start'}", flush=True)
    elapsed_s, tokens_before = progress_before(run, checkpoint)
    telemetry = Telemetry(writer, stop, elapsed_before_s=elapsed_s, tokens_before=tokens_before)
    peft_config = lora_config(profile, model, targets.modules)
    if sft:
        trainer = SFTTrainer(
            model=model,
            args=sft_config(profile, run, device, dtype, loss, bool(eval_rows), probe),
            train_dataset=HFDataset.from_dict(columns(tokenized)),
            eval_dataset=HFDataset.from_dict(columns(eval_tokenized)) if eval_tokenized else None,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[telemetry],
        )
    else:
        reference = None
        if needs_reference_copy(profile):  # the frozen copy DPO and KTO score against (full fine-tuning)
            reference = load_model(profile, folder, device, dtype, sharded=plan.layout.strategy in SHARDED_STRATEGIES,
                                   random_init=probe or profile.model.random_init).requires_grad_(False).eval()
        trainer = preference_trainer(profile, run, model, tokenizer, rows, eval_rows, device, dtype, probe,
                                     peft_config, [telemetry], reference)
    total, trainable = count_params(trainer.model)
    devices = ([torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if device == "cuda"
               else ["cpu"] * world_size())
    if is_machine_main():  # what this attempt trains, every decision made: the run's one record of it
        run.write_plan(replace(plan, trained=Trained(profile, tuple(decisions))))
    telemetry.start_record = Start(
        method=profile.method.type, model=profile.model.name, total_params=total, trainable_params=trainable, dataset=to_record(stats),
        devices=tuple(devices), device=device, dtype=dtype, optimizer=profile.optimizer,
        resumed_from=str(checkpoint) if checkpoint else None, pid=os.getpid(), torch=torch.__version__,
        **job_of(plan))
    if stop.requested:
        return End(status=RunStatus.STOPPED, step=0, message="stopped before training began")

    # 5. Train; save the result; evaluate at the end when nobody did at this step.
    try:
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except Exception as e:
        if lost_peer(str(e)):  # another machine is gone: keep what this one has, then fail naming it
            raise LostPeer(str(e), save_alone(trainer, run, plan, probe)) from e
        raise
    st = trainer.state
    stopped = stop.requested and st.global_step < st.max_steps
    if not probe:
        trainer.save_model(str(run.final_dir))
    if eval_rows and not stopped and st.global_step not in telemetry.evaluated_steps:
        trainer.evaluate()  # the callback writes the eval event
    return end_record(run, trainer, telemetry, result.metrics, stopped, probe)


def save_alone(trainer: Any, run: Run, plan: PlanRecord, probe: bool) -> int | None:
    """The weights of the last step every process finished, saved into final/ by the main process without the
    others (no collective: they are gone). Only where this process holds whole weights (one process, or DDP);
    the step saved, or None."""
    if probe or not is_main_process() or plan.layout.strategy in SHARDED_STRATEGIES:
        return None
    try:
        trainer.accelerator.unwrap_model(trainer.model).save_pretrained(str(run.final_dir))
    except Exception as e:  # noqa: BLE001 - the failure to report is the lost machine, not this save
        print(f"could not save the weights after losing a machine: {type(e).__name__}: {e}", flush=True)
        return None
    return trainer.state.global_step


def check_objective_data(profile: Profile, fmt: str) -> None:
    """A Hub dataset's rows are first seen here: their format must suit the objective (a local file's was
    checked before the run folder was made)."""
    problem = objective_data_problem(profile, fmt)
    if problem:
        raise DataError(problem)


def job_of(plan: PlanRecord) -> dict[str, Any]:
    """Which job a machine of a multi-machine run belongs to, for its `start` record."""
    layout = plan.layout
    if layout.num_machines <= 1:
        return {}
    return {"node_rank": node_rank(),
            "job": f"{layout.num_machines} machines x {layout.processes} process(es), main "
                   f"{layout.main_address}:{layout.main_port}; this is machine {node_rank()}"}


def run_plan(run: Run) -> PlanRecord:
    """The run's plan record; a run folder made without one (by hand, or by an older studio) is planned here,
    on this machine, through the same planner, from its profile.toml."""
    record = run.plan()
    if record is not None:
        return record
    from studio.planning.inventory import current_inventory
    from studio.planning.plan import plan_run

    return plan_run(load_profile(run.profile_path), current_inventory()).record()


def overrule(profile: Profile, decisions: list[Decision], key: str, value: Any,
             why: str) -> tuple[Profile, list[Decision]]:
    """Settle a decision the trainer makes itself (from the data or the real model), and say why (in the
    trainer's log, and in plan.json's `trained` record)."""
    print(f"{key} = {str(value).lower() if isinstance(value, bool) else value}: {why}", flush=True)
    kept = [d for d in decisions if d.key != key]
    return with_changes(profile, {key: value}), kept + [Decision(key, value, why)]


def decide_packing_from_data(profile: Profile, decisions: list[Decision],
                             tokenized: Any) -> tuple[Profile, list[Decision]]:
    """Packing the plan left pending (it had not seen the rows: a hub dataset): decided now, from the tokens."""
    decided = next((d for d in decisions if d.key == "data.packing"), None)
    if decided is None or not decided.pending:
        return profile, decisions
    t = profile.train
    shape = data_shape(tokenized.lengths, t.batch_size, profile.data.max_length, t.seed, exact=True)
    value, why = packing_rule("auto", shape, profile.data.max_length)
    return overrule(profile, decisions, "data.packing", value, why)


def liger_usable(model: Any) -> tuple[bool, str]:
    """Liger can patch this model: its package loads and knows the architecture."""
    try:
        from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN
    except Exception as e:  # noqa: BLE001 - a broken install, a missing Triton: train without it
        return False, f"liger-kernel does not load here ({type(e).__name__}: {e}); training without it"
    model_type = getattr(model.config, "model_type", "?")
    if model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        return False, f"Liger has no kernels for model type {model_type}; training without it"
    return True, ""


def progress_before(run: Run, checkpoint: Path | None) -> tuple[float, int]:
    """Training time and tokens already spent up to `checkpoint`, from earlier step events."""
    if checkpoint is None:
        return 0.0, 0
    step = int(checkpoint.name.split("-")[1])
    # bounded: exact when the checkpoint is among the last steps logged (the usual resume), else the nearest
    # sampled step before it
    earlier = [s for s in run.timeline().ordered_steps() if s.step <= step]
    if not earlier:
        return 0.0, 0
    return float(earlier[-1].elapsed_s or 0.0), int(earlier[-1].tokens or 0)


def end_record(run: Run, trainer: Any, telemetry: Telemetry, metrics: dict[str, Any], stopped: bool,
               probe: bool) -> End:
    """The `end` event of a run that trained: status, throughput, peak memory, what to do next."""
    st = trainer.state
    # The whole run's figures, over every attempt (a resumed run's end says what the run did, as its steps do).
    runtime = telemetry.elapsed_before_s + (metrics.get("train_runtime") or (telemetry.clock() - telemetry.train_started))
    tokens = int(telemetry.tokens_before + telemetry.attempt_tokens)
    peaks: dict[str, Any] = {}
    if torch.cuda.is_available():
        dev = torch.cuda.current_device()  # rank 0's GPU; the step events carry every rank's
        peaks = {"gpu_mem_peak_gib": (round(torch.cuda.max_memory_allocated(dev) / GIB, 3),),
                 "gpu_mem_peak_reserved_gib": (round(torch.cuda.max_memory_reserved(dev) / GIB, 3),)}
    message = advice = None
    if stopped:
        where = run.last_complete_checkpoint()
        record = run.status_file()
        why = f" ({record.stop_reason})" if record.stop_reason and record.stop_requested_at >= record.launched_at else ""
        message = (f"stopped at step {st.global_step}{why}; saved {where.name if where else 'no checkpoint'} and the "
                   "adapter in final/")
        advice = f"resume continues from step {st.global_step}"
    return End(status=RunStatus.STOPPED if stopped else RunStatus.COMPLETED, step=st.global_step, max_steps=st.max_steps,
               final=None if probe else str(run.final_dir),
               rss_peak_gib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB, 3),
               train_runtime_s=round(runtime, 3), train_tokens=tokens,
               train_tokens_per_s=round(tokens / runtime, 1) if runtime else None,
               train_loss=metrics.get("train_loss"), message=message, advice=advice, **peaks)


def record_unrecorded_trainer(run: Run) -> None:
    """A trainer (it holds the run's lock) whose run records no live trainer was started by a process killed
    before it could record it, or by hand: it records itself, with its process group (which holds the whole
    job), so that listings say running and stop and kill reach it."""
    from studio.runs.liveness import is_alive, is_trainer_process, process_start_time

    pid = os.getpid()
    if not is_alive(run) and is_trainer_process(pid, run.dir):
        run.update_status_file(pid=pid, pid_started_at=process_start_time(pid), pgid=os.getpgid(0))


def train_run(run_dir: Path, resume: bool = False, probe: bool = False, stop: StopRequest | None = None) -> int:
    """Run the trainer for `run_dir`; always ends the event log with an `end` record."""
    run = Run(run_dir)
    main = is_machine_main()  # each machine's first process keeps that machine's run folder
    try:
        run.check_contained()
        lock = hold_lock(run)  # noqa: F841 - held (open) for the trainer's life; the OS frees it on exit
    except (LockError, RunError) as e:
        print(f"{e}; this trainer does not start", file=sys.stderr)
        return 2
    try:
        writer = EventWriter(run.events_path) if main else NullWriter()
        if main:
            record_unrecorded_trainer(run)
    except OSError as e:
        print(f"cannot write to the run folder {run.dir}: {e}; make it writable and resume", file=sys.stderr)
        return 1
    stop = stop or StopRequest().install()
    print(f"studio trainer pid {os.getpid()} run {run.dir} resume={resume} probe={probe}", flush=True)
    profile = None
    try:
        profile = load_profile(run.profile_path)  # for the failure's advice; the trainer trains the plan
        end = train(run, writer, stop, resume, probe)
    except BaseException as e:  # noqa: BLE001 - every failure must end the log
        traceback.print_exc()
        if isinstance(e, Diverged) and main:
            set_aside_diverged(run, e)
        end = failure_record(e, profile)
        print(f"run failed ({end.error_kind}): {end.message}\n  what to do: {end.advice}", file=sys.stderr, flush=True)
        record_end(run, writer, end)
        return 1
    record_end(run, writer, end)
    print(f"run {end.status} at step {end.step}", flush=True)
    return 0


def set_aside_diverged(run: Run, e: Diverged) -> None:
    """After a divergence: the newest checkpoints whose weights are not finite are renamed *.nonfinite, so that
    resume and export start from the last finite one; it is named in the failure."""
    from safetensors import safe_open

    def finite(folder: Path) -> bool:
        for path in folder.glob("*.safetensors"):
            with safe_open(path, framework="pt") as f:
                if not all(bool(f.get_tensor(k).isfinite().all()) for k in f.keys()):
                    return False
        return True

    for step in reversed(run.complete_checkpoints()):
        folder = run.checkpoints_dir / f"checkpoint-{step}"
        try:
            if finite(folder):
                e.kept = folder.name
                return
            folder.rename(folder.with_name(f"{folder.name}.nonfinite"))
            e.set_aside.append(folder.name)
        except (OSError, RuntimeError) as problem:
            print(f"cannot check or set aside {folder.name}: {problem}", file=sys.stderr, flush=True)
            return


def hold_lock(run: Run) -> RunLock | None:
    """The run's lock, held until this process exits: the one its launcher passed down, or (started by hand)
    taken now. The ranks of an accelerate job run under their launcher's lock."""
    passed = inherited(run.dir)
    if passed is not None:
        return passed
    if world_size() > 1:
        return None
    return RunLock(run.dir).acquire()


def record_end(run: Run, writer: EventWriter, end: End) -> None:
    """Write the `end` record; a folder that can no longer be written leaves the run `crashed` (resumable)."""
    try:
        writer.write(end)
    except OSError as e:
        print(f"cannot record the end of the run in {run.dir}: {e}", file=sys.stderr, flush=True)
