"""What a valid profile may still ask that this model or this machine cannot give.

Found before a run folder is made (the profile check alone cannot know the model or
the GPUs), so a run never starts only to fail as a `crash` that resuming would repeat.
Each problem names its key and says what to do, like the profile check's.
"""

from __future__ import annotations

from pathlib import Path

from studio.hardware import Inventory
from studio.data import FORMAT_COLUMNS, PREFERENCE_FORMATS, data_file_problem
from studio.paths import is_local
from studio.planning.anatomy import peft_reason
from studio.planning.catalog import CatalogError, ModelSpec, lookup_model
from studio.profiles.profile import Profile
from studio.profiles.vocabulary import PAIRED_OBJECTIVES

OTHER_TARGETS = ("lm_head", "embed_tokens", "wte", "all-linear", "all")


def targets_problem(spec: ModelSpec, targets: tuple[str, ...] | list[str]) -> str | None:
    """Why LoRA cannot wrap `targets` in this model, or None when it can: a layer it does not have, or one
    PEFT refuses on it (the model's own layer names are suggested, those PEFT refuses left out)."""
    full = [lin.name for lin in spec.linears()]
    refused = spec.anatomy.lora_refused if spec.anatomy else {}
    names = ", ".join(sorted({n.rsplit(".", 1)[-1] for n in full} - refused.keys()))
    wrapped = [t for t in targets if t in refused]
    if wrapped:
        return (f"method.target_modules: PEFT cannot wrap {', '.join(wrapped)} on {spec.id} "
                f"({peft_reason(refused[wrapped[0]])}); "
                f"its layers LoRA can wrap are {names} (or use [\"all-linear\"])")
    unknown = [t for t in targets if t not in OTHER_TARGETS and not any(n == t or n.endswith("." + t) for n in full)]
    if not unknown:
        return None
    return (f"method.target_modules: {', '.join(unknown)} not in {spec.id}; its linear layers are "
            f"{names} (or use [\"all-linear\"])")


def experts_wrapped(profile: Profile, spec: ModelSpec) -> bool:
    """LoRA on all-linear reaches this model's fused expert weights (PEFT wraps them as parameters)."""
    return profile.method.type != "full" and profile.method.target_modules == ["all-linear"] and \
        spec.anatomy is not None and spec.anatomy.experts_targeted


def reference_problems(profile: Profile, probe: bool = False) -> list[str]:
    """The model and the data a profile names can be found: the model as the estimator finds it (catalog,
    folder, cache, or the Hub), a local data file by looking at it. Nothing is read or run."""
    problems = []
    m = profile.model
    try:
        lookup_model(m.name, trust_remote_code=m.trust_remote_code, revision=m.revision, read_code=False)
    except CatalogError as e:
        problems.append(f"model.name: {e}")
    problem = None if probe else tokenizer_files_problem(profile)  # a probe trains one on its synthetic rows
    if problem:
        problems.append(problem)
    if is_local(profile.data.path):
        problem = data_file_problem(profile.data.path)
        if problem:
            problems.append(problem)
    return problems


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json", "spiece.model")


def tokenizer_files_problem(profile: Profile) -> str | None:
    """A local model folder with no tokenizer file at all (a config-only folder), when the profile names no
    other tokenizer: said before a run folder is made, with the two ways on."""
    m = profile.model
    folder = Path(m.name).expanduser()
    if m.tokenizer or m.name.startswith("builtin:") or not folder.is_dir():
        return None
    if any((folder / name).is_file() for name in TOKENIZER_FILES):
        return None
    train = "set model.tokenizer = \"train\" to train one on the data" if m.random_init else \
        "set model.random_init = true and model.tokenizer = \"train\" to train one on the data with random weights"
    return (f"model.tokenizer: {folder} has no tokenizer ({', '.join(TOKENIZER_FILES[:3])}, ...); name one (a hub id "
            f"or a folder) in model.tokenizer, or {train}")


def model_problems(profile: Profile, spec: ModelSpec | None) -> list[str]:
    """LoRA targets the model does not have, and what PEFT cannot do on this model's layers."""
    if spec is None or profile.method.type == "full":
        return []
    if spec.anatomy and spec.anatomy.lora_error:
        return [f"method.type: PEFT cannot put LoRA on {spec.id} ({spec.anatomy.lora_error}); "
                "set method.type = \"full\" to train it whole"]
    problem = targets_problem(spec, profile.method.target_modules)
    problems = [problem] if problem else []
    if experts_wrapped(profile, spec) and profile.method.dropout > 0:
        problems.append(f"method.dropout: {spec.id}'s experts are fused weights, and PEFT's adapters on them take "
                        "no dropout; set method.dropout = 0, or name target_modules without the experts "
                        "(e.g. [\"q_proj\", \"k_proj\", \"v_proj\", \"o_proj\"])")
    return problems


