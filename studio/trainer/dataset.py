"""The trainer's data: load the rows, hold out an eval split, decide what the loss
covers, and measure the dataset (the preflight) before the model loads."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from studio.data import Dataset, DataError, build_dataset, check_bad_rows, held_out_indices, load_local
from studio.paths import is_local
from studio.profiles.profile import Profile
from studio.runs.events import EventWriter, Preflight
from studio.trainer.failures import ConfigError
from studio.trainer.hub import DownloadError, describe_hub_error
from studio.trainer.tokenize import Tokenized

Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class LossSettings:
    """Which tokens the loss covers, in SFTConfig's terms, and a note for the user when studio chose."""

    assistant_only: bool = False
    completion_only: bool | None = None
    note: str = ""

    @property
    def covers(self) -> str:
        if self.assistant_only:
            return "assistant turns"
        return "completions" if self.completion_only else "all tokens"


def load_data(profile: Profile, split: str, writer: EventWriter | None = None) -> Dataset:
    """The rows of a local file or a hub dataset split (downloads report progress as events)."""
    d = profile.data
    if is_local(d.path):
        return load_local(d.path, d.format)
    try:
        import datasets

        from studio.trainer.hub import download_progress, hub_cache_blobs

        progress = (download_progress(writer, "dataset", d.path, hub_cache_blobs("datasets", d.path), None)
                    if writer is not None else contextlib.nullcontext())
        with progress:
            hub = datasets.load_dataset(d.path, split=split)
    except FileNotFoundError as e:
        raise DataError(f"data.path: dataset {d.path!r} not found locally or on the hub ({e}); check the path or id") from e
    except ValueError as e:
        raise DataError(f"data.split: {e}") from e
    except Exception as e:
        raise DownloadError(describe_hub_error(d.path, "dataset", e)) from e
    return build_dataset(enumerate(hub, start=1), d.format)


