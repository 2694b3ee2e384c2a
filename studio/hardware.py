"""GPUs through NVML (nvidia-ml-py). The one place that talks to NVML.

No driver, no GPU or an NVML error gives an empty inventory and the reason,
never an exception. Indices follow CUDA's when CUDA_DEVICE_ORDER=PCI_BUS_ID
(studio sets it for the trainer), and CUDA_VISIBLE_DEVICES is honoured.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

GIB = 2**30


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_gib: float | None


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    uuid: str = ""
    memory_total_gib: float = 0.0
    memory_used_gib: float = 0.0
    memory_free_gib: float = 0.0
    utilization_pct: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    compute_capability: str = ""
    bf16: bool = False
    pci_bus_id: str = ""
    processes: list[GpuProcess] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Inventory:
    gpus: list[GpuInfo]
    driver_version: str = ""
    cuda_version: str = ""
    reason: str = ""  # why the list is empty, when it is
    source: str = "nvml"

    def to_dict(self) -> dict[str, Any]:
        return {"gpus": [g.to_dict() for g in self.gpus], "driver_version": self.driver_version,
                "cuda_version": self.cuda_version, "reason": self.reason, "source": self.source}


@dataclass(frozen=True)
class HostLoad:
    """The host next to its GPUs: CPU busy across all cores, and memory in use (what is not available)."""

    cpu_pct: float
    cpus: int
    ram_used_gib: float
    ram_total_gib: float


def host_load() -> HostLoad:
    """A sample now; the CPU figure covers the time since the previous call (psutil's rule), 0 the first time."""
    import psutil

    vm = psutil.virtual_memory()
    return HostLoad(psutil.cpu_percent(interval=None), psutil.cpu_count() or 1,
                    round((vm.total - vm.available) / GIB, 1), round(vm.total / GIB, 1))


def _visible(uuids_and_indices: list[tuple[int, str]]) -> list[int]:
    """NVML indices CUDA_VISIBLE_DEVICES lets through, in the order it lists them."""
    spec = os.environ.get("CUDA_VISIBLE_DEVICES")
    if spec is None:
        return [i for i, _ in uuids_and_indices]
    chosen: list[int] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item.isdigit():
            idx = int(item)
            if any(i == idx for i, _ in uuids_and_indices):
                chosen.append(idx)
            else:
                break  # CUDA stops at the first invalid entry
        else:
            match = [i for i, u in uuids_and_indices if u.startswith(item) or u == f"GPU-{item}"]
            if not match:
                break
            chosen.append(match[0])
    return chosen


def _safe(fn: Any, *args: Any) -> Any:
    import pynvml

    try:
        return fn(*args)
    except pynvml.NVMLError:
        return None


def detect_gpus() -> Inventory:
    """The GPUs this process may use, read through NVML."""
    try:
        import pynvml
    except ImportError:
        return Inventory([], reason="nvidia-ml-py is not installed (pip install nvidia-ml-py)")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return Inventory([], reason=f"no NVIDIA driver or GPU found ({e}); training runs on the CPU")
    try:
        driver = _safe(pynvml.nvmlSystemGetDriverVersion) or ""
        cuda = _safe(pynvml.nvmlSystemGetCudaDriverVersion_v2) or _safe(pynvml.nvmlSystemGetCudaDriverVersion)
        cuda_version = f"{cuda // 1000}.{(cuda % 1000) // 10}" if cuda else ""
        count = pynvml.nvmlDeviceGetCount()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        # NVML enumerates in PCI bus order; CUDA does too with CUDA_DEVICE_ORDER=PCI_BUS_ID.
        uuids = [(i, _safe(pynvml.nvmlDeviceGetUUID, h) or "") for i, h in enumerate(handles)]
        gpus = [_read_gpu(pynvml, cuda_index, handles[nvml_index])
                for cuda_index, nvml_index in enumerate(_visible(uuids))]
        reason = "" if gpus else ("CUDA_VISIBLE_DEVICES hides every GPU" if count else "the driver reports no GPU")
        return Inventory(gpus, driver_version=str(driver), cuda_version=cuda_version, reason=reason)
    except pynvml.NVMLError as e:
        return Inventory([], reason=f"NVML error: {e}")
    finally:
        _safe(pynvml.nvmlShutdown)


def _read_gpu(pynvml: Any, index: int, h: Any) -> GpuInfo:
    mem = _safe(pynvml.nvmlDeviceGetMemoryInfo, h)
    util = _safe(pynvml.nvmlDeviceGetUtilizationRates, h)
    temp = _safe(pynvml.nvmlDeviceGetTemperature, h, pynvml.NVML_TEMPERATURE_GPU)
    power = _safe(pynvml.nvmlDeviceGetPowerUsage, h)
    limit = _safe(pynvml.nvmlDeviceGetEnforcedPowerLimit, h)
    cc = _safe(pynvml.nvmlDeviceGetCudaComputeCapability, h)
    pci = _safe(pynvml.nvmlDeviceGetPciInfo, h)
    procs = (_safe(pynvml.nvmlDeviceGetComputeRunningProcesses, h) or [])
    name = _safe(pynvml.nvmlDeviceGetName, h) or "unknown GPU"
    return GpuInfo(
        index=index,
        name=name.decode() if isinstance(name, bytes) else name,
        uuid=_safe(pynvml.nvmlDeviceGetUUID, h) or "",
        memory_total_gib=round(mem.total / GIB, 2) if mem else 0.0,
        memory_used_gib=round(mem.used / GIB, 2) if mem else 0.0,
        memory_free_gib=round(mem.free / GIB, 2) if mem else 0.0,
        utilization_pct=float(util.gpu) if util else None,
        temperature_c=float(temp) if temp is not None else None,
        power_w=round(power / 1000, 1) if power is not None else None,
        power_limit_w=round(limit / 1000, 1) if limit is not None else None,
        compute_capability=f"{cc[0]}.{cc[1]}" if cc else "",
        bf16=bool(cc and cc[0] >= 8),
        pci_bus_id=(pci.busId.decode() if isinstance(pci.busId, bytes) else pci.busId) if pci else "",
        processes=[GpuProcess(p.pid, round(p.usedGpuMemory / GIB, 2) if p.usedGpuMemory else None) for p in procs],
    )


THROTTLE_REASONS = {  # NVML clock-throttle bits worth telling a user about
    0x04: "power cap", 0x08: "hardware slowdown", 0x20: "thermal (software)", 0x40: "thermal (hardware)",
    0x80: "power brake",
}


def throttle_reasons(pynvml: Any, handle: Any) -> list[str]:
    """Why the GPU runs below its clocks right now (empty when it does not, or NVML cannot say)."""
    getter = (getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
              or getattr(pynvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None))
    mask = _safe(getter, handle) if getter else None
    return [name for bit, name in THROTTLE_REASONS.items() if mask and mask & bit]


class PowerMeter:
    """Samples NVML memory, power and temperature for the trainer; integrates energy."""

    def __init__(self) -> None:
        self.energy_kwh = 0.0
        self._last: tuple[float, float] | None = None  # (time, total watts)
        self._handles: list[Any] = []
        try:
            import pynvml

            pynvml.nvmlInit()
            uuids = [(i, _safe(pynvml.nvmlDeviceGetUUID, pynvml.nvmlDeviceGetHandleByIndex(i)) or "")
                     for i in range(pynvml.nvmlDeviceGetCount())]
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in _visible(uuids)]
        except Exception:  # no NVML: nothing to sample, the run goes on
            self._handles = []

    def sample(self, now: float) -> dict[str, Any]:
        if not self._handles:
            return {}
        import pynvml

        used, power, temp, throttle, util = [], [], [], [], []
        for h in self._handles:
            rates = _safe(pynvml.nvmlDeviceGetUtilizationRates, h)
            util.append(float(rates.gpu) if rates else None)
            mem = _safe(pynvml.nvmlDeviceGetMemoryInfo, h)
            p = _safe(pynvml.nvmlDeviceGetPowerUsage, h)
            t = _safe(pynvml.nvmlDeviceGetTemperature, h, pynvml.NVML_TEMPERATURE_GPU)
            used.append(round(mem.used / GIB, 3) if mem else None)
            power.append(round(p / 1000, 1) if p is not None else None)
            temp.append(t)
            throttle.append(throttle_reasons(pynvml, h))
        watts = sum(p for p in power if p is not None)
        if self._last is not None:
            t0, w0 = self._last
            self.energy_kwh += (w0 + watts) / 2 * (now - t0) / 3.6e6
        self._last = (now, watts)
        return {"nvml_mem_used_gib": used, "nvml_power_w": power, "nvml_temp_c": temp, "nvml_throttle": throttle, "nvml_util_pct": util,
                "energy_kwh": round(self.energy_kwh, 6)}
