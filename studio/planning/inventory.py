"""The GPUs studio plans for: the real ones (NVML), or ones described by name.

STUDIO_GPUS describes an inventory you do not have (planning a purchase, a
demo, tests): a comma list of catalog names, each optionally prefixed with a
count, e.g. STUDIO_GPUS="2x A100 80GB, RTX 4090". `--gpu NAME` on a command
does the same for one card.
"""

from __future__ import annotations

import os
import re

from studio.planning.catalog import CatalogError, GpuSpec, lookup_gpu
from studio.hardware import GpuInfo, Inventory, detect_gpus

ENV = "STUDIO_GPUS"


def described_inventory(text: str, source: str = ENV) -> Inventory:
    gpus: list[GpuInfo] = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        m = re.fullmatch(r"(\d+)\s*x\s*(.+)", item, flags=re.IGNORECASE)
        count, name = (int(m.group(1)), m.group(2)) if m else (1, item)
        spec = lookup_gpu(name)
        for _ in range(count):
            gpus.append(GpuInfo(index=len(gpus), name=spec.name, memory_total_gib=spec.memory_gib,
                                memory_free_gib=spec.memory_gib, compute_capability=spec.compute_capability,
                                bf16=spec.bf16))
    return Inventory(gpus, source=source, reason="" if gpus else f"{source} is empty")


def vram_inventory(gib: float, count: int = 1) -> Inventory:
    """Cards known only by their memory (`--vram GB`): no speed model, bf16 assumed."""
    gpus = [GpuInfo(index=i, name=f"{gib:g} GiB GPU", memory_total_gib=gib, memory_free_gib=gib, bf16=True)
            for i in range(max(1, count))]
    return Inventory(gpus, source="--vram")


def planning_inventory(gpu: str | None = None, vram: float | None = None, count: int = 1) -> Inventory:
    """The GPUs a planning command plans for: --gpu NAME, --vram GB, else this machine's (or STUDIO_GPUS).

    Raises CatalogError for a GPU name the catalog does not know.
    """
    if gpu:
        return described_inventory(f"{max(1, count)}x {gpu}", source="--gpu")
    if vram:
        return vram_inventory(vram, count)
    return current_inventory()


def current_inventory() -> Inventory:
    """STUDIO_GPUS when set, else what NVML reports."""
    text = os.environ.get(ENV)
    if text is not None:
        try:
            return described_inventory(text)
        except CatalogError as e:
            return Inventory([], source=ENV, reason=f"{ENV}: {e}")
    return detect_gpus()


def spec_for(gpu: GpuInfo) -> GpuSpec | None:
    """The catalog entry of a detected GPU (for its speed and price), if there is one."""
    if gpu.name.endswith(" GiB GPU"):
        return None  # known by its memory alone
    try:
        return lookup_gpu(gpu.name)
    except CatalogError:
        return None
