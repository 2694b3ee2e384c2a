"""Models built from a config with random weights, for probing memory and speed.

Memory and speed do not depend on the weights, so a probe needs only the
config: from a local folder, studio's catalog, or the hub (config.json only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from studio.planning.catalog import CatalogError, ModelSpec, lookup_model
from studio.profiles.profile import TRAIN_TOKENIZER, Profile
from studio.trainer.failures import ConfigError

PROBE_WORDS = ("the quick brown fox jumps over a lazy dog while seven small birds sing about rain "
               "models learn patterns from data and memory grows with every token in the batch").split()


def config_from_spec(spec: ModelSpec) -> Any:
    """A transformers config with the catalog entry's shapes."""
    import transformers as tf

    common = dict(vocab_size=spec.vocab, hidden_size=spec.hidden, num_hidden_layers=spec.layers,
                  num_attention_heads=spec.heads, tie_word_embeddings=spec.tied, max_position_embeddings=8192)
    if spec.arch == "llama":
        return tf.LlamaConfig(intermediate_size=spec.intermediate, num_key_value_heads=spec.kv_heads,
                              head_dim=spec.hd, attention_bias=spec.qkv_bias, **common)
    if spec.arch == "mixtral":
        return tf.MixtralConfig(intermediate_size=spec.intermediate, num_key_value_heads=spec.kv_heads,
                                num_local_experts=spec.experts, num_experts_per_tok=spec.experts_per_token, **common)
    if spec.arch == "phi3":
        return tf.Phi3Config(intermediate_size=spec.intermediate, num_key_value_heads=spec.kv_heads, **common)
    if spec.arch == "phi":
        return tf.PhiConfig(intermediate_size=spec.intermediate, num_key_value_heads=spec.kv_heads, **common)
    if spec.arch == "neox":
        return tf.GPTNeoXConfig(intermediate_size=spec.intermediate, **common)
    if spec.arch == "falcon":
        return tf.FalconConfig(num_kv_heads=spec.kv_heads, new_decoder_architecture=spec.kv_heads > 1,
                               multi_query=spec.kv_heads == 1, ffn_hidden_size=spec.intermediate,
                               **{k: v for k, v in common.items() if k != "max_position_embeddings"})
    if spec.arch == "bigcode":
        return tf.GPTBigCodeConfig(n_embd=spec.hidden, n_layer=spec.layers, n_head=spec.heads,
                                   n_inner=spec.intermediate, vocab_size=spec.vocab, multi_query=spec.kv_heads == 1,
                                   n_positions=8192)
    raise ConfigError(f"model.random_init: {spec.id} ({spec.arch}) needs its own modelling code; "
                      "point model.name at a local folder with its config.json and code")


def load_config(profile: Profile) -> Any:
    from transformers import AutoConfig

    name = profile.model.name
    trust = profile.model.trust_remote_code
    local = Path(name).expanduser()
    if local.is_dir():
        return AutoConfig.from_pretrained(local, trust_remote_code=trust)
    try:
        spec = lookup_model(name, trust_remote_code=trust, revision=profile.model.revision, read_code=False)
        if spec.config is not None:  # the catalog's, or a Hub config studio fetched and cached
            fields = dict(spec.config)
            return AutoConfig.for_model(fields.pop("model_type"), **fields)
        if spec.source == "catalog":
            return config_from_spec(spec)
    except (CatalogError, ValueError, KeyError):
        pass
    from huggingface_hub import hf_hub_download

    from studio.trainer.hub import DownloadError, describe_hub_error

    try:
        path = hf_hub_download(name, "config.json", revision=profile.model.revision)
    except Exception as e:
        raise DownloadError(describe_hub_error(name, "model config", e)) from e
    return AutoConfig.from_pretrained(Path(path).parent, trust_remote_code=trust)


def tokenizer_for(profile: Profile, rows: list[dict[str, Any]], vocab_size: int, probe: bool) -> Any:
    """The tokenizer a model built with random weights gets: the one model.tokenizer names, one trained on
    the rows ("train"), or the model's own. A folder without a usable one is a choice for the user (a probe,
    which only measures, trains one); a Hub model that cannot be fetched (offline, gated) gets one trained on
    the rows, as the weights are random anyway."""
    from transformers import AutoTokenizer

    from studio.trainer.tokenizer_check import tokenizer_problem
    from studio.trainer.tiny import train_tokenizer

    choice, name = profile.model.tokenizer, profile.model.name
    if choice == TRAIN_TOKENIZER:
        return train_tokenizer(rows, min(vocab_size, 4096))
    source = choice or name
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=None if choice else profile.model.revision,
                                                  trust_remote_code=profile.model.trust_remote_code)
        problem = tokenizer_problem(tokenizer)
    except Exception as e:  # noqa: BLE001 - whatever transformers makes of a folder or id without one
        tokenizer, problem = None, f"has no tokenizer transformers can load ({type(e).__name__})"
    if problem is None:
        return tokenizer
    if probe or (not choice and not Path(name).expanduser().is_dir()):
        return train_tokenizer(rows, min(vocab_size, 4096))
    key = "model.tokenizer" if choice else "model.name"
    raise ConfigError(f"{key}: {source} {problem}; set model.tokenizer = \"train\" to train one on the data, "
                      "or name a tokenizer (a hub id or a folder with tokenizer.json) in model.tokenizer")


def prepare_random_model(profile: Profile, folder: Path, rows: list[dict[str, Any]], weights: bool,
                         probe: bool = False) -> None:
    """Write config and tokenizer into `folder`, and with `weights` the random weights themselves (a run that
    resumes, chats or exports needs the same base again; bitsandbytes quantizes only while loading)."""
    config = load_config(profile)
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    tokenizer_for(profile, rows, text.vocab_size, probe).save_pretrained(folder)
    if weights:
        import torch

        from studio.anatomy.model_class import model_class
        from studio.trainer.tiny import save_machine_copy

        torch.manual_seed(profile.train.seed)
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):  # random init is fast on a GPU
            save_machine_copy(model_class(config).from_config(config, dtype=torch.bfloat16), folder)


def probe_rows(max_length: int, count: int, seed: int) -> list[dict[str, Any]]:
    """Text rows long enough to fill max_length tokens: the worst case for memory."""
    import random

    rng = random.Random(seed)
    return [{"text": " ".join(rng.choice(PROBE_WORDS) for _ in range(max_length + 8))} for _ in range(count)]
