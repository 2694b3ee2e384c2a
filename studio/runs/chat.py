"""Talking to a run's model: the client of the generation process (studio.generate).

The process loads the model once and stays up while the session is open; the CLI and
the app send prompts and read streamed tokens. Before anything loads, the session checks
that there is something to talk to, and that the model fits on a GPU next to whatever
is already there (a training job, say), and says what loading it will cost.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from studio.hardware import Inventory
from studio.planning.catalog import CatalogError, lookup_model
from studio.planning.estimate import inference_memory_gib
from studio.planning.inventory import current_inventory
from studio.profiles.profile import ProfileError, load_profile
from studio.runs.files import CHAT_LOG
from studio.runs.folder import Run, RunError, checkpoint_step
from studio.safeopen import append_regular
from studio.runs.liveness import is_alive

MODES = ("tuned", "base", "compare")


@dataclass
class ChatSettings:
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 256
    system: str = ""


@dataclass(frozen=True)
class Placement:
    """Where the generation process will run, and what the user should know first."""

    gpu_index: int | None
    notice: str


def place(run: Run, mode: str, inventory: Inventory) -> Placement:
    """The GPU with the most free memory, if the model fits there; raises RunError if it fits nowhere."""
    if not inventory.gpus:
        return Placement(None, "no GPU: answering on the CPU (slow for anything but small models)")
    try:
        profile = load_profile(run.profile_path)
        need = inference_memory_gib(lookup_model(profile.model.name), profile.method.type, copies=2 if (
            mode == "compare" and profile.method.type == "full") else 1)
    except (ProfileError, CatalogError):
        need = None
    gpu = max(inventory.gpus, key=lambda g: g.memory_free_gib)
    training = " (a training job is running)" if is_alive(run) else ""
    if need is None:
        return Placement(gpu.index, f"loading on GPU {gpu.index} ({gpu.memory_free_gib:.1f} GiB free{training}); "
                                    "no estimate for this model")
    if need > 0.9 * gpu.memory_free_gib:
        raise RunError(f"the model needs about {need:.1f} GiB to answer; the most free on a GPU is "
                       f"{gpu.memory_free_gib:.1f} GiB (GPU {gpu.index}){training}: wait for the run to end, stop "
                       "it, or free the GPU")
    return Placement(gpu.index, f"loading another copy of the model on GPU {gpu.index}: about {need:.1f} GiB of "
                                f"its {gpu.memory_free_gib:.1f} GiB free{training}")


def check_model_files(run: Run, mode: str, checkpoint: int | None) -> None:
    """There is something to talk to: the trained weights asked for, and the base model the run built."""
    if mode != "base":
        run.trained_weights(checkpoint)
    try:
        profile = load_profile(run.profile_path)
    except ProfileError as e:
        raise RunError(f"run {run.id}: its profile does not load ({'; '.join(e.problems)})") from None
    if profile.model.builds_in_run and not (run.base_model_dir / "config.json").is_file():
        raise RunError(f"run {run.id} has not built its model yet; try again once it has started training")


def weights_label(run: Run, loaded: str | None) -> str:
    """What a chat process loaded, in words: the base model, the final result, or a checkpoint's step."""
    if not loaded:
        return "the base model"
    path = Path(loaded)
    if path == run.final_dir or path.name == run.final_dir.name:
        return "the final result"
    step = checkpoint_step(path)
    return f"the checkpoint of step {step}" if step is not None else str(path)


def sides_of(mode: str) -> list[str]:
    return {"tuned": ["tuned"], "base": ["base"], "compare": ["base", "tuned"]}[mode]


