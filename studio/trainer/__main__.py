"""Entry point of the trainer process: `python -m studio.trainer RUN_DIR [--resume] [--probe]`."""

import argparse
import os
import sys
import warnings
from pathlib import Path

from studio.log_times import time_lines
from studio.trainer.stop import StopRequest


def main() -> int:
    # Before the slow imports: a stop in the first second must be a graceful one too.
    stop = StopRequest().install()
    time_lines()  # every line of the log says when it was written
    os.umask(0o077)  # checkpoints, logs and events are the owner's alone, like the run folder
    parser = argparse.ArgumentParser(prog="python -m studio.trainer", description="Train one studio run.")
    parser.add_argument("run_dir", type=Path, help="the run folder holding profile.toml")
    parser.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint")
    parser.add_argument("--probe", action="store_true",
                        help="measure a few steps on synthetic rows of max_length tokens with random weights; "
                             "save nothing")
    args = parser.parse_args()
    # PEFT and TRL read transformers 5's deprecated alias on every run; the user can do nothing about it, and
    # a warning in every log teaches users to skip the log's warnings.
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    from studio.trainer.main import train_run

    return train_run(args.run_dir.resolve(), resume=args.resume, probe=args.probe, stop=stop)


if __name__ == "__main__":
    sys.exit(main())
