"""`studio profile check|new|list|show|preview`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from studio.cli.errors import EXIT_OK, EXIT_USAGE, UserError
from studio.data import DataError
from studio.data_preview import PreviewError, data_preview, plain_preview, preview_lines
from studio.profiles.library import all_profiles, new_profile, profile_path
from studio.profiles.profile import Profile, ProfileError, load_profile
from studio.profiles.vocabulary import METHODS, OBJECTIVES
from studio.planning.checks import reference_problems
from studio.runs.start import check_data


def cmd_profile_check(args: argparse.Namespace) -> int:
    worst = EXIT_OK
    for ref in args.files:
        try:
            path = profile_path(ref)
            profile = load_profile(path)
            problems = reference_problems(profile)
            if problems:
                raise ProfileError(str(path), problems)
            if args.data:
                check_data(profile)
        except ProfileError as e:
            for problem in e.problems:
                print(f"{e.source}: {problem}")
            worst = EXIT_USAGE
            continue
        except DataError as e:
            print(f"{ref}: {e}")
            worst = EXIT_USAGE
            continue
        print(f"{path}: ok ({profile.method.type} on {profile.model.name}, data {profile.data.path})")
    return worst


def cmd_profile_new(args: argparse.Namespace) -> int:
    base = load_profile(profile_path(args.template)) if args.template else Profile()
    dest = new_profile(args.name, base, model=args.model, method=args.method, objective=args.objective, data=args.data,
                       description=args.description, force=args.force, template=args.template)
    print(f"wrote {dest}")
    for problem in reference_problems(load_profile(dest)):
        print(f"  note: {problem}")
    print(f"  check it: studio profile check {dest.stem}\n  run it:   studio run {dest.stem}")
    return EXIT_OK


def cmd_profile_list(args: argparse.Namespace) -> int:
    items: list[dict[str, Any]] = []
    for entry in all_profiles():
        item: dict[str, Any] = {"name": entry.name, "origin": entry.origin, "path": str(entry.path)}
        try:
            p = load_profile(entry.path)
            item.update(model=p.model.name, method=p.method.type, description=p.description, valid=True)
        except ProfileError as e:
            item.update(valid=False, problems=e.problems)
        items.append(item)
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


def cmd_profile_preview(args: argparse.Namespace) -> int:
    path = profile_path(args.profile)
    problems = reference_problems(load_profile(path))  # said at once, before the tokenizer loads
    if problems:
        raise ProfileError(str(path), problems)
    try:
        result = data_preview(path, args.rows)
    except PreviewError as e:
        raise UserError(str(e)) from None
    if args.json:
        print(json.dumps(result))
        return EXIT_OK
    out = getattr(sys.stdout, "stream", sys.stdout)  # rich's colours go raw; the rows' text is escaped already
    if not out.isatty():
        out.write(plain_preview(result))
        return EXIT_OK
    from rich.console import Console
    from rich.text import Text

    Console(file=out, highlight=False, soft_wrap=True).print(Text.assemble(*preview_lines(result)), end="")
    return EXIT_OK


def add_profile_commands(sub: Any) -> None:
    prof = sub.add_parser("profile", help="create, list and check TOML profiles")
    psub = prof.add_subparsers(dest="profile_command", metavar="ACTION", required=True)
    p = psub.add_parser("check", help="validate profiles; exit 2 with one line per problem")
    p.add_argument("files", nargs="+", help="profile files or names")
    p.add_argument("--data", action="store_true", help="also read the dataset and check its rows")
    p.set_defaults(func=cmd_profile_check)
    p = psub.add_parser("new", help="write a starting profile into your studio home")
    p.add_argument("name", help="a plain name (no folders); the file is <studio home>/profiles/NAME.toml")
    p.add_argument("--model", help="hub id or local folder")
    p.add_argument("--method", choices=METHODS)
    p.add_argument("--objective", choices=OBJECTIVES, help="sft, or preference tuning: dpo, orpo, kto")
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
    p = psub.add_parser("preview", help="the first rows as the model sees them, with the trained tokens marked")
    p.add_argument("profile")
    p.add_argument("--rows", type=int, default=3, help="how many rows (default 3)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_profile_preview)
