"""Preference and reward tuning: DPO, ORPO, KTO and GRPO through TRL's own trainers, on the same model,
adapters, optimizer, checkpoints, stop and telemetry as supervised fine-tuning (main.py); GRPO's rewards
are in rewards.py.

TRL tokenizes the pairs itself (the chat template applied to prompt and answers apart, as its trainers
need the prompt's length); what studio adds before that is the preflight: how long the pairs are in this
model's tokens, how many are cut by max_length, and pairs that leave an answer no token at all."""

from __future__ import annotations

import os
from typing import Any

from studio.data import DataError, Dataset
from studio.profiles.profile import Profile
from studio.profiles.vocabulary import REFERENCE_OBJECTIVES, frozen_reference
from studio.runs.events import Preflight
from studio.runs.folder import Run
from studio.trainer.config import training_arguments
from studio.trainer.dataset import training_row_numbers

Rows = list[dict[str, Any]]
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # ORPO and KTO live in trl.experimental in TRL 1.16


def prompt_ids(tokenizer: Any, prompt: Any) -> list[int]:
    """The ids of what the model is asked, up to where it starts to answer: a conversation through the chat
    template with its generation prompt, text as it is."""
    if isinstance(prompt, list):
        return list(tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True,
                                                  return_dict=True)["input_ids"])
    return list(tokenizer(prompt)["input_ids"])


