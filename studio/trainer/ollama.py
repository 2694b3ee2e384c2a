"""An Ollama Modelfile whose TEMPLATE renders the prompt the model's own chat template renders.

Ollama's templates are Go templates over `.System` (every system message, joined) and `.Messages`. The
pieces are found by rendering the Hugging Face template around marker texts: what comes before the first
user turn with and without a system prompt (a default system block such as Qwen's or Llama 3.1's is kept
when the user gives none, and replaced when they do), what separates the turns, and what opens the
assistant's answer. A system prompt that the template puts inside a user turn (Mistral v0.3: before the
last one) goes there; a template that refuses a system role gets a Modelfile that says so.

BOS is written once: left out of the TEMPLATE when the GGUF tells llama.cpp to add it, kept as text when not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SYSTEM, USER1, ASSISTANT1, USER2 = "\x00SYSTEM\x00", "\x00USER1\x00", "\x00ASSISTANT1\x00", "\x00USER2\x00"


class TemplateError(Exception):
    """A chat template whose turns cannot be told apart; the message says what to do."""


@dataclass(frozen=True)
class ChatShape:
    bos: str                 # what the template writes before anything else (BOS), "" when nothing
    default_system: str      # written before the first user turn when no system prompt is given
    system_prefix: str       # around a system prompt given by the user
    system_suffix: str
    system_mode: str         # "block" (before the turns), "last-user" / "first-user" (inside that turn), "none"
    user_prefix: str
    user_suffix: str         # after the last user's text: the user's end and the assistant's opening
    answered_suffix: str     # the same before an answer that is there (a template may add a space)
    assistant_suffix: str    # after an assistant's answer, before the next user turn
    stops: tuple[str, ...]


def render(tokenizer: Any, messages: list[tuple[str, str]]) -> str:
    return tokenizer.apply_chat_template([{"role": r, "content": c} for r, c in messages], tokenize=False,
                                         add_generation_prompt=True)


def split_once(text: str, marker: str, what: str) -> tuple[str, str]:
    if text.count(marker) != 1:
        raise TemplateError(f"the chat template does not write the {what} once, as written; the Modelfile "
                            "cannot be derived from it. Write the TEMPLATE by hand (ollama.com/library has "
                            "templates for the common families)")
    before, after = text.split(marker)
    return before, after


def common_suffix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return a[len(a) - n:]


def chat_shape(tokenizer: Any, stop_tokens: list[str]) -> ChatShape:
    """The template's pieces, found by rendering it around markers."""
    one = render(tokenizer, [("user", USER1)])
    three = render(tokenizer, [("user", USER1), ("assistant", ASSISTANT1), ("user", USER2)])
    head, after = split_once(one, USER1, "user's text")
    head3, rest = split_once(three, USER1, "user's text")
    answered, rest = split_once(rest, ASSISTANT1, "assistant's answer")
    between, tail = split_once(rest, USER2, "second user's text")
    if head3 != head or tail != after:
        raise TemplateError("the chat template writes the first turn differently once a second one follows; "
                            "write the Modelfile's TEMPLATE by hand")
    bos = tokenizer.bos_token if tokenizer.bos_token and head.startswith(tokenizer.bos_token) else ""
    head = head[len(bos):]
    user_prefix = turn_opening(head, between, stop_tokens)
    default_system = head[:len(head) - len(user_prefix)]
    assistant_suffix = between[:len(between) - len(user_prefix)]
    mode, system_prefix, system_suffix = system_part(tokenizer, bos, default_system, user_prefix)
    return ChatShape(bos, default_system, system_prefix, system_suffix, mode, user_prefix, after, answered,
                     assistant_suffix, stops(tokenizer, stop_tokens, between))


def turn_opening(head: str, between: str, stop_tokens: list[str]) -> str:
    """What opens a user turn: the text shared by the start of the first turn and the step from an answer to
    the next turn, without the answer's end marker (an end-of-turn token and the whitespace after it)."""
    shared = common_suffix(head, between)
    for stop in stop_tokens:
        if stop and shared.startswith(stop):
            return shared[len(stop):].lstrip("\n")
    return shared


def system_part(tokenizer: Any, bos: str, default_system: str, user_prefix: str) -> tuple[str, str, str]:
    """Where a system prompt goes, and what surrounds it."""
    try:
        with_system = render(tokenizer, [("system", SYSTEM), ("user", USER1)])
        two_turns = render(tokenizer, [("system", SYSTEM), ("user", USER1), ("assistant", ASSISTANT1),
                                       ("user", USER2)])
    except Exception:  # noqa: BLE001 - the template raises on a system role (Mistral v0.1)
        return "none", "", ""
    if SYSTEM not in with_system:
        return "none", "", ""
    before_user, _ = split_once(with_system, USER1, "user's text")
    before_user = before_user[len(bos):]
    if before_user.endswith(user_prefix) and SYSTEM in before_user[:len(before_user) - len(user_prefix)]:
        block = before_user[:len(before_user) - len(user_prefix)]
        prefix, suffix = block.split(SYSTEM)
        return "block", prefix, suffix
    # Inside a user turn, before its text (Llama 2: "[INST] <<SYS>>\n...\n<</SYS>>\n\n" in the first one,
    # Mistral v0.3: "[INST] ...\n\n" in the last one).
    inside = before_user[len(default_system):] if before_user.startswith(default_system) else before_user
    if not inside.startswith(user_prefix) or SYSTEM not in inside[len(user_prefix):]:
        raise TemplateError("the chat template puts the system prompt where the Modelfile cannot follow; "
                            "write its TEMPLATE by hand")
    prefix, separator = inside[len(user_prefix):].split(SYSTEM, 1)
    mode = "last-user" if two_turns.index(SYSTEM) > two_turns.index(ASSISTANT1) else "first-user"
    return mode, prefix, separator


