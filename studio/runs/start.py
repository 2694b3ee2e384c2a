"""Starting a run: the one path the CLI, the app and the probe share.

profile -> check the data -> plan (layout, setup, estimate, decisions) -> run folder
(profile.toml, plan.json, launch.json) -> trainer process.
"""

from __future__ import annotations

import subprocess
from typing import Any
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from studio.data import DataError, check_bad_rows, estimated_tokens, load_local
from studio.hardware import Inventory
from studio.paths import is_local
from studio.planning.inventory import current_inventory
from studio.planning.checks import data_problems, machine_problems, model_problems, reference_problems
from studio.planning.decisions import DataShape, data_shape
from studio.planning.layout import LayoutError, check_launchable
from studio.planning.plan import Plan, plan_run
from studio.profiles.profile import Profile, ProfileError, load_profile, with_changes
from studio.atomic import write_text
from studio.runs.files import ORIGINAL_PROFILE
from studio.runs.folder import Run, RunError, create_run
from studio.runs.history import machine_corrections
from studio.runs.launcher import launch, write_plan_files
from studio.runs.slurm import SlurmRequest, request_of, submit
from studio.runs.slurm import available as slurm_available


@dataclass(frozen=True)
class Started:
    run: Run
    proc: subprocess.Popen[bytes] | None   # None for a Slurm job
    plan: Plan
    slurm: str = ""                        # the Slurm job id (or, dry, the script)


def check_data(profile: Profile) -> DataShape | None:
    """Fail fast on a local dataset that cannot be read, before a run folder is made; the rows' shape
    (None for hub datasets: the trainer fetches and checks those)."""
    lengths = row_lengths(profile)
    return None if lengths is None else shape_of(profile, lengths)


def row_lengths(profile: Profile) -> list[int] | None:
    """The estimated token count of each row of a local dataset, after the same checks as check_data
    (the part that reads the file: it depends only on the data settings, not on batch or max_length)."""
    if not is_local(profile.data.path):
        return None
    ds = load_local(profile.data.path, profile.data.format)
    check_bad_rows(ds, profile.data.on_bad_rows)
    problems = data_problems(profile, len(ds.rows), ds.format)
    if problems:
        raise ProfileError(profile.data.path, problems)
    return [estimated_tokens(r) for r in ds.rows]


def shape_of(profile: Profile, lengths: list[int]) -> DataShape:
    t = profile.train
    return data_shape(lengths, t.batch_size, profile.data.max_length, t.seed)


class LowDisk(RunError):
    """The run would fill the disk of the runs folder: said before anything is written; the user may go ahead."""


# What a start or a revision raises when it cannot go ahead; each names what to change. The CLI and the app
# catch these, and nothing else, from `start_profile`, `start_run` and `revise_run`.
START_ERRORS = (ProfileError, DataError, RunError, OSError)


def check_disk(plan: Plan) -> None:
    """Refuse a run whose checkpoints and weights would not fit on the disk of the runs folder (LowDisk)."""
    from studio.paths import runs_dir
    from studio.planning.disk import disk_problem
    from studio.runs.export import free_bytes

    problem = disk_problem(plan, free_bytes(runs_dir()), str(runs_dir()))
    if problem:
        raise LowDisk(problem)


def checked_plan(profile: Profile, name: str, inventory: Inventory, shape: DataShape | None,
                 probe: bool = False) -> Plan:
    """The one path to a run's plan, for a start and a revision alike: what the profile asks of this machine
    and of the files it names, the plan (with this machine's corrections), a layout this machine can launch,
    and what the model allows. Raises ProfileError (with every problem) or RunError; writes nothing."""
    problems = machine_problems(profile, inventory) + reference_problems(profile, probe)
    if problems:
        raise ProfileError(name, problems)
    try:
        plan = plan_run(profile, inventory, machine_corrections(), shape)
        check_launchable(plan.layout, inventory)
    except LayoutError as e:
        raise RunError(str(e)) from None
    problems = model_problems(profile, plan.model)
    if problems:
        raise ProfileError(name, problems)
    return plan


def start_profile(profile: Profile, name: str, probe: bool = False, inventory: Inventory | None = None,
                  slurm: SlurmRequest | None = None, slurm_dry_run: bool = False, ignore_disk: bool = False) -> Started:
    """Check what the profile asks of this machine, its model and its data; plan the run; make its
    folder and launch the trainer (or submit it to Slurm). Nothing is written before every check has passed;
    a run that would fill the disk is refused (LowDisk) unless `ignore_disk`."""
    # A probe trains on synthetic rows filled to max_length.
    n = profile.data.max_length
    shape = DataShape(rows=0, mean_tokens=n, p95_tokens=n, fill=1.0, exact=True) if probe else check_data(profile)
    plan = checked_plan(profile, name, inventory or current_inventory(), shape, probe)
    if slurm is not None and not slurm_dry_run and not slurm_available():
        raise RunError("sbatch is not on the PATH: run this on a Slurm login node (or drop --slurm)")
    if not (probe or ignore_disk or slurm_dry_run):
        check_disk(plan)
    run = create_run(profile.to_toml(), name, kind="probe" if probe else "train")
    write_plan_files(run, plan.record())
    if slurm is not None:
        run.update_status_file(slurm_request=dataclasses.asdict(slurm))
        return Started(run, None, plan, slurm=submit(run, slurm, slurm_dry_run))
    return Started(run, launch(run), plan)


def revise_run(run: Run, revised: Profile, inventory: Inventory | None = None) -> Plan:
    """Give a run that failed a revised profile (an out-of-memory fix), planned like any start: checked, a new
    plan.json and launch.json, so that the resumed trainer trains it and the history compares its peak with
    its own estimate. The profile it first started with is kept once, as profile.orig.toml."""
    plan = checked_plan(revised, run.id, inventory or current_inventory(), check_data(revised))
    original = run.dir / ORIGINAL_PROFILE
    try:
        if not original.exists():
            write_text(original, run.profile_path.read_text(encoding="utf-8"))
        write_text(run.profile_path, revised.to_toml())
        write_plan_files(run, plan.record())
    except OSError as e:
        raise RunError(f"cannot write the revised profile into {run.dir}: {e.strerror or e}") from None
    return plan


def start_run(profile_path: Path, max_steps: int | None = None, node_rank: int | None = None,
              slurm: dict[str, Any] | None = None, slurm_dry_run: bool = False, ignore_disk: bool = False) -> Started:
    """Load a profile file, apply the command line's overrides, and start it (here, or on Slurm: `slurm` is
    then the command line's [slurm] keys, None where not given, over the profile's)."""
    profile = load_profile(profile_path)
    flags = {"train.max_steps": max_steps, "hardware.machine_rank": node_rank, **(slurm or {})}
    if flags.get("slurm.sbatch_args"):  # the command line's sbatch options add to the profile's
        flags["slurm.sbatch_args"] = [*profile.slurm.sbatch_args, *flags["slurm.sbatch_args"]]
    profile = with_changes(profile, {k: v for k, v in flags.items() if v is not None}, source="the command line")
    request = request_of(profile.slurm) if slurm is not None else None
    return start_profile(profile, Path(profile_path).stem, slurm=request, slurm_dry_run=slurm_dry_run,
                         ignore_disk=ignore_disk)
