"""No raw control bytes to the terminal: every string studio did not write itself (a run folder's name,
a dataset row, a profile value, an error quoting any of them) reaches the terminal with its control,
bidi-override and zero-width characters escaped, so a file cannot retitle, clear or recolour the
terminal, or fake a line of output. Commands for the user to copy are quoted as a shell would."""

from __future__ import annotations

import shlex
import sys
import unicodedata
from typing import IO, Any

# Line breaks are escaped too, unless a caller writes whole lines of its own (SafeStream).
KEEP_IN_STREAMS = "\n\t"


def unsafe(ch: str) -> bool:
    """Control characters (C0, C1, DEL), format characters (bidi overrides, zero-width) and line separators."""
    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")


def escaped(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(text: Any, keep: str = "") -> str:
    """`text` with every unsafe character written as an escape (\\x1b, \\u202e); `keep` lists ones to leave."""
    text = str(text)
    plain = text
    for ch in keep:  # a fast path in C for the usual case: nothing to escape
        plain = plain.replace(ch, "")
    if plain.isprintable() or all(ch.isprintable() or ch in keep for ch in text):
        return text
    return "".join(escaped(ch) if unsafe(ch) and ch not in keep else ch for ch in text)


def has_unsafe(text: str) -> bool:
    return any(unsafe(ch) for ch in text)


def shell_arg(text: str) -> str:
    """A word for a command line the user may copy: quoted as a shell would, control characters escaped."""
    return shlex.quote(safe(text))


class SafeStream:
    """A text stream that escapes unsafe characters (keeping newlines and tabs) in all it is given: the CLI's
    stdout and stderr, so that no message, whatever it quotes, writes raw control bytes."""

    def __init__(self, stream: IO[str]):
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(safe(text, keep=KEEP_IN_STREAMS))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def protect_streams() -> None:
    """Make sys.stdout and sys.stderr SafeStreams (once)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, SafeStream):
            setattr(sys, name, SafeStream(stream))
