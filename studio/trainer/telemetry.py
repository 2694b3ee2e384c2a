"""The trainer's callback: step/eval/checkpoint events, and turning a stop request into a save."""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import psutil
import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from studio.hardware import GIB, PowerMeter
from studio.runs.events import Checkpoint, Eval, EventWriter, Start, Step, Stopping
from studio.trainer.rewards import SAMPLED
from studio.trainer.failures import Diverged
from studio.trainer.stop import StopRequest


def device_memory() -> dict[str, Any]:
    """torch's view of this process's GPU (lists, one entry per rank once gathered), and its RSS."""
    out: dict[str, Any] = {"rss_gib": round(psutil.Process().memory_info().rss / GIB, 3)}
    if torch.cuda.is_available():
        # Only this process's device: asking about the others would open a CUDA context on each.
        dev = torch.cuda.current_device()
        out["gpu_mem_allocated_gib"] = [round(torch.cuda.memory_allocated(dev) / GIB, 3)]
        out["gpu_mem_reserved_gib"] = [round(torch.cuda.memory_reserved(dev) / GIB, 3)]
        out["gpu_mem_peak_gib"] = [round(torch.cuda.max_memory_allocated(dev) / GIB, 3)]
        out["gpu_mem_peak_reserved_gib"] = [round(torch.cuda.max_memory_reserved(dev) / GIB, 3)]
    return out


GPU_KEYS = ("gpu_mem_allocated_gib", "gpu_mem_reserved_gib", "gpu_mem_peak_gib", "gpu_mem_peak_reserved_gib")


