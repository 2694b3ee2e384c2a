"""A longer fault-injection soak than CI affords, in two parts.

    python bench/fault_soak.py [ROUNDS] [--only training|operations] [--seed N]   (default: 3 rounds of each)

training     tests/test_faults.py's five kill moments of a training run (start-up, mid-step, checkpoint,
             final save, stop in flight), once per round with a new seed; a failing seed reproduces with
             STUDIO_FAULT_SEED=<seed> python -m pytest tests/test_faults.py.
operations   one real run per round, with SIGKILL at random moments of what a user does to it:
             - a stop: once `studio stop` has recorded its request, the trainer's whole group is killed within
               2 s (it is finishing its step, or saving): the run must end as stopped, not crashed;
             - a resume: one or two `studio resume` at once, then a kill at a random moment of the start-up
               (the lock, the spawn, the model load or the first steps), the resumes' own processes included;
             - an export (adapter, then merged): the export's process group is killed at a random moment;
             then it resumes to the end and exports again. Throughout, a watcher counts the trainers working on
             the run every 50 ms. It reports that no run ever had two trainers, that every status settled, that
             the finished run has each step once, and that a killed export left either nothing or a whole
             export at its target, and nothing once exported again.

Prints each round's seed and result, then the totals, and saves them under bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from saved import save_results  # bench/saved.py: this folder is on the path when run as a script

REPO = Path(__file__).resolve().parent.parent
DEMO_DATA = REPO / "profiles" / "data" / "tiny-chat.jsonl"
MAX_STEPS, SAVE_STEPS, BATCH, MAX_LENGTH = 24, 4, 8, 96
SETTLE_S = 120  # a killed trainer is gone well within this, even on a loaded 2-core machine


def soak_training(rounds: int, first_seed: int) -> list[str]:
    failures = []
    for i in range(rounds):
        seed = first_seed + i
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_faults.py"],
                              cwd=REPO, env=dict(os.environ, STUDIO_FAULT_SEED=str(seed), HF_HUB_OFFLINE="1"),
                              capture_output=True, text=True)
        last = (proc.stdout.strip().splitlines() or ["?"])[-1]
        print(f"training round {i + 1}/{rounds} seed {seed}: {last}", flush=True)
        if proc.returncode:
            failures.append(f"training seed {seed}: {last}")
    return failures


# ---------------------------------------------------------------- operations


def studio(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "studio", *args], env=env, capture_output=True, text=True)


def spawn(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """A studio command in its own process group, so that a kill reaches whatever it started."""
    return subprocess.Popen([sys.executable, "-m", "studio", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def kill_group(pid: int | None) -> None:
    if pid:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class TrainerWatch(threading.Thread):
    """Counts the live trainer processes of one run folder every 50 ms; remembers the most seen at once."""

    def __init__(self, run_dir: Path):
        super().__init__(daemon=True)
        self.run_dir, self.most, self.done = run_dir, 0, threading.Event()

    def count(self) -> int:
        import psutil

        from studio.runs.liveness import is_trainer_process

        launchers = [p for p in psutil.process_iter(["pid"]) if is_trainer_process(p.info["pid"], self.run_dir)]
        # A multi-process run has a launcher and its workers; this tiny run is one process, so one is the limit.
        return len(launchers)

    def run(self) -> None:
        while not self.done.is_set():
            self.most = max(self.most, self.count())
            time.sleep(0.05)


def wait_until(check, what: str, timeout: float = SETTLE_S, poll: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


def settled(run) -> str:
    """The status once the killed trainer is gone (and the status no longer says running)."""
    from studio.runs.liveness import is_alive
    from studio.runs.state import run_status

    wait_until(lambda: not is_alive(run), "the killed trainer to exit")
    return wait_until(lambda: (s := run_status(run)) != "running" and s, "the status to settle")


def steps_logged(run) -> int:
    try:
        return len(run.timeline().steps)
    except OSError:
        return 0


def export_state(out: Path, merged: bool) -> str:
    """absent, whole, or what is wrong with what a killed export left at its target."""
    from studio.runs.folder import safetensors_problem

    if not out.exists():
        return "absent"
    weights = out / ("model.safetensors" if merged else "adapter_model.safetensors")
    config = out / ("config.json" if merged else "adapter_config.json")
    if not config.is_file() or not weights.is_file():
        return f"half-written: {sorted(p.name for p in out.iterdir())}"
    problem = safetensors_problem(weights)
    return f"half-written: {weights.name} {problem}" if problem else "whole"


def operations_round(seed: int, tmp: Path) -> dict:
    from studio.runs.folder import Run
    from studio.runs.state import run_status

    rng = random.Random(seed)
    env = dict(os.environ, STUDIO_HOME=str(tmp / "home"), HF_HOME=str(tmp / "hf"), HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    profile = tmp / "soak.toml"
    profile.write_text(f'[model]\nname = "builtin:tiny-llama"\n[method]\ntype = "lora"\nrank = 8\n'
                       f'[data]\npath = "{DEMO_DATA}"\nmax_length = {MAX_LENGTH}\n'
                       f'[train]\nmax_steps = {MAX_STEPS}\nbatch_size = {BATCH}\nsave_steps = {SAVE_STEPS}\n'
                       'grad_accum = 1\nsave_total_limit = 2\nlogging_steps = 1\nlearning_rate = 3e-3\ngradient_checkpointing = false\n')
    started = studio("run", str(profile), "--detach", "--json", env=env)
    if started.returncode:
        raise RuntimeError(f"studio run failed: {started.stderr[-2000:]}")
    run = Run(Path(json.loads(started.stdout.strip().splitlines()[-1])["dir"]))
    watch = TrainerWatch(run.dir)
    watch.start()
    result: dict = {"seed": seed, "run": run.id, "problems": []}
    try:
        # A stop in flight, then the kill.
        at = rng.randint(2, MAX_STEPS // 2)
        wait_until(lambda: steps_logged(run) >= at, f"step {at}", timeout=600)
        launched = run.status_number("launched_at")
        stopper = spawn("stop", run.id, env=env)
        wait_until(lambda: run.status_number("stop_requested_at") > launched or stopper.poll() is not None,
                   "the stop request to be recorded")
        delay = rng.uniform(0.0, 2.0)  # the trainer is finishing its step, or saving
        time.sleep(delay)
        kill_group(run.pid)
        kill_group(stopper.pid)
        stopper.wait()
        result["stop"] = {"at_step": at, "killed_after_s": round(delay, 2), "status": settled(run)}
        if result["stop"]["status"] != "stopped":
            result["problems"].append(f"a stop killed in flight ended as {result['stop']['status']}, not stopped")

        # One or two resumes at once, killed at a random moment of their start-up.
        racers = [spawn("resume", run.id, "--detach", "--json", env=env) for _ in range(rng.choice((1, 2)))]
        delay = rng.uniform(0.0, 8.0)
        time.sleep(delay)
        kill_group(run.pid)
        for proc in racers:
            kill_group(proc.pid)
            proc.wait()
        wait_until(lambda: not watch.count(), "every trainer of the run to exit")
        result["resume"] = {"racers": len(racers), "killed_after_s": round(delay, 2), "status": settled(run)}

        # Then to the end, as a user would: resume until it completes.
        for _ in range(4):
            if run_status(run) == "completed":
                break
            studio("resume", run.id, "--json", env=env)
        tl = run.timeline()
        tokens = [tl.steps[s].tokens or 0 for s in sorted(tl.steps)]
        growth = [b - a for a, b in zip([0] + tokens, tokens)]
        result["final"] = {"status": run_status(run), "steps": len(tl.steps)}
        if run_status(run) != "completed" or sorted(tl.steps) != list(range(1, MAX_STEPS + 1)):
            result["problems"].append(f"did not complete every step once: {result['final']}")
        if not all(0 < g <= BATCH * MAX_LENGTH for g in growth):
            result["problems"].append(f"a step was counted twice (token growth {growth})")

        # Exports killed partway (at a random moment of what a whole one takes here), then made again.
        result["exports"] = []
        for merged in (False, True):
            out = tmp / ("merged" if merged else "adapter")
            flags = ["--merge"] if merged else []
            t0 = time.monotonic()
            whole = studio("export", run.id, "--out", str(tmp / f"{out.name}-whole"), *flags, env=env)
            took = time.monotonic() - t0
            if whole.returncode or export_state(tmp / f"{out.name}-whole", merged) != "whole":
                result["problems"].append(f"an export that nothing disturbed failed: {whole.stderr[-500:]}")
            exporter = spawn("export", run.id, "--out", str(out), *flags, env=env)
            t0 = time.monotonic()
            if rng.random() < 0.5:  # anywhere in its start-up (the checks, the imports, the model load)
                try:
                    exporter.wait(timeout=rng.uniform(0.0, took / 2))
                except subprocess.TimeoutExpired:
                    pass
            else:  # while it writes: from the moment its staging folder appears
                wait_until(lambda: list(tmp.glob(f".{out.name}.partial-*")) or exporter.poll() is not None,
                           "the export's staging folder", timeout=600, poll=0.01)
                time.sleep(rng.uniform(0.0, min(1.0, took / 10)))  # an adapter is written in well under a second
            finished = exporter.poll() is not None
            delay = time.monotonic() - t0
            kill_group(exporter.pid)
            exporter.wait()
            after_kill = export_state(out, merged)
            staged = sorted(p.name for p in tmp.glob(f".{out.name}.partial-*"))  # what the kill left to clear
            again = studio("export", run.id, "--out", str(out), "--force", *flags, env=env)
            leftovers = sorted(p.name for p in tmp.glob(f".{out.name}.partial-*"))
            entry = {"kind": "merged" if merged else "adapter", "whole_export_s": round(took, 2),
                     "killed_after_s": round(delay, 2),
                     "finished_before_the_kill": finished, "after_kill": after_kill, "staging_left_by_kill": staged,
                     "export_again": "ok" if again.returncode == 0 else again.stderr.strip()[-300:],
                     "after_export_again": export_state(out, merged), "leftovers": leftovers}
            result["exports"].append(entry)
            if after_kill.startswith("half-written") or entry["after_export_again"] != "whole" or leftovers:
                result["problems"].append(f"export: {entry}")
    finally:
        watch.done.set()
        watch.join()
        kill_group(run.pid)
    result["most_trainers_at_once"] = watch.most
    if watch.most > 1:
        result["problems"].append(f"{watch.most} trainers worked on the run at once")
    return result


def soak_operations(rounds: int, first_seed: int) -> tuple[list[str], list[dict]]:
    sys.path.insert(0, str(REPO))
    failures, results = [], []
    for i in range(rounds):
        seed = first_seed + i
        with tempfile.TemporaryDirectory(prefix="studio-soak-") as tmp:
            t0 = time.monotonic()
            try:
                result = operations_round(seed, Path(tmp))
            except (RuntimeError, TimeoutError, OSError) as e:
                result = {"seed": seed, "problems": [f"{type(e).__name__}: {e}"]}
            result["seconds"] = round(time.monotonic() - t0)
        results.append(result)
        exports = ", ".join(f"{e['kind']} killed at {e['killed_after_s']} s: {e['after_kill']}"
                            for e in result.get("exports", []))
        print(f"operations round {i + 1}/{rounds} seed {seed} ({result['seconds']} s): "
              f"stop killed {result.get('stop', {}).get('killed_after_s')} s after its request -> "
              f"{result.get('stop', {}).get('status')}, "
              f"{result.get('resume', {}).get('racers')} resume(s) killed at {result.get('resume', {}).get('killed_after_s')} s "
              f"-> {result.get('resume', {}).get('status')}, final {result.get('final')}, "
              f"most trainers at once {result.get('most_trainers_at_once')}; exports: {exports}; "
              f"{'ok' if not result['problems'] else 'PROBLEMS: ' + '; '.join(result['problems'])}", flush=True)
        failures += [f"operations seed {seed}: {p}" for p in result["problems"]]
    return failures, results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rounds", nargs="?", type=int, default=3)
    parser.add_argument("--only", choices=("training", "operations"))
    parser.add_argument("--seed", type=int, help="the first round's seed (default: from the clock; printed)")
    args = parser.parse_args()
    first_seed = args.seed if args.seed is not None else time.time_ns() // 1000 % 100_000
    print(f"seeds {first_seed}..{first_seed + args.rounds - 1} (again: --seed {first_seed})", flush=True)
    t0 = time.monotonic()
    failures: list[str] = []
    results: list[dict] = []
    if args.only in (None, "operations"):
        found, results = soak_operations(args.rounds, first_seed)
        failures += found
    if args.only in (None, "training"):
        failures += soak_training(args.rounds, first_seed)
    print(f"\n{time.monotonic() - t0:.0f} s; " + ("no run had two trainers, every status settled, every export "
                                                   "was whole or absent" if not failures else
                                                   "PROBLEMS:\n  " + "\n  ".join(failures)))
    if results:
        save_results("fault-soak", "cpu", {"rounds": results, "failures": failures})
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
