"""The headless command line: `studio <command>`. Never imports the training stack."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from studio import display
from studio.data import DataError, is_local
from studio.cli_plan import PlanError, add_plan_commands
from studio.events import EventTail
from studio.paths import bundled_profiles_dir, user_profiles_dir
from studio.profile import METHODS, Profile, ProfileError, load_profile, profile_from_dict, save_profile
from studio.runs import FINAL, Run, RunError, events_tail, find_run, follow, list_runs, resume_run, stop_run
from studio.start import check_data, start_run

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED = 0, 1, 2, 3


class UserError(Exception):
    """Bad input from the user: printed as one message, exit code 2."""


# ---------------------------------------------------------------- profiles

def profile_path(ref: str) -> Path:
    """A profile by path, or by name among the user's profiles, then the bundled ones."""
    p = Path(ref).expanduser()
    if p.is_file():
        return p
    name = ref if ref.endswith(".toml") else f"{ref}.toml"
    for folder in (user_profiles_dir(), bundled_profiles_dir()):
        if (folder / name).is_file():
            return folder / name
    raise UserError(f"profile {ref!r} not found as a file, in {user_profiles_dir()} or among the bundled ones; "
                    "`studio profile list` shows them")


def all_profiles() -> list[tuple[str, str, Path]]:
    out = []
    for origin, folder in (("user", user_profiles_dir()), ("bundled", bundled_profiles_dir())):
        if folder.is_dir():
            out.extend((p.stem, origin, p) for p in sorted(folder.glob("*.toml")))
    return out


def cmd_profile_check(args: argparse.Namespace) -> int:
    worst = EXIT_OK
    for ref in args.files:
        try:
            path = profile_path(ref)
            profile = load_profile(path)
            if args.data:
                check_data(profile)
        except ProfileError as e:
            for problem in e.problems:
                print(f"{e.source}: {problem}")
            worst = EXIT_USAGE
            continue
        except (UserError, DataError) as e:
            print(f"{ref}: {e}")
            worst = EXIT_USAGE
            continue
        print(f"{path}: ok ({profile.method.type} on {profile.model.name}, data {profile.data.path})")
    return worst


def cmd_profile_new(args: argparse.Namespace) -> int:
    dest = user_profiles_dir() / f"{args.name}.toml"
    if dest.exists() and not args.force:
        raise UserError(f"{dest} already exists; pick another name or pass --force to replace it")
    base = load_profile(profile_path(args.template)) if args.template else Profile()
    raw = base.to_dict()
    if args.model:
        raw["model"]["name"] = args.model
    if args.method:
        raw["method"]["type"] = args.method
        if args.method == "qlora":
            raw["train"]["optimizer"] = "auto"
    if args.data:
        raw["data"]["path"] = str(Path(args.data).expanduser().resolve()) if is_local(args.data) else args.data
    if not raw["data"]["path"]:
        raw["data"]["path"] = str(bundled_profiles_dir() / "data" / "tiny-chat.jsonl")
    profile = profile_from_dict(raw, str(dest))
    if args.description:
        profile = replace(profile, description=args.description)
    save_profile(profile, dest)
    print(f"wrote {dest}")
    print(f"  check it: studio profile check {dest}\n  run it:   studio run {args.name}")
    return EXIT_OK


def cmd_profile_list(args: argparse.Namespace) -> int:
    items = []
    for name, origin, path in all_profiles():
        try:
            p = load_profile(path)
            items.append({"name": name, "origin": origin, "path": str(path), "model": p.model.name,
                          "method": p.method.type, "description": p.description, "valid": True})
        except ProfileError as e:
            items.append({"name": name, "origin": origin, "path": str(path), "valid": False, "problems": e.problems})
    if args.json:
        print(json.dumps(items, indent=2))
        return EXIT_OK
    if not items:
        print("no profiles; create one with `studio profile new NAME`")
    for it in items:
        what = f"{it['method']:5} {it['model']}" if it["valid"] else f"INVALID: {it['problems'][0]}"
        print(f"{it['name']:32} {it['origin']:7} {what}")
    return EXIT_OK


def cmd_profile_show(args: argparse.Namespace) -> int:
    print(load_profile(profile_path(args.profile)).to_toml(), end="")
    return EXIT_OK


# ---------------------------------------------------------------- runs

