"""The trainer's model: find or build its folder, load it (4-bit for QLoRA), the LoRA config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from studio.anatomy.lora_targets import ALL_LINEAR, LoraTargets, lora_targets, tower_exclusion
from studio.anatomy.model_class import model_class
from studio.anatomy.read import build
from studio.paths import looks_local
from studio.profiles.profile import TRAIN_TOKENIZER, Profile
from studio.runs.events import EventWriter
from studio.runs.folder import Run
from studio.trainer.config import TORCH_DTYPE
from studio.trainer.failures import ConfigError
from studio.trainer.tokenizer_check import tokenizer_problem
from studio.trainer.hub import fetch_model

Rows = list[dict[str, Any]]


def model_folder(profile: Profile, run: Run, rows: Rows, writer: EventWriter, probe: bool) -> Path:
    """A local folder with the model's config, weights and tokenizer.

    The built-in tiny model and a probe's random-weight model are written into the run
    (a resumed run keeps them); a hub model is downloaded or found in the hub cache.
    """
    name = profile.model.name
    if name.startswith("builtin:"):
        folder = run.base_model_dir
        if not (folder / "config.json").is_file():
            from studio.trainer.tiny import build_tiny_model

            build_tiny_model(folder, rows, seed=profile.train.seed, name=name)
        return folder
    if probe or profile.model.random_init:
        folder = run.base_model_dir
        if not (folder / "config.json").is_file():
            from studio.trainer.random_model import prepare_random_model

            # A probe measures and is thrown away; a real run keeps its random weights, so that resume,
            # chat and export see the base it trained on.
            prepare_random_model(profile, folder, rows, weights=not probe or profile.method.type == "qlora",
                                 probe=probe)
        return folder
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ConfigError(f"model.name: {local} has no config.json; point it at a saved model folder")
        return local
    if looks_local(name):
        raise ConfigError(f"model.name: folder {local} does not exist")
    return fetch_model(name, profile.model.revision, writer)


def load_tokenizer(source: str | Path, profile: Profile, revision: str | None = None) -> Any:
    """The tokenizer from a model folder or hub id (or the one model.tokenizer names), with a pad token (the
    EOS token when it has none); a tokenizer that cannot train is refused with the choices."""
    named = profile.model.tokenizer and profile.model.tokenizer != TRAIN_TOKENIZER and \
        not profile.model.builds_in_run  # a model built in the run saved the chosen one with it
    if named:
        source, revision = profile.model.tokenizer, None
    tokenizer = saved_tokenizer(source, profile.model.trust_remote_code, revision)
    problem = tokenizer_problem(tokenizer)
    if problem:
        key = "model.tokenizer" if named else "model.name"
        raise ConfigError(f"{key}: {source} {problem}; name a tokenizer (a hub id or a folder with "
                          "tokenizer.json) in model.tokenizer, or set model.random_init = true and "
                          "model.tokenizer = \"train\" to train one on the data with random weights")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


GENERIC_TOKENIZERS = ("TokenizersBackend", "PreTrainedTokenizerFast")


def saved_tokenizer(source: str | Path, trust_remote_code: bool = False, revision: str | None = None) -> Any:
    """The tokenizer as its files hold it. transformers picks the tokenizer class from the model type when
    the files name the generic one, and a model type's class can split text its own way and add its own
    special tokens (Qwen2Tokenizer splits digits and adds <|endoftext|>): files saved from a generic tokenizer
    (studio's built-in models) are loaded as that, so training, merging and GGUF see the same tokens."""
    import json

    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    try:
        saved_class = json.loads((Path(source) / "tokenizer_config.json").read_text(encoding="utf-8")).get(
            "tokenizer_class")
    except (OSError, ValueError, AttributeError):
        saved_class = None
    if saved_class in GENERIC_TOKENIZERS and (Path(source) / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(source)
    tokenizer = AutoTokenizer.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    saved = saved_token_count(source)
    if saved is not None and len(tokenizer) > saved:
        # The model type's tokenizer class added its own default special tokens (Qwen2Tokenizer adds
        # <|endoftext|>) that the saved files do not have and the embedding has no row for: load as saved.
        tokenizer = PreTrainedTokenizerFast.from_pretrained(source)
    return tokenizer


def saved_token_count(source: str | Path) -> int | None:
    """How many tokens a local folder's tokenizer.json holds (None when it is not a local fast tokenizer)."""
    import json

    try:
        data = json.loads((Path(source) / "tokenizer.json").read_text(encoding="utf-8"))
        ids = list((data.get("model") or {}).get("vocab", {}).values()) + [t["id"] for t in data.get("added_tokens", [])]
        return max(ids) + 1 if ids and isinstance((data.get("model") or {}).get("vocab"), dict) else None
    except (OSError, ValueError, TypeError, KeyError):
        return None


def load_model(profile: Profile, folder: Path, device: str, dtype: str, sharded: bool, random_init: bool) -> Any:
    """The base model on the device, whole (`model_class`); `sharded` when FSDP or ZeRO-3 will split it over
    GPUs."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder, trust_remote_code=profile.model.trust_remote_code)
    auto = model_class(config)
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
        model = auto.from_pretrained(folder, **kwargs)
        # k-bit preparation: freeze the quantized base. PEFT's prepare_model_for_kbit_training
        # would also upcast embeddings, LM head and norms to fp32 (+2 bytes a parameter: +2.1 GB
        # on Llama 3 8B) for no measured gain; TRL enables input gradients for checkpointing.
        for param in model.parameters():
            param.requires_grad = False
    else:
        # Full fine-tuning in fp16 keeps fp32 master weights (AMP); fp16 weights cannot be unscaled.
        load_dtype = "fp32" if (profile.method.type == "full" and dtype == "fp16") else dtype
        kwargs["dtype"] = TORCH_DTYPE[load_dtype]
        if random_init and not any(folder.glob("*.safetensors")):
            with torch.device("cuda" if device == "cuda" else "cpu"):
                model = auto.from_config(config, **kwargs)
        else:
            model = auto.from_pretrained(folder, **kwargs)
    model.config.use_cache = False
    return model


def lora_config(profile: Profile, model: Any, modules: str | list[str]) -> Any:
    """PEFT's LoraConfig for lora and qlora on `modules` (see `lora_modules`); None for full fine-tuning."""
    if profile.method.type == "full":
        return None
    from peft import LoraConfig

    m = profile.method
    # A multimodal checkpoint's vision and audio towers stay frozen and untargeted when text is trained.
    return LoraConfig(r=m.rank, lora_alpha=m.alpha, lora_dropout=m.dropout, target_modules=modules,
                      exclude_modules=tower_exclusion(model), use_dora=m.use_dora, task_type="CAUSAL_LM")


def lora_modules(profile: Profile, model: Any) -> LoraTargets:
    """What LoRA wraps: the profile's names, or all-linear as PEFT takes it on this model (the linears it
    accepts where it refuses some, as the estimate counted them), decided on a skeleton of the model."""
    if profile.method.target_modules != [ALL_LINEAR]:
        return LoraTargets(list(profile.method.target_modules))
    import copy

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the skeleton is only looked at: nothing to quantize

    return lora_targets(lambda: build(config, profile.model.trust_remote_code))  # as the anatomy decided it


def count_params(model: Any) -> tuple[int, int]:
    """(total, trainable) parameters; a 4-bit weight counts as two values a byte."""
    total = trainable = 0
    for p in model.parameters():
        n = p.numel() * (2 if type(p).__name__ == "Params4bit" else 1)
        total += n
        if p.requires_grad:
            trainable += n
    return total, trainable
