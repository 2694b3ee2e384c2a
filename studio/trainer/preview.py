"""A few rows as the model will see them: through the model's tokenizer and chat template, the same
way the trainer tokenizes them (rows_for_loss + tokenize_rows), with each stretch marked as
trained (the loss covers it), context (seen, not trained) or cut (past data.max_length).

`python -m studio.trainer.preview PROFILE [--rows N]` prints it as JSON; `studio data preview`
and the editor's preview (F3) run it in a process of its own, since the tokenizer needs the
training stack.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from studio.data import DataError, check_bad_rows
from studio.profiles.profile import Profile, ProfileError, load_profile
from studio.trainer.dataset import load_data, rows_for_loss
from studio.trainer.failures import ConfigError
from studio.trainer.model import load_tokenizer
from studio.trainer.tokenize import tokenize_rows


def preview_tokenizer(profile: Profile, rows: list[dict[str, Any]]) -> Any:
    """The tokenizer a run of `profile` would train with (the tiny model's is trained on the rows)."""
    if profile.model.name.startswith("builtin:"):
        from studio.trainer.tiny import tiny_tokenizer

        return tiny_tokenizer(rows, profile.model.name)
    local = Path(profile.model.name).expanduser()
    try:
        if local.is_dir():
            return load_tokenizer(local, profile)
        return load_tokenizer(profile.model.name, profile, revision=profile.model.revision)
    except Exception as e:  # noqa: BLE001 - hub, file and tokenizer errors all end the same way
        raise ConfigError(f"model.name: cannot load the tokenizer of {profile.model.name!r} ({e}); check the name, "
                          "or download the model once with network access") from None


def segments(tokenizer: Any, ids: list[int], mask: list[int] | None, max_length: int) -> list[tuple[str, str]]:
    """Consecutive tokens of one kind, decoded: ("text", "trained" | "context" | "cut")."""
    kinds = ["cut" if i >= max_length else ("trained" if mask is None or mask[i] else "context")
             for i in range(len(ids))]
    out: list[tuple[str, str]] = []
    start = 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or kinds[i] != kinds[start]:
            out.append((tokenizer.decode(ids[start:i]), kinds[start]))
            start = i
    return out


def preference_preview(profile: Profile, ds: Any, tokenizer: Any, count: int) -> dict[str, Any]:
    """Each side of the first pairs as the preference trainers tokenize it: the prompt as context, the answer
    trained (DPO, ORPO: chosen and rejected; KTO: the answer, good or bad); GRPO's prompts alone (the model
    samples its answers)."""
    from studio.trainer.preference import answer_ids, answers, prompt_ids

    shown = []
    max_len = profile.data.max_length
    for number, row in list(zip(ds.row_numbers, ds.rows))[:count]:
        sides = [(side, *answer_ids(tokenizer, row["prompt"], answer)) for side, answer in answers(row)]
        if not sides:  # GRPO: what the model is asked, up to where it starts to answer
            ids = prompt_ids(tokenizer, row["prompt"])
            sides = [("prompt", ids, len(ids))]
        for side, ids, n_prompt in sides:
            mask = [0] * n_prompt + [1] * (len(ids) - n_prompt)
            shown.append({"row": number, "side": side, "tokens": len(ids), "trained_tokens": sum(mask[:max_len]),
                          "segments": segments(tokenizer, ids, mask, max_len)})
    covers = ("sampled answers (the prompts are context)" if profile.train.objective == "grpo" else
              "the answers (the prompt is context)")
    return {"loss_on": covers, "note": None, "format": ds.format, "rows_in_file": len(ds.rows),
            "max_length": max_len, "rows": shown}


def preview(profile: Profile, count: int = 3) -> dict[str, Any]:
    ds = load_data(profile, profile.data.split)
    check_bad_rows(ds, profile.data.on_bad_rows)
    tokenizer = preview_tokenizer(profile, ds.rows)
    if profile.train.objective != "sft":
        return preference_preview(profile, ds, tokenizer, count)
    rows, loss = rows_for_loss(tokenizer, ds, ds.rows[:count], profile)
    tokenized = tokenize_rows(tokenizer, rows, loss.assistant_only)
    shown = []
    for number, item in zip(ds.row_numbers, tokenized.rows):
        mask = item.get("assistant_masks") or item.get("completion_mask")
        ids = item["input_ids"]
        shown.append({"row": number, "tokens": len(ids), "trained_tokens": sum(mask[:profile.data.max_length])
                      if mask else min(len(ids), profile.data.max_length),
                      "segments": segments(tokenizer, ids, mask, profile.data.max_length)})
    return {"loss_on": loss.covers, "note": loss.note, "format": ds.format, "rows_in_file": len(ds.rows),
            "max_length": profile.data.max_length, "rows": shown}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.trainer.preview")
    parser.add_argument("profile", type=Path)
    parser.add_argument("--rows", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        result = preview(load_profile(args.profile), max(1, args.rows))
    except ProfileError as e:
        print(json.dumps({"error": "; ".join(e.problems)}))
        return 2
    except (DataError, ConfigError) as e:
        print(json.dumps({"error": str(e)}))
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
