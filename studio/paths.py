"""Where studio keeps things: the user's studio home and the bundled files."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def studio_home() -> Path:
    """`$STUDIO_HOME`, else `$XDG_DATA_HOME/studio`, else `~/.local/share/studio`."""
    explicit = os.environ.get("STUDIO_HOME")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "studio"


def user_profiles_dir() -> Path:
    return studio_home() / "profiles"


def runs_dir() -> Path:
    return studio_home() / "runs"


def _bundled_dir(name: str) -> Path:
    # A checkout (or editable install) has them beside the package; a wheel
    # install puts them under <prefix>/share/studio.
    beside = Path(__file__).resolve().parent.parent / name
    if beside.is_dir():
        return beside
    return Path(sys.prefix) / "share" / "studio" / name


def bundled_profiles_dir() -> Path:
    return _bundled_dir("profiles")


def themes_dir() -> Path:
    return _bundled_dir("themes")
