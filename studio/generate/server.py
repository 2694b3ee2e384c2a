"""Load a run's model once, then answer prompts read from stdin, streaming tokens to stdout.

Protocol: one JSON object per line each way.
  in:   {"id": 1, "prompt": "...", "system": "...", "temperature": 0.7, "top_p": 0.9, "max_new_tokens": 256}
        {"quit": true}
  out:  {"event": "ready", "model": ..., "adapter": ..., "device": ..., "dtype": ..., "mode": ..., "load_s": ...}
        {"event": "token", "id": 1, "side": "tuned"|"base", "text": "..."}
        {"event": "done", "id": 1, "side": ..., "text": ..., "tokens": n, "ttft_s": ..., "tokens_per_s": ...}
        {"event": "error", "id": 1, "message": "..."}        (the process goes on)
        {"event": "fatal", "message": "..."}                  (it could not load; it exits)
Prompts are formatted as the run was trained: its chat template for chat data, the Alpaca
template for Alpaca rows, the bare prompt for prompt/completion and text. Each exchange is
appended to <run>/chats/<session>.jsonl.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from studio.data import ALPACA_TEMPLATE
from studio.paths import looks_local
from studio.profiles.profile import Profile, load_profile
from studio.profiles.vocabulary import TORCH_NAMES, auto_dtype
from studio.runs.chat import sides_of
from studio.runs.files import PREFLIGHT_FILE
from studio.runs.folder import Run, RunError

DEFAULTS = {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 256}


def emit(**record: Any) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def base_folder(run: Run, profile: Profile) -> str:
    """Where the run's base model is: inside the run (built-in or random weights), a folder, or a hub id."""
    name = run.base_model(profile.model)
    if profile.model.builds_in_run or looks_local(name):
        return name
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name, revision=profile.model.revision, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached: from_pretrained fetches it (and says why if it cannot)
        return name


