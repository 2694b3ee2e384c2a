"""python -m studio.generate.evaluate RUN_DIR [--compare] [--rows N] [--samples K]

Before/after numbers on the run's eval rows (its held-out fraction or eval split; else the last rows it
trained on, and it says so): the loss and perplexity of the tuned model and, with --compare, of the base
model, over the tokens the run trained on; the share of those tokens each model predicts exactly; and a few
side-by-side greedy answers. Prints one JSON line and writes it to the run's eval.json."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from studio.atomic import write_json
from studio.runs.files import EVAL_FILE
from studio.runs.folder import Run, RunError

FALLBACK_ROWS = 32


def eval_rows(run: Run, profile: Any, tokenizer: Any) -> tuple[list[dict[str, list[int]]], list[dict[str, Any]], str]:
    """(tokenized rows, the rows, where they come from) as the trainer tokenized them."""
    from studio.trainer.dataset import load_data, rows_for_loss
    from studio.trainer.tokenize import tokenize_rows

    ds = load_data(profile, profile.data.split)
    held, source = held_out(profile, ds)
    rows, loss = rows_for_loss(tokenizer, ds, held, profile)
    return tokenize_rows(tokenizer, rows, loss.assistant_only).rows, rows, source


def scores(model: Any, tokenized: list[dict[str, list[int]]], max_length: int) -> dict[str, float]:
    """Mean loss, perplexity and exact next-token share over the tokens the run trained on."""
    import torch

    total_loss = total_tokens = exact = 0.0
    for row in tokenized:
        ids = row["input_ids"][:max_length]
        mask = (row.get("assistant_masks") or row.get("completion_mask") or [1] * len(ids))[:max_length]
        if len(ids) < 2:
            continue
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids], device=model.device)).logits[0, :-1].float()
        targets = torch.tensor(ids[1:], device=logits.device)
        keep = torch.tensor(mask[1:], device=logits.device).bool()
        if not keep.any():
            continue
        losses = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
        total_loss += float(losses[keep].sum())
        exact += float((logits.argmax(-1) == targets)[keep].sum())
        total_tokens += float(keep.sum())
    if not total_tokens:
        raise RunError("the eval rows hold no trained tokens to score")
    loss = total_loss / total_tokens
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "exact": exact / total_tokens,
            "tokens": int(total_tokens)}


def held_out(profile: Any, ds: Any = None) -> tuple[list[dict[str, Any]], str]:
    """The run's eval rows as the trainer split them (else its last training rows, and it says so)."""
    from studio.trainer.dataset import load_data, split_eval

    train, held = split_eval(profile, ds if ds is not None else load_data(profile, profile.data.split))
    if held:
        return held, "the run's eval rows"
    return train[-FALLBACK_ROWS:], f"the last {min(FALLBACK_ROWS, len(train))} training rows (the run held none out)"


def answer_logprob(model: Any, ids: list[int], n_prompt: int, max_length: int) -> float:
    """log p(answer | prompt): the sum over the answer's tokens, as DPO's implicit reward counts them."""
    import torch

    ids = ids[:max_length]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids], device=model.device)).logits[0, :-1].float()
    logps = torch.log_softmax(logits, dim=-1).gather(-1, torch.tensor(ids[1:], device=logits.device)[:, None])
    return float(logps[max(n_prompt - 1, 0):].sum())


def preference_scores(models: Any, pairs: list[dict[str, Any]], max_length: int, beta: float,
                      compare: bool) -> dict[str, Any]:
    """On held-out pairs: the share each model gives the chosen answer the higher likelihood (base and tuned:
    before and after), and, tuned against the base, the implicit reward's accuracy and mean margin (DPO's
    beta * log-ratio, what training raised)."""
    from studio.trainer.preference import answer_ids

    def logps(side: str) -> list[tuple[float, float]]:
        model, off = models.side(side)
        out = []
        with model.disable_adapter() if off else contextlib.nullcontext():
            for pair in pairs:
                out.append(tuple(answer_logprob(model, *answer_ids(models.tokenizer, pair["prompt"], pair[k]),
                                                max_length) for k in ("chosen", "rejected")))
        return out

    tuned = logps("tuned")
    result: dict[str, Any] = {"pairs": len(pairs),
                              "tuned": {"prefers_chosen": sum(c > r for c, r in tuned) / len(pairs)}}
    if compare:
        base = logps("base")
        margins = [beta * ((tc - bc) - (tr - br)) for (tc, tr), (bc, br) in zip(tuned, base)]
        result["base"] = {"prefers_chosen": sum(c > r for c, r in base) / len(pairs)}
        result["reward_accuracy"] = sum(m > 0 for m in margins) / len(pairs)
        result["reward_margin"] = sum(margins) / len(pairs)
    return result


def samples(models: Any, rows: list[dict[str, Any]], k: int, sides: list[str]) -> list[dict[str, str]]:
    """Greedy answers of each side to the first k rows' prompts."""
    import torch

    out = []
    for row in rows[:k]:
        turns = row.get("messages")
        if turns:
            prompt = next((t["content"] for t in reversed(turns) if t.get("role") == "user"), "")
        else:
            prompt = row.get("prompt") if isinstance(row.get("prompt"), str) else str(row.get("text", ""))[:200]
        ids = models.prompt_ids(prompt, None)
        entry = {"prompt": prompt}
        for side in sides:
            model, off = models.side(side)
            with (model.disable_adapter() if off else contextlib.nullcontext()), torch.no_grad():
                new = model.generate(torch.tensor([ids], device=model.device), max_new_tokens=48, do_sample=False,
                                     pad_token_id=models.tokenizer.pad_token_id or models.tokenizer.eos_token_id)
            entry[side] = models.tokenizer.decode(new[0][len(ids):], skip_special_tokens=True).strip()
        out.append(entry)
    return out


