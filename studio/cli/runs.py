"""`studio run|resume|runs|stop|logs|compare|export`: the run lifecycle from the command line."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from studio import display
from studio.cli.errors import EXIT_FAILED, EXIT_OK, EXIT_OUTPUT_CLOSED, EXIT_STOPPED, UserError
from studio.profiles.library import profile_path
from studio.runs.compare import compare_runs
from studio.runs.events import Checkpoint, Download, End, Eval, Event, EventTail, Preflight, Start, Step, Stopping
from studio.runs.export import export_run, space_warning
from studio.runs.folder import Run, RunError, find_run, list_runs, runs_folder_problem
from studio.runs.launcher import events_tail, follow, resume_note, resume_run, stop_run
from studio.runs.liveness import is_alive
from studio.runs.start import LowDisk, start_run
from studio.runs.state import run_status
from studio.runs.summary_cache import listed_summaries
from studio.runs.tail import FileTail
from studio.terminal import safe, shell_arg
from studio.runs.status import RunStatus


class Follower:
    """Prints a run's events as they arrive: a redrawn progress line on a terminal."""

    def __init__(self, run: Run, stream: TextIO):
        self.run = run
        self.out = stream
        self.tty = stream.isatty()
        self.open_line = False
        self.last_step_print = 0.0

    def _line(self, text: str) -> None:
        if self.open_line:
            self.out.write("\n")
            self.open_line = False
        self.out.write(text + "\n")
        self.out.flush()

    def _redraw(self, text: str) -> None:
        self.out.write("\r\033[K" + text)
        self.out.flush()
        self.open_line = True

    def __call__(self, e: Event) -> None:
        if isinstance(e, Step):
            line = display.step_line(e)
            if self.tty:
                self._redraw(line)
            elif time.monotonic() - self.last_step_print >= 1.0 or e.step == e.max_steps:
                self._line(line)
                self.last_step_print = time.monotonic()
        elif isinstance(e, Download):
            text = (f"downloading {e.what} {e.name}: {display.size_bytes(e.bytes)} of {display.size_bytes(e.total_bytes)}"
                    + (f" at {display.size_bytes(e.rate_bytes_s)}/s" if e.rate_bytes_s else "")
                    + (" done" if e.done else ""))
            if self.tty and not e.done:
                self._redraw(text)
            else:
                self._line(text)
        elif isinstance(e, Preflight):
            for line in display.preflight_lines(e):
                self._line(line)
        elif isinstance(e, Start):
            self._line(display.start_line(e))
            plan = self.run.plan()  # the trainer wrote what it trains before this record
            for line in display.decision_lines(plan.final.decisions if plan else ()):
                self._line(line)
        elif isinstance(e, Eval):
            self._line(f"eval loss {e.eval_loss:.4f} at step {e.step}")
        elif isinstance(e, Checkpoint):
            self._line(f"checkpoint saved at step {e.step}")
        elif isinstance(e, Stopping):
            self._line(f"stopping at step {e.step}: finishing the step and saving a checkpoint")
        elif isinstance(e, End):
            for line in display.end_lines(e, self.run.id):
                self._line(line)

    def finish(self) -> None:
        if self.open_line:
            self.out.write("\n")
            self.out.flush()
            self.open_line = False


def watch(run: Run, proc: subprocess.Popen[bytes] | None, quiet: bool, tail: EventTail) -> str:
    """Follow a run to its end; Ctrl+C asks it to stop gracefully, a second Ctrl+C kills it."""
    stream = sys.stderr if quiet else sys.stdout
    printer = Follower(run, stream)
    interrupts = 0
    while True:
        try:
            status = follow(run, printer, tail, proc=proc)
            printer.finish()
            if status == RunStatus.CRASHED:
                print(f"run {run.id} crashed: the trainer exited without a final event; "
                      f"see `studio logs {shell_arg(run.id)}`; `studio resume {shell_arg(run.id)}` continues from the "
                      "last checkpoint",
                      file=stream)
            return status
        except KeyboardInterrupt:
            interrupts += 1
            printer.finish()
            first = interrupts == 1
            print("stopping gracefully: the trainer finishes its step and saves (Ctrl+C again kills it)" if first
                  else "killing the run", file=stream, flush=True)
            try:
                stop_run(run, wait_s=0) if first else stop_run(run, force=True)
            except RunError:
                pass


