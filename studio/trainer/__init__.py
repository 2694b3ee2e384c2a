"""The training process: `python -m studio.trainer RUN_DIR [--resume]`.

This package is the only place that imports torch, transformers, peft, trl and
bitsandbytes; importing the package itself imports none of them.
"""
