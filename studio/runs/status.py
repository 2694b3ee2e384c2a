"""A run's status: the one list of what a run can be, and what each means.

The answer for a given run is `studio.runs.state.run_status` (its files, its process and, for a Slurm run,
Slurm); this module only names the statuses, so that every reader, from the trainer's `end` record to the
app's colours, speaks of the same ones.
"""

from __future__ import annotations

from enum import Enum


class RunStatus(str, Enum):
    """A run's status. A `str`, so it is written to JSON and compared with a record's text as it is."""

    QUEUED = "queued"          # submitted to Slurm and waiting (the summary says Slurm's reason)
    RUNNING = "running"        # the trainer process is alive
    COMPLETED = "completed"    # its last attempt trained to the end
    STOPPED = "stopped"        # stopped on request (or preempted), saved where it was: resume continues it
    FAILED = "failed"          # its last attempt ended with an error its `end` record explains
    CRASHED = "crashed"        # the process is gone without an `end`: killed, or died; resume continues it
    DAMAGED = "damaged"        # its files cannot be read; the reason says which and why
    UNREADABLE = "unreadable"  # this user may not look into its folder (another owner's, or mode 0700)

    __str__ = str.__str__        # "running", never "RunStatus.RUNNING": in messages, JSON and tables alike
    __format__ = str.__format__
    __hash__ = str.__hash__      # a dict keyed by the text finds the member, and the other way round

    @property
    def ended(self) -> bool:
        """Over: nothing runs, and nothing will unless it is resumed."""
        return self in ENDED

    @property
    def live(self) -> bool:
        """Queued or running: something may still write to it."""
        return self in (RunStatus.QUEUED, RunStatus.RUNNING)

    @property
    def bad(self) -> bool:
        """Ended in a way the user must look at (failed or crashed), or cannot be read at all."""
        return self in (RunStatus.FAILED, RunStatus.CRASHED, RunStatus.DAMAGED, RunStatus.UNREADABLE)

    @property
    def resumable(self) -> bool:
        """Ended part way: `studio resume` continues it."""
        return self in (RunStatus.STOPPED, RunStatus.FAILED, RunStatus.CRASHED)

    @classmethod
    def of(cls, text: object) -> RunStatus | None:
        """The status a record's text names; None for anything else."""
        try:
            return cls(text)
        except ValueError:
            return None


# What an `end` record may say: the statuses a trainer (or studio on its behalf) writes when an attempt ends.
END_STATUSES = (RunStatus.COMPLETED, RunStatus.STOPPED, RunStatus.FAILED)
# Over, whether an `end` said so or the process vanished.
ENDED = END_STATUSES + (RunStatus.CRASHED,)
