"""The model card (README.md) that goes into every export: what the model is, how it was trained, on what
(the data's name and size, never its content), what it measured, the studio profile, and how to load it
with transformers, PEFT, llama.cpp and Ollama. Written from the run folder's records alone."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from studio.atomic import write_text
from studio.planning.hub_models import HUB_ID
from studio.profiles.profile import Profile
from studio.runs.files import EVAL_FILE, PREFLIGHT_FILE
from studio.runs.folder import Run
from studio.runs.status import RunStatus


def license_of(profile: Profile) -> str:
    try:
        from studio.planning.catalog import lookup_model

        return lookup_model(profile.model.name, read_code=False, online=False).license or "other"
    except Exception:  # noqa: BLE001 - a card is written whatever the catalog knows
        return "other"


def training_figures(run: Run) -> dict[str, Any]:
    try:
        tl = run.timeline()
    except OSError:
        return {}
    end, start, last = tl.end, tl.start, tl.last_step
    peaks = [p for p in (end.gpu_mem_peak_reserved_gib if end else ()) if p is not None]
    return {
        "steps": (end.step if end and end.step is not None else (last.step if last else None)),
        "tokens": last.tokens if last else None,
        "time_s": last.elapsed_s if last else None,
        "peak_gpu_memory_gib": max(peaks) if peaks else None,
        "devices": ", ".join(start.devices) if start and start.devices else None,
        "final_loss": last.loss if last else None,
        "eval_loss": tl.evals[max(tl.evals)].eval_loss if tl.evals else None,
        "trainable_params": start.trainable_params if start else None,
        "total_params": start.total_params if start else None,
        "status": end.status if end else None,
        "max_steps": (end.max_steps if end and end.max_steps else (last.max_steps if last else None)),
    }


def incomplete(fig: dict[str, Any]) -> list[str]:
    """A warning at the top of a card whose run did not complete its training."""
    if fig.get("status") in (None, RunStatus.COMPLETED):
        return []
    of = f" of {fig['max_steps']}" if fig.get("max_steps") else ""
    return ["", f"**Training did not complete:** the run {fig['status']} at step {fig.get('steps', '?')}{of}; this "
                "export is its last saved state."]


def shared_profile(profile: Profile) -> str:
    """The profile as it can be shared: the data file by its name, not its path on this machine."""
    data = profile.data
    name = Path(data.path).name if data.path.startswith(("/", "~", ".")) else data.path
    return replace(profile, data=replace(data, path=name)).to_toml()


def model_card(run: Run, profile: Profile, what: str) -> str:
    """The README.md of an export (`what`: adapter, merged, full, or gguf:QUANT:FILE)."""
    kind, _, rest = what.partition(":")
    base, method = profile.model.name, profile.method
    license_name = license_of(profile)
    pre = run.read_json(PREFLIGHT_FILE)
    fig = training_figures(run)
    evals = run.read_json(EVAL_FILE)
    library = {"adapter": "peft", "gguf": "gguf"}.get(kind, "transformers")
    tags = ["studio", method.type, library]
    # The Hub checks base_model against its own ids: a built-in model or a local folder is named in the text only.
    on_hub = HUB_ID.match(base) is not None and not Path(base).expanduser().exists()
    lines = ["---", *([f"base_model: {base}"] if on_hub else []), f"license: {license_name}",
             f"library_name: {library}",
             "tags:", *[f"- {t}" for t in tags], "---", "",
             f"# {run.id}", "",
             f"A {method.type} fine-tune of {f'[{base}](https://huggingface.co/{base})' if on_hub else f'`{base}`'} "
             "made with studio. "
             f"This export is {'the LoRA adapter' if kind == 'adapter' else 'a GGUF file for llama.cpp' if kind == 'gguf' else 'the whole model'}.",
             *incomplete(fig),
             "", f"Licence: `{license_name}`, the base model's; read its terms on the base model's page.", "",
             "## Training", "",
             "| | |", "|---|---|",
             f"| method | {method.type}" + (f", rank {method.rank}, alpha {method.alpha:g}, dropout {method.dropout:g}, "
                                          f"targets {', '.join(method.target_modules)}" if method.type != 'full' else "") + " |",
             f"| learning rate | {profile.train.learning_rate:g}, {profile.train.scheduler} |",
             f"| batch | {profile.train.batch_size} x {profile.train.grad_accum} accumulation, max_length "
             f"{profile.data.max_length} |"]
    for label, key, fmt in (("steps", "steps", "{}"), ("tokens trained", "tokens", "{:,}"),
                            ("time", "time_s", "{:.0f} s"), ("peak GPU memory", "peak_gpu_memory_gib", "{:.1f} GiB"),
                            ("devices", "devices", "{}"), ("final train loss", "final_loss", "{:.4f}"),
                            ("eval loss", "eval_loss", "{:.4f}"),
                            ("trainable parameters", "trainable_params", "{:,}")):
        if fig.get(key) is not None:
            lines.append(f"| {label} | {fmt.format(fig[key])} |")
    lines += ["", "## Data", ""]
    if pre:
        name = Path(profile.data.path).name if profile.data.path.startswith(("/", "~", ".")) else profile.data.path
        lines.append(f"`{name}`: {pre.get('rows', '?')} rows ({pre.get('format', '?')}), {pre.get('tokens', '?')} "
                     f"tokens; the loss covers {pre.get('loss_on', '?')}. The rows themselves are not part of this card.")
    else:
        lines.append(f"`{Path(profile.data.path).name}` (no preflight record)")
    if evals and isinstance(evals.get("preference"), dict):
        pref = evals["preference"]
        lines += ["", "## Evaluation (`studio eval`)", "", "| | base | tuned |", "|---|---|---|"]
        b, t = (pref.get(side, {}).get("prefers_chosen") for side in ("base", "tuned"))
        lines.append(f"| prefers the chosen answer (held-out pairs) | {b if b is None else round(b, 4)} | "
                     f"{t if t is None else round(t, 4)} |")
        if pref.get("reward_accuracy") is not None:
            lines.append(f"\nImplicit reward against the base: {pref['reward_accuracy']:.1%} of pairs ranked right, "
                         f"mean margin {pref.get('reward_margin', 0):+.3f}; on {pref.get('pairs', '?')} pairs "
                         f"({evals.get('source', 'eval rows')}).")
    elif evals and isinstance(evals.get("rewards"), dict):
        rewards = evals["rewards"]
        lines += ["", "## Evaluation (`studio eval`)", "", "| reward (held-out prompts, greedy answers) | base | tuned |",
                  "|---|---|---|"]
        names = list((rewards.get("tuned") or {}).get("functions", {}))
        for name, key in [("all rewards", None)] + [(n, n) for n in names]:
            b, t = ((rewards.get(side) or {}).get("mean") if key is None else
                    ((rewards.get(side) or {}).get("functions") or {}).get(key) for side in ("base", "tuned"))
            lines.append(f"| {name} | {b if b is None else round(b, 4)} | {t if t is None else round(t, 4)} |")
    elif evals:
        lines += ["", "## Evaluation (`studio eval`)", "", "| | base | tuned |", "|---|---|---|"]
        for label, key in (("loss", "loss"), ("perplexity", "perplexity"), ("exact next token (trained tokens)", "exact")):
            b, t = (evals.get(side, {}).get(key) for side in ("base", "tuned"))
            if b is not None or t is not None:
                lines.append(f"| {label} | {b if b is None else round(b, 4)} | {t if t is None else round(t, 4)} |")
        if evals.get("rows"):
            lines.append(f"\nOn {evals['rows']} held-out rows ({evals.get('source', 'eval rows')}).")
    lines += ["", "## Use it", ""]
    if kind == "adapter":
        lines += ["```python", "from peft import AutoPeftModelForCausalLM", "from transformers import AutoTokenizer",
                  'model = AutoPeftModelForCausalLM.from_pretrained("PATH_OR_REPO")',
                  'tokenizer = AutoTokenizer.from_pretrained("PATH_OR_REPO")', "```"]
    elif kind == "gguf":
        file = rest.split(":", 1)[1]
        lines += ["llama.cpp:", "```bash", f"llama-cli -m {file} -cnv", "```", "Ollama (the Modelfile is beside it):",
                  "```bash", f"ollama create {run.id.lower()} -f Modelfile", f"ollama run {run.id.lower()}", "```"]
    else:
        lines += ["```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
                  'model = AutoModelForCausalLM.from_pretrained("PATH_OR_REPO")',
                  'tokenizer = AutoTokenizer.from_pretrained("PATH_OR_REPO")', "```",
                  "For llama.cpp and Ollama: `studio export RUN --out FOLDER --gguf --quant q8_0 --ollama`."]
    lines += ["", "## The studio profile", "", "```toml", shared_profile(profile).rstrip(), "```", ""]
    return "\n".join(lines)


def write_card(run: Run, profile: Profile, folder: Path, what: str) -> Path:
    path = folder / "README.md"
    write_text(path, model_card(run, profile, what))
    return path


def card_facts(text: str) -> dict[str, Any]:
    """The front matter of a card, for tests and tools."""
    head = text.split("---")[1] if text.startswith("---") else ""
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in head.splitlines() if ":" in line)}


def eval_summary(run: Run) -> dict[str, Any]:
    return json.loads(json.dumps(run.read_json(EVAL_FILE)))
