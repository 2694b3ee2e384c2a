"""The speed settings studio decides per run when a profile says "auto": gradient
checkpointing, Liger's kernels and padding-free packing. Each rule returns the value and
the reason, which the plan records and the trainer repeats in its `start` event.
"""

from __future__ import annotations

import importlib.util
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from studio.hardware import GpuInfo
from studio.planning.catalog import ModelSpec

LIGER_ARCHS = ("llama", "mixtral", "phi3")  # Llama, Mistral, Qwen2/3, Gemma, Mixtral, Phi-3 in the catalog
PACKING_FILL = 0.9      # pack when padding would waste more than a tenth of each batch...
PACKING_SHORT = 0.5     # ...or when rows average under half of max_length (room to fill)
UNKNOWN_LENGTHS = "the rows' lengths are not known yet"


@dataclass(frozen=True)
class DataShape:
    """How long the rows are, in tokens (estimated from characters before the tokenizer runs)."""

    rows: int
    mean_tokens: float
    p95_tokens: float
    fill: float           # real tokens / padded tokens, batches of the profile's size padded to their longest
    exact: bool = False   # counted by the tokenizer, not estimated

    @property
    def mean_text(self) -> str:
        """The mean as the preflight prints it when counted; rounded and marked when estimated."""
        return f"{self.mean_tokens:.1f}" if self.exact else f"~{self.mean_tokens:.0f}"

    def describe(self) -> str:
        p95 = f"{self.p95_tokens:.0f}" if self.exact else f"~{self.p95_tokens:.0f}"
        return f"{self.rows} rows of mean {self.mean_text} / p95 {p95} tokens"


def data_shape(lengths: list[int], batch: int, max_length: int, seed: int = 0, exact: bool = False) -> DataShape:
    """The shape of a dataset from its rows' lengths, truncated to max_length; batches drawn as a
    shuffled loader would (seeded, so a plan is repeatable)."""
    capped = [max(1, min(n, max_length)) for n in lengths] or [max_length]
    order = list(capped)
    random.Random(seed).shuffle(order)
    real = padded = 0
    for i in range(0, len(order), batch):
        chunk = order[i:i + batch]
        real += sum(chunk)
        padded += max(chunk) * len(chunk)
    ordered = sorted(capped)
    return DataShape(rows=len(capped), mean_tokens=statistics.fmean(capped),
                     p95_tokens=ordered[int(0.95 * (len(ordered) - 1))], fill=real / padded, exact=exact)


def checkpointing(setting: bool | str, model: ModelSpec | None, gpus: tuple[GpuInfo, ...],
                  peak_without: Callable[[], float | None], limit_gib: float | None) -> tuple[bool, str]:
    """Off when the run fits without it (it recomputes the forward: about a third more compute)."""
    if setting != "auto":
        return bool(setting), "set in the profile"
    if not gpus:
        return False, "no GPU: on the CPU checkpointing would only cost time"
    if model is None or limit_gib is None:
        return True, "no memory estimate for this model: on, to be safe"
    peak = peak_without()
    if peak is None:
        return True, "no memory estimate for this setup: on, to be safe"
    if peak <= limit_gib:
        return False, (f"the run fits without it ({peak:.1f} GiB, within 90% of the free memory): off, which saves "
                       "recomputing the forward pass")
    return True, f"without it the peak would be {peak:.1f} GiB, over 90% of the free memory ({limit_gib:.1f} GiB)"


def liger(setting: bool | str, model: ModelSpec | None, gpus: tuple[GpuInfo, ...]) -> tuple[bool, str]:
    """On for NVIDIA GPUs and supported architectures when liger-kernel is installed."""
    if setting != "auto":
        return bool(setting), "set in the profile"
    if not gpus:
        return False, "no NVIDIA GPU: Liger's kernels are Triton kernels for CUDA"
    if model is None or model.arch not in LIGER_ARCHS:
        arch = model.arch if model else "this model"
        return False, f"Liger has no kernels for {arch}"
    if importlib.util.find_spec("liger_kernel") is None:
        return False, "liger-kernel is not installed (pip install -e '.[fast]' turns this on)"
    return True, "fused RMSNorm, SwiGLU and RoPE kernels: less memory, more tokens/s"


def packing(setting: bool | str, shape: DataShape | None, max_length: int) -> tuple[bool, str]:
    """Padding-free packing when it saves work: rows of varied length, or rows far shorter than max_length.

    The trainer checks, on the real model, that packed rows stay apart before it trains with it.
    """
    if setting != "auto":
        return bool(setting), "set in the profile"
    if shape is None:
        return False, f"{UNKNOWN_LENGTHS} (the trainer decides once it has read them)"
    if shape.fill < PACKING_FILL:
        return True, (f"padded batches would be {shape.fill:.0%} real tokens ({shape.describe()}): packing "
                      "removes the padding")
    if shape.mean_tokens < PACKING_SHORT * max_length:
        return True, (f"rows average {shape.mean_text} tokens of max_length {max_length}: packing fills "
                      "each sequence")
    return False, f"rows fill max_length and batches barely pad ({shape.describe()}): nothing to gain"
