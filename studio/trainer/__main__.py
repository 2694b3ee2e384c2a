"""Entry point of the trainer process; see studio.trainer.engine."""

import argparse
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.trainer", description="Train one studio run.")
    parser.add_argument("run_dir", type=Path, help="the run folder holding profile.toml")
    parser.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint")
    parser.add_argument("--probe", action="store_true",
                        help="measure a few steps on synthetic rows of max_length tokens; save nothing")
    args = parser.parse_args()
    from studio.trainer.engine import train_run

    return train_run(args.run_dir.resolve(), resume=args.resume, probe=args.probe)


if __name__ == "__main__":
    sys.exit(main())
