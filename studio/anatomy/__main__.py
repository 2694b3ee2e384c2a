"""python -m studio.anatomy [--trust-remote-code] CONFIG.json [CONFIG.json ...]
python -m studio.anatomy --catalog     (re)write studio/planning/specs/anatomies.json

Prints one JSON line per config: {"config": PATH, "anatomy": {...}} or {"config": PATH, "error": "..."}."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path


def main(argv: list[str]) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a config on disk needs nothing from the network
    warnings.filterwarnings("ignore")
    import logging

    logging.disable(logging.WARNING)
    from studio.anatomy.read import build, describe, load_config  # noqa: F401 - imports torch

    if "--catalog" in argv:
        return write_catalog()
    trust = "--trust-remote-code" in argv
    for arg in (a for a in argv if not a.startswith("--")):
        path = Path(arg)
        try:
            result = {"config": arg, "anatomy": describe(load_config(path, trust), trust)}
        except Exception as e:  # noqa: BLE001 - one config's failure is reported, the rest still run
            result = {"config": arg, "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(result), flush=True)
    return 0


def write_catalog() -> int:
    """The anatomy of every catalog model with a config, into specs/anatomies.json."""
    from transformers import AutoConfig

    from studio.anatomy.read import describe
    from studio.atomic import write_json
    from studio.planning.anatomy import config_key
    from studio.planning.catalog import SPECS, catalog_models

    out, failed = {}, []
    for spec in catalog_models():
        if spec.config is None:
            continue
        fields = dict(spec.config)
        try:
            config = AutoConfig.for_model(fields.pop("model_type"), **fields)
            out[spec.id] = {"key": config_key(spec.config, per_version=False), "anatomy": describe(config)}
        except Exception as e:  # noqa: BLE001 - listed at the end; the catalog keeps the others
            failed.append(f"{spec.id}: {type(e).__name__}: {e}")
    write_json(SPECS / "anatomies.json", out)
    print(f"wrote {len(out)} anatomies to {SPECS / 'anatomies.json'}")
    for line in failed:
        print(f"  not built: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