def model_notes(profile: Profile, spec: ModelSpec | None) -> list[str]:
    """What this model does differently from the usual, said before anything runs: what bitsandbytes leaves
    unquantized, which experts LoRA trains, a vision tower that stays frozen, an approximate layout."""
    if spec is None:
        return []
    notes = []
    if spec.approximate:
        notes.append(f"the estimate is approximate: {spec.approximate}")
    anatomy = spec.anatomy
    if anatomy is None:
        return notes
    method = profile.method.type
    if method == "qlora":
        kept = anatomy.total_params - anatomy.quantized_params - anatomy.embed_params - anatomy.head_params
        if kept > 0.2 * anatomy.total_params:
            what = "its experts are fused 3-D weights" if anatomy.expert_params else "its linear layers are not plain Linear modules"
            notes.append(f"QLoRA: bitsandbytes quantizes plain linear layers only; {what}, so {kept / 1e9:.2f}B of "
                         f"{anatomy.total_params / 1e9:.2f}B parameters stay in 16 bits (counted in the estimate)")
    if method != "full" and profile.method.target_modules == ["all-linear"] and anatomy.all_linear_note:
        notes.append(f"LoRA: {anatomy.all_linear_note}")
    if method != "full" and anatomy.experts:
        if experts_wrapped(profile, spec):
            notes.append("LoRA on all-linear also trains the experts (PEFT wraps their fused weights); name "
                         "target_modules to train attention only")
        elif profile.method.target_modules == ["all-linear"]:
            notes.append("LoRA on all-linear leaves the experts as they are: PEFT cannot wrap this model's fused "
                         "expert weights; attention and the router are trained")
    if anatomy.towers:
        towers = ", ".join(f"{name} ({n / 1e9:.2f}B)" for name, n in anatomy.towers.items())
        notes.append(f"text is trained: {towers} loaded and kept frozen, never targeted by LoRA")
    return notes


def machine_problems(profile: Profile, inventory: Inventory) -> list[str]:
    """What needs a GPU (or a kind of GPU) this machine does not have."""
    problems = []
    gpus = inventory.gpus
    if not gpus:
        if profile.model.attn_implementation == "flash_attention_2":
            problems.append("model.attn_implementation: flash_attention_2 needs an NVIDIA GPU; "
                            "use \"sdpa\" or \"auto\" on the CPU")
        if profile.model.dtype == "fp16":
            problems.append("model.dtype: fp16 training needs a GPU; on the CPU use \"fp32\" or \"auto\"")
        if profile.train.liger_kernel is True:
            problems.append("train.liger_kernel: Liger's kernels need an NVIDIA GPU; set it to false on the CPU")
    elif profile.model.dtype == "bf16" and not all(g.bf16 for g in gpus):
        problems.append("model.dtype: bf16 needs an Ampere or newer GPU, and "
                        f"{next(g.name for g in gpus if not g.bf16)} is not one; use \"fp16\" or \"auto\"")
    return problems


def objective_data_problem(profile: Profile, fmt: str) -> str | None:
    """The objective and the rows' format must go together: preference tuning needs pairs (or, for KTO, rows
    labelled good or bad), supervised fine-tuning needs answers."""
    objective = profile.train.objective
    if objective == "grpo" and fmt != "prompts":
        return (f"train.objective: grpo samples answers to prompts and scores them, and the rows are {fmt}: give "
                f"each row {FORMAT_COLUMNS['prompts']}, or set train.objective = \"sft\"")
    if objective != "grpo" and fmt == "prompts":
        return (f"data: the rows are prompts alone ({FORMAT_COLUMNS['prompts']}): only train.objective = \"grpo\" "
                "trains on them (it samples the answers); for sft give each row a completion too")
    if objective in PAIRED_OBJECTIVES and fmt != "preference":
        return (f"train.objective: {objective} trains on preference pairs, and the rows are {fmt}: give each row "
                f"{FORMAT_COLUMNS['preference']}, or set train.objective = \"sft\"")
    if objective == "kto" and fmt not in PREFERENCE_FORMATS:
        return (f"train.objective: kto trains on rows labelled good or bad, and the rows are {fmt}: give each row "
                f"{FORMAT_COLUMNS['unpaired']} (or preference pairs: {FORMAT_COLUMNS['preference']}), or set "
                "train.objective = \"sft\"")
    if objective == "sft" and fmt in PREFERENCE_FORMATS:
        fitting = '"dpo" (or orpo, kto)' if fmt == "preference" else '"kto"'
        return (f"train.objective: the rows are {fmt} data ({FORMAT_COLUMNS[fmt]}), which sft cannot train on; "
                f"set train.objective = {fitting}")
    return None


def data_problems(profile: Profile, rows: int, fmt: str | None = None) -> list[str]:
    """Settings the dataset is too small for, or an objective its rows cannot train."""
    problem = objective_data_problem(profile, fmt) if fmt else None
    if problem:
        return [problem]
    fraction = profile.data.eval_fraction
    if fraction > 0:
        held = max(1, int(rows * fraction))
        if rows - held < 1:
            return [f"data.eval_fraction: the dataset has {rows} row(s), so holding out {fraction:g} leaves "
                    "none to train on; lower it to 0 or add rows"]
    return []
