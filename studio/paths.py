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


def archive_dir() -> Path:
    """Runs moved out of the list (`studio archive`, A in the app), whole; `studio unarchive` brings one back."""
    return studio_home() / "archive"


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


DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt")
PATH_PREFIXES = ("/", "./", "../", "~")


def looks_local(ref: str) -> bool:
    """A path rather than a hub id (org/name): starts with / ./ ../ ~, or names a data file.

    The one rule for models, datasets and eval splits alike; it never touches the disk, so
    a profile means the same thing wherever it is read.
    """
    return ref.startswith(PATH_PREFIXES) or Path(ref).suffix.lower() in DATA_SUFFIXES


def is_local(ref: str) -> bool:
    """`looks_local`, or a relative path that exists here (e.g. `data/chat` typed in a shell)."""
    if looks_local(ref):
        return True
    try:
        return Path(ref).expanduser().exists()
    except OSError:  # a name too long, a symlink loop: not a usable local path
        return False
