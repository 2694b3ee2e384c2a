"""Colours the themes derive: `$rule`, for borders, separators and progress tracks, which must show on
any background, in truecolor and in the 256 colours of tmux's default or an SSH session without COLORTERM."""

from __future__ import annotations

from rich.color import Color as RichColor
from rich.color import ColorSystem
from textual.color import Color

RULE_CONTRAST = 3.2  # WCAG asks 3:1 of lines and borders; a little over, for the rounding of 256 colours


def luminance(c: Color) -> float:
    def channel(v: int) -> float:
        v /= 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b)


def contrast(a: Color, b: Color) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def eight_bit(c: Color) -> int | None:
    return RichColor.from_rgb(c.r, c.g, c.b).downgrade(ColorSystem.EIGHT_BIT).number


def rule_colour(background: Color, foreground: Color) -> Color:
    """The foreground blended into the background, just far enough to stand out from it."""
    for step in range(30, 101, 5):
        rule = background.blend(foreground, step / 100)
        if contrast(rule, background) >= RULE_CONTRAST and eight_bit(rule) != eight_bit(background):
            return rule
    return foreground