def exit_code(status: RunStatus) -> int:
    return {RunStatus.COMPLETED: EXIT_OK, RunStatus.STOPPED: EXIT_STOPPED, RunStatus.RUNNING: EXIT_OK}.get(status, EXIT_FAILED)


def _report(run: Run, status: RunStatus, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"id": run.id, "dir": str(run.dir), "status": status}))
    elif status == RunStatus.RUNNING:
        print(f"run {run.id} started in the background (pid {run.pid})\n"
              f"  follow: studio logs {shell_arg(run.id)} --follow\n  stop:   studio stop {shell_arg(run.id)}")


def _detach_or_follow(run: Run, proc: subprocess.Popen[bytes], tail: EventTail, args: argparse.Namespace) -> int:
    if args.detach:
        _report(run, RunStatus.RUNNING, args.json)
        return EXIT_OK
    try:
        status = watch(run, proc, args.json, tail)
        _report(run, status, args.json)
    except BrokenPipeError:  # `studio run ... | head -1`: the reader quit, the run did not
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        print(f"studio: the output was closed before the run ended; run {run.id} goes on in the background: "
              f"follow it with `studio logs {shell_arg(run.id)} --follow`, stop it with "
              f"`studio stop {shell_arg(run.id)}`", file=sys.stderr)
        return EXIT_OUTPUT_CLOSED
    return exit_code(status)


SLURM_FLAGS = ("nodes", "partition", "time", "account", "gpus_per_node", "qos", "constraint", "mem", "cpus_per_task",
               "exclusive", "requeue", "sbatch_args")  # `studio run`'s flags for the profile's [slurm] keys


def cmd_run(args: argparse.Namespace) -> int:
    on_slurm = args.slurm or args.slurm_dry_run
    slurm = {f"slurm.{key}": getattr(args, key) for key in SLURM_FLAGS}
    if not on_slurm and any(v is not None for v in slurm.values()):
        raise UserError(f"--{next(k for k, v in slurm.items() if v is not None).split('.')[1].replace('_', '-')} "
                         "is a Slurm option: add --slurm (or set it in the profile's [slurm] section)")
    try:
        started = start_run(profile_path(args.profile), args.max_steps, args.node_rank, slurm if on_slurm else None,
                            args.slurm_dry_run, ignore_disk=args.ignore_disk)
    except LowDisk as e:
        raise UserError(f"{e} (--ignore-disk); nothing was started") from None
    run = started.run
    if on_slurm:
        if args.slurm_dry_run:
            import shutil

            shutil.rmtree(run.dir, ignore_errors=True)  # nothing was submitted: no run is left behind
            print(started.slurm, end="")
            print("# not submitted (drop --slurm-dry-run to submit)", file=sys.stderr)
            return EXIT_OK
        from studio.runs.slurm import request_from, request_notes

        for note in request_notes(request_from(run.status_file().slurm_request or {})):
            print(f"note: {note}", file=sys.stderr)
        if args.json:
            print(json.dumps({"id": run.id, "dir": str(run.dir), "status": RunStatus.QUEUED, "slurm_job": started.slurm}))
        else:
            print(f"run {run.id}: submitted to Slurm as job {started.slurm}; follow it with `studio runs`, "
                  f"`studio logs {shell_arg(run.id)} --follow`, stop it with `studio stop {shell_arg(run.id)}`")
        return EXIT_OK
    tail = events_tail(run, from_start=True)
    if not args.json:
        print(f"run {run.id}: {run.dir}")
        for note in started.plan.notes:
            print(f"  note: {note}")
    return _detach_or_follow(run, started.proc, tail, args)


def cmd_resume(args: argparse.Namespace) -> int:
    run = find_run(args.run)
    tail = events_tail(run, from_start=False)
    resumed = resume_run(run, here=args.here)
    if resumed.proc is None:  # through Slurm: a new job
        if args.json:
            print(json.dumps({"id": run.id, "dir": str(run.dir), "status": RunStatus.QUEUED,
                              "slurm_job": resumed.slurm_job}))
        else:
            print(f"{resume_note(run)}\nrun {run.id}: resubmitted to Slurm as job {resumed.slurm_job} (the same "
                  f"request); `studio stop {shell_arg(run.id)}` cancels it; `--here` trains on this machine instead")
        return EXIT_OK
    if not args.json:
        print(resume_note(run))
    return _detach_or_follow(run, resumed.proc, tail, args)