class Models:
    """The tuned model and, for comparison, the base one (for adapters: the same weights, adapter off)."""

    def __init__(self, run: Run, checkpoint: int | None, mode: str):
        import torch

        from studio.anatomy.model_class import load_pretrained
        from studio.trainer.model import saved_tokenizer

        self.run, self.mode = run, mode
        self.profile = load_profile(run.profile_path)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        gpu = self.device == "cuda"
        self.dtype = getattr(torch, TORCH_NAMES[auto_dtype(self.profile.model.dtype, gpu,
                                                              gpu and torch.cuda.is_bf16_supported())])
        base = base_folder(run, self.profile)
        trained = run.trained_weights(checkpoint) if mode != "base" else None
        self.adapter = str(trained) if trained else None
        tokenizer_from = trained if trained and (trained / "tokenizer_config.json").is_file() else base
        # as the trainer read it, so that chat and eval tokenize what it trained on the same way
        self.tokenizer = saved_tokenizer(tokenizer_from, self.profile.model.trust_remote_code)
        kwargs: dict[str, Any] = {"dtype": self.dtype, "trust_remote_code": self.profile.model.trust_remote_code}
        if self.profile.method.type == "qlora":
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type=self.profile.method.quant_type,
                bnb_4bit_use_double_quant=self.profile.method.double_quant, bnb_4bit_compute_dtype=self.dtype)
        full = self.profile.method.type == "full"
        self.base = None
        if trained is not None and full:
            self.tuned = load_pretrained(trained, **kwargs)
            if mode == "compare":
                self.base = load_pretrained(base, **kwargs)
        else:
            model = load_pretrained(base, **kwargs)
            if trained is not None:
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, str(trained))
            self.tuned = model
        for m in (self.tuned, self.base):
            if m is not None:
                if "quantization_config" not in kwargs:
                    m.to(self.device)
                m.eval()
        self.context = int(getattr(self.tuned.config, "max_position_embeddings", 0) or 0)
        preflight = run.read_json(PREFLIGHT_FILE)
        self.format = preflight.get("format") if isinstance(preflight.get("format"), str) else "messages"

    def sides(self) -> list[str]:
        return sides_of(self.mode)

    def servable(self) -> list[str]:
        """Every side this process can answer without loading anything: an adapter answers for the base
        model too (switched off), a fully tuned model only when its base was loaded beside it."""
        out = []
        adapter = self.adapter is not None and self.profile.method.type != "full"
        if self.mode == "base" or self.base is not None or adapter:
            out.append("base")
        if self.mode != "base":
            out.append("tuned")
        return out

    def side(self, side: str) -> tuple[Any, bool]:
        """(the model that answers for `side`, whether its adapter must be off): the base of an adapter run is
        the tuned model with its adapter turned off."""
        if side == "base" and self.base is not None:
            return self.base, False
        return self.tuned, side == "base" and self.adapter is not None

    def prompt_ids(self, prompt: str, system: str | None) -> list[int]:
        """The prompt as the run saw its training rows."""
        tok = self.tokenizer
        chat = self.format in ("messages", "sharegpt") and getattr(tok, "chat_template", None)
        if chat:
            turns = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
            ids = tok.apply_chat_template(turns, tokenize=True, add_generation_prompt=True, return_dict=False)
            return list(ids)
        if self.format == "alpaca":
            prompt = ALPACA_TEMPLATE.format(instruction=prompt)
        return list(tok(prompt)["input_ids"])

    def generate(self, request_id: int, side: str, ids: list[int], settings: dict[str, Any]) -> dict[str, Any]:
        import contextlib

        import torch
        from transformers import TextIteratorStreamer

        model, adapter_off = self.side(side)
        class TimedStreamer(TextIteratorStreamer):
            """Notes when the first new token arrives, visible or not (special tokens print nothing)."""

            first_token_at: float | None = None

            def put(self, value: Any) -> None:
                if not self.next_tokens_are_prompt and self.first_token_at is None:
                    self.first_token_at = time.monotonic()
                super().put(value)

        streamer = TimedStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        temperature = float(settings["temperature"])
        kwargs = dict(input_ids=torch.tensor([ids], device=model.device), max_new_tokens=int(settings["max_new_tokens"]),
                      do_sample=temperature > 0, streamer=streamer,
                      pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        if temperature > 0:
            kwargs.update(temperature=temperature, top_p=float(settings["top_p"]))
        result: dict[str, Any] = {}

        def run() -> None:
            ctx = model.disable_adapter() if adapter_off else contextlib.nullcontext()
            try:
                with ctx, torch.no_grad():
                    result["ids"] = model.generate(**kwargs)
            except Exception as e:  # noqa: BLE001 - reported as this request's error
                result["error"] = e
                streamer.end()

        t0 = time.monotonic()
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        text = ""
        for piece in streamer:
            if piece:
                text += piece
                emit(event="token", id=request_id, side=side, text=piece)
        thread.join()
        if "error" in result:
            raise result["error"]
        end = time.monotonic()
        tokens = int(result["ids"].shape[-1] - len(ids)) if "ids" in result else 0
        first = streamer.first_token_at or end
        decode = (tokens - 1) / (end - first) if tokens > 1 and end > first else None
        return {"side": side, "text": text, "tokens": tokens, "ttft_s": round(first - t0, 4),
                "tokens_per_s": round(decode, 2) if decode else None}


def serve(run_dir: Path, checkpoint: int | None, mode: str) -> int:
    run = Run(run_dir)
    t0 = time.monotonic()
    try:
        models = Models(run, checkpoint, mode)
    except RunError as e:
        emit(event="fatal", message=str(e))
        return 2
    except Exception as e:  # noqa: BLE001 - every way out says why
        traceback.print_exc()
        emit(event="fatal", message=f"could not load the model: {type(e).__name__}: {e}")
        return 1
    emit(event="ready", model=models.profile.model.name, adapter=models.adapter, device=models.device,
         dtype=str(models.dtype).removeprefix("torch."), mode=mode, sides=models.servable(), context=models.context,
         load_s=round(time.monotonic() - t0, 2))
    session = time.strftime("%Y%m%d-%H%M%S")
    for line in sys.stdin:
        try:
            request = json.loads(line)
        except ValueError:
            emit(event="error", message="not a JSON request")
            continue
        if not isinstance(request, dict) or request.get("quit"):
            break
        answer(models, request, session)
    emit(event="bye")
    return 0


def answer(models: Models, request: dict[str, Any], session: str) -> None:
    request_id = request.get("id", 0)
    settings = {k: request.get(k, v) for k, v in DEFAULTS.items()}
    prompt, system = str(request.get("prompt", "")), request.get("system") or None
    ids = models.prompt_ids(prompt, system)
    if models.context and len(ids) + int(settings["max_new_tokens"]) > models.context:
        emit(event="error", id=request_id, message=(
            f"the prompt is {len(ids)} tokens; with up to {settings['max_new_tokens']} new tokens that is over the "
            f"model's context of {models.context}: shorten the prompt or lower max new tokens"))
        return
    answers = []
    asked = request.get("sides")
    sides = [s for s in models.servable() if s in asked] if isinstance(asked, list) else models.sides()
    for side in sides:
        try:
            done = models.generate(request_id, side, ids, settings)
        except Exception as e:  # noqa: BLE001 - one failed answer, the session goes on
            emit(event="error", id=request_id, side=side, message=f"{type(e).__name__}: {e}")
            continue
        answers.append(done)
        emit(event="done", id=request_id, **done)
    record = {"time": time.time(), "prompt": prompt, "system": system, "settings": settings,
              "adapter": models.adapter, "answers": answers}
    try:
        chats = models.run.dir / "chats"
        chats.mkdir(mode=0o700, exist_ok=True)
        with (chats / f"{session}.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as e:
        print(f"transcript not saved: {e}", file=sys.stderr, flush=True)
