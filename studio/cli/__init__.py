"""The headless command line: `studio <command>`. Never imports the training stack.

Commands live by topic: profiles.py, runs.py (the run lifecycle), plan.py (GPUs,
estimates, advice, probes); this module builds the parser and turns errors a
user can cause into one line and exit code 2.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from typing import TYPE_CHECKING

from studio.cli.errors import EXIT_OK, EXIT_USAGE, UserError
from studio.runs.status import RunStatus

if TYPE_CHECKING:
    from studio.runs.folder import Run


def cmd_ui(args: argparse.Namespace) -> int:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        args.print_help()
        print("\n(no terminal: the app needs one; the commands above work anywhere)")
        return EXIT_OK
    return open_app()


def cmd_attach(args: argparse.Namespace) -> int:
    """The app on a run's monitor: the one named, or else the one training."""
    from studio.cli.errors import UserError
    from studio.runs.folder import find_run
    from studio.runs.summary_cache import training_runs

    if args.run:
        run = find_run(args.run)
    else:
        training = training_runs()
        if len(training) != 1:
            names = ", ".join(r.id for r in training[-5:])
            raise UserError("no run is training: name one (`studio attach RUN`; `studio runs` lists them)"
                            if not training else f"{len(training)} runs are training ({names}): name one, "
                                                 "`studio attach RUN`")
        run = training[0]
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UserError("studio attach opens the app, which needs a terminal")
    return open_app(open_run=run)


def cmd_demo(args: argparse.Namespace) -> int:
    """Start the tiny demo run and open the app on its monitor."""
    from studio.profiles.library import profile_path
    from studio.runs.start import start_run

    run = start_run(profile_path("tiny-demo"), args.max_steps).run
    if args.headless:
        print(json.dumps({"id": run.id, "dir": str(run.dir), "status": RunStatus.RUNNING}))
        return EXIT_OK
    return open_app(open_run=run)


def open_app(open_run: Run | None = None) -> int:
    # Start-up allocates what lives as long as the app (Textual's classes, styles, widgets): collecting it
    # while the first frame is built only costs time. The app freezes it and collects again once drawn.
    gc.disable()
    from studio.ui.app import run_app

    return run_app(open_run=open_run)


def build_parser() -> argparse.ArgumentParser:
    # The command modules load here, not at import: `studio` alone opens the app without them.
    from studio.cli.chat import add_chat_command
    from studio.cli.plan import add_plan_commands
    from studio.cli.profiles import add_profile_commands
    from studio.cli.runs import add_run_commands

    parser = argparse.ArgumentParser(prog="studio", description="Fine-tune LLMs from the terminal.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_profile_commands(sub)
    add_run_commands(sub)
    add_plan_commands(sub)
    add_chat_command(sub)
    p = sub.add_parser("ui", help="open the app (the same as `studio` alone)")
    p.set_defaults(func=cmd_ui)
    p = sub.add_parser("demo", help="start the tiny demo run and watch it in the app")
    p.add_argument("--max-steps", type=int, help="override the demo's max_steps")
    p.add_argument("--headless", action="store_true", help="start the run only; print its id as JSON")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("attach", help="open the app on a run's monitor (the one training, when it is the only one)")
    p.add_argument("run", nargs="?", help="run id, unique part of it, folder, or `last`")
    p.set_defaults(func=cmd_attach)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    os.umask(0o077)  # whatever the shell's umask: every file and folder studio writes is the owner's alone
    if not argv and sys.stdin.isatty() and sys.stdout.isatty():
        args = argparse.Namespace(func=cmd_ui)  # the app, without building every command's parser
    else:
        parser = build_parser()
        args = parser.parse_args(argv)
        args.print_help = parser.print_help
        if not getattr(args, "func", None):
            args.func = cmd_ui
    if args.func is not cmd_ui:  # the app draws its own screen; every other command's words go through here
        from studio.terminal import protect_streams

        protect_streams()
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:
        return user_error(e)


def user_error(e: Exception) -> int:
    """One line per problem and exit code 2 for errors a user can cause; anything else is a bug: re-raised.
    (The error types are imported here, not at the top: `studio` alone must open the app fast.)"""
    from studio.data import DataError
    from studio.planning.layout import LayoutError
    from studio.profiles.profile import ProfileError
    from studio.runs.folder import RunError

    if isinstance(e, ProfileError):
        for problem in e.problems:
            print(f"{e.source}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(e, (UserError, RunError, DataError, LayoutError)):
        print(f"studio: {e}", file=sys.stderr)
        return EXIT_USAGE
    raise e


if __name__ == "__main__":
    sys.exit(main())