LISTED = 200  # runs `studio runs` shows unless --limit says otherwise: the newest


def cmd_runs(args: argparse.Namespace) -> int:
    every = list_runs()
    runs = [r for r in every if not args.filter or args.filter.lower() in r.id.lower()]
    limit = args.limit if args.limit is not None else (0 if args.json else LISTED)
    shown = runs[-limit:] if limit and limit > 0 else runs  # only the runs shown are read: bounded at any count
    summaries = listed_summaries(shown, every)
    problem = runs_folder_problem() if not summaries and not args.filter else None  # a folder that cannot be
    # listed lists nothing
    if problem:  # not "no runs yet": the runs may be there, unseen
        raise RunError(problem)
    if args.json:
        print(json.dumps([s.to_dict() for s in summaries], indent=2))
        return EXIT_OK
    if not summaries:
        print(f"no run id contains {safe(args.filter)!r}" if args.filter else
              "no runs yet; start one with `studio run tiny-demo`")
    if len(shown) < len(runs):
        print(f"the newest {len(shown)} of {len(runs):,} runs{' matching' if args.filter else ''}; --limit 0 lists "
              "them all, --filter TEXT finds runs by id")
    for s in summaries:
        run_id = safe(s.id)  # a folder name can hold anything: a newline would fake a line of this list
        job = f"  Slurm job {s.slurm_job}" if s.slurm_job else ""
        if s.problem:
            print(f"{run_id:40} {s.status:9} {safe(s.problem)}{job}")
            continue
        loss = f"{s.loss:.4f}" if s.loss is not None else "-"
        print(f"{run_id:40} {s.status:9} step {s.step}/{s.max_steps or '?':<6} loss {loss}{job}")
        if s.alert:
            print(f"{'':40} ⚠ {s.alert}")
    return EXIT_OK


def cmd_describe(args: argparse.Namespace) -> int:
    from studio.runs.describe import describe, describe_lines

    info = describe(find_run(args.run))
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    for line in describe_lines(info):
        print(safe(line))
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    from studio.runs.describe import delete_run

    run = find_run(args.run)
    if not args.yes:
        raise UserError(f"this deletes run {safe(run.id)} and everything in it ({safe(str(run.dir))}); add --yes to "
                        "go ahead")
    delete_run(run)
    print(f"deleted run {safe(run.id)}")
    return EXIT_OK


def cmd_note(args: argparse.Namespace) -> int:
    from studio.runs.describe import write_note

    run = find_run(args.run)
    if args.text is None:
        print(safe(run.note()) or f"run {safe(run.id)} has no note; studio note {safe(run.id)} \"TEXT\" adds one")
        return EXIT_OK
    write_note(run, args.text)
    print(f"noted on run {safe(run.id)}" if args.text.strip() else f"removed the note of run {safe(run.id)}")
    return EXIT_OK


def cmd_archive(args: argparse.Namespace) -> int:
    from studio.runs.describe import archive_run

    run = find_run(args.run)
    dest = archive_run(run)
    print(f"archived run {safe(run.id)} to {safe(str(dest))}; `studio unarchive {safe(run.id)}` brings it back")
    return EXIT_OK


def cmd_unarchive(args: argparse.Namespace) -> int:
    from studio.runs.describe import archived_runs, unarchive_run

    if not args.run:
        names = archived_runs()
        print("\n".join(safe(n) for n in names) if names else "the archive is empty")
        return EXIT_OK
    run = unarchive_run(args.run)
    print(f"run {safe(run.id)} is back in the runs list")
    return EXIT_OK