class Follower:
    """Prints a run's events as they arrive: a redrawn progress line on a terminal."""

    def __init__(self, run: Run, stream: Any):
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

    def __call__(self, e: dict[str, Any]) -> None:
        kind = e.get("event")
        if kind == "step":
            line = display.step_line(e)
            if self.tty:
                self.out.write("\r\033[K" + line)
                self.out.flush()
                self.open_line = True
            elif time.monotonic() - self.last_step_print >= 1.0 or e.get("step") == e.get("max_steps"):
                self._line(line)
                self.last_step_print = time.monotonic()
        elif kind == "download":
            text = (f"downloading {e.get('what')} {e.get('name')}: {display.size_bytes(e.get('bytes'))}"
                    f" of {display.size_bytes(e.get('total_bytes'))}"
                    + (f" at {display.size_bytes(e.get('rate_bytes_s'))}/s" if e.get("rate_bytes_s") else "")
                    + (" done" if e.get("done") else ""))
            if self.tty and not e.get("done"):
                self.out.write("\r\033[K" + text)
                self.open_line = True
            else:
                self._line(text)
        elif kind == "preflight":
            for line in display.preflight_lines(e):
                self._line(line)
        elif kind == "start":
            self._line(display.start_line(e))
        elif kind == "eval":
            self._line(f"eval loss {e.get('eval_loss'):.4f} at step {e.get('step')}")
        elif kind == "checkpoint":
            self._line(f"checkpoint saved at step {e.get('step')}")
        elif kind == "stopping":
            self._line(f"stopping at step {e.get('step')}: finishing the step and saving a checkpoint")
        elif kind == "end":
            for line in display.end_lines(e, self.run.id):
                self._line(line)

    def finish(self) -> None:
        if self.open_line:
            self.out.write("\n")
            self.out.flush()


def _watch(run: Run, proc: subprocess.Popen[bytes] | None, quiet: bool, tail: EventTail) -> str:
    """Follow a run to its end; Ctrl+C asks it to stop gracefully, a second Ctrl+C kills it."""
    stream = sys.stderr if quiet else sys.stdout
    printer = Follower(run, stream)
    interrupts = 0
    while True:
        try:
            status = follow(run, printer, tail, proc=proc)
            printer.finish()
            if status == "crashed":
                print(f"run {run.id} crashed: the trainer exited without a final event; "
                      f"see `studio logs {run.id}`; `studio resume {run.id}` continues from the last checkpoint",
                      file=stream)
            return status
        except KeyboardInterrupt:
            interrupts += 1
            printer.finish()
            printer.open_line = False
            if interrupts == 1:
                print("stopping gracefully: the trainer finishes its step and saves (Ctrl+C again kills it)",
                      file=stream, flush=True)
                try:
                    stop_run(run, wait_s=0)
                except RunError:
                    pass
            else:
                print("killing the run", file=stream, flush=True)
                try:
                    stop_run(run, force=True)
                except RunError:
                    pass


def _exit_for(status: str) -> int:
    return {"completed": EXIT_OK, "stopped": EXIT_STOPPED, "running": EXIT_OK}.get(status, EXIT_FAILED)


def _report(run: Run, status: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"id": run.id, "dir": str(run.dir), "status": status}))
    elif status == "running":
        print(f"run {run.id} started in the background (pid {run.pid})\n"
              f"  follow: studio logs {run.id} --follow\n  stop:   studio stop {run.id}")


def _detach_or_follow(run: Run, proc: subprocess.Popen[bytes], tail: EventTail, args: argparse.Namespace) -> int:
    if args.detach:
        _report(run, "running", args.json)
        return EXIT_OK
    status = _watch(run, proc, args.json, tail)
    _report(run, status, args.json)
    return _exit_for(status)


def cmd_run(args: argparse.Namespace) -> int:
    run, proc = start_run(profile_path(args.profile), args.max_steps, args.node_rank)
    tail = events_tail(run, from_start=True)
    if not args.json:
        print(f"run {run.id}: {run.dir}")
    return _detach_or_follow(run, proc, tail, args)


def cmd_resume(args: argparse.Namespace) -> int:
    run = find_run(args.run)
    tail = events_tail(run, from_start=False)
    proc = resume_run(run)
    checkpoint = run.last_complete_checkpoint()
    if not args.json:
        print(f"resuming run {run.id} from {checkpoint.name if checkpoint else 'the start'}")
    return _detach_or_follow(run, proc, tail, args)


def cmd_runs(args: argparse.Namespace) -> int:
    summaries = [r.summary() for r in list_runs()]
    if args.json:
        print(json.dumps(summaries, indent=2))
        return EXIT_OK
    if not summaries:
        print("no runs yet; start one with `studio run tiny-demo`")
    for s in summaries:
        loss = f"{s['loss']:.4f}" if isinstance(s["loss"], (int, float)) else "-"
        print(f"{s['id']:40} {s['status']:9} step {s['step']}/{s['max_steps'] or '?':<6} loss {loss}")
    return EXIT_OK


def cmd_stop(args: argparse.Namespace) -> int:
    run = find_run(args.run)
    if not args.force:
        print(f"asking run {run.id} to stop: it finishes its step and saves a checkpoint")
    status = stop_run(run, force=args.force, wait_s=0 if args.no_wait else args.timeout)
    end = run.timeline().end
    if end and status != "stopping":
        for line in display.end_lines(end, run.id):
            print(line)
    else:
        print(f"run {run.id}: {status}")
    return EXIT_OK


