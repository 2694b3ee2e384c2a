"""Time to first token and tokens/s of `studio chat`, with the model loaded once.

    python bench/chat_speed.py [RUN] [--prompts 10] [--max-new-tokens 64]

Without RUN it trains the tiny demo first (in a temporary studio home). Sends the run's
own starting prompts (and the demo questions) through one chat session, greedy, and prints
the load time and the median time to first token and decode tokens/s, for the tuned model
and in compare mode; writes bench/results/chat-<device>-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from saved import save_results  # bench/saved.py: this folder is on the path when run as a script
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def measure(run_dir: Path, mode: str, prompts: list[str], max_new_tokens: int) -> dict:
    from studio.runs.chat import ChatSession, ChatSettings
    from studio.runs.folder import Run

    session = ChatSession(Run(run_dir), mode=mode)
    t0 = time.monotonic()
    ready = session.start()
    load = time.monotonic() - t0
    ttft: dict[str, list[float]] = {}
    rate: dict[str, list[float]] = {}
    try:
        for prompt in prompts:
            for record in session.ask(prompt, ChatSettings(temperature=0.0, max_new_tokens=max_new_tokens)):
                if record.get("event") == "done":
                    ttft.setdefault(record["side"], []).append(record["ttft_s"])
                    if record.get("tokens_per_s"):
                        rate.setdefault(record["side"], []).append(record["tokens_per_s"])
    finally:
        session.close()
    return {"device": ready.get("device"), "load_s": round(load, 2),
            "ttft_s": {s: statistics.median(v) for s, v in ttft.items()},
            "tokens_per_s": {s: statistics.median(v) for s, v in rate.items()}, "prompts": len(prompts)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", help="a run folder (default: train the tiny demo)")
    ap.add_argument("--prompts", type=int, default=10)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.run:
            run_dir = Path(args.run).resolve()
        else:
            os.environ["STUDIO_HOME"] = str(Path(tmp) / "home")
            out = subprocess.run([sys.executable, "-m", "studio", "run", "tiny-demo", "--json"], capture_output=True,
                                 text=True, check=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
            run_dir = Path(json.loads(out.stdout.strip().splitlines()[-1])["dir"])
        from studio.runs.chat import starting_prompts
        from studio.runs.folder import Run

        rows = [json.loads(line) for line in (REPO / "profiles" / "data" / "tiny-chat.jsonl").read_text().splitlines()]
        prompts = (starting_prompts(Run(run_dir)) + [r["messages"][-2]["content"] for r in rows])[:args.prompts]
        results = {mode: measure(run_dir, mode, prompts, args.max_new_tokens) for mode in ("tuned", "compare")}
    device = results["tuned"]["device"]
    for mode, r in results.items():
        sides = ", ".join(f"{s}: first token {r['ttft_s'][s] * 1000:.0f} ms, {r['tokens_per_s'].get(s, 0):,.0f} tokens/s"
                          for s in r["ttft_s"])
        print(f"{mode:8} loaded in {r['load_s']:.1f} s on {device}; median over {r['prompts']} prompts: {sides}")
    save_results("chat", device, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
