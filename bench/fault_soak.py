"""A longer fault-injection soak than CI affords: tests/test_faults.py's five kill moments,
repeated with different seeds.

    python bench/fault_soak.py [ROUNDS]      (default 10 rounds = 50 killed runs)

Prints each round's seed and result, then the totals; a failing seed reproduces with
STUDIO_FAULT_SEED=<seed> python -m pytest tests/test_faults.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    failed = []
    t0 = time.monotonic()
    for i in range(rounds):
        seed = 1000 + i
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_faults.py"],
                              cwd=REPO, env=dict(os.environ, STUDIO_FAULT_SEED=str(seed), HF_HUB_OFFLINE="1"),
                              capture_output=True, text=True)
        last = (proc.stdout.strip().splitlines() or ["?"])[-1]
        print(f"round {i + 1}/{rounds} seed {seed}: {last}", flush=True)
        if proc.returncode:
            failed.append(seed)
    trials = rounds * 5
    print(f"\n{trials} killed runs in {time.monotonic() - t0:.0f} s; "
          f"{'all recovered' if not failed else f'failing seeds: {failed}'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