def cmd_stop(args: argparse.Namespace) -> int:
    run = find_run(args.run)
    if not args.force and run_status(run).live:  # else stop_run says why there is nothing to stop
        print(f"asking run {run.id} to stop: it finishes its step and saves a checkpoint")
    status = stop_run(run, force=args.force, wait_s=0 if args.no_wait else args.timeout)
    try:
        end = run.timeline().end
    except OSError:
        end = None
    if end and status is not None:
        for line in display.end_lines(end, run.id):
            print(line)
    else:
        print(f"run {run.id}: {status or 'stopping'}")
    return EXIT_OK


def cmd_logs(args: argparse.Namespace) -> int:
    run = find_run(args.run)
    if not run.log_path.exists():
        if not run.status_file().launched_at:
            print(f"run {run.id} has no log yet")
            return EXIT_OK
        raise RunError(f"run {run.id}'s trainer.log was removed after its trainer started (a live trainer goes on "
                       "writing to the deleted file); its steps and ending are still in its records: "
                       f"`studio runs`, or open it in the app (`studio`)")
    tail = FileTail(run.log_path)
    while True:
        alive = is_alive(run)
        try:
            text = tail.read_text(limit=None)
        except OSError as e:
            raise RunError(f"cannot read {run.log_path}: {e.strerror or e}") from None
        sys.stdout.write(text)
        sys.stdout.flush()
        if not (args.follow and alive):
            break
        time.sleep(0.3)
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    if args.quant and not args.gguf:
        raise UserError(f"--quant {args.quant} is the GGUF's type: add --gguf to write a GGUF file (an adapter or "
                        "merged export keeps the trained dtype)")
    gguf = args.quant or ("q8_0" if args.gguf else None)
    run = find_run(args.run)
    warning = space_warning(run, Path(args.out).expanduser().resolve(), args.merge, gguf)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    proc = export_run(run, Path(args.out), merge=args.merge, force=args.force, gguf=gguf,
                      ollama=args.ollama, push=args.push, private=args.private, checkpoint=args.checkpoint)
    return EXIT_OK if proc.returncode == 0 else EXIT_FAILED


