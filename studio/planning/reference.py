"""Published fine-tuning measurements (shared/reference/measured.csv) as estimator
setups, for checking and calibrating the estimator against like-for-like numbers."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from studio.planning.catalog import CatalogError, ModelSpec, lookup_model
from studio.planning.estimate import MemoryEstimate, Setup, estimate_memory

# Column of the CSV -> field of MemoryEstimate it is compared with.
MEMORY_KINDS = {"mem_allocated_gib": "peak_allocated_gib", "mem_reserved_gib": "peak_reserved_gib",
                "mem_nvidia_smi_gib": "peak_vram_gib"}
SUPPORTED_METHODS = ("lora", "qlora", "dora", "full", "qlora-gptq")
STACK_OF_ROWS = {"hf": "hf-legacy", "studio": "studio"}  # the CSV's stack column -> the estimator's


@dataclass(frozen=True)
class Measurement:
    id: str
    spec: ModelSpec
    setup: Setup
    kind: str            # a MemoryEstimate field
    value_gib: float
    tokens_per_s: float | None
    gpu: str
    row: dict[str, str]


def default_reference_csv() -> Path | None:
    """shared/reference/measured.csv beside the checkout, else the copy in tests/data."""
    here = Path(__file__).resolve().parents[2]  # the checkout
    for candidate in (here.parent / "shared" / "reference" / "measured.csv", here / "tests" / "data" / "measured.csv"):
        if candidate.is_file():
            return candidate
    return None


def setup_from_row(row: dict[str, str]) -> Setup:
    """The training setup a row describes; unstated values take that stack's defaults."""
    method = row["method"]
    notes = row.get("notes", "")
    studio = row["stack"] == "studio"
    targets = tuple(t.strip() for t in row["target_modules"].split(",") if t.strip()) or ("q_proj", "v_proj")
    optimizer = row["optimizer"] if row["optimizer"] in ("adamw_8bit", "paged_adamw_8bit") else (
        "adamw" if studio else "adamw_foreach")
    dropout = re.search(r"lora_dropout[ =:]*([0-9.]+)", notes)
    return Setup(
        method={"dora": "lora", "qlora-gptq": "qlora"}.get(method, method),
        rank=int(row["lora_r"] or 8),
        targets=targets,
        dropout=float(dropout.group(1)) if dropout else 0.05,
        dora=method == "dora",
        quant="gptq-int4" if row["quant"] == "gptq-int4" else "nf4",
        double_quant=row["quant"] != "nf4",
        batch=int(row["batch"]),
        seq_len=int(row["seq_len"]),
        grad_ckpt=row["grad_ckpt"] != "no",
        optimizer=optimizer,
        dtype=row["dtype"] or "bf16",
        train_embeddings="fully trained" in notes or "modules_to_save" in notes,
        loss="chunked" if studio else "full",  # every published run predates TRL's fused LM head
        stack="studio" if studio else "hf-legacy",
        liger="liger" in notes,
        n_gpus=int(row["n_gpus"] or 1),
        strategy=row["strategy"] or "none",
    )


def usable(row: dict[str, str]) -> str | None:
    """None when the row can be compared like for like; else why not."""
    if row["stack"] not in STACK_OF_ROWS:
        return f"stack {row['stack']} uses other kernels"
    if row["method"] not in SUPPORTED_METHODS:
        return f"method {row['method']} is not modelled"
    if int(row["n_gpus"] or 1) > 1 and row["strategy"] not in ("fsdp", "deepspeed-zero3"):
        return f"{row['n_gpus']} GPUs with strategy {row['strategy']!r}"
    if not any(row.get(col) for col in MEMORY_KINDS) and not row.get("tokens_per_s"):
        return "no memory value and no tokens/s"
    if not row["batch"] or not row["seq_len"]:
        return "batch or sequence length unknown"
    if row["method"] == "full" and re.search(r"optimizer[^;]*not stated", row.get("notes", "")):
        return "full fine-tuning with its optimizer setup not stated (it sets most of the memory)"
    try:
        lookup_model(row["model_id"])
    except CatalogError:
        return f"model {row['model_id']} not in the catalog"
    return None