def cmd_logs(args: argparse.Namespace) -> int:
    run = find_run(args.run)
    if not run.log_path.exists():
        print(f"run {run.id} has no log yet")
        return EXIT_OK
    offset = 0
    while True:
        alive = run.is_alive()
        with run.log_path.open("rb") as f:
            f.seek(offset)
            chunk = f.read()
        offset += len(chunk)
        sys.stdout.write(chunk.decode("utf-8", errors="replace"))
        sys.stdout.flush()
        if not (args.follow and alive):
            break
        time.sleep(0.3)
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    run = find_run(args.run)
    if run.status() == "running":
        raise UserError(f"run {run.id} is still running; stop it first or wait until it ends")
    if not (run.dir / FINAL).is_dir() and run.last_complete_checkpoint() is None:
        raise UserError(f"run {run.id} has nothing to export yet (no final/ and no checkpoint)")
    out = Path(args.out).expanduser().resolve()
    if out.exists() and any(out.iterdir()) and not args.force:
        raise UserError(f"{out} exists and is not empty; choose another --out or pass --force to overwrite")
    cmd = [sys.executable, "-m", "studio.trainer.export", str(run.dir), str(out)] + (["--merge"] if args.merge else [])
    return subprocess.run(cmd).returncode


# ---------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="studio", description="Fine-tune LLMs from the terminal.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    prof = sub.add_parser("profile", help="create, list and check TOML profiles")
    psub = prof.add_subparsers(dest="profile_command", metavar="ACTION", required=True)
    p = psub.add_parser("check", help="validate profiles; exit 2 with one line per problem")
    p.add_argument("files", nargs="+", help="profile files or names")
    p.add_argument("--data", action="store_true", help="also read the dataset and check its rows")
    p.set_defaults(func=cmd_profile_check)
    p = psub.add_parser("new", help="write a starting profile into your studio home")
    p.add_argument("name")
    p.add_argument("--model", help="hub id or local folder")
    p.add_argument("--method", choices=METHODS)
    p.add_argument("--data", help="dataset file or hub id")
    p.add_argument("--from", dest="template", help="start from this profile (name or file)")
    p.add_argument("--description", help="one line about the profile")
    p.add_argument("--force", action="store_true", help="replace an existing profile of that name")
    p.set_defaults(func=cmd_profile_new)
    p = psub.add_parser("list", help="bundled and user profiles")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_profile_list)
    p = psub.add_parser("show", help="print a profile with every default filled in")
    p.add_argument("profile")
    p.set_defaults(func=cmd_profile_show)

    p = sub.add_parser("run", help="start a training run from a profile and follow it")
    p.add_argument("profile", help="profile file or name (e.g. tiny-demo)")
    p.add_argument("--detach", action="store_true", help="return at once; the run goes on in the background")
    p.add_argument("--json", action="store_true", help='print {"id", "dir", "status"} (progress goes to stderr)')
    p.add_argument("--max-steps", type=int, help="override train.max_steps for this run")
    p.add_argument("--node-rank", type=int, help="multi-node: this machine's rank (overrides hardware.machine_rank)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("runs", help="list runs and their status")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("stop", help="stop a run gracefully (checkpoint + adapter), or kill it")
    p.add_argument("run", help="run id, unique part of it, folder, or `last`")
    p.add_argument("--force", action="store_true", help="kill the process group at once (nothing is saved)")
    p.add_argument("--no-wait", action="store_true", help="return without waiting for the run to end")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for a graceful stop")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("resume", help="continue a stopped or crashed run from its last complete checkpoint")
    p.add_argument("run")
    p.add_argument("--detach", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("logs", help="print a run's trainer log")
    p.add_argument("run")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing while the run is going")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("export", help="copy the adapter out of a run, or merge it into the base model")
    p.add_argument("run")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--merge", action="store_true", help="write a merged full model instead of the adapter")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out folder")
    p.set_defaults(func=cmd_export)
    add_plan_commands(sub)

    p = sub.add_parser("ui", help="open the app (the same as `studio` alone)")
    p.set_defaults(func=cmd_ui)
    p = sub.add_parser("demo", help="start the tiny demo run and watch it in the app")
    p.add_argument("--max-steps", type=int, help="override the demo's max_steps")
    p.add_argument("--headless", action="store_true", help="start the run only; print its id as JSON")
    p.set_defaults(func=cmd_demo)
    return parser


def cmd_ui(args: argparse.Namespace) -> int:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        build_parser().print_help()
        print("\n(no terminal: the app needs one; the commands above work anywhere)")
        return EXIT_OK
    from studio.ui.app import run_app

    return run_app()


def cmd_demo(args: argparse.Namespace) -> int:
    """Start the tiny demo run and open the app on its monitor."""
    run, _ = start_run(profile_path("tiny-demo"), args.max_steps)
    if args.headless:
        print(json.dumps({"id": run.id, "dir": str(run.dir), "status": "running"}))
        return EXIT_OK
    from studio.ui.app import run_app

    return run_app(open_run=run)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        args.func = cmd_ui
    try:
        return int(args.func(args))
    except ProfileError as e:
        for problem in e.problems:
            print(f"{e.source}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except (UserError, RunError, DataError, PlanError) as e:
        print(f"studio: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
