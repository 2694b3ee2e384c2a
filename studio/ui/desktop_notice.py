"""A desktop notification when a run ends, sent as the terminal's own escape sequence, so that it reaches the
desktop of whoever is at the other end of the SSH session:
  OSC 9    ESC ] 9 ; text BEL               iTerm2, WezTerm, Windows Terminal, kitty, Ghostty, ConEmu
  OSC 777  ESC ] 777 ; notify ; title ; body BEL   foot, rxvt-unicode, VTE terminals (GNOME Terminal...)
Inside tmux the sequence is wrapped for passthrough, which tmux forwards only with `set -g allow-passthrough
on` (tmux 3.3 or later); inside GNU screen likewise. STUDIO_NOTIFY chooses: 9, 777, or off. A terminal that
knows neither ignores it."""

from __future__ import annotations

from collections.abc import Mapping

KINDS = ("9", "777", "off")


def notice_kind(env: Mapping[str, str]) -> str:
    """STUDIO_NOTIFY's choice, else 777 for the terminals known to take it, else 9."""
    chosen = env.get("STUDIO_NOTIFY", "").strip().lower()
    if chosen in KINDS:
        return chosen
    if chosen in ("0", "no", "none", "false"):
        return "off"
    term = env.get("TERM", "")
    if term.startswith(("foot", "rxvt")) or env.get("VTE_VERSION"):
        return "777"
    return "9"


def plain(text: str, limit: int = 200) -> str:
    """Printable characters only: a run's name or message must not end the sequence or start another."""
    return "".join(ch for ch in text if ch.isprintable()).replace(";", ",")[:limit]


def notice_sequence(title: str, body: str, env: Mapping[str, str]) -> str | None:
    """The bytes to write to the terminal for one notification (None when switched off)."""
    kind = notice_kind(env)
    if kind == "off":
        return None
    title, body = plain(title), plain(body)
    seq = f"\x1b]777;notify;{title};{body}\x07" if kind == "777" else f"\x1b]9;{title}: {body}\x07"
    if env.get("TMUX"):
        return "\x1bPtmux;" + seq.replace("\x1b", "\x1b\x1b") + "\x1b\\"
    if env.get("STY") or env.get("TERM", "").startswith("screen"):  # GNU screen (tmux was answered above)
        return "\x1bP" + seq + "\x1b\\"
    return seq