def gather_memory(args: TrainingArguments, mem: dict[str, Any]) -> dict[str, Any]:
    """Every rank's GPU memory, in rank order, on rank 0 (all ranks must call this together)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1 or GPU_KEYS[0] not in mem:
        return mem
    mine = torch.tensor([mem[k][0] for k in GPU_KEYS], device=args.device)
    everyone = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(everyone, mine)
    return {**mem, **{k: [round(float(t[i]), 3) for t in everyone] for i, k in enumerate(GPU_KEYS)}}


class Telemetry(TrainerCallback):
    """Writes `step`, `eval`, `checkpoint` and `stopping` events; turns a stop request into a save + stop."""

    def __init__(self, writer: EventWriter, stop: StopRequest, elapsed_before_s: float = 0.0,
                 tokens_before: int = 0, window_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.writer = writer
        self.stop = stop
        self.elapsed_before_s = elapsed_before_s
        self.tokens_before = tokens_before  # trained before the checkpoint this attempt resumed from
        self.window_s = window_s
        self.power = PowerMeter()
        self.clock = clock
        self._window: deque[tuple[float, float, int]] = deque()  # (time, tokens, step)
        # The pace for the ETA, from the attempt's first logged step on: the first step of an attempt carries its
        # warm-up (loading the data, the first forward), which made the ETA of a resumed run jump about.
        self._pace: deque[tuple[float, int]] = deque()  # (time, step)
        self._t0 = clock()
        self._stop_announced = False
        self.attempt_tokens = 0
        self.train_started = 0.0
        self.start_record = Start()
        # Ranks under a launcher watch it; a lone trainer outlives whoever started it.
        self.launcher_pid = os.getppid() if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None
        self.evaluated_steps: set[int] = set()

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self._t0 = self.clock()
        self.train_started = self._t0
        self._window.append((self._t0, float(self.tokens_before), state.global_step))
        if state.is_world_process_zero or state.is_local_process_zero:
            # Another machine's folder says which job it belongs to; the steps are the main machine's.
            self.writer.write(replace(self.start_record, max_steps=state.max_steps, step=state.global_step))

    def _trim(self, window: deque[Any], now: float) -> None:
        """Keep the last window_s seconds of (time, ...) entries, and at least two."""
        while len(window) > 2 and now - window[0][0] > self.window_s:
            window.popleft()

    def _rate(self, now: float, tokens: float, step: int) -> tuple[float, float | None]:
        self._window.append((now, tokens, step))
        self._trim(self._window, now)
        t0, tok0, step0 = self._window[0]
        dt = now - t0
        tokens_per_s = (tokens - tok0) / dt if dt > 0 else 0.0
        self._pace.append((now, step))
        self._trim(self._pace, now)
        p0, pstep0 = self._pace[0]
        s_per_step = (now - p0) / (step - pstep0) if step > pstep0 else None
        return tokens_per_s, s_per_step

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if not logs or "loss" not in logs:
            return  # the summary log at train end has no "loss" (on every rank alike)
        check_finite(state.global_step, logs)  # every rank sees the same (reduced) figures and stops alike
        memory = gather_memory(args, device_memory())  # every rank takes part
        if not state.is_world_process_zero:
            return
        now = self.clock()
        # TRL counts non-padding tokens of this attempt (gathered over ranks) as num_tokens.
        self.attempt_tokens = int(logs.get("num_tokens", self.attempt_tokens))
        tokens = float(self.tokens_before + self.attempt_tokens)
        tokens_per_s, s_per_step = self._rate(now, tokens, state.global_step)
        remaining = max(state.max_steps - state.global_step, 0)
        step = Step(
            step=state.global_step, max_steps=state.max_steps, epoch=round(state.epoch or 0.0, 4),
            loss=_number(logs["loss"]), learning_rate=_number(logs.get("learning_rate")),
            grad_norm=_number(logs.get("grad_norm")), tokens=int(tokens), tokens_per_s=round(tokens_per_s, 1),
            elapsed_s=round(self.elapsed_before_s + now - self._t0, 2),
            eta_s=round(remaining * s_per_step, 1) if s_per_step is not None else None,
            mean_token_accuracy=_number(logs.get("mean_token_accuracy")), entropy=_number(logs.get("entropy")),
            **{field: _number(logs.get(name)) for name, field in PREFERENCE_LOGS.items()},
            rewards={key[len("rewards/"):-len("/mean")]: _number(value) for key, value in logs.items()
                     if key.startswith("rewards/") and key.endswith("/mean") and _number(value) is not None},
            **{k: (tuple(v) if isinstance(v, list) else v) for k, v in memory.items()},
            **{k: (tuple(v) if isinstance(v, list) else v) for k, v in self.power.sample(time.time()).items()})
        self.writer.write(step)
        print(step_line(step), flush=True)  # the log's own line per step (the Trainer's dict is noise beside it)
        if step.reward is not None:  # GRPO: what it sampled lately, and what the rewards made of it
            for line in SAMPLED.lines():
                print(f"  {line}", flush=True)

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    metrics: dict[str, float] | None = None, **kw: Any) -> None:
        self.evaluated_steps.add(state.global_step)
        if state.is_world_process_zero and metrics and "eval_loss" in metrics:
            record = Eval(step=state.global_step, eval_loss=_number(metrics["eval_loss"]),
                          epoch=round(state.epoch or 0.0, 4))
            self.writer.write(record)
            if record.eval_loss is not None:
                print(f"eval at step {record.step}: loss {record.eval_loss:.4f}", flush=True)
        if metrics and "eval_loss" in metrics:
            value = _number(metrics["eval_loss"])
            if value is not None and not math.isfinite(value):
                raise Diverged(state.global_step, f"eval loss is {value}")

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        if state.is_world_process_zero:
            path = f"{args.output_dir}/checkpoint-{state.global_step}"
            self.writer.write(Checkpoint(step=state.global_step, path=path))
            print(f"checkpoint saved at step {state.global_step}: {path}", flush=True)

    def _stop_agreed(self, args: TrainingArguments) -> bool:
        """Every rank must stop at the same step, or the others wait forever in a collective."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self.stop.requested
        flag = torch.tensor([1.0 if self.stop.requested else 0.0], device=args.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() > 0 and not self.stop.requested:
            self.stop.requested, self.stop.signal_name = True, "peer rank"
        return flag.item() > 0

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        if self.launcher_pid is not None and os.getppid() != self.launcher_pid:
            # The launcher was killed: a rank left behind must not hold a GPU.
            os._exit(1)
        if self._stop_agreed(args):
            if not self._stop_announced:
                self._stop_announced = True
                self.writer.write(Stopping(step=state.global_step, signal=self.stop.signal_name,
                                           message="stop requested: saving a checkpoint at this step"))
            control.should_save = True
            control.should_training_stop = True


def check_finite(step: int, logs: dict[str, Any]) -> None:
    """A NaN or infinite loss or gradient norm ends the run at this step (before this step's checkpoint)."""
    for key, label in (("loss", "loss"), ("grad_norm", "gradient norm")):
        value = _number(logs.get(key))
        if value is not None and not math.isfinite(value):
            raise Diverged(step, f"{label} is {value}")


# TRL's preference trainers log these; the step record names them
PREFERENCE_LOGS = {"rewards/chosen": "reward_chosen", "rewards/rejected": "reward_rejected",
                   "rewards/margins": "reward_margin", "rewards/accuracies": "reward_accuracy", "kl": "kl",
                   "reward": "reward", "completions/mean_length": "completion_length",
                   "clip_ratio/region_mean": "clip_ratio"}


def step_line(step: Step) -> str:
    """A logged step as one line of the trainer's log."""
    parts = [f"step {step.step}/{step.max_steps}"]
    if step.loss is not None:
        parts.append(f"loss {step.loss:.4f}")
    parts += step.preference_figures()
    if step.learning_rate is not None:
        parts.append(f"lr {step.learning_rate:.2e}")
    if step.tokens_per_s:
        parts.append(f"{step.tokens_per_s:,.0f} tok/s")
    if step.eta_s is not None:
        parts.append(f"eta {timedelta(seconds=round(step.eta_s))}")
    return " · ".join(parts)


def _number(value: Any) -> float | None:
    """A logged metric as a float (TRL logs tensors and numbers alike); None when it is not one."""
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
