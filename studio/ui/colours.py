"""Colours the themes derive: `$rule`, for borders, separators and progress tracks, which must show on
any background, in truecolor and in the 256 colours of tmux's default or an SSH session without COLORTERM."""

from __future__ import annotations

from rich.color import Color as RichColor
from rich.color import ColorSystem
from rich.terminal_theme import TerminalTheme
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


TEXT_CONTRAST = 4.5  # WCAG's figure for text


def shown_in_256(c: Color) -> Color:
    """The colour a 256-colour terminal shows for `c` (tmux's default, SSH without COLORTERM)."""
    t = RichColor.from_rgb(c.r, c.g, c.b).downgrade(ColorSystem.EIGHT_BIT).get_truecolor()
    return Color(t.red, t.green, t.blue)


def readable(colour: Color, backgrounds: list[Color], toward: Color, ratio: float = TEXT_CONTRAST) -> Color:
    """`colour`, blended toward `toward` (white on a dark theme, black on a light one) just far enough to be
    read on every one of `backgrounds`, in truecolor and in 256 colours."""
    for step in range(0, 101, 5):
        c = colour.blend(toward, step / 100)
        if all(contrast(c, b) >= ratio and contrast(shown_in_256(c), shown_in_256(b)) >= ratio for b in backgrounds):
            return c
    return toward


# The backgrounds text is drawn on: the theme's own, and the shades Textual derives for rows, stripes and hover.
BACKGROUNDS = ("background", "surface", "panel", "background-lighten-1", "background-darken-1", "surface-lighten-1",
               "surface-darken-1", "panel-lighten-1", "panel-darken-1")
# ANSI colour number -> the theme's colour it stands for (studio's code and Rich write "red", "green"...)
ANSI_MEANING = {1: "error", 2: "success", 3: "warning", 4: "primary", 5: "secondary"}


def ansi_palette(variables: dict[str, str], dark: bool, base: TerminalTheme) -> TerminalTheme:
    """The 16 ANSI colours as this theme shows them: red is its error colour, green its success, yellow its
    warning, blue and magenta its primary and secondary, cyan the base palette's; each made readable on the
    theme's backgrounds. (Textual's own palettes put red at 3.6:1 on studio-dark's rows, yellow at 2.5:1 on
    studio-light's.)"""
    backgrounds = [Color.parse(variables[name]) for name in BACKGROUNDS if name in variables]
    toward = Color(255, 255, 255) if dark else Color(0, 0, 0)

    def fix(number: int, rgb: tuple[int, int, int]) -> tuple[int, int, int]:
        if number in (0, 7):  # black and white stay the palette's
            return rgb
        meaning = ANSI_MEANING.get(number)
        start = Color.parse(variables[meaning]) if meaning and meaning in variables else Color(*rgb)
        return readable(start, backgrounds, toward).rgb

    colours = [tuple(base.ansi_colors[i]) for i in range(16)]  # 0-7 normal, 8-15 bright
    normal = [fix(i, colours[i]) for i in range(8)]
    bright = [fix(i, colours[8 + i]) for i in range(8)]
    return TerminalTheme(tuple(base.background_color), tuple(base.foreground_color), normal, bright)
