"""The run folder: what is in it, and reading and writing its files.

A run is a folder under `<studio home>/runs/<id>/`, private to its owner (0700):
  profile.toml    the frozen profile the run trains with
  plan.json       what studio decided and estimated for it (studio.planning.plan)
  launch.json     the processes to start (and accelerate_config.yaml for several)
  status.json     the trainer's pid and start time, attempts, stop requests, the Slurm job (status_file.py)
  events.jsonl    what happened (studio.runs.events)
  trainer.log     the trainer's stdout and stderr
  preflight.json  dataset statistics
  checkpoints/    checkpoint-<step>/ folders (complete ones hold a readable trainer_state.json)
  final/          the adapter (PEFT) or the full model, written at the end or on stop
Nothing here starts or signals a process: that is studio.runs.launcher.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.atomic import write_json, write_text
from studio.paths import runs_dir
from studio.runs.files import (BASE_MODEL, CHATS, CHAT_LOG, CHECKPOINTS, EVAL_FILE, EVENTS_FILE, FINAL, LAYOUT_FILE,
                                LOCK_FILE, LOG_FILE, NOTE_FILE, ORIGINAL_PROFILE, PLAN_FILE, PREFLIGHT_FILE,
                                PROFILE_FILE, SLURM_SCRIPT, STATUS_FILE)
from studio.runs.status_file import StatusFile, status_from_dict
from studio.safeopen import read_regular

NOTE_BYTES = 8000  # a note is a line or a paragraph (runs/describe.py refuses more than 2,000 characters)

if TYPE_CHECKING:
    from studio.planning.record import PlanRecord
    from studio.profiles.profile import ModelSection, Profile
    from studio.runs.events import Timeline


MAX_JSON_BYTES = 16 << 20  # status.json and its kin are small; anything bigger is not one of ours
# What a run folder holds, and what kind each entry must be: a link or a special file in their place is refused.
EXPECTED = {EVENTS_FILE: "file", LOG_FILE: "file", PROFILE_FILE: "file", STATUS_FILE: "file", PLAN_FILE: "file",
            LAYOUT_FILE: "file", PREFLIGHT_FILE: "file", EVAL_FILE: "file", SLURM_SCRIPT: "file", LOCK_FILE: "file", CHAT_LOG: "file", ORIGINAL_PROFILE: "file",
            CHECKPOINTS: "dir", FINAL: "dir", BASE_MODEL: "dir", CHATS: "dir"}


class RunError(Exception):
    """A run command that cannot be carried out; the message says why and what to do."""


STATUS_READS: dict[Path, tuple[tuple[int, ...], StatusFile]] = {}  # status.json by path, as last read


def status_key(st: os.stat_result) -> tuple[int, ...]:
    """What tells one status.json from the next: every write replaces the file (a new inode, though a freed
    inode number can come back, and a coarse clock can give two writes one mtime), so all of these."""
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_dev)


@dataclass(frozen=True)
class Run:
    dir: Path

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def events_path(self) -> Path:
        return self.dir / EVENTS_FILE

    @property
    def log_path(self) -> Path:
        return self.dir / LOG_FILE

    @property
    def profile_path(self) -> Path:
        return self.dir / PROFILE_FILE

    @property
    def checkpoints_dir(self) -> Path:
        return self.dir / CHECKPOINTS

    @property
    def final_dir(self) -> Path:
        return self.dir / FINAL

    @property
    def base_model_dir(self) -> Path:
        """Where a base model made inside the run lives (ModelSection.builds_in_run)."""
        return self.dir / BASE_MODEL

    def entry_problems(self) -> list[str]:
        """Entries that are links, or not the kind of file or folder studio keeps there: studio refuses to read
        or write through them (they could lead out of the run folder, or hang a reader)."""
        problems = []
        try:  # one read of the folder (its entries' kinds come with it), not a stat per expected name
            entries = {e.name: e for e in os.scandir(self.dir) if e.name in EXPECTED}
        except FileNotFoundError:
            return []
        except OSError as e:
            return [f"{self.dir.name}: {e.strerror or e}"]
        for name, entry in entries.items():
            kind = EXPECTED[name]
            try:
                if entry.is_symlink():
                    problems.append(f"{name} is a link (studio does not follow links out of a run folder)")
                elif kind == "file" and not entry.is_file(follow_symlinks=False):
                    problems.append(f"{name} is not a regular file")
                elif kind == "dir" and not entry.is_dir(follow_symlinks=False):
                    problems.append(f"{name} is not a folder")
            except OSError as e:
                problems.append(f"{name}: {e.strerror or e}")
        return problems

    def unreadable(self) -> str | None:
        """Why this user cannot read the run folder (another owner's 0700 folder), or None when it can."""
        try:
            os.listdir(self.dir)
            (self.dir / PROFILE_FILE).stat()
        except FileNotFoundError:
            return None
        except PermissionError as e:
            return access_problem(self.dir, e)
        return None

    def check_readable(self) -> None:
        """RunError saying whose the run folder is, when this user may not read it (only its owner can act on it)."""
        unreadable = self.unreadable()
        if unreadable:
            raise RunError(f"run {self.id} is unreadable: {unreadable}")

    def check_contained(self) -> None:
        """RunError naming every entry studio will not go through; remove them (or the run) to go on."""
        self.check_readable()
        problems = self.entry_problems()
        if problems:
            raise RunError(f"run {self.id} is damaged: " + "; ".join(problems) + "; remove these entries, or the run")

    def profile(self) -> Profile:
        """The run's frozen profile, as written (raises ProfileError when it does not load)."""
        from studio.profiles.profile import load_profile

        return load_profile(self.profile_path)

    def plan(self) -> PlanRecord | None:
        """The run's plan record (plan.json); None for a folder made without one, or one that does not load."""
        from studio.planning.record import read_plan

        return read_plan(self.dir / PLAN_FILE)

    def base_model(self, model: ModelSection) -> str:
        """The base model a run of `model` trains on: its copy in the run, or the profile's folder or hub id."""
        return str(self.base_model_dir) if model.builds_in_run else model.name

    def read_json(self, name: str) -> dict[str, Any]:
        """A JSON object file of the run; {} when it is missing, unreadable or not an object."""
        try:
            data = json.loads(read_regular(self.dir / name, MAX_JSON_BYTES))
        except (OSError, ValueError, RecursionError):
            return {}
        return data if isinstance(data, dict) else {}

    def write_plan(self, record: PlanRecord) -> None:
        """plan.json: written when the run is started or revised, and by the trainer with what it trains."""
        write_json(self.dir / PLAN_FILE, record.to_dict())

    def status_file(self) -> StatusFile:
        """status.json's record (empty when missing or unreadable); read again only when the file changed (a
        listing asks for it several times a run, and every write replaces the file: a new inode)."""
        path = self.dir / STATUS_FILE
        try:
            st = os.lstat(path)
        except OSError:
            return StatusFile()
        key = status_key(st)
        cached = STATUS_READS.get(path)
        if cached is None or cached[0] != key:
            cached = STATUS_READS[path] = (key, status_from_dict(self.read_json(STATUS_FILE)))
        return cached[1]

    def update_status_file(self, **changes: Any) -> StatusFile:
        """Write status.json with these fields changed (a name that is not a StatusFile field raises TypeError)."""
        record = replace(self.status_file(), **changes)
        path = self.dir / STATUS_FILE
        write_json(path, record.to_dict())
        STATUS_READS.pop(path, None)  # read again next time, whatever the file system's clock granularity
        return record

    @property
    def pid(self) -> int | None:
        """The trainer's pid as recorded; None unless it is a plausible process id (never 0, -1 or huge)."""
        return self.status_file().pid

    @property
    def is_probe(self) -> bool:
        return self.status_file().is_probe

    def timeline(self) -> Timeline:
        """The run's records in bounded time and memory (a long run's steps thinned: events.
        load_bounded_timeline); raises OSError when the events file cannot be read (a damaged run)."""
        from studio.runs.events import load_bounded_timeline  # the event types cost start-up time; loaded when read

        return load_bounded_timeline(self.dir)

    def note(self) -> str:
        """The user's note on the run ("" when there is none or it cannot be read): `studio note`, t in the app."""
        try:
            return read_regular(self.dir / NOTE_FILE, NOTE_BYTES).decode("utf-8", errors="replace").strip()
        except OSError:
            return ""

    def last_complete_checkpoint(self) -> Path | None:
        return last_complete_checkpoint(self.checkpoints_dir)

    def complete_checkpoints(self) -> list[int]:
        """Steps of the checkpoints that finished saving, oldest first."""
        try:
            children = list(self.checkpoints_dir.iterdir())
        except OSError:
            return []
        return sorted(step for c in children if (step := checkpoint_step(c)) is not None and checkpoint_complete(c))

    def trained_weights(self, checkpoint: int | None = None) -> Path:
        """The folder holding what the run trained (adapter or full model): a checkpoint's, or the final
        one (unless a complete checkpoint was saved after it: a finished run resumed for more steps), or
        else the last complete checkpoint. Raises RunError saying what exists instead."""
        if checkpoint is not None:
            folder = self.checkpoints_dir / f"checkpoint-{checkpoint}"
            if not checkpoint_complete(folder):
                have = self.complete_checkpoints()
                raise RunError(f"run {self.id} has no complete checkpoint at step {checkpoint} (deleted, or not "
                               f"written yet); it has {', '.join(map(str, have)) if have else 'none'}"
                               + ("" if not self.has_result() else ", and its final result (leave out --checkpoint)"))
            return folder
        last = self.last_complete_checkpoint()
        if self.has_result() and (last is None or newest_change(last) <= newest_change(self.final_dir)):
            return self.final_dir
        if last is None:
            raise RunError(f"run {self.id} has nothing trained to talk to yet: it saves its first checkpoint at "
                           "train.save_steps; try again then, or talk to the base model with --base")
        return last

    def has_result(self) -> bool:
        try:
            return self.final_dir.is_dir() and any(self.final_dir.iterdir())
        except OSError:
            return False


def checkpoint_step(path: Path) -> int | None:
    m = re.fullmatch(r"checkpoint-(\d+)", path.name)
    return int(m.group(1)) if m else None


def newest_change(folder: Path) -> float:
    """When a file in `folder` last changed (0 when it cannot be read)."""
    try:
        return max((f.stat().st_mtime for f in folder.iterdir()), default=0.0)
    except OSError:
        return 0.0


def checkpoint_complete(path: Path) -> bool:
    return checkpoint_problem(path) is None


def checkpoint_problem(path: Path) -> str | None:
    """Why a checkpoint cannot be resumed from, or None. trainer_state.json is written last, so its state
    file must read whole; and every safetensors file must be as long as its own header says (a file cut
    short by a full disk or a kill would make every resume fail the same way)."""
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return "trainer_state.json is missing or cut short (the save did not finish)"
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        return "trainer_state.json is not a trainer state"
    try:
        files = sorted(f for f in path.iterdir() if f.suffix == ".safetensors")
    except OSError as e:
        return f"cannot list it: {e.strerror or e}"
    for f in files:
        problem = safetensors_problem(f)
        if problem:
            return f"{f.name} {problem}"
    return None


def safetensors_problem(path: Path) -> str | None:
    """A safetensors file is an 8-byte header length, a JSON header, then the tensors the header places:
    it is whole when its size is exactly where the last tensor ends."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"is cut short ({size} bytes)"
            n = int.from_bytes(head, "little")
            if n > min(size - 8, 100 * 2**20):
                return f"is cut short (its header says {n} bytes; the file has {size})"
            header = json.loads(f.read(n))
    except (OSError, ValueError, RecursionError, UnicodeDecodeError) as e:
        return f"cannot be read ({type(e).__name__})"
    if not isinstance(header, dict):
        return "has no tensor table"
    ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__" and isinstance(t, dict)
            and isinstance(t.get("data_offsets"), list) and len(t["data_offsets"]) == 2]
    expected = 8 + n + max(ends, default=0)
    if size != expected:
        return f"is cut short ({size} of {expected} bytes)"
    return None


def skipped_checkpoints(folder: Path) -> list[tuple[str, str]]:
    """The checkpoints newer than the last complete one, and why each cannot be resumed from."""
    last = last_complete_checkpoint(folder)
    last_step = checkpoint_step(last) if last is not None else -1
    try:
        children = list(folder.iterdir())
    except OSError:
        return []
    out = []
    for child in sorted(children, key=lambda c: checkpoint_step(c) or -1, reverse=True):
        step = checkpoint_step(child)
        if step is not None and step > (last_step or -1):
            problem = checkpoint_problem(child)
            if problem:
                out.append((child.name, problem))
    return out


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The highest complete checkpoint-N; a half-written or damaged one is passed over."""
    try:
        children = list(folder.iterdir())
    except OSError:
        return None
    found = sorted(((checkpoint_step(c), c) for c in children if checkpoint_step(c) is not None), reverse=True)
    return next((c for _, c in found if checkpoint_complete(c)), None)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "run"


def make_private_dir(path: Path) -> None:
    """Create (or tighten) a folder only its owner can read: a run's profile and events say what it trains."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


def create_run(profile_text: str, profile_name: str, home_runs: Path | None = None, kind: str = "train") -> Run:
    """A new, private run folder holding the frozen profile. Ids sort by creation time.

    `kind` is "train", or "probe" for a few measured steps on synthetic rows that save nothing.
    """
    base = home_runs or runs_dir()
    try:
        make_private_dir(base)
    except OSError as e:
        raise RunError(f"cannot create the runs folder {base}: {e.strerror or e}; "
                       "make it writable or set STUDIO_HOME to a folder you can write") from None
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    slug = _slug(profile_name)[:60]
    for n in range(1, 1000):
        run_id = f"{stamp}-{slug}" if n == 1 else f"{stamp}-{slug}-{n}"
        try:
            (base / run_id).mkdir(mode=0o700)
        except FileExistsError:
            continue
        except OSError as e:
            raise RunError(f"cannot create a run folder in {base}: {e.strerror or e}; "
                           "make it writable or set STUDIO_HOME to a folder you can write") from None
        run = Run(base / run_id)
        write_text(run.profile_path, profile_text)
        write_json(run.dir / STATUS_FILE, StatusFile(profile=profile_name, created_at=time.time(), kind=kind).to_dict())
        return run
    raise RunError(f"cannot create a run folder under {base}: too many runs started this second")


def access_problem(path: Path, error: OSError) -> str:
    """What stops this user reading `path`, and what to do: whose it is and its mode, when they can be read."""
    try:
        info = path.stat()
    except OSError:
        return f"{error.strerror or error}; check the permissions of {path}'s parent folders"
    try:
        import pwd

        owner = pwd.getpwuid(info.st_uid).pw_name
    except (KeyError, ImportError):
        owner = f"uid {info.st_uid}"
    mine = info.st_uid == os.geteuid()
    what = "make it readable with chmod u+rwx" if mine else "ask its owner, or run studio as them"
    return f"{error.strerror or error} (owner {owner}, mode {stat.S_IMODE(info.st_mode):o}); {what}"


def runs_folder_problem(base: Path | None = None) -> str | None:
    """Why the runs folder cannot be listed, with what to do; None when it can be (or does not exist yet)."""
    base = base or runs_dir()
    try:
        os.listdir(base)
    except FileNotFoundError:
        return None
    except OSError as e:
        return (f"cannot read the runs folder {base}: " + access_problem(base, e) +
                " (or set STUDIO_HOME to a folder of your own)")
    return None


def list_runs(base: Path | None = None) -> list[Run]:
    """Every run folder, oldest first; entries that are not run folders are left out. A folder this user
    cannot look into is listed (Run.unreadable says why): left out, it would look like no run at all."""
    base = base or runs_dir()
    try:
        children = list(base.iterdir())
    except OSError:
        return []  # runs_folder_problem says why
    out = []
    for d in children:
        try:
            if (d / PROFILE_FILE).is_file():
                out.append(Run(d))
            elif stat.S_ISDIR(d.lstat().st_mode):
                os.listdir(d)
        except PermissionError:
            out.append(Run(d))
        except OSError:
            continue
    return sorted(out, key=lambda r: r.id)


def find_run(ref: str, base: Path | None = None) -> Run:
    """A run by id, unique id prefix, path, or `last`; RunError, saying whose it is, for one this user cannot read
    (only its owner can do anything with it)."""
    run = _find_run(ref, base)
    run.check_readable()
    return run


def _find_run(ref: str, base: Path | None = None) -> Run:
    path = Path(ref).expanduser()
    try:
        if (path / PROFILE_FILE).is_file():
            return Run(path.resolve())
    except OSError:
        pass
    runs = list_runs(base)
    if ref in ("last", "latest"):
        if not runs:
            raise RunError(runs_folder_problem(base) or "there are no runs yet; start one with `studio run PROFILE`")
        return runs[-1]
    exact = [r for r in runs if r.id == ref]
    if exact:
        return exact[0]
    matches = [r for r in runs if r.id.startswith(ref) or ref in r.id]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        problem = runs_folder_problem(base)
        raise RunError(f"no run matches {ref!r}; " + (problem or "`studio runs` lists them"))
    raise RunError(f"{ref!r} matches {len(matches)} runs ({', '.join(r.id for r in matches[:5])}); give more of the id")
