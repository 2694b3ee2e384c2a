"""The profiles on disk: the user's (in the studio home) and the bundled templates.

Finding a profile by name, listing them, naming a new one, and saving edits while
keeping the comments of a hand-written file. The CLI and the app both come here.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from studio.atomic import write_text
from studio.paths import bundled_profiles_dir, is_local, user_profiles_dir
from studio.terminal import has_unsafe, safe
from studio.profiles.profile import Profile, ProfileError, default_value, profile_from_dict

ORIGINS = ("user", "bundled")


@dataclass(frozen=True)
class ProfileEntry:
    name: str
    origin: str   # user | bundled
    path: Path

    @property
    def key(self) -> str:
        return f"{self.origin}:{self.name}"


def check_name(name: str) -> str:
    """A profile name is a file name in the profiles folder: no folders, no `..`; returns it without .toml."""
    stem = name.strip().removesuffix(".toml")
    bad = ("/" in stem or "\\" in stem or stem in ("", ".", "..") or stem.startswith(".") or has_unsafe(stem)
           or any(c.isspace() for c in stem))
    if bad:
        raise ProfileError(safe(name) or "(empty)", [
            "a profile name is a plain name like `llama-qlora`: no spaces (use - or _), no folders, no `..`, not "
            "starting with a dot, no control, bidi or zero-width characters; to use a file elsewhere, pass its "
            "path to `studio run` instead"])
    return stem


def user_profile_path(name: str) -> Path:
    """Where the user's profile of that name lives (the name is checked first)."""
    return user_profiles_dir() / f"{check_name(name)}.toml"


def editable_path(path: Path) -> Path:
    """Where edits of `path` are saved: the file itself, or for a bundled template (read-only) a user
    profile of the same name."""
    if bundled_profiles_dir().resolve() in Path(path).resolve().parents:
        return user_profile_path(Path(path).stem)
    return Path(path)


def _folders() -> list[tuple[str, Path]]:
    return [("user", user_profiles_dir()), ("bundled", bundled_profiles_dir())]


def profile_path(ref: str) -> Path:
    """A profile by path, or by name among the user's profiles, then the bundled ones."""
    p = Path(ref).expanduser()
    try:
        if p.is_file():
            return p
    except OSError:
        pass  # a symlink loop or a name too long: not a file we can use
    name = ref if ref.endswith(".toml") else f"{ref}.toml"
    if "/" not in name and "\\" not in name:
        for _, folder in _folders():
            if (folder / name).is_file():
                return folder / name
    import difflib

    close = difflib.get_close_matches(Path(name).stem, [e.name for e in all_profiles()], n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ProfileError(ref, [f"profile not found: not a file, not in {user_profiles_dir()} and not among the bundled "
                             f"ones{hint} (`studio profile list` shows them)"])


def all_profiles() -> list[ProfileEntry]:
    """Every profile file, the user's first; a folder that cannot be read is skipped."""
    out = []
    for origin, folder in _folders():
        try:
            paths = sorted(p for p in folder.glob("*.toml") if p.is_file())
        except OSError:
            continue
        out.extend(ProfileEntry(p.stem, origin, p) for p in paths)
    return out


def new_profile(name: str, base: Profile, *, model: str | None = None, method: str | None = None,
                objective: str | None = None, data: str | None = None, description: str | None = None, force: bool = False,
                template: str | None = None) -> Path:
    """Write a new user profile from `base` (the profile named `template`, or the defaults) with the given
    changes; refuses to replace one unless forced. Every other setting of the base is kept as it is; a base
    description the changes may have made untrue is replaced by one that says where the profile came from."""
    dest = user_profile_path(name)
    if dest.exists() and not force:
        raise ProfileError(str(dest), ["already exists; pick another name or pass --force to replace it"])
    raw = base.to_dict()
    changes = []
    if model:
        raw["model"]["name"] = model
        changes.append(f"model {model}")
    if method:
        raw["method"]["type"] = method
        changes.append(f"method {method}")
    if objective:
        raw["train"]["objective"] = objective
        changes.append(f"objective {objective}")
    if data:
        raw["data"]["path"] = str(Path(data).expanduser().resolve()) if is_local(data) else data
        changes.append(f"data {data}")
    if not raw["data"]["path"]:
        bundled = "tiny-chat.jsonl" if raw["train"]["objective"] == "sft" else "tiny-preference.jsonl"
        raw["data"]["path"] = str(bundled_profiles_dir() / "data" / bundled)
    profile = profile_from_dict(raw, str(dest))
    if description:
        profile = replace(profile, description=description)
    elif changes and base.description:
        profile = replace(profile, description=f"from {template or 'the defaults'}, with {', '.join(changes)}")
    save_preserving_comments(dest, profile)
    return dest


def save_preserving_comments(path: Path, profile: Profile) -> None:
    """Write `profile` to `path`, keeping the comments, layout and unknown keys of the file already there.

    A file that does not parse is never overwritten: the caller gets a ProfileError and fixes it first.
    """
    write_profile_text(path, profile_text(path, profile))


def profile_text(path: Path, profile: Profile) -> str:
    """What saving `profile` to `path` would write: the file there, its comments, layout and unknown keys
    kept, with the profile's values in it (a new file: the values that differ from the defaults)."""
    import tomlkit

    try:
        original = path.read_text(encoding="utf-8-sig")
    except (FileNotFoundError, NotADirectoryError):
        original = None
    except (OSError, UnicodeDecodeError) as e:
        raise ProfileError(str(path), [f"cannot read the file to update it: {e}"]) from None
    if original is None:
        doc, old = tomlkit.document(), {}
    else:
        try:
            doc, old = tomlkit.parse(original), tomllib.loads(original)
        except Exception as e:  # noqa: BLE001 - tomlkit and tomllib raise their own errors
            raise ProfileError(str(path), [f"not valid TOML ({e}); fix it in a text editor first, "
                                           "nothing was written"]) from None
    base = path.parent
    new = profile.to_dict()
    if "description" in new:
        doc["description"] = new.pop("description")
    for section, values in new.items():
        table = doc.get(section)
        if table is None:
            table = tomlkit.table()
            doc[section] = table
        for key, value in values.items():
            before = old.get(section, {}).get(key) if isinstance(old.get(section), dict) else None
            if isinstance(before, str) and isinstance(value, str) and before != value and \
                    _same_path(base, before, value):
                continue  # a relative path that still points at the same file stays relative
            if key in table or value != default_value(section, key):
                table[key] = value
    return tomlkit.dumps(doc)


def write_profile_text(path: Path, text: str) -> None:
    try:
        write_text(path, text)
    except OSError as e:
        raise ProfileError(str(path), [f"cannot write it: {e.strerror or e}; make {path.parent} writable, or set "
                                       "STUDIO_HOME to a folder you can write"]) from None


def _same_path(base: Path, before: str, after: str) -> bool:
    try:
        return str((base / before).expanduser().resolve()) == after
    except (OSError, RuntimeError):
        return False

