"""Profiles: everything about a run, as TOML on disk and dataclasses in memory.

A profile is read with tomllib, checked field by field (every problem names its
key and says what is allowed), filled with defaults, and written back with
tomli-w through an atomic rename.
"""

from __future__ import annotations

import difflib
import re
import math
import os
import sys
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from collections.abc import Sequence
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

import tomli_w

from studio.atomic import write_text
from studio.safeopen import read_regular
from studio.paths import looks_local
from studio.profiles.vocabulary import (BUILTIN_REWARDS, DPO_LOSSES, METHODS, OBJECTIVES, OPTIMIZERS, STRATEGIES,
                                        resolve_optimizer)
from studio.terminal import has_unsafe, safe

TINY_MODEL = "builtin:tiny-llama"
MAX_PROFILE_BYTES = 1 << 20
DTYPES = ("auto", "bf16", "fp16", "fp32")
ATTENTION = ("auto", "sdpa", "eager", "flash_attention_2")
DATA_FORMATS = ("auto", "messages", "sharegpt", "alpaca", "prompt_completion", "text", "preference", "unpaired",
                "prompts")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
REPORT_TO = ("none", "tensorboard", "wandb")
BAD_ROWS = ("error", "skip")


@dataclass(frozen=True)
class Problem:
    """What is wrong with one key of a profile ("" when no single key is to blame), and what to do."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}" if self.key else self.message


class ProfileError(Exception):
    """A profile that cannot be used: `found` holds the problems, each with its key; `problems` the same as
    lines for people. A check that knows no single key passes its line as a string."""

    def __init__(self, source: str, problems: Sequence[Problem | str]):
        self.source = source
        self.found = tuple(p if isinstance(p, Problem) else Problem("", p) for p in problems)
        self.problems = [str(p) for p in self.found]
        super().__init__(f"{source}: " + "; ".join(self.problems))


def _spec(default: Any, help: str, **rules: Any) -> Any:
    """A dataclass field carrying its help text and validation rules."""
    meta = {"help": help, **rules}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


TRAIN_TOKENIZER = "train"  # model.tokenizer: train one on the data


@dataclass(frozen=True)
class ModelSection:
    name: str = _spec(TINY_MODEL, "hub id (org/name), local directory, or a built-in tiny model (builtin:tiny-llama, "
                      "builtin:tiny-qwen3, ...: `studio models`)", nonempty=True)
    revision: str = _spec("main", "git revision on the hub: branch, tag or commit", nonempty=True)
    dtype: str = _spec("auto", "weights and compute dtype; auto = bf16 where supported, else fp16; fp32 on CPU", choices=DTYPES)
    attn_implementation: str = _spec("auto", "attention kernel", choices=ATTENTION)
    trust_remote_code: bool = _spec(False, "run modelling code shipped with the model (off unless you trust it)")
    random_init: bool = _spec(False, "build the model from its config with random weights (probing memory and "
                              "speed without downloading weights)")
    tokenizer: str = _spec("", "empty: the model's own tokenizer; a hub id or folder: that one; \"train\": one "
                           "trained on the data (with random_init only: the ids must fit the embedding)")

    @property
    def builds_in_run(self) -> bool:
        """The base model is made inside the run folder (a built-in tiny model, or random weights from a config)
        rather than read from the hub or a folder; chat, export and resume then use that copy."""
        return self.name.startswith("builtin:") or self.random_init


@dataclass(frozen=True)
class MethodSection:
    type: str = _spec("lora", "lora, qlora (4-bit base + LoRA) or full", choices=METHODS)
    rank: int = _spec(16, "LoRA rank", min=1, max=4096)
    alpha: float = _spec(32.0, "LoRA alpha (scale = alpha / rank)", gt=0, max=65536)
    dropout: float = _spec(0.05, "LoRA dropout", min=0, lt=1)
    target_modules: list[str] = _spec(["all-linear"], "modules LoRA wraps: [\"all-linear\"] or names like q_proj", nonempty=True)
    use_dora: bool = _spec(False, "DoRA: weight-decomposed LoRA")
    quant_type: str = _spec("nf4", "QLoRA 4-bit type", choices=("nf4", "fp4"))
    double_quant: bool = _spec(True, "QLoRA: quantize the quantization constants too")


@dataclass(frozen=True)
class DataSection:
    path: str = _spec("", "local .jsonl/.json/.csv/.parquet file, or a hub dataset id", nonempty=True)
    format: str = _spec("auto", "row format", choices=DATA_FORMATS)
    split: str = _spec("train", "split to train on (hub datasets)", nonempty=True)
    eval_split: str = _spec("", "split to evaluate on (hub datasets); empty = none")
    eval_fraction: float = _spec(0.0, "fraction of rows held out for evaluation", min=0, lt=1)
    max_length: int = _spec(1024, "tokens per sample; longer rows are truncated", min=8, max=1_048_576)
    packing: bool | str = _spec("auto", "pack several rows into each sequence, padding-free; auto = when rows vary in "
                                "length or leave room, and the attention keeps packed rows apart", switch=True)
    completion_only_loss: bool = _spec(True, "train on the answer (assistant) tokens only")
    on_bad_rows: str = _spec("error", "what to do with malformed rows", choices=BAD_ROWS)


@dataclass(frozen=True)
class TrainSection:
    objective: str = _spec("sft", "what to train for: sft (answers), or preference tuning on chosen/rejected pairs: "
                           "dpo, orpo (no reference model), kto (rows labelled good or bad), or grpo (answers the "
                           "model samples itself, scored by [reward] functions)", choices=OBJECTIVES)
    epochs: float = _spec(1.0, "passes over the data (ignored when max_steps > 0)", gt=0, max=10_000)
    max_steps: int = _spec(0, "stop after this many optimizer steps; 0 = use epochs", min=0, max=1_000_000_000)
    batch_size: int = _spec(4, "micro-batch per GPU", min=1, max=65536)
    grad_accum: int = _spec(4, "gradient accumulation steps", min=1, max=65536)
    learning_rate: float = _spec(2e-4, "peak learning rate", gt=0, max=1)
    scheduler: str = _spec("cosine", "learning-rate schedule", choices=SCHEDULERS)
    warmup_ratio: float = _spec(0.03, "fraction of steps spent warming up", min=0, lt=1)
    weight_decay: float = _spec(0.0, "AdamW weight decay", min=0, max=10)
    optimizer: str = _spec("auto", "auto = paged_adamw_8bit for qlora, adamw otherwise", choices=OPTIMIZERS)
    gradient_checkpointing: bool | str = _spec("auto", "recompute activations in backward to save memory; auto = only "
                                               "when the run would not fit the GPU without it", switch=True)
    liger_kernel: bool | str = _spec("auto", "Liger's fused Triton kernels (NVIDIA GPUs): less memory, more tokens/s; "
                                     "auto = on where installed ('.[fast]') and the model is supported", switch=True)
    max_grad_norm: float = _spec(1.0, "gradient clipping; 0 = off", min=0, max=1e6)
    seed: int = _spec(42, "random seed", min=0, max=2**32 - 1)
    logging_steps: int = _spec(10, "log a step event every N steps", min=1, max=1_000_000_000)
    eval_steps: int = _spec(0, "evaluate every N steps; 0 = at the end only (when there is eval data)", min=0, max=1_000_000_000)
    save_steps: int = _spec(100, "write a checkpoint every N steps", min=1, max=1_000_000_000)
    save_total_limit: int = _spec(2, "checkpoints kept on disk", min=1, max=1_000_000)


@dataclass(frozen=True)
class PreferenceSection:
    beta: float = _spec(0.1, "DPO/KTO: how far from the reference the model may move (lower: further); ORPO: the "
                        "weight of the odds-ratio term", gt=0, max=100)
    loss_type: str = _spec("sigmoid", "DPO's loss (TRL's loss_type)", choices=DPO_LOSSES)
    reference: str = _spec("auto", "DPO/KTO's reference: auto = the base with the adapter off (LoRA, QLoRA) or a "
                           "frozen copy (full); precompute = its log-probs computed once before training (no "
                           "second copy in memory)", choices=("auto", "precompute"))
    desirable_weight: float = _spec(1.0, "KTO: the weight of rows labelled good", gt=0, max=1000)
    undesirable_weight: float = _spec(1.0, "KTO: the weight of rows labelled bad", gt=0, max=1000)


@dataclass(frozen=True)
class RewardSection:
    functions: list[str] = _spec(["exact_answer"], "GRPO's rewards: exact_answer (the final answer against the row's "
                                 "'answer'), format (reward.format_pattern matches), length (shorter than "
                                 "reward.length_limit characters), or your own as \"file.py:function\" (beside "
                                 "the profile)", nonempty=True)
    num_generations: int = _spec(4, "GRPO: answers sampled per prompt (train.batch_size x train.grad_accum must be "
                                 "a multiple of it)", min=2, max=1024)
    max_completion_length: int = _spec(256, "GRPO: tokens each sampled answer may have", min=1, max=1_048_576)
    temperature: float = _spec(1.0, "GRPO: sampling temperature", gt=0, max=10)
    beta: float = _spec(0.0, "GRPO: the KL penalty against the base; 0 = no reference model", min=0, max=100)
    format_pattern: str = _spec("", "the regular expression the format reward looks for in an answer")
    length_limit: int = _spec(400, "the length reward: characters an answer may have before it costs", min=1,
                              max=10_000_000)


@dataclass(frozen=True)
class HardwareSection:
    gpus: str = _spec("auto", "auto (every visible GPU), a count like \"2\", or indices like \"0,1\"", nonempty=True)
    strategy: str = _spec("auto", "auto: DDP when the model fits on one GPU, else FSDP", choices=STRATEGIES)
    offload_optimizer: bool = _spec(False, "DeepSpeed: keep optimizer states in CPU memory")
    offload_params: bool = _spec(False, "DeepSpeed ZeRO-3 / FSDP: keep parameters in CPU memory")
    num_machines: int = _spec(1, "machines in the job (multi-node)", min=1, max=4096)
    machine_rank: int = _spec(0, "this machine's rank, 0 for the main one", min=0)
    main_address: str = _spec("", "the main machine's address (multi-node)")
    main_port: int = _spec(29500, "the main machine's port (multi-node)", min=1, max=65535)
    collective_timeout: float = _spec(10.0, "minutes a process waits for the others before the job fails (a lost "
                                      "machine); also bounds how long machines wait for each other's model "
                                      "downloads", gt=0, max=1440)
    network_interface: str = _spec("", "the network interface the machines talk over (gloo and NCCL); \"\": the "
                                   "one that routes to main_address")

    @property
    def gpu_request(self) -> str | int | tuple[int, ...]:
        """hardware.gpus read once: "auto", a count, or the indices named (a checked profile always parses)."""
        return parse_gpus(self.gpus)

    @property
    def gpu_count(self) -> int:
        """How many GPUs this asks for; `auto` counts as one when planning for cards by name."""
        request = self.gpu_request
        if isinstance(request, tuple):
            return len(request)
        return max(1, request) if isinstance(request, int) else 1


def parse_gpus(text: str) -> str | int | tuple[int, ...]:
    """hardware.gpus: "auto", a count ("2"), or GPU indices ("0,1"); raises ValueError for anything else."""
    text = text.strip()
    if text == "auto":
        return "auto"
    if "," not in text:
        if not text.isdigit():
            raise ValueError(text)
        return int(text)
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise ValueError(text)
    return tuple(int(p) for p in parts)


@dataclass(frozen=True)
class SlurmSection:
    """What `studio run --slurm` asks of Slurm (each also a flag of `studio run`, which wins)."""
    nodes: int = _spec(1, "nodes (one task each)", min=1, max=4096)
    gpus_per_node: int = _spec(0, "GPUs on each node (0: ask for none)", min=0, max=1024)
    partition: str = _spec("", "the partition (\"\": the cluster's default)")
    time: str = _spec("", "the time limit, as sbatch takes it (e.g. 12:00:00; \"\": the partition's default)")
    account: str = _spec("", "the account to charge")
    qos: str = _spec("", "the quality of service")
    constraint: str = _spec("", "node features the job needs (sbatch --constraint, e.g. a100)")
    mem: str = _spec("", "memory per node, as sbatch takes it (64G; 0 = all of it; \"\": Slurm's default)")
    cpus_per_task: int = _spec(0, "CPUs for each node's task (0: Slurm's default, often one CPU, which starves the "
                               "data loader)", min=0, max=100_000)
    exclusive: bool = _spec(False, "the nodes for this job alone")
    requeue: bool = _spec(False, "before the time limit: save, and requeue the job to continue in a new allocation")
    requeue_before_s: int = _spec(300, "with requeue: how many seconds before the time limit the job saves "
                                  "(Slurm may signal up to 60 s early)", min=60, max=86_400)
    sbatch_args: list[str] = _spec([], "more sbatch options, one each, e.g. [\"--mail-type=END\"]")


@dataclass(frozen=True)
class OutputSection:
    report_to: str = _spec("none", "also log to", choices=REPORT_TO)


@dataclass(frozen=True)
class Profile:
    description: str = ""
    model: ModelSection = field(default_factory=ModelSection)
    method: MethodSection = field(default_factory=MethodSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    preference: PreferenceSection = field(default_factory=PreferenceSection)
    reward: RewardSection = field(default_factory=RewardSection)
    hardware: HardwareSection = field(default_factory=HardwareSection)
    slurm: SlurmSection = field(default_factory=SlurmSection)
    output: OutputSection = field(default_factory=OutputSection)

    @property
    def optimizer(self) -> str:
        """The optimizer after `auto` is resolved for the method."""
        return resolve_optimizer(self.method.type, self.train.optimizer)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not d["description"]:
            del d["description"]
        return d

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())


SECTIONS: dict[str, type] = {
    "model": ModelSection,
    "method": MethodSection,
    "data": DataSection,
    "train": TrainSection,
    "preference": PreferenceSection,
    "reward": RewardSection,
    "hardware": HardwareSection,
    "slurm": SlurmSection,
    "output": OutputSection,
}
TOP_LEVEL = ("description", *SECTIONS)


def _did_you_mean(key: str, options: list[str]) -> str:
    close = difflib.get_close_matches(key, options, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(options)}"


def check_value(key: str, value: Any, ftype: str, meta: dict[str, Any]) -> tuple[Any, Problem | None]:
    """Coerce `value` to the field's type and check its rules; returns (value, problem)."""
    if meta.get("switch"):
        if not (isinstance(value, bool) or value == "auto"):
            return value, Problem(key, f"must be true, false or \"auto\", got {value!r}")
        return value, None
    if ftype == "bool":
        if not isinstance(value, bool):
            return value, Problem(key, f"must be true or false, got {value!r}")
    elif ftype == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return value, Problem(key, f"must be an integer, got {value!r}")
    elif ftype == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return value, Problem(key, f"must be a number, got {value!r}")
        try:
            value = float(value)
        except OverflowError:
            return value, Problem(key, f"{value} is too large")
        if not math.isfinite(value):
            return value, Problem(key, f"must be a finite number, got {value}")
    elif ftype == "str":
        if not isinstance(value, str):
            return value, Problem(key, f"must be a string, got {value!r}")
    elif ftype == "list[str]":
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return value, Problem(key, f"must be a list of strings, got {value!r}")
    if ftype in ("str", "list[str]"):
        for text in ([value] if ftype == "str" else value):
            if has_unsafe(text):
                return value, Problem(key, f"contains a control or invisible character ({safe(text)}); retype the value "
                                            "(copying from a terminal or a web page can carry them)")
    if "choices" in meta and value not in meta["choices"]:
        close = difflib.get_close_matches(str(value), list(meta["choices"]), n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return value, Problem(key, f"must be one of {', '.join(meta['choices'])}, got {value!r}{hint}")
    if meta.get("nonempty") and len(value) == 0:
        return value, Problem(key, f"must not be empty ({meta['help']})")
    for rule, test, word in (("min", lambda v, b: v >= b, ">="), ("gt", lambda v, b: v > b, ">"),
                             ("max", lambda v, b: v <= b, "<="), ("lt", lambda v, b: v < b, "<")):
        if rule in meta and not test(value, meta[rule]):
            return value, Problem(key, f"must be {word} {meta[rule]:g}, got {value:g}")
    return value, None


def _build_section(name: str, cls: type, raw: Any, problems: list[Problem]) -> Any:
    if not isinstance(raw, dict):
        problems.append(Problem(name, f"must be a table ([{name}]), got {raw!r}"))
        return cls()
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            problems.append(Problem(f"{name}.{key}", f"unknown key{_did_you_mean(key, list(known))}"))
            continue
        f = known[key]
        value, problem = check_value(f"{name}.{key}", value, str(f.type), dict(f.metadata))
        if problem:
            problems.append(problem)
        else:
            values[key] = value
    return cls(**values)


def _reward_checks(p: Profile, problems: list[Problem]) -> None:
    """GRPO's settings that only make sense together."""
    r = p.reward
    for name in r.functions:
        file, _, function = name.partition(":")
        if name not in BUILTIN_REWARDS and not (file.endswith(".py") and function.isidentifier()):
            problems.append(Problem("reward.functions", f"{name!r} is neither a built-in reward "
                                    f"({', '.join(BUILTIN_REWARDS)}) nor \"file.py:function\""))
    if "format" in r.functions:
        import re

        try:
            re.compile(r.format_pattern)
        except re.error as e:
            problems.append(Problem("reward.format_pattern", f"is not a regular expression ({e})"))
        if not r.format_pattern:
            problems.append(Problem("reward.format_pattern", "the format reward needs it: the regular expression "
                                    "an answer should match, e.g. \"<answer>.*</answer>\""))
    if p.train.objective == "grpo" and (p.train.batch_size * p.train.grad_accum) % r.num_generations:
        problems.append(Problem("reward.num_generations", f"GRPO compares {r.num_generations} answers to each "
                                f"prompt, and a step samples train.batch_size x train.grad_accum = "
                                f"{p.train.batch_size * p.train.grad_accum} answers, not a multiple of it; make "
                                f"train.batch_size a multiple of {r.num_generations} (or change num_generations)"))


def _cross_checks(p: Profile, problems: list[Problem]) -> None:
    if p.model.tokenizer == TRAIN_TOKENIZER and not p.model.builds_in_run:
        problems.append(Problem("model.tokenizer", "\"train\" makes new token ids, which only a model built with "
                                "random weights can take; set model.random_init = true, or name a tokenizer "
                                "(a hub id or folder), or leave it empty for the model's own"))
    _reward_checks(p, problems)
    if p.method.type == "full" and p.method.use_dora:
        problems.append(Problem("method.use_dora", "DoRA needs method.type = \"lora\" or \"qlora\", not \"full\""))
    try:
        parse_gpus(p.hardware.gpus)
    except ValueError:
        problems.append(Problem("hardware.gpus", f"must be auto, a count like \"2\" or indices like \"0,1\", "
                                                 f"got {p.hardware.gpus!r}"))
    if p.hardware.num_machines > 1 and not p.hardware.main_address:
        problems.append(Problem("hardware.main_address", "set the main machine's address for a multi-node job"))
    if p.hardware.machine_rank >= p.hardware.num_machines:
        problems.append(Problem("hardware.machine_rank", f"must be < hardware.num_machines ({p.hardware.num_machines})"))
    if p.data.eval_split and p.data.eval_fraction > 0:
        problems.append(Problem("data.eval_fraction", "set either data.eval_split or data.eval_fraction, not both"))
    _slurm_checks(p.slurm, problems)


SLURM_MEMORY = re.compile(r"\d+[KMGT]?", re.IGNORECASE)
SLURM_TIME = re.compile(r"(\d+-)?\d+(:\d+){0,2}|\d+-\d+|UNLIMITED|INFINITE", re.IGNORECASE)


def _slurm_checks(s: SlurmSection, problems: list[Problem]) -> None:
    """What sbatch would refuse, or what would break the script, said before anything is written."""
    if s.mem and not SLURM_MEMORY.fullmatch(s.mem):
        problems.append(Problem("slurm.mem", f"must be a size as sbatch takes it (64G, 512000M, or 0 for all of "
                                             f"the node's memory), got {s.mem!r}"))
    if s.time and not SLURM_TIME.fullmatch(s.time):
        problems.append(Problem("slurm.time", f"must be a time as sbatch takes it (minutes, HH:MM:SS or "
                                              f"D-HH:MM:SS), got {s.time!r}"))
    for name in ("partition", "account", "qos", "constraint"):
        value = getattr(s, name)
        if any(c.isspace() for c in value):
            problems.append(Problem(f"slurm.{name}", f"must not hold spaces or line breaks, got {value!r}"))
    for arg in s.sbatch_args:
        if not arg.startswith("-") or "\n" in arg or "\r" in arg:
            problems.append(Problem("slurm.sbatch_args", f"each is one sbatch option starting with '-' on one line "
                                                         f"(e.g. \"--mail-type=END\"), got {arg!r}"))


def profile_from_dict(raw: dict[str, Any], source: str = "<profile>") -> Profile:
    """Validate a parsed TOML document and fill defaults; raises ProfileError."""
    problems: list[Problem] = []
    parts: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "description":
            if isinstance(value, str):
                parts["description"] = value
            else:
                problems.append(Problem("description", f"must be a string, got {value!r}"))
        elif key in SECTIONS:
            parts[key] = _build_section(key, SECTIONS[key], value, problems)
        else:
            problems.append(Problem(key, f"unknown key{_did_you_mean(key, list(TOP_LEVEL))}"))
    if "data" not in raw or not isinstance(raw.get("data"), dict) or "path" not in raw["data"]:
        problems.append(Problem("data.path", "missing; set it to a .jsonl/.json/.csv/.parquet file or a hub dataset id"))
    profile = Profile(**parts)
    _cross_checks(profile, problems)
    if problems:
        raise ProfileError(source, problems)
    return profile


def parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(source, [f"not valid TOML: {e}; fix the syntax at that line"]) from None
    except RecursionError:
        raise ProfileError(source, ["not valid TOML: nested too deeply to be a profile"]) from None


def load_profile(path: Path) -> Profile:
    """Read and validate a profile file. Relative data paths are taken from the profile's folder."""
    path = Path(path)
    try:
        # A FIFO in a profile's place would hang; an editor's byte-order mark is not an error.
        text = read_regular(path, MAX_PROFILE_BYTES + 1, follow=True).decode("utf-8-sig")
        if len(text) > MAX_PROFILE_BYTES:
            raise ProfileError(str(path), [f"over {MAX_PROFILE_BYTES // 2**20} MiB: not a profile (a description that "
                                           "long is refused)"])
    except FileNotFoundError:
        raise ProfileError(str(path), ["file not found; check the path or run `studio profile list`"]) from None
    except UnicodeDecodeError as e:
        raise ProfileError(str(path), [f"not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                                       "save the profile as UTF-8"]) from None
    except OSError as e:
        raise ProfileError(str(path), [f"cannot read the file: {e.strerror or e}"]) from None
    profile = profile_from_dict(parse_toml(text, str(path)), str(path))
    return resolve_paths(profile, path.parent)


def resolve_paths(profile: Profile, base: Path) -> Profile:
    """Make local data and model paths absolute, relative to `base` (the profile's folder)."""
    data = profile.data
    if data.path and looks_local(data.path):
        data = replace(data, path=absolute(base, data.path))
    model = profile.model
    if looks_local(model.name) and not model.name.startswith("builtin:"):
        model = replace(model, name=absolute(base, model.name))
    reward = replace(profile.reward, functions=[  # your own reward functions: beside the profile
        f"{absolute(base, name.partition(':')[0])}:{name.partition(':')[2]}" if ":" in name else name
        for name in profile.reward.functions])
    return replace(profile, data=data, model=model, reward=reward)


def absolute(base: Path, ref: str) -> str:
    """`ref` as an absolute path from `base`; links are resolved where they can be (a loop is left for the
    reader of the file to report)."""
    try:
        path = base / Path(ref).expanduser()
    except RuntimeError:  # ~user that does not exist
        path = base / ref
    try:
        return str(path.resolve())
    except (OSError, RuntimeError):
        return os.path.abspath(path)


def save_profile(profile: Profile, path: Path) -> None:
    """Write a profile atomically; the old file stays intact if anything fails."""
    write_text(Path(path), profile.to_toml())


def value_of(profile: Profile, dotted: str) -> Any:
    """A profile's value for a dotted key, e.g. "train.batch_size"."""
    section, key = dotted.split(".", 1)
    return getattr(getattr(profile, section), key)


def with_changes(profile: Profile, changes: dict[str, Any], source: str = "the changes") -> Profile:
    """The profile with dotted keys set, e.g. {"train.batch_size": 2}: the one door every change goes through
    (a file's, the editor's, a command-line flag's, a fix's). Each value passes its field's rules and the
    result the cross-field checks, or ProfileError names the field; KeyError for an unknown key."""
    sections: dict[str, Any] = {}
    problems: list[Problem] = []
    for dotted, value in changes.items():
        section, _, key = dotted.partition(".")
        known = {f.name: f for f in fields(SECTIONS[section])} if section in SECTIONS else {}
        if key not in known:
            raise KeyError(dotted)
        value, problem = check_value(dotted, value, str(known[key].type), dict(known[key].metadata))
        if problem:
            problems.append(problem)
        sections.setdefault(section, {})[key] = value
    if problems:
        raise ProfileError(source, problems)
    changed = replace(profile, **{name: replace(getattr(profile, name), **values) for name, values in sections.items()})
    _cross_checks(changed, problems)
    if problems:
        raise ProfileError(source, problems)
    return changed


def default_value(section: str, key: str) -> Any:
    for f in fields(SECTIONS[section]):
        if f.name == key:
            return f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
    raise KeyError(f"{section}.{key}")
