"""Starting a run from a profile: the one path the CLI and the UI share."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

from studio.data import check_bad_rows, is_local, load_local
from studio.history import run_estimate, save_estimate
from studio.profile import Profile, load_profile
from studio.distributed import LayoutError, plan_layout, write_layout
from studio.inventory import current_inventory
from studio.runs import Run, RunError, create_run, launch


def check_data(profile: Profile) -> None:
    """Fail fast on a local dataset that cannot be read, before a run folder is made."""
    if not is_local(profile.data.path):
        return  # hub datasets are fetched and checked by the trainer
    ds = load_local(profile.data.path, profile.data.format)
    check_bad_rows(ds, profile.data.on_bad_rows)


def start_run(profile_path: Path, max_steps: int | None = None,
              node_rank: int | None = None) -> tuple[Run, subprocess.Popen[bytes]]:
    """Validate the profile and its data, plan the processes, make the run folder, record the
    estimate, launch the trainer."""
    profile = load_profile(profile_path)
    if max_steps is not None:
        profile = replace(profile, train=replace(profile.train, max_steps=max_steps))
    if node_rank is not None:
        profile = replace(profile, hardware=replace(profile.hardware, machine_rank=node_rank))
    check_data(profile)
    try:
        layout = plan_layout(profile, current_inventory())
    except LayoutError as e:
        raise RunError(str(e)) from None
    run = create_run(profile.to_toml(), Path(profile_path).stem)
    write_layout(run.dir, layout)
    estimate = run_estimate(profile)
    if estimate:
        save_estimate(run, estimate)  # beside what the run measures, to correct later estimates
    return run, launch(run)