def cmd_eval(args: argparse.Namespace) -> int:
    """Before/after numbers on the run's eval rows, in a process of its own (it loads the models)."""
    run = find_run(args.run)
    if not args.json:
        print(f"evaluating run {run.id} on its eval rows" + (", the base model beside it" if args.compare else ""),
              file=sys.stderr)
    cmd = [sys.executable, "-m", "studio.generate.evaluate", str(run.dir)] + (["--compare"] if args.compare else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise UserError((proc.stderr.strip().splitlines() or ["the eval process failed"])[-1])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if args.json:
        print(json.dumps(result))
        return EXIT_OK
    if "preference" in result:
        for line in preference_lines(result):
            print(line)
    elif result.get("objective") == "grpo":
        print(f"{result['rows']} held-out prompts ({result['source']}): one greedy answer each, scored by the run's "
              "rewards")
        for side in ("base", "tuned"):
            if side in result["rewards"]:
                r = result["rewards"][side]
                each = ", ".join(f"{k} {display.number(v, '.3f')}" for k, v in r["functions"].items())
                print(f"  {side:6} reward {r['mean']:.3f} ({each})")
    else:
        print(f"{result['rows']} rows ({result['source']}), scored on the tokens the run trained on")
        print(f"{'':12} {'loss':>8} {'perplexity':>11} {'exact next token':>17}")
        for side in ("base", "tuned"):
            if side in result:
                s = result[side]
                print(f"{side:12} {s['loss']:8.4f} {s['perplexity']:11.2f} {s['exact']:17.1%}")
    for sample in result.get("samples", []):
        print(f"\n> {sample['prompt']}")
        for side in ("base", "tuned"):
            if side in sample:
                print(f"  {side}: {sample[side]}")
    return EXIT_OK


def preference_lines(result: dict[str, Any]) -> list[str]:
    """A preference run's eval: how often each model prefers the chosen answer, and the implicit reward."""
    pref = result["preference"]
    lines = [f"{pref['pairs']} held-out pairs ({result['source']}): the share where the model gives the chosen "
             "answer the higher likelihood"]
    for side in ("base", "tuned"):
        if side in pref:
            lines.append(f"  {side:6} {pref[side]['prefers_chosen']:.1%}")
    if "reward_accuracy" in pref:
        lines.append(f"  implicit reward (tuned against base): {pref['reward_accuracy']:.1%} of pairs ranked right, "
                     f"mean margin {pref['reward_margin']:+.3f}")
        base, tuned = pref["base"]["prefers_chosen"], pref["tuned"]["prefers_chosen"]
        lines.append(f"  {'better' if tuned > base else 'not better'} than the base model "
                     f"({tuned - base:+.1%} of pairs)")
    return lines


def cmd_compare(args: argparse.Namespace) -> int:
    """Two or more runs: their figures, then the profile keys that differ."""
    runs = [find_run(ref) for ref in args.runs]
    if len({r.id for r in runs}) < 2:
        raise UserError("compare needs two or more different runs, e.g. `studio compare RUN_A RUN_B`")
    result = compare_runs(runs)
    if args.json:
        print(json.dumps(result.to_dict()))
        return EXIT_OK
    width = max(len(f.summary.id) for f in result.runs)
    preference = any(f.margins for f in result.runs)  # preference runs: their reward margin and accuracy too
    print(f"{'run':{width}} {'status':10} {'steps':>9} {'loss':>8} {'best eval':>9} {'tok/s':>8} {'train time':>10}"
          + (f" {'margin':>8} {'acc':>5}" if preference else ""))
    for f in result.runs:
        s = f.summary
        steps = f"{s.step}/{s.max_steps or '?'}"
        loss, best, rate = (display.number(s.loss, ".4f"), display.number(f.best_eval, ".4f"),
                            display.number(s.tokens_per_s, ",.0f"))
        rewards = (f" {display.number(f.margins[-1][1] if f.margins else None, '+.3f'):>8} "
                   f"{display.number(f.reward_accuracy, '.0%'):>5}") if preference else ""
        print(f"{s.id:{width}} {s.status:10} {steps:>9} {loss:>8} {best:>9} {rate:>8} "
              f"{display.duration(f.duration_s) if f.duration_s else '-':>10}" + rewards)
    print()
    if result.profile_diff:
        width = max(len(k) for k, _ in result.profile_diff)
        print("profiles differ in:")
        for key, values in result.profile_diff:
            print(f"  {key:{width}}  " + "  |  ".join(values))
    else:
        print("the profiles are the same")
    for why in result.unreadable:
        print(f"  (profile left out: {why})")
    return EXIT_OK


def add_run_commands(sub: Any) -> None:
    p = sub.add_parser("run", help="start a training run from a profile and follow it")
    p.add_argument("profile", help="profile file or name (e.g. tiny-demo)")
    p.add_argument("--detach", action="store_true", help="return at once; the run goes on in the background")
    p.add_argument("--json", action="store_true", help='print {"id", "dir", "status"} (progress goes to stderr)')
    p.add_argument("--max-steps", type=int, help="override train.max_steps for this run")
    p.add_argument("--node-rank", type=int, help="multi-node: this machine's rank (overrides hardware.machine_rank)")
    p.add_argument("--slurm", action="store_true", help="submit the run to Slurm (sbatch) instead of starting it here")
    p.add_argument("--slurm-dry-run", action="store_true", help="write and print the sbatch script, submit nothing")
    p.add_argument("--ignore-disk", action="store_true",
                   help="start even though its checkpoints and weights would not fit on the runs folder's disk")
    slurm = p.add_argument_group("Slurm", "each overrides the profile's [slurm] key of the same name")
    slurm.add_argument("--nodes", type=int, help="nodes (one task each)")
    slurm.add_argument("--partition", help="the partition (sbatch --partition)")
    slurm.add_argument("--time", help="the time limit (sbatch --time, e.g. 2:00:00)")
    slurm.add_argument("--account", help="the account to charge (sbatch --account)")
    slurm.add_argument("--gpus-per-node", type=int, help="GPUs on each node")
    slurm.add_argument("--qos", help="the quality of service (sbatch --qos)")
    slurm.add_argument("--constraint", help="node features the job needs (sbatch --constraint)")
    slurm.add_argument("--mem", help="memory per node (sbatch --mem, e.g. 64G; 0 = all of it)")
    slurm.add_argument("--cpus-per-task", type=int, help="CPUs for each node's task (sbatch --cpus-per-task)")
    slurm.add_argument("--exclusive", action="store_true", default=None, help="the nodes for this job alone")
    slurm.add_argument("--requeue", action="store_true", default=None,
                       help="save before the time limit and continue in a new allocation (sbatch --requeue)")
    slurm.add_argument("--sbatch-arg", action="append", metavar="OPTION", dest="sbatch_args",
                       help="another sbatch option, e.g. --sbatch-arg=--mail-type=END (repeatable)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("runs", help="list runs and their status")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=int, metavar="N", help=f"the newest N runs (default {LISTED}; all with --json "
                                                         "or 0)")
    p.add_argument("--filter", metavar="TEXT", help="only runs whose id contains TEXT")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("describe", help="a run whole: its profile, the plan and why each auto was decided, devices")
    p.add_argument("run", help="run id, unique prefix, path, or `last`")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("delete", help="delete a run that is over (never a running one)")
    p.add_argument("run", help="run id, unique prefix, path, or `last`")
    p.add_argument("--yes", action="store_true", help="confirm: the run's folder and everything in it go")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("note", help="show or set your note on a run (an empty TEXT removes it)")
    p.add_argument("run", help="run id, unique prefix, path, or `last`")
    p.add_argument("text", nargs="?", help="the note; leave out to show the one there is")
    p.set_defaults(func=cmd_note)

    p = sub.add_parser("archive", help="move a run that is over out of the list, whole, into STUDIO_HOME/archive")
    p.add_argument("run", help="run id, unique prefix, path, or `last`")
    p.set_defaults(func=cmd_archive)

    p = sub.add_parser("unarchive", help="bring an archived run back (no RUN: list the archive)")
    p.add_argument("run", nargs="?", help="the archived run's id")
    p.set_defaults(func=cmd_unarchive)

    p = sub.add_parser("stop", help="stop a run gracefully (checkpoint + adapter), or kill it")
    p.add_argument("run", help="run id, unique part of it, folder, or `last`")
    p.add_argument("--force", action="store_true", help="kill the process group at once (nothing is saved)")
    p.add_argument("--no-wait", action="store_true", help="return without waiting for the run to end")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for a graceful stop")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("resume", help="continue a stopped or crashed run from its last complete checkpoint")
    p.add_argument("run")
    p.add_argument("--here", action="store_true",
                   help="a run submitted to Slurm: train it on this machine instead of submitting a new job")
    p.add_argument("--detach", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("logs", help="print a run's trainer log")
    p.add_argument("run")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing while the run is going")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("compare", help="two or more runs side by side: figures and the profile keys that differ")
    p.add_argument("runs", nargs="+", help="run ids (or unique parts, folders, `last`)")
    p.add_argument("--json", action="store_true", help="figures, loss curves and the profile diff as JSON")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("eval", help="loss, perplexity and exact tokens of the tuned (and base) model on the run's "
                                    "eval rows, and side-by-side answers; saved in the run")
    p.add_argument("run")
    p.add_argument("--compare", action="store_true", help="the base model beside the tuned one")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("export", help="the adapter, a merged model or a GGUF (+ Ollama Modelfile), with a model card; "
                                      "--push uploads it to the Hub")
    p.add_argument("run")
    p.add_argument("--out", required=True, help="folder to write (complete, or not written at all)")
    p.add_argument("--merge", action="store_true", help="write a merged full model instead of the adapter")
    p.add_argument("--gguf", action="store_true", help="write a GGUF file for llama.cpp (q8_0 unless --quant)")
    p.add_argument("--quant", help="GGUF type: f16, bf16, q8_0, f32 (studio), or a k-quant like q4_k_m "
                                   "(needs llama.cpp's llama-quantize)")
    p.add_argument("--ollama", action="store_true", help="also write an Ollama Modelfile next to the GGUF")
    p.add_argument("--push", metavar="ORG/NAME", help="upload the export to this Hugging Face repo")
    p.add_argument("--private", action="store_true", help="with --push: a private repo")
    p.add_argument("--force", action="store_true", help="replace an earlier export in --out")
    p.add_argument("--checkpoint", type=int, metavar="STEP", help="export this checkpoint instead of the result")
    p.set_defaults(func=cmd_export)