def evaluate(run: Run, compare: bool, k: int) -> dict[str, Any]:
    from studio.generate.server import Models

    t0 = time.monotonic()
    models = Models(run, None, "compare" if compare else "tuned")
    plan = run.plan()
    profile = plan.final.profile if plan else run.profile()
    if profile.train.objective == "grpo":
        return evaluate_rewards(run, profile, models, compare, t0)
    if profile.train.objective != "sft":
        return evaluate_preference(run, profile, models, compare, t0)
    tokenized, rows, source = eval_rows(run, profile, models.tokenizer)
    result: dict[str, Any] = {"run": run.id, "rows": len(tokenized), "source": source, "adapter": models.adapter,
                              "device": models.device, "time": time.time()}
    result["tuned"] = scores(models.tuned, tokenized, profile.data.max_length)
    sides = ["base", "tuned"] if compare else ["tuned"]
    if compare:
        if models.base is not None:
            result["base"] = scores(models.base, tokenized, profile.data.max_length)
        else:
            with models.tuned.disable_adapter():
                result["base"] = scores(models.tuned, tokenized, profile.data.max_length)
    result["samples"] = samples(models, rows, k, sides)
    result["seconds"] = round(time.monotonic() - t0, 2)
    return result


def evaluate_preference(run: Run, profile: Any, models: Any, compare: bool, t0: float) -> dict[str, Any]:
    """A preference run judged on its held-out pairs (KTO's labelled rows judge nothing pairwise: its pairs
    are the rows that came as pairs)."""
    rows, source = held_out(profile)
    pairs = [r for r in rows if "chosen" in r]
    if not pairs:
        raise RunError(f"{source} hold no chosen/rejected pairs to judge the run on; give the run preference pairs "
                       "(or an eval split of them)")
    result: dict[str, Any] = {"run": run.id, "objective": profile.train.objective, "rows": len(pairs),
                              "source": source, "adapter": models.adapter, "device": models.device,
                              "time": time.time()}
    result["preference"] = preference_scores(models, pairs, profile.data.max_length, profile.preference.beta, compare)
    sides = ["base", "tuned"] if compare else ["tuned"]
    result["samples"] = samples(models, [{"prompt": p["prompt"] if isinstance(p["prompt"], str) else
                                          next((t["content"] for t in reversed(p["prompt"]) if t["role"] == "user"), "")}
                                         for p in pairs], 2, sides)
    result["seconds"] = round(time.monotonic() - t0, 2)
    return result


def evaluate_rewards(run: Run, profile: Any, models: Any, compare: bool, t0: float) -> dict[str, Any]:
    """A GRPO run judged on its held-out prompts: one greedy answer from each model, scored by the run's own
    reward functions (their mean, each and summed)."""
    import torch

    from studio.trainer.preference import prompt_ids
    from studio.trainer.rewards import ROW_COLUMN, reward_functions

    rows, source = held_out(profile)
    functions = reward_functions(profile)
    result: dict[str, Any] = {"run": run.id, "objective": "grpo", "rows": len(rows), "source": source,
                              "adapter": models.adapter, "device": models.device, "time": time.time(), "rewards": {}}
    for side in (["base", "tuned"] if compare else ["tuned"]):
        model, off = models.side(side)
        answers = []
        with model.disable_adapter() if off else contextlib.nullcontext(), torch.no_grad():
            for row in rows:
                prompt = row["prompt"]
                ids = prompt_ids(models.tokenizer, prompt)
                new = model.generate(torch.tensor([ids], device=model.device), do_sample=False,
                                     max_new_tokens=profile.reward.max_completion_length,
                                     pad_token_id=models.tokenizer.pad_token_id or models.tokenizer.eos_token_id)
                text = models.tokenizer.decode(new[0][len(ids):], skip_special_tokens=True)
                answers.append([{"role": "assistant", "content": text}] if isinstance(prompt, list) else text)
        columns = {k: [r.get(k) for r in rows] for k in {k for r in rows for k in r} if k != "prompt"}
        columns.setdefault(ROW_COLUMN, list(range(1, len(rows) + 1)))
        means = {}
        for function in functions:
            scores = [x for x in function(prompts=[r["prompt"] for r in rows], completions=answers, **columns)
                      if x is not None]
            means[function.__name__] = sum(scores) / len(scores) if scores else None
        result["rewards"][side] = {"mean": sum(v for v in means.values() if v is not None), "functions": means}
    result["seconds"] = round(time.monotonic() - t0, 2)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.generate.evaluate")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--samples", type=int, default=3)
    args = parser.parse_args()
    os.umask(0o077)  # transcripts, eval.json: the owner's alone
    run = Run(args.run_dir.resolve())
    try:
        run.check_contained()
        result = evaluate(run, args.compare, args.samples)
        write_json(run.dir / EVAL_FILE, result)
    except RunError as e:
        print(f"eval failed: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"eval failed: {e.strerror or e}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
