"""GRPO's reward functions: the built-ins and a user's own (`file.py:function`), each called as TRL calls
them (the prompts, the sampled completions, and every other column of the rows as keyword arguments), and
each failure named by its function and the data row it was scoring."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path
from typing import Any, Callable

from studio.profiles.profile import Profile

ROW_COLUMN = "studio_row"  # the data row number each prompt came from, handed to the rewards with the rest
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


class SampledAnswers:
    """The latest answers GRPO sampled and what each reward gave them, for the trainer's log (which the monitor's
    log pane and `studio logs` show)."""

    def __init__(self) -> None:
        self.batch: int | None = None
        self.prompts: list[str] = []
        self.answers: list[str] = []
        self.scores: list[dict[str, float | None]] = []

    def note(self, name: str, prompts: list[Any], completions: list[Any], scores: list[float | None]) -> None:
        if id(completions) != self.batch:  # a new batch: every function scores the same list in turn
            self.batch = id(completions)
            self.prompts = [completion_text(p[-1:] if isinstance(p, list) else p) for p in prompts]
            self.answers = [completion_text(c) for c in completions]
            self.scores = [{} for _ in completions]
        for entry, score in zip(self.scores, scores):
            entry[name] = score

    def lines(self, count: int = 2, width: int = 160) -> list[str]:
        """The first `count` answers of the latest batch, each with its rewards, on one line each."""
        out = []
        for prompt, answer, scores in list(zip(self.prompts, self.answers, self.scores))[:count]:
            said = " · ".join(f"{k} {v:.2f}" if v is not None else f"{k} -" for k, v in scores.items())
            text = " ".join(answer.split())
            out.append(f"sampled for {' '.join(prompt.split())[:48]!r}: {text[:width]!r} ({said})")
        return out


SAMPLED = SampledAnswers()


class RewardError(Exception):
    """A reward function failed or answered something that is not a score; the message names it and the row."""


def completion_text(completion: Any) -> str:
    """A sampled answer as text (TRL gives conversations as a list of turns)."""
    if isinstance(completion, list):
        return "".join(t.get("content", "") for t in completion if isinstance(t, dict))
    return str(completion)


def final_answer(text: str) -> str:
    """What an answer ends on: after GSM8K's '####', else its last number, else its last line."""
    if "####" in text:
        return text.rsplit("####", 1)[1].strip()
    numbers = NUMBER.findall(text)
    if numbers:
        return numbers[-1]
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def same_answer(given: str, expected: str) -> bool:
    """Equal as numbers when both are numbers (1,000 = 1000.0), else as words (case and end punctuation aside)."""
    def number(text: str) -> float | None:
        try:
            return float(text.replace(",", "").strip())
        except ValueError:
            return None

    a, b = number(given), number(expected)
    if a is not None and b is not None:
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return given.strip().strip(".!").lower() == expected.strip().strip(".!").lower()


def exact_answer(completions: list[Any], answer: list[Any] | None = None, **_: Any) -> list[float]:
    """1 when the answer's final answer is the row's `answer` column (its own final answer), else 0."""
    if answer is None:
        raise ValueError("needs an 'answer' column in the rows (the expected final answer)")
    return [1.0 if same_answer(final_answer(completion_text(c)), final_answer(str(a))) else 0.0
            for c, a in zip(completions, answer)]


def format_reward(pattern: str) -> Callable[..., list[float]]:
    """1 when the answer holds a match of `pattern`, else 0."""
    compiled = re.compile(pattern)

    def format_check(completions: list[Any], **_: Any) -> list[float]:
        return [1.0 if compiled.search(completion_text(c)) else 0.0 for c in completions]
    return format_check


def length_reward(limit: int) -> Callable[..., list[float]]:
    """0 up to `limit` characters, then down to -1 at twice the limit."""
    def length(completions: list[Any], **_: Any) -> list[float]:
        return [-min(1.0, max(0, len(completion_text(c)) - limit) / limit) for c in completions]
    return length


def user_reward(spec: str) -> Callable[..., list[float]]:
    """A function from a Python file, `path/to/file.py:function`."""
    file, _, name = spec.rpartition(":")
    path = Path(file)
    if not path.is_file():
        raise RewardError(f"reward.functions: {path} does not exist; write the function there or fix the path "
                          "(relative to the profile)")
    module_spec = importlib.util.spec_from_file_location(f"studio_reward_{path.stem}", path)
    if module_spec is None or module_spec.loader is None:
        raise RewardError(f"reward.functions: {path} is not a Python file studio can load")
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - the user's file: whatever it raises is theirs to fix
        raise RewardError(f"reward.functions: {path} raised {type(e).__name__} while loading: {e}") from e
    function = getattr(module, name, None)
    if not callable(function):
        raise RewardError(f"reward.functions: {path} has no function {name!r}")
    return function


def checked(name: str, function: Callable[..., Any]) -> Callable[..., list[float]]:
    """`function` as TRL calls it, with a failure or a bad score named by the function and the data row."""
    def reward(prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
        rows = columns.get(ROW_COLUMN) or [None] * len(completions)
        try:
            scores = function(prompts=prompts, completions=completions, **columns)
        except Exception as e:  # noqa: BLE001 - named with the row it was scoring, then the run ends
            row = first_failing_row(function, prompts, completions, columns, rows)
            raise RewardError(f"reward {name} raised {type(e).__name__}: {e}" +
                              (f" (scoring an answer to data row {row})" if row is not None else "")) from e
        if not isinstance(scores, (list, tuple)) or len(scores) != len(completions):
            raise RewardError(f"reward {name} answered {str(scores)[:80]!r}: it must return one number per "
                              f"completion ({len(completions)} here)")
        out = []
        for score, row in zip(scores, rows):
            if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
                raise RewardError(f"reward {name} gave {score!r} for data row {row}: a number (or None) is needed")
            out.append(None if score is None else float(score))
        SAMPLED.note(name, prompts, completions, out)
        return out

    reward.__name__ = name  # TRL logs rewards/<name>/mean
    return reward


def first_failing_row(function: Callable[..., Any], prompts: list[Any], completions: list[Any],
                      columns: dict[str, Any], rows: list[Any]) -> Any:
    """Which data row the failure came from: each answer scored alone until one fails."""
    for i in range(len(completions)):
        one = {k: [v[i]] if isinstance(v, list) and len(v) == len(completions) else v for k, v in columns.items()}
        try:
            function(prompts=prompts[i:i + 1], completions=completions[i:i + 1], **one)
        except Exception:  # noqa: BLE001 - found it
            return rows[i]
    return None


def reward_functions(profile: Profile) -> list[Callable[..., list[float]]]:
    """The profile's rewards, in order."""
    r = profile.reward
    out = []
    for name in r.functions:
        if name == "exact_answer":
            out.append(checked(name, exact_answer))
        elif name == "format":
            out.append(checked(name, format_reward(r.format_pattern)))
        elif name == "length":
            out.append(checked(name, length_reward(r.length_limit)))
        else:
            out.append(checked(name.rpartition(":")[2], user_reward(name)))
    return out
