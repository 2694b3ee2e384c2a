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
    """The training setup a row describes; unstated values take the HF stack's defaults."""
    method = row["method"]
    notes = row.get("notes", "")
    targets = tuple(t.strip() for t in row["target_modules"].split(",") if t.strip()) or ("q_proj", "v_proj")
    optimizer = row["optimizer"] if row["optimizer"] in ("adamw_8bit", "paged_adamw_8bit") else "adamw_foreach"
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
        seq_kind=row["seq_kind"] or "dynamic",
        grad_ckpt=row["grad_ckpt"] != "no",
        optimizer=optimizer,
        dtype=row["dtype"] or "bf16",
        train_embeddings="fully trained" in notes or "modules_to_save" in notes,
        loss="full",  # every published run predates TRL's fused LM head
        n_gpus=int(row["n_gpus"] or 1),
        strategy=row["strategy"] or "none",
    )


def usable(row: dict[str, str]) -> str | None:
    """None when the row can be compared like for like; else why not."""
    if row["stack"] != "hf":
        return f"stack {row['stack']} uses other kernels"
    if row["method"] not in SUPPORTED_METHODS:
        return f"method {row['method']} is not modelled"
    if int(row["n_gpus"] or 1) > 1 and row["strategy"] not in ("fsdp", "deepspeed-zero3"):
        return f"{row['n_gpus']} GPUs with strategy {row['strategy']!r}"
    if not any(row.get(col) for col in MEMORY_KINDS):
        return "no memory value"
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