def probe_dataset(profile: Profile) -> Dataset:
    """Synthetic rows long enough to fill max_length, in the shape the objective trains on: the worst case for
    memory (a pair's prompt and each answer a third of it: chosen and rejected fill it together with the
    prompt; GRPO's prompts fill it before its answers are sampled)."""
    from studio.trainer.random_model import probe_rows

    t = profile.train
    count = max(t.max_steps, 1) * t.batch_size * t.grad_accum + t.batch_size
    texts = [r["text"] for r in probe_rows(profile.data.max_length, count, t.seed)]
    if t.objective == "sft":
        return build_dataset(enumerate(({"text": x} for x in texts), start=1), "text")

    def thirds(text: str) -> tuple[str, str, str]:
        words = text.split()
        third = max(1, len(words) // 3)
        return " ".join(words[:third]), " ".join(words[third:2 * third]), " ".join(reversed(words[2 * third:]))

    if t.objective == "grpo":
        rows = [{"prompt": x, "answer": "42"} for x in texts]
        return build_dataset(enumerate(rows, start=1), "prompts")
    if t.objective == "kto":
        rows = [{"prompt": p, "completion": c, "label": i % 2 == 0} for i, (p, c, _) in enumerate(map(thirds, texts))]
        return build_dataset(enumerate(rows, start=1), "unpaired")
    rows = [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in map(thirds, texts)]
    return build_dataset(enumerate(rows, start=1), "preference")


def split_eval(profile: Profile, ds: Dataset) -> tuple[Rows, Rows]:
    """(train rows, eval rows): a separate split or file, a held-out fraction, or no eval."""
    d = profile.data
    rows = list(ds.rows)
    if d.eval_split:
        eval_ds = load_local(d.eval_split, ds.format) if is_local(d.eval_split) else load_data(profile, d.eval_split)
        check_bad_rows(eval_ds, d.on_bad_rows)
        return rows, eval_ds.rows
    held = fraction_held_out(profile, ds)
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def fraction_held_out(profile: Profile, ds: Dataset) -> set[int]:
    """The indices of `ds.rows` that data.eval_fraction holds out (none with an eval split, or no fraction)."""
    d = profile.data
    if d.eval_split or d.eval_fraction <= 0:
        return set()
    return held_out_indices(len(ds.rows), d.eval_fraction, profile.train.seed)


def training_row_numbers(profile: Profile, ds: Dataset) -> list[int]:
    """The data row number of each of split_eval's training rows, in their order."""
    held = fraction_held_out(profile, ds)
    return [n for i, n in enumerate(ds.row_numbers) if i not in held]


def rows_for_loss(tokenizer: Any, ds: Dataset, rows: Rows, profile: Profile) -> tuple[Rows, LossSettings]:
    """The rows as SFTTrainer takes them, and what the loss covers."""
    if ds.format not in ("messages", "sharegpt"):
        return rows, LossSettings(completion_only=profile.data.completion_only_loss and ds.format != "text")
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise ConfigError(f"data: the rows are chat conversations but {profile.model.name}'s tokenizer has no chat "
                          "template; use an instruct/chat model, or a prompt/completion or text dataset")
    if not profile.data.completion_only_loss:
        return rows, LossSettings()
    if "{% generation %}" in template or "{%- generation %}" in template:
        return rows, LossSettings(assistant_only=True)
    # Without generation markers TRL cannot find every assistant turn; train on the
    # last assistant turn of each conversation as the completion instead.
    converted = []
    for r in rows:
        msgs = r["messages"]
        last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
        converted.append({"prompt": msgs[:last], "completion": [msgs[last]]})
    return converted, LossSettings(completion_only=True, note="the chat template has no {% generation %} markers, "
                                   "so the loss covers the last assistant turn of each conversation")


def preflight(tokenized: Tokenized, eval_tokenized: Tokenized | None, ds: Dataset, profile: Profile,
              loss: LossSettings) -> Preflight:
    """Rows, tokens, truncation and what the loss covers, from the tokenized rows: shown before the first step.

    Raises DataError when truncation to max_length would leave no row with a token to learn from.
    """
    lengths = tokenized.lengths
    max_len = profile.data.max_length
    if lengths and all(min(n, max_len) < 2 for n in lengths):  # a token is learnt from the one before it
        raise DataError(f"data: the {len(lengths)} rows tokenize to {sum(lengths)} token(s) in all, at most "
                        f"{max(lengths)} a row: nothing to predict. Look at the rows' text and at the tokenizer "
                        "(`studio profile preview` shows both; model.tokenizer names another one)")
    without_loss = 0
    if loss.assistant_only or loss.completion_only:
        without_loss = sum(1 for n in tokenized.first_trained() if n >= max_len)
        if lengths and without_loss == len(lengths):
            raise DataError(f"data.max_length: every row's prompt is {max_len} tokens or longer, so truncation "
                            "leaves nothing to learn from; raise data.max_length, shorten the prompts, or set "
                            "data.completion_only_loss = false")
    rows, eval_rows = len(lengths), len(eval_tokenized.rows) if eval_tokenized else 0
    truncated = [ds.row_numbers[i] for i, n in enumerate(lengths) if n > max_len] if rows == len(ds.row_numbers) else []
    sorted_lens = sorted(lengths)
    return Preflight(
        format=ds.format, rows=rows + eval_rows, train_rows=rows, eval_rows=eval_rows,
        tokens=sum(lengths), tokens_trained=sum(min(n, max_len) for n in lengths),
        mean_tokens=round(sum(lengths) / len(lengths), 1) if lengths else 0.0,
        p95_tokens=sorted_lens[int(0.95 * (len(sorted_lens) - 1))] if lengths else 0,
        max_tokens=max(lengths, default=0), max_length=max_len,
        truncated_rows=sum(1 for n in lengths if n > max_len), truncated_row_numbers=tuple(truncated[:100]),
        bad_rows=tuple({"row": b.row, "reason": b.reason} for b in ds.bad_rows[:100]),
        bad_rows_count=len(ds.bad_rows), loss_on=loss.covers, rows_without_loss=without_loss,
        note="; ".join(n for n in (loss.note, f"{without_loss} row(s) have no trained token within max_length "
                                   "and are left out" if without_loss else "") if n) or None)


def bad_rows_record(ds: Dataset) -> Preflight:
    """What the preflight can say about a dataset refused for its malformed rows."""
    return Preflight(format=ds.format, rows=len(ds.rows) + len(ds.bad_rows),
                     bad_rows=tuple({"row": b.row, "reason": b.reason} for b in ds.bad_rows[:100]),
                     bad_rows_count=len(ds.bad_rows))
