"""Fetching models from the Hugging Face hub, with progress as `download` events.

The token comes from HF_TOKEN or the hub's own login; studio never writes it
anywhere.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from studio.planning.hub_models import describe_hub_error
from studio.runs.events import Download, EventWriter

MODEL_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken", "*.py"]


class DownloadError(Exception):
    """The model or dataset could not be fetched; the message says what to do."""


def _cache_bytes(folder: Path) -> int:
    total = 0
    if folder.is_dir():
        for f in folder.rglob("*"):
            try:
                if f.is_file() and not f.is_symlink():
                    total += f.stat().st_size
            except OSError:
                pass
    return total


@contextmanager
def download_progress(writer: EventWriter, what: str, name: str, blobs: Path, total: int | None) -> Iterator[None]:
    """`download` events about once a second from the growth of the hub cache folder being filled."""
    start_bytes = _cache_bytes(blobs)
    done = threading.Event()

    def report() -> None:
        t0, last = time.monotonic(), start_bytes
        while not done.wait(1.0):
            now_bytes = _cache_bytes(blobs)
            if now_bytes != last:
                rate = (now_bytes - start_bytes) / max(time.monotonic() - t0, 1e-6)
                writer.write(Download(what=what, name=name, bytes=now_bytes - start_bytes,
                                      total_bytes=total or None, rate_bytes_s=round(rate), done=False))
                last = now_bytes

    thread = threading.Thread(target=report, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=2)
    writer.write(Download(what=what, name=name, bytes=_cache_bytes(blobs) - start_bytes,
                          total_bytes=total or None, done=True))


def hub_cache_blobs(kind: str, repo_id: str) -> Path:
    from huggingface_hub import constants as hub_constants

    return Path(hub_constants.HF_HUB_CACHE) / f"{kind}--{repo_id.replace('/', '--')}" / "blobs"


def fetch_model(repo_id: str, revision: str, writer: EventWriter) -> Path:
    """Download (or find in the cache) a model snapshot; returns its local folder."""
    from huggingface_hub import HfApi, snapshot_download

    total = 0
    patterns = list(MODEL_FILES)
    try:
        info = HfApi().model_info(repo_id, revision=revision, files_metadata=True)
        names = [s.rfilename for s in info.siblings or []]
        if not any(n.endswith(".safetensors") for n in names):
            patterns.append("*.bin")  # older repos ship only PyTorch pickles
        total = sum(s.size or 0 for s in info.siblings or []
                    if any(fnmatch.fnmatch(s.rfilename, p) for p in patterns))
    except Exception:  # offline or no access: snapshot_download below explains which
        total = 0
    try:
        with download_progress(writer, "model", repo_id, hub_cache_blobs("models", repo_id), total):
            path = snapshot_download(repo_id, revision=revision, allow_patterns=patterns)
    except Exception as e:
        raise DownloadError(describe_hub_error(repo_id, "model", e)) from e
    return Path(path)
