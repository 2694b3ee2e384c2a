"""`studio chat RUN`: talk to what a run trained, token by token; or compare it with its base model."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from studio.cli.errors import EXIT_FAILED, EXIT_OK
from studio.runs.chat import ChatSession, ChatSettings
from studio.runs.folder import find_run

HELP = ("type a prompt; /system TEXT sets the system prompt, /temperature X, /top_p X, /max N change sampling, "
        "/quit (or Ctrl+D) ends")


def stats_line(done: dict[str, Any]) -> str:
    rate = f"{done['tokens_per_s']:.1f} tokens/s" if done.get("tokens_per_s") else "- tokens/s"
    return f"[{done.get('tokens', 0)} tokens · first after {done.get('ttft_s', 0):.2f} s · {rate}]"


def answer(session: ChatSession, prompt: str, settings: ChatSettings, out: TextIO) -> dict[str, Any]:
    """Stream one prompt's answer(s) to `out`; returns the answers, timings and errors by side."""
    result: dict[str, Any] = {"answers": {}, "ttft_s": {}, "tokens_per_s": {}, "tokens": {}, "errors": []}
    compare = len(session.sides) > 1
    current = None
    for record in session.ask(prompt, settings):
        kind, side = record.get("event"), record.get("side")
        if kind == "token":
            if compare and side != current:
                out.write(f"\n{side}: ")
            current = side
            out.write(record["text"])
            out.flush()
        elif kind == "done":
            out.write(("\n" if current else "") + f"  {stats_line(record)}\n")
            out.flush()
            current = None
            result["answers"][side] = record["text"]
            for key in ("ttft_s", "tokens_per_s", "tokens"):
                result[key][side] = record.get(key)
        elif kind == "error":
            out.write(f"\nerror{f' ({side})' if side else ''}: {record.get('message')}\n")
            result["errors"].append(record.get("message"))
    return result


def repl(session: ChatSession, settings: ChatSettings) -> None:
    print(HELP)
    while True:
        try:
            line = input("> ").strip()
        except EOFError:
            print()
            return
        if not line:
            continue
        if line in ("/quit", "/exit"):
            return
        if line.startswith("/"):
            command, _, value = line[1:].partition(" ")
            try:
                if command == "system":
                    settings.system = value
                elif command in ("temperature", "top_p"):
                    setattr(settings, command, float(value))
                elif command == "max":
                    settings.max_new_tokens = int(value)
                else:
                    print(HELP)
                    continue
            except ValueError:
                print(f"/{command}: not a number: {value!r}")
                continue
            print(f"ok: temperature {settings.temperature}, top_p {settings.top_p}, max {settings.max_new_tokens}, "
                  f"system {settings.system!r}")
            continue
        answer(session, line, settings, sys.stdout)


def cmd_chat(args: argparse.Namespace) -> int:
    run = find_run(args.run)
    mode = "compare" if args.compare else "base" if args.base else "tuned"
    session = ChatSession(run, args.checkpoint, mode)
    print(session.placement.notice, file=sys.stderr, flush=True)
    try:
        ready = session.start()
        what = "the base model" if mode == "base" else f"{ready.get('adapter')}"
        print(f"loaded {what} on {ready.get('device')} ({ready.get('dtype')}) in {ready.get('load_s')} s",
              file=sys.stderr, flush=True)
        if session.note:
            print(f"note: {session.note}", file=sys.stderr, flush=True)
        settings = ChatSettings(temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens,
                                system=args.system or "")
        if args.prompt is None:
            repl(session, settings)
            return EXIT_OK
        result = answer(session, args.prompt, settings, sys.stderr if args.json else sys.stdout)
        if args.json:
            print(json.dumps({"run": run.id, "mode": mode, "adapter": ready.get("adapter"), "device": ready.get("device"),
                              "load_s": ready.get("load_s"), **result}))
        return EXIT_FAILED if result["errors"] else EXIT_OK
    finally:
        session.close()


def add_chat_command(sub: Any) -> None:
    p = sub.add_parser("chat", help="talk to a run's model (or compare it with the base model)")
    p.add_argument("run", help="run id, unique part of it, folder, or `last`")
    p.add_argument("--checkpoint", type=int, help="a checkpoint's step (default: the final adapter, else the last one)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--base", action="store_true", help="the base model, without what the run trained")
    which.add_argument("--compare", action="store_true", help="answer with the base and the tuned model, one after the other")
    p.add_argument("--prompt", help="answer this one prompt and exit")
    p.add_argument("--json", action="store_true", help="with --prompt: print the answers and timings as JSON")
    p.add_argument("--system", help="system prompt (chat models)")
    p.add_argument("--temperature", type=float, default=0.7, help="0 for greedy, the same answer every time")
    p.add_argument("--top-p", dest="top_p", type=float, default=0.9)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.set_defaults(func=cmd_chat)
