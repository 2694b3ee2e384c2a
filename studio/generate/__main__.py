"""Entry point of the generation process; see studio.generate.server."""

import argparse
import os
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.generate", description="Answer prompts with a run's model.")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--checkpoint", type=int, help="a checkpoint's step (default: the final adapter, else the last)")
    parser.add_argument("--mode", choices=("tuned", "base", "compare"), default="tuned")
    args = parser.parse_args()
    os.umask(0o077)  # transcripts, eval.json: the owner's alone
    from studio.generate.server import serve

    return serve(args.run_dir.resolve(), args.checkpoint, args.mode)


if __name__ == "__main__":
    sys.exit(main())