def load_measurements(path: Path) -> tuple[list[Measurement], list[tuple[str, str]]]:
    """Comparable measurements (one per filled memory column) and the skipped rows with reasons."""
    out: list[Measurement] = []
    skipped: list[tuple[str, str]] = []
    with Path(path).open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            why = usable(row)
            if why:
                skipped.append((row["id"], why))
                continue
            spec, setup = lookup_model(row["model_id"]), setup_from_row(row)
            tps = float(row["tokens_per_s"]) if row.get("tokens_per_s") else None
            for column, kind in MEMORY_KINDS.items():
                if row.get(column):
                    out.append(Measurement(row["id"], spec, setup, kind, float(row[column]), tps, row["gpu"], row))
    return out, skipped


@dataclass(frozen=True)
class SpeedMeasurement:
    id: str
    spec: ModelSpec
    setup: Setup
    gpu: str
    tokens_per_s: float
    row: dict[str, str]


def load_speeds(path: Path) -> list[SpeedMeasurement]:
    """Rows with a measured tokens/s on a named GPU."""
    out = []
    with Path(path).open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if usable(row) is None and row.get("tokens_per_s") and row.get("gpu"):
                out.append(SpeedMeasurement(row["id"], lookup_model(row["model_id"]), setup_from_row(row), row["gpu"],
                                            float(row["tokens_per_s"]), row))
    return out


def studio_reference_csv() -> Path:
    """Measurements of studio's own stack (tests/data/studio-h100.csv: the H100 probe grid and speed runs)."""
    return Path(__file__).resolve().parents[2] / "tests" / "data" / "studio-h100.csv"


def held_out(row: dict[str, str]) -> bool:
    """The fixed split: rows kept out of every fit, on which the README's accuracy figures are measured.

    studio's stack: everything but plain Llama-3.2-1B runs (Qwen2.5-1.5B, Llama-3.2-3B, the Liger runs).
    The older HF stack: the fms-acceleration benchmark (another source, another GPU setup).
    """
    if row["stack"] == "studio":
        return row["model_id"] != "meta-llama/Llama-3.2-1B" or "liger" in row.get("notes", "")
    return "fms-acceleration" in row["source"]


def all_measurements() -> list[Measurement]:
    """Memory measurements of both stacks: studio's own (tests/data) and the published ones."""
    out = load_measurements(studio_reference_csv())[0]
    legacy = default_reference_csv()
    return out + (load_measurements(legacy)[0] if legacy else [])


def all_speeds() -> list[SpeedMeasurement]:
    legacy = default_reference_csv()
    return load_speeds(studio_reference_csv()) + (load_speeds(legacy) if legacy else [])


def speed_error(m: SpeedMeasurement) -> float:
    from studio.planning.catalog import lookup_gpu
    from studio.planning.speed import estimate_speed

    return estimate_speed(m.spec, m.setup, lookup_gpu(m.gpu)).tokens_per_s / m.tokens_per_s - 1


def relative_error(m: Measurement, est: MemoryEstimate | None = None) -> float:
    est = est or estimate_memory(m.spec, m.setup)
    return (getattr(est, m.kind) - m.value_gib) / m.value_gib


def error_summary(errors: list[float]) -> dict[str, float]:
    if not errors:
        return {"n": 0, "median_abs": 0.0, "p90_abs": 0.0, "mean": 0.0}
    a = sorted(abs(e) for e in errors)

    def pct(q: float) -> float:
        k = q * (len(a) - 1)
        lo, hi = int(k), min(int(k) + 1, len(a) - 1)
        return a[lo] + (a[hi] - a[lo]) * (k - lo)

    return {"n": len(a), "median_abs": pct(0.5), "p90_abs": pct(0.9), "mean": sum(errors) / len(errors)}
