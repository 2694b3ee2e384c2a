"""The user's settings, `<studio home>/config.toml`: loaded once, saved atomically."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import tomli_w

from studio.atomic import write_text
from studio.paths import studio_home

DEFAULT_THEME = "studio-dark"


@dataclass
class Settings:
    theme: str = DEFAULT_THEME
    watching: str = ""  # the run whose monitor was open when the app quit: the next start reattaches to it

    @classmethod
    def path(cls) -> Path:
        return studio_home() / "config.toml"

    @classmethod
    def load(cls) -> Settings:
        try:
            raw = tomllib.loads(cls.path().read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):
            return cls()  # a broken or missing config falls back to the defaults
        theme, watching = raw.get("theme"), raw.get("watching")
        return cls(theme=theme if isinstance(theme, str) else DEFAULT_THEME,
                   watching=watching if isinstance(watching, str) else "")

    def save(self) -> None:
        write_text(self.path(), tomli_w.dumps(asdict(self)))