def answer_ids(tokenizer: Any, prompt: Any, answer: Any) -> tuple[list[int], int]:
    """(the ids of prompt and answer, how many of them are the prompt's), as TRL's preference trainers
    tokenize a side: a conversation through the chat template (the answer as what the template adds after the
    prompt), text as it is with the end-of-sequence token after the answer."""
    head = prompt_ids(tokenizer, prompt)
    if isinstance(prompt, list):
        return list(tokenizer.apply_chat_template(prompt + answer, tokenize=True, return_dict=True)["input_ids"]), \
            len(head)
    return head + list(tokenizer(answer, add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id], len(head)


def answers(row: dict[str, Any]) -> list[tuple[str, Any]]:
    """A row's answers, named: a pair's chosen and rejected, KTO's good or bad one; none for GRPO's prompts
    (the model samples them)."""
    if "chosen" in row:
        return [("chosen", row["chosen"]), ("rejected", row["rejected"])]
    if "completion" in row:
        return [("good" if row["label"] else "bad", row["completion"])]
    return []


def pair_lengths(tokenizer: Any, row: dict[str, Any]) -> tuple[int, int]:
    """(tokens of the row's longest side, tokens of its shortest answer); a GRPO prompt's answers are sampled
    (counted as one token here: they are not in the data)."""
    sides = [answer_ids(tokenizer, row["prompt"], answer) for _, answer in answers(row)]
    if not sides:
        return len(prompt_ids(tokenizer, row["prompt"])), 1
    return max(len(ids) for ids, _ in sides), min(max(len(ids) - n, 0) for ids, n in sides)


def preference_preflight(tokenizer: Any, ds: Dataset, rows: Rows, eval_rows: Rows, profile: Profile) -> Preflight:
    """The pairs in this model's tokens, shown before the first step; DataError when the template or the
    rows leave nothing to compare."""
    if any(isinstance(r["prompt"], list) for r in rows) and not getattr(tokenizer, "chat_template", None):
        raise DataError(f"data: the pairs are conversations but {profile.model.name}'s tokenizer has no chat "
                        "template; use an instruct/chat model, or pairs of text")
    max_len = profile.data.max_length
    numbers = training_row_numbers(profile, ds)  # each training row's number in the data
    lengths, empty = [], []
    for number, row in zip(numbers, rows):
        longest, shortest_answer = pair_lengths(tokenizer, row)
        lengths.append(longest)
        if shortest_answer == 0:
            empty.append(number)
    if empty:
        raise DataError(f"data: {len(empty)} row(s) have an answer with no tokens under the chat template "
                        f"(rows {', '.join(map(str, empty[:10]))}); give each side an answer", rows=empty[:100])
    truncated = [number for number, n in zip(numbers, lengths) if n > max_len]
    ordered = sorted(lengths)
    covers = {"dpo": "chosen and rejected answers (their log-prob margin against the reference)",
              "orpo": "chosen answers (likelihood) and both answers' odds ratio",
              "kto": "answers, labelled good or bad, against the reference",
              "grpo": f"{profile.reward.num_generations} sampled answers a prompt, scored by "
                      f"{', '.join(n.rpartition(':')[2] for n in profile.reward.functions)}"}[profile.train.objective]
    return Preflight(
        format=ds.format, rows=len(rows) + len(eval_rows), train_rows=len(rows), eval_rows=len(eval_rows),
        tokens=sum(lengths), tokens_trained=sum(min(n, max_len) for n in lengths),
        mean_tokens=round(sum(lengths) / len(lengths), 1) if lengths else 0.0,
        p95_tokens=ordered[int(0.95 * (len(ordered) - 1))] if lengths else 0, max_tokens=max(lengths, default=0),
        max_length=max_len, truncated_rows=len(truncated), truncated_row_numbers=tuple(truncated[:100]),
        bad_rows=tuple({"row": b.row, "reason": b.reason} for b in ds.bad_rows[:100]),
        bad_rows_count=len(ds.bad_rows), loss_on=covers)


def unpaired(rows: Rows) -> Rows:
    """KTO's rows: preference pairs become a good and a bad row each (TRL's KTO takes labelled rows)."""
    out = []
    for row in rows:
        if "chosen" in row:
            out += [{"prompt": row["prompt"], "completion": row["chosen"], "label": True},
                    {"prompt": row["prompt"], "completion": row["rejected"], "label": False}]
        else:
            out.append(row)
    return out


def needs_reference_copy(profile: Profile) -> bool:
    """DPO and KTO under full fine-tuning score against a frozen copy of the base (LoRA and QLoRA turn their
    adapter off instead; precomputed reference log-probs need neither). The planner counts it the same way
    (planning/estimate.py:reference_copy)."""
    objective = profile.train.objective
    return objective in REFERENCE_OBJECTIVES and frozen_reference(objective, profile.method.type,
                                                                  profile.preference.reference)


def preference_trainer(profile: Profile, run: Run, model: Any, tokenizer: Any, rows: Rows, eval_rows: Rows,
                       device: str, dtype: str, probe: bool, peft_config: Any, callbacks: list[Any],
                       reference: Any = None) -> Any:
    """TRL's trainer for the profile's objective, set up like SFT's; `reference` is the frozen copy
    (needs_reference_copy), loaded by the caller as the model was."""
    from datasets import Dataset as HFDataset

    objective, pref = profile.train.objective, profile.preference
    common = training_arguments(profile, run, device, dtype, bool(eval_rows), probe)
    if objective == "kto":
        rows, eval_rows = unpaired(rows), unpaired(eval_rows)
    train_set = HFDataset.from_list(rows)
    eval_set = HFDataset.from_list(eval_rows) if eval_rows else None
    if objective == "grpo":
        from trl import GRPOConfig, GRPOTrainer

        from studio.trainer.rewards import reward_functions

        r = profile.reward
        common.pop("max_length")  # GRPO bounds what it samples (max_completion_length), not the prompts
        args = GRPOConfig(**common, num_generations=r.num_generations, max_completion_length=r.max_completion_length,
                          temperature=r.temperature, beta=r.beta)
        return GRPOTrainer(model=model, reward_funcs=reward_functions(profile), args=args, train_dataset=train_set,
                           eval_dataset=eval_set, processing_class=tokenizer, peft_config=peft_config,
                           callbacks=callbacks)
    if objective == "dpo":
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**common, beta=pref.beta, loss_type=[pref.loss_type],
                         precompute_ref_log_probs=pref.reference == "precompute")
        trainer_class: Any = DPOTrainer
    elif objective == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        args, trainer_class = ORPOConfig(**common, beta=pref.beta), ORPOTrainer
    else:
        from trl.experimental.kto import KTOConfig, KTOTrainer

        args = KTOConfig(**common, beta=pref.beta, desirable_weight=pref.desirable_weight,
                         undesirable_weight=pref.undesirable_weight,
                         precompute_ref_log_probs=pref.reference == "precompute")
        trainer_class = KTOTrainer
    extra = {"ref_model": reference} if objective in REFERENCE_OBJECTIVES else {}
    return trainer_class(model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
                         processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks, **extra)