def stops(tokenizer: Any, stop_tokens: list[str], between: str) -> tuple[str, ...]:
    """Single tokens that end an answer: EOS, the generation config's other end tokens, and the end-of-turn
    token that closes an answer in the template."""
    found = [t for t in stop_tokens if t]
    special = sorted((t for t in tokenizer.all_special_tokens + [str(a) for a in tokenizer.added_tokens_decoder.values()]
                      if t and between.startswith(t)), key=len, reverse=True)
    found += special[:1]
    return tuple(dict.fromkeys(found))


def go_text(text: str) -> str:
    """Text as it sits in a Go template: '{{' cannot appear raw."""
    return text.replace("{{", '{{ "{{" }}')


def go_template(shape: ChatShape, add_bos: bool) -> str:
    """The TEMPLATE: Ollama fills .System (the Modelfile's SYSTEM unless the request brings its own) and
    .Messages."""
    s = shape
    bos = "" if add_bos else go_text(s.bos)
    if s.system_mode == "block":
        system = (f"{{{{ if .System }}}}{go_text(s.system_prefix)}{{{{ .System }}}}{go_text(s.system_suffix)}"
                  f"{{{{ else }}}}{go_text(s.default_system)}{{{{ end }}}}")
    else:
        system = go_text(s.default_system)
    answer_opening = go_text(s.user_suffix) if s.user_suffix == s.answered_suffix else \
        f"{{{{ if $last }}}}{go_text(s.user_suffix)}{{{{ else }}}}{go_text(s.answered_suffix)}{{{{ end }}}}"
    if s.system_mode == "last-user":
        inside = f"{{{{ if and $.System $last }}}}{go_text(s.system_prefix)}{{{{ $.System }}}}" \
                 f"{go_text(s.system_suffix)}{{{{ end }}}}"
    elif s.system_mode == "first-user":
        inside = f"{{{{ if and $.System (eq $i $first) }}}}{go_text(s.system_prefix)}{{{{ $.System }}}}" \
                 f"{go_text(s.system_suffix)}{{{{ end }}}}"
    else:
        inside = ""
    first = "{{ $first := -1 }}{{ range $j, $m := .Messages }}{{ if and (eq $m.Role \"user\") (lt $first 0) }}" \
            "{{ $first = $j }}{{ end }}{{ end }}" if s.system_mode == "first-user" else ""
    return (f"{bos}{system}{first}"
            "{{ range $i, $_ := .Messages }}"
            "{{ $last := eq (len (slice $.Messages $i)) 1 }}"
            f"{{{{ if eq .Role \"user\" }}}}{go_text(s.user_prefix)}{inside}{{{{ .Content }}}}"
            f"{answer_opening}"
            f"{{{{ else if eq .Role \"assistant\" }}}}{{{{ .Content }}}}{{{{ if not $last }}}}"
            f"{go_text(s.assistant_suffix)}{{{{ end }}}}"
            "{{ end }}{{ end }}")


def quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def ollama_modelfile(gguf_name: str, tokenizer: Any, add_bos: bool, stop_tokens: list[str], temperature: float,
                     top_p: float) -> tuple[str, list[str]]:
    """The Modelfile for the GGUF `gguf_name`, and the notes a user should read (a system prompt the template
    has no place for)."""
    shape = chat_shape(tokenizer, stop_tokens)
    notes = []
    lines = [f"FROM ./{gguf_name}"]
    if shape.system_mode == "none":
        note = ("this model's chat template has no system role (it refuses one), so the Modelfile's TEMPLATE "
                "leaves .System out: a SYSTEM line or a system message in Ollama is not shown to the model")
        notes.append(note)
        lines.append(f"# {note}")
    lines.append(f'TEMPLATE """{go_template(shape, add_bos)}"""')
    lines += [f'PARAMETER stop "{quoted(s)}"' for s in shape.stops]
    lines += [f"PARAMETER temperature {temperature}", f"PARAMETER top_p {top_p}"]
    return "\n".join(lines) + "\n", notes


def end_tokens(folder: Any, tokenizer: Any) -> list[str]:
    """EOS and the generation config's other end tokens (Llama 3.1's <|eom_id|>, Qwen's <|endoftext|>)."""
    import json
    from pathlib import Path

    ids: list[int] = []
    try:
        found = json.loads((Path(folder) / "generation_config.json").read_text(encoding="utf-8")).get("eos_token_id")
        ids = [found] if isinstance(found, int) else [i for i in found or [] if isinstance(i, int)]
    except (OSError, ValueError):
        pass
    tokens = [tokenizer.eos_token] + [tokenizer.convert_ids_to_tokens(i) for i in ids]
    return [t for t in dict.fromkeys(tokens) if t]
