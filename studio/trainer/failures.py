"""Turn an exception from a run into an `end` event: error_kind, message, advice."""

from __future__ import annotations

import errno
from typing import Any

import torch

from studio.data import DataError
from studio.hardware import GIB
from studio.planning.fixes import oom_advice as fixes_advice
from studio.planning.hub_models import offline
from studio.profiles.profile import Profile, ProfileError
from studio.runs.events import End
from studio.trainer.hub import DownloadError
from studio.trainer.job_resume import JobResumeError
from studio.trainer.rewards import RewardError
from studio.runs.status import RunStatus


DISK_ERRNOS = (errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT, errno.EPERM)
# Raised by code on the settings it was given, the same way every time: resuming cannot help. (A RuntimeError
# may be the device's or the network's, which a resume can outlive.)
REPEATING_ERRORS = (ValueError, TypeError, NotImplementedError, ImportError, AttributeError, KeyError)


class ConfigError(Exception):
    """The profile asks for something this machine or model cannot do."""


class LostPeer(Exception):
    """A collective failed because another process of the job stopped answering; `saved` is the step whose
    weights this machine kept in final/ (None when it could not)."""

    def __init__(self, text: str, saved: int | None):
        super().__init__(text)
        self.saved = saved


class Diverged(Exception):
    """The loss or the gradients became NaN or infinite: from this step on the weights are not a model."""

    def __init__(self, step: int, what: str):
        super().__init__(f"{what} at step {step}")
        self.step, self.what = step, what
        self.kept: str | None = None      # the checkpoint left to resume or export from
        self.set_aside: list[str] = []    # checkpoints with non-finite weights, renamed *.nonfinite


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(e).lower()
    return isinstance(e, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def oom_advice(profile: Profile | None) -> tuple[str, str]:
    """How much memory the run needed against what the device has, and what to change."""
    if torch.cuda.is_available():
        dev = torch.cuda.current_device()
        free, total = torch.cuda.mem_get_info(dev)
        peak = torch.cuda.max_memory_reserved(dev)
        need = f"the run reserved {peak / GIB:.1f} GiB before failing; the GPU has {total / GIB:.1f} GiB ({free / GIB:.1f} GiB free now)"
    else:
        import psutil

        vm = psutil.virtual_memory()
        need = f"the process used {psutil.Process().memory_info().rss / GIB:.1f} GiB; the machine has {vm.total / GIB:.1f} GiB"
    if profile is None:
        return need, "lower train.batch_size or data.max_length, then resume the run"
    return need, fixes_advice(profile)


def failure_record(e: BaseException, profile: Profile | None) -> End:
    """The `end` event of a failed run: what went wrong and what to do."""
    info = classify(e, profile)
    return End(status=RunStatus.FAILED, error_kind=info["error_kind"], message=info["message"], advice=info["advice"],
               rows=tuple(info.get("rows", ())))


def diverged_message(e: Diverged) -> str:
    kept = f"; {e.kept} is the last checkpoint with finite weights" if e.kept else "; no checkpoint has finite weights"
    aside = f" ({', '.join(e.set_aside)} renamed *.nonfinite)" if e.set_aside else ""
    return f"training diverged: {e.what} at step {e.step}{kept}{aside}"


def diverged_advice(e: Diverged, profile: Profile | None) -> str:
    lr = f" (it is {profile.train.learning_rate:g})" if profile else ""
    clip = ""
    if profile is None or not profile.train.max_grad_norm:
        clip = " and set train.max_grad_norm = 1.0 (gradient clipping is off)"
    return (f"lower train.learning_rate{lr}{clip}, then start a new run; resuming with the same settings "
            "diverges again. Nothing of the diverged steps is kept as a result")


def download_advice() -> str:
    """What to do after a failed download: offline mode is named when it is the cause."""

    if offline():
        return ("HF_HUB_OFFLINE is set, so nothing is downloaded: unset it (or fill the Hugging Face cache on a "
                "machine that is online and copy it here), then resume the run")
    return ("check the id; for a gated or private model set HF_TOKEN (or `hf auth login`) and accept its licence "
            "on the Hub; then resume the run")


PEER_LOST = ("Connection closed by peer", "Connection reset by peer", "Timed out waiting",
             "collective operation timeout", "Socket Timeout", "Broken pipe")


def lost_peer(text: str) -> bool:
    """A collective failed because another process stopped answering (killed, frozen, or cut off): gloo's and
    NCCL's words for it."""
    return any(words in text for words in PEER_LOST) or ("NCCL" in text and "timeout" in text.lower())


def lost_peer_record(text: str, profile: Profile | None, saved: int | None = None) -> dict[str, Any]:
    """Which machine of the job stopped answering, as far as this one can tell, and in how long."""
    import os

    world, local = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    mine = int(os.environ.get("GROUP_RANK", os.environ.get("NODE_RANK", "0")) or 0)
    machines = max(1, world // max(1, local))
    if machines == 2:
        who = f"machine {1 - mine}"
    elif machines > 2:
        who = f"another of the job's {machines} machines"
    else:
        who = "another process on this machine"
    timed_out = "Timed out" in text or "timeout" in text.lower()
    within = ""
    if timed_out and profile is not None:
        within = f" within hardware.collective_timeout ({profile.hardware.collective_timeout * 60:.0f} s)"
    how = "did not answer" + within if timed_out else "closed its connection (killed or crashed)"
    kept = f"; this machine saved the weights of step {saved} in final/" if saved is not None else ""
    return {"error_kind": "lost_machine",
            "message": f"the job lost a process: {who} {how}; this is machine {mine} of {machines}, "
                       f"{world} processes in all{kept} ({text.strip().splitlines()[0].split('. This is')[0][:300]})",
            "advice": "look at the other machine's run (`studio runs` there: stopped, frozen, or its network "
                      "down); when every machine is ready, resume the run on each of them"}


def classify(e: BaseException, profile: Profile | None) -> dict[str, Any]:
    """error_kind, message and advice for the `end` event of a failed run."""
    if _is_oom(e):
        need, advice = oom_advice(profile)
        return {"error_kind": "oom", "message": f"out of memory: {need}", "advice": advice}
    if isinstance(e, Diverged):
        return {"error_kind": "diverged", "message": diverged_message(e), "advice": diverged_advice(e, profile)}
    if isinstance(e, DataError):
        return {"error_kind": "data", "message": str(e), "rows": e.rows[:100],
                "advice": "fix the dataset file and resume the run; or change the profile's data section "
                          "and start a new run (a run keeps the profile it started with)"}
    if isinstance(e, ProfileError):
        return {"error_kind": "config", "message": "; ".join(e.problems),
                "advice": "fix the profile (its check names each problem) and start a new run"}
    if isinstance(e, RewardError):
        return {"error_kind": "reward", "message": str(e),
                "advice": "fix the reward function (or the rows it reads), then resume the run: it loads the "
                          "function again"}
    if isinstance(e, JobResumeError):
        return {"error_kind": "resume", "message": str(e),
                "advice": "copy the checkpoint named to every machine that lacks it, then resume on every machine"}
    if isinstance(e, ConfigError):
        return {"error_kind": "config", "message": str(e), "advice": "change the profile and start a new run"}
    if isinstance(e, DownloadError):
        return {"error_kind": "download", "message": str(e), "advice": download_advice()}
    if isinstance(e, OSError) and ("is not a local folder" in str(e) or "does not appear to have" in str(e)):
        return {"error_kind": "download", "message": str(e),
                "advice": "check model.name: a hub id (org/name) or a local folder with config.json"}
    if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
        return {"error_kind": "disk", "message": f"cannot write {e.filename or 'a file'}: {e.strerror}",
                "advice": "free disk space or make the run folder writable again, then resume the run"}
    text = str(e)
    if isinstance(e, ValueError) and "Target modules" in text and "not found" in text:
        return {"error_kind": "config", "message": f"method.target_modules: {text}",
                "advice": "set method.target_modules to layers this model has (or [\"all-linear\"]) "
                          "and start a new run"}
    if isinstance(e, (ImportError, ValueError)) and "flash_attention_2" in text.lower().replace("flash attention 2",
                                                                                              "flash_attention_2"):
        return {"error_kind": "config", "message": f"model.attn_implementation: {text}",
                "advice": "set model.attn_implementation = \"sdpa\" (or install flash-attn for this GPU) "
                          "and start a new run"}
    if isinstance(e, LostPeer) or lost_peer(text):
        return lost_peer_record(text, profile, e.saved if isinstance(e, LostPeer) else None)
    if isinstance(e, REPEATING_ERRORS):
        return {"error_kind": "crash", "message": f"{type(e).__name__}: {e}",
                "advice": "the trainer's log has the traceback. This kind of error comes from the code and its "
                          "settings, so resuming repeats it: change what it names (in the profile, or the "
                          "installed packages) and start a new run"}
    return {"error_kind": "crash", "message": f"{type(e).__name__}: {e}",
            "advice": "the trainer's log has the traceback; resuming continues from the last checkpoint"}