class ChatSession:
    """One generation process for one run (its final adapter, a checkpoint, or the base model)."""

    def __init__(self, run: Run, checkpoint: int | None = None, mode: str = "tuned",
                 inventory: Inventory | None = None):
        if mode not in MODES:
            raise RunError(f"mode: one of {', '.join(MODES)}, got {mode!r}")
        check_model_files(run, mode, checkpoint)
        self.run, self.checkpoint, self.mode = run, checkpoint, mode
        self.placement = place(run, mode, inventory or current_inventory())
        self.proc: subprocess.Popen[str] | None = None
        self.ready: dict[str, Any] = {}
        self.note = ""  # what the user should know about this session (its log cannot be kept)
        self._next_id = 0

    @property
    def sides(self) -> list[str]:
        return sides_of(self.mode)

    def switch(self, mode: str) -> bool:
        """Answer as `mode` from now on, if the loaded process can (an adapter run answers every mode from
        one load); False when `mode` needs another load."""
        if self.proc is None or not set(sides_of(mode)) <= set(self.ready.get("sides") or []):
            return False
        self.mode = mode
        return True

    def start(self) -> dict[str, Any]:
        """Start the process and wait until the model is loaded; returns its `ready` record."""
        cmd = [sys.executable, "-m", "studio.generate", str(self.run.dir.resolve()), "--mode", self.mode]
        if self.checkpoint is not None:
            cmd += ["--checkpoint", str(self.checkpoint)]
        env = dict(os.environ, TOKENIZERS_PARALLELISM="false", CUDA_DEVICE_ORDER="PCI_BUS_ID")
        if self.placement.gpu_index is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(self.placement.gpu_index)
        self.run.check_contained()
        try:
            log: IO[bytes] | int = os.fdopen(append_regular(self.run.dir / CHAT_LOG), "ab")
        except OSError as e:
            if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT):
                raise RunError(f"run {self.run.id}: cannot open {CHAT_LOG}: {e.strerror or e}") from None
            # A read-only (or full) run folder: the chat still answers; its log and transcripts are not kept.
            self.note = f"{CHAT_LOG} cannot be written ({e.strerror}): answering without keeping a log or transcript"
            log = subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                                         bufsize=1, env=env, cwd=self.run.dir)
        finally:
            if not isinstance(log, int):
                log.close()
        first = self._read()
        if first.get("event") != "ready":
            self.close()
            raise RunError(first.get("message") or f"the chat process stopped; see {self.run.dir / 'chat.log'}")
        self.ready = first
        return first

    def _read(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                return {"event": "fatal", "message": f"the chat process exited; see {self.run.dir / 'chat.log'}"}
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a library printed to stdout: not ours
            if isinstance(record, dict):
                return record

    def ask(self, prompt: str, settings: ChatSettings | None = None) -> Iterator[dict[str, Any]]:
        """Send a prompt; yield `token`, `done` and `error` records until every side has answered."""
        if self.proc is None:
            self.start()
        settings = settings or ChatSettings()
        self._next_id += 1
        request = {"id": self._next_id, "prompt": prompt, "sides": self.sides, **asdict(settings)}
        self._send(request)
        pending = len(self.sides)
        while pending:
            record = self._read()
            kind = record.get("event")
            if kind == "fatal":
                yield {"event": "error", "message": record.get("message")}
                return
            if record.get("id") != self._next_id:
                continue
            yield record
            if kind == "done" or (kind == "error" and record.get("side")):
                pending -= 1
            elif kind == "error":
                return  # the whole request was refused (too long a prompt)

    def _send(self, request: dict[str, Any]) -> None:
        assert self.proc is not None
        stdin: IO[str] | None = self.proc.stdin
        try:
            assert stdin is not None
            stdin.write(json.dumps(request) + "\n")
            stdin.flush()
        except (BrokenPipeError, OSError, AssertionError):
            raise RunError(f"the chat process is gone; see {self.run.dir / 'chat.log'}") from None

    def close(self) -> None:
        if self.proc is None:
            return
        try:
            self._send({"quit": True})
        except RunError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def starting_prompts(run: Run, count: int = 5) -> list[str]:
    """A few prompts from the run's own data: its eval rows when it held some out, else its last rows."""
    from studio.data import DataError, held_out_indices, load_local, prompt_text
    from studio.paths import is_local

    try:
        profile = load_profile(run.profile_path)
        if not is_local(profile.data.path):
            return []
        ds = load_local(profile.data.path, profile.data.format)
    except (ProfileError, DataError, OSError):
        return []
    held = held_out_indices(len(ds.rows), profile.data.eval_fraction, profile.train.seed)
    rows = [ds.rows[i] for i in sorted(held)] or ds.rows[-count:]
    out = []
    for row in rows:
        prompt = prompt_text(ds.format, row)
        text = prompt[-1]["content"] if isinstance(prompt, list) and prompt else prompt
        if isinstance(text, str) and text.strip() and text not in out:
            out.append(text.strip())
        if len(out) == count:
            break
    return out
