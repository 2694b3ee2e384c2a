"""Which transformers class studio loads a model as: one rule for the estimate, the trainer, export and chat.

A checkpoint with a vision or audio tower loads whole, as its image-text class: the towers are in memory
(and in the estimate), frozen and untargeted when text is trained, and still there in a merged export. A
text model loads as the causal LM. Loading a multimodal checkpoint as its text-only class instead (what
AutoModelForCausalLM does for Qwen3.5 or Llama 4) would drop the towers from memory and from the export,
and some (Qwen3-VL, Mistral 3) have no text-only class at all."""

from __future__ import annotations

from typing import Any

TOWER_CONFIGS = ("vision_config", "audio_config", "speech_config")


def has_towers(config: Any) -> bool:
    return any(getattr(config, key, None) is not None for key in TOWER_CONFIGS)


def supports(auto_class: Any, config: Any) -> bool:
    """transformers (or the model's own code, for remote code) has a class of this kind for the config."""
    auto_map = getattr(config, "auto_map", None) or {}
    return auto_class.__name__ in auto_map or type(config) in auto_class._model_mapping


def model_class(config: Any) -> Any:
    """The Auto class to build or load `config`'s model with."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    order = ((AutoModelForImageTextToText, AutoModelForCausalLM) if has_towers(config)
             else (AutoModelForCausalLM, AutoModelForImageTextToText))
    return next((c for c in order if supports(c, config)), AutoModelForCausalLM)


def load_pretrained(source: Any, trust_remote_code: bool = False, revision: str | None = None, **kwargs: Any) -> Any:
    """`from_pretrained` through the class `model_class` picks for the checkpoint's config."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code, revision=revision)
    return model_class(config).from_pretrained(source, trust_remote_code=trust_remote_code, revision=revision,
                                               **kwargs)
