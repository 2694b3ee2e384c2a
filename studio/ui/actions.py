"""The run actions (stop, kill, resume, export, ...): one table of typed entries, each with its key, when it
applies and what it does (calling studio.runs itself), for key bindings, the footer, the command palette and
the help screen alike. The app only hosts the screens and dialogs these open."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table
from textual.app import SystemCommand
from textual.binding import Binding

from studio.runs.status import RunStatus

if TYPE_CHECKING:
    from studio.runs.folder import Run
    from studio.ui.dialogs import ExportChoice


def always(status: RunStatus | None) -> bool:
    return True


def live(status: RunStatus | None) -> bool:
    return status is not None and status.live


def resumable(status: RunStatus | None) -> bool:
    return status is not None and status.resumable


def has_result(status: RunStatus | None) -> bool:
    """Over and readable: what it saved can be exported or chatted with (the action says when nothing was)."""
    return status is not None and not status.live and status not in (RunStatus.DAMAGED, RunStatus.UNREADABLE)


@dataclass(frozen=True)
class RunAction:
    """One run action: its key, its palette title, its help, when it applies (from the run's status: the
    footer offers it only then, and the key does nothing otherwise) and what it does (`do(screen, run)`)."""

    key: str
    name: str          # the screen's action_<name>, made from this table
    title: str         # the palette's command
    help: str
    applies: Callable[[RunStatus | None], bool]
    do: Callable[[RunActions, Run], None]


# ----------------------------------------------------------------- what each action does (runs/, then a toast)

def stop(screen: RunActions, run: Run) -> None:
    ask_then_stop(screen, run, force=False)


def kill(screen: RunActions, run: Run) -> None:
    ask_then_stop(screen, run, force=True)


def ask_then_stop(screen: RunActions, run: Run, force: bool) -> None:
    from studio.runs.folder import RunError
    from studio.runs.launcher import stop_run
    from studio.ui.dialogs import Confirm

    question = (f"kill run {run.id} now? steps since the last checkpoint are lost" if force
                else f"stop run {run.id}? it finishes its step and saves a checkpoint")

    def done(yes: bool | None) -> None:
        if not yes:
            return
        try:
            stop_run(run, force=force, wait_s=0)
        except RunError as e:
            screen.notify(str(e), severity="warning")
            return
        screen.notify(f"killed run {run.id}" if force else f"stopping run {run.id}: it saves a checkpoint first")

    screen.app.push_screen(Confirm(question), done)


def resume(screen: RunActions, run: Run) -> None:
    """In a worker: a trainer that wrote its end may take seconds to exit first."""
    from studio.runs.folder import RunError
    from studio.runs.launcher import resume_note, resume_run

    def work() -> None:
        try:
            resumed = resume_run(run)
        except RunError as e:
            screen.app.call_from_thread(screen.notify, str(e), severity="warning")
            return
        job = f"; resubmitted to Slurm as job {resumed.slurm_job}" if resumed.slurm_job else ""
        screen.app.call_from_thread(screen.notify, resume_note(run) + job)

    screen.run_worker(work, thread=True, group="resume")
    screen.resumed()


def export(screen: RunActions, run: Run) -> None:
    """Ask where to and as what, when the run has something to export (else say why, without a dialog); export
    in a worker, saying every few seconds that it still works."""
    from studio.runs.export import check_exportable, check_push_name, export_target, space_warning
    from studio.runs.folder import RunError
    from studio.ui.dialogs import Confirm, ExportDialog

    try:
        check_exportable(run)
    except RunError as e:
        screen.notify(str(e), title="cannot export", severity="warning", timeout=10)
        return

    def done(choice: ExportChoice | None) -> None:
        if not choice:
            return
        try:
            if choice.push:
                check_push_name(choice.push)
            out = export_target(run, Path(choice.folder))
        except RunError as e:
            screen.notify(str(e), title="cannot export", severity="error", timeout=10)
            return
        warning = space_warning(run, out, choice.merge, choice.gguf)
        if warning:  # asked first: a full disk mid-export writes nothing, after minutes
            screen.app.push_screen(Confirm(f"{warning}. Export anyway?"),
                                   lambda yes: yes and start(out, choice))
            return
        start(out, choice)

    def start(out: Path, choice: ExportChoice) -> None:
        screen.run_worker(lambda: export_in_background(screen.app, run, out, choice), thread=True, group="export")

    screen.app.push_screen(ExportDialog(run.id, str(Path.home() / f"{run.id}-export")), done)


def export_marked(screen: RunActions, runs: list[Run], done: Callable[[], None]) -> None:
    """Export every marked run the same way, each into its own folder (FOLDER/<run id>), one after another in
    the background; runs with nothing to export are left out and named."""
    from studio.runs.export import check_exportable, export_target, space_warning
    from studio.runs.folder import RunError
    from studio.ui.dialogs import ExportDialog

    ready, skipped = [], []
    for run in runs:
        try:
            check_exportable(run)
            ready.append(run)
        except RunError as e:
            skipped.append(f"{run.id} ({e})")
    if not ready:
        screen.notify("no marked run has anything to export: " + "; ".join(skipped)[:300], title="cannot export",
                      severity="warning", timeout=10)
        return

    def chosen(choice: ExportChoice | None) -> None:
        if not choice:
            return
        if choice.push:
            screen.notify("a push names one Hub repository: export marked runs without it, and push each from its "
                          "monitor (x)", title="cannot export", severity="error", timeout=10)
            return
        targets = []
        try:
            for run in ready:
                targets.append((run, export_target(run, Path(choice.folder) / run.id)))
        except RunError as e:
            screen.notify(str(e), title="cannot export", severity="error", timeout=10)
            return
        for run, out in targets:
            warning = space_warning(run, out, choice.merge, choice.gguf)
            if warning:
                screen.notify(f"{run.id}: {warning}", title="not enough room", severity="warning", timeout=10)
        done()

        def all_of_them() -> None:
            for run, out in targets:
                export_in_background(screen.app, run, out, choice)

        screen.run_worker(all_of_them, thread=True, group="export")

    left_out = f" (left out, nothing to export: {'; '.join(skipped)[:200]})" if skipped else ""
    screen.app.push_screen(ExportDialog(
        ready[0].id, str(Path.home() / "studio-exports"),
        heading=f"export {len(ready)} marked run{'s' if len(ready) != 1 else ''}, each into its own folder "
                f"(FOLDER/<run id>), one after another{left_out}; FOLDER:"), chosen)


EXPORT_PROGRESS_S = 4.0  # how often a running export says it still works


def export_in_background(app: Any, run: Run, out: Path, choice: ExportChoice) -> None:
    """The export's own process, followed: a toast every EXPORT_PROGRESS_S with the seconds and its latest line,
    registered in `app.exports` while it runs (quitting asks first), and its outcome."""
    import subprocess
    import threading
    import time

    from studio.runs.export import export_command

    what = ", ".join(w for w, on in (("merged", choice.merge), (f"GGUF {choice.gguf}", choice.gguf),
                                     ("Ollama", choice.ollama), (f"push to {choice.push}", choice.push)) if on)
    what = what or "the adapter or model as trained"
    tell = app.call_from_thread
    tell(app.notify, f"exporting run {run.id} to {out} ({what})")
    cmd = export_command(run, out, choice.merge, choice.gguf, choice.ollama, choice.push, choice.private)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    app.exports[proc.pid] = (proc, f"run {run.id} ({what})")
    started = time.monotonic()
    try:
        while proc.poll() is None:
            try:
                proc.wait(EXPORT_PROGRESS_S)
            except subprocess.TimeoutExpired:
                latest = next((line.strip() for line in reversed(lines) if line.strip()), "")
                tell(app.notify, f"still exporting run {run.id} ({what}): {time.monotonic() - started:.0f} s"
                                 + (f"; {latest[:80]}" if latest else ""), timeout=EXPORT_PROGRESS_S)
    finally:
        app.exports.pop(proc.pid, None)
    reader.join(5)
    text = "".join(lines).strip()
    if proc.returncode == 0:
        tell(app.notify, "\n".join(line for line in text.splitlines() if not line.startswith("note: removing"))[-600:]
             or f"exported run {run.id} to {out}", timeout=10)
    elif proc.returncode > 0:
        tell(app.notify, text[-300:], title="export failed", severity="error", timeout=10)


def chat(screen: RunActions, run: Run) -> None:
    screen.app.open_chat(run)


def describe(screen: RunActions, run: Run) -> None:
    """The run whole, in a scrollable dialog (what `studio describe` prints)."""
    from rich.text import Text

    from studio.runs.describe import describe as description, describe_lines
    from studio.terminal import safe
    from studio.ui.dialogs import Help

    screen.app.push_screen(Help(Text("\n".join(safe(line) for line in describe_lines(description(run))))))


def copy_id(screen: RunActions, run: Run) -> None:
    screen.app.copy_to_clipboard(run.id)
    screen.notify(f"copied {run.id}")


def copy_path(screen: RunActions, run: Run) -> None:
    screen.app.copy_to_clipboard(str(run.dir))
    screen.notify(f"copied {run.dir}")


def shell(screen: RunActions, run: Run) -> None:
    """$SHELL in the run folder with the app suspended (over SSH too); the app comes back when it exits."""
    import os
    import subprocess

    from textual.app import SuspendNotSupported

    program = os.environ.get("SHELL") or "/bin/sh"
    try:
        with screen.app.suspend():
            print(f"studio: a shell in {run.dir}; exit comes back to studio", flush=True)
            subprocess.call([program], cwd=run.dir)
    except SuspendNotSupported:
        screen.notify(f"this terminal cannot hand over to a shell; cd {run.dir} outside the app", severity="warning")
    except OSError as e:
        screen.notify(f"cannot run {program}: {e.strerror or e}; set $SHELL", severity="error")


def note(screen: RunActions, run: Run) -> None:
    from studio.runs.describe import write_note
    from studio.runs.folder import RunError
    from studio.ui.dialogs import NoteDialog

    def done(text: str | None) -> None:
        if text is None:
            return
        try:
            write_note(run, text)
        except RunError as e:
            screen.notify(str(e), title="note not kept", severity="error", timeout=10)
            return
        screen.notify(f"noted on run {run.id}" if text.strip() else f"removed the note of run {run.id}")
        screen.app.refresh_dashboards()

    screen.app.push_screen(NoteDialog(run.id, run.note()), done)


def archive(screen: RunActions, run: Run) -> None:
    from studio.paths import archive_dir
    from studio.runs.describe import archive_run

    confirm_then(screen, run, f"archive run {run.id}? It leaves the list, whole, for {archive_dir()}; "
                              f"`studio unarchive {run.id}` brings it back", archive_run,
                 lambda dest: f"archived run {run.id} to {dest}; `studio unarchive {run.id}` brings it back",
                 "not archived")


def delete(screen: RunActions, run: Run) -> None:
    from studio.runs.describe import delete_run

    confirm_then(screen, run, f"delete run {run.id} and everything in it (checkpoints, final weights, logs)? "
                              "This cannot be undone.", delete_run, lambda _: f"deleted run {run.id}", "not deleted")


BULK = {"archive": ("archive", "archived", "not archived"), "delete": ("delete", "deleted", "not deleted")}
MARKED_ACTIONS = (*BULK, "export")  # with runs marked on the dashboard, these act on the marked runs


def on_marked(screen: RunActions, name: str, runs: list[tuple[Run, Any]], done: Callable[[], None]) -> None:
    """Archive or delete every marked run, after one question; runs still going are left out and named.
    `runs` holds (run, its status as last read); `done` follows a yes (the marks are cleared)."""
    from studio.runs.describe import archive_run, delete_run
    from studio.runs.folder import RunError
    from studio.ui.dialogs import Confirm

    verb, did, failed = BULK[name]
    live = [run.id for run, status in runs if status is not None and status.live]
    over = [run for run, status in runs if not (status is not None and status.live)]
    if not over:
        screen.notify(f"every marked run is still going ({', '.join(live)}): stop them first (s)", title=failed,
                      severity="warning", timeout=8)
        return
    act = archive_run if name == "archive" else delete_run
    names = ", ".join(run.id for run in over[:3]) + (f" and {len(over) - 3} more" if len(over) > 3 else "")
    question = (f"{verb} {len(over)} marked run{'s' if len(over) != 1 else ''} ({names})"
                + ("? They leave the list, whole, for the archive (a lists it; u there brings one back)"
                   if name == "archive" else " and everything in them? This cannot be undone.")
                + (f" Left out, still going: {', '.join(live)}." if live else ""))

    def answered(yes: bool | None) -> None:
        if not yes:
            return
        problems = []
        for run in over:
            try:
                act(run)
            except (RunError, OSError) as e:
                problems.append(str(e))
            else:
                screen.app.leave_monitor_of(run)
        count = len(over) - len(problems)
        screen.notify(f"{did} {count} run{'s' if count != 1 else ''}" + (f"; {len(problems)} {failed}: " +
                                                                             "; ".join(problems[:2]) if problems else ""),
                      severity="error" if problems else "information", timeout=10)
        done()
        screen.app.refresh_dashboards()

    screen.app.push_screen(Confirm(question), answered)


def confirm_then(screen: RunActions, run: Run, question: str, act: Callable[[Run], Any],
                 said: Callable[[Any], str], failed: str) -> None:
    """Archive or delete: refused at once for a run still going (naming the key that stops it), else asked."""
    from studio.runs.folder import RunError
    from studio.ui.dialogs import Confirm

    status = screen.acting_status()
    if status is not None and status.live:
        screen.notify(f"run {run.id} is {status}: stop it first (s), then try again", title=failed,
                      severity="warning", timeout=8)
        return

    def done(yes: bool | None) -> None:
        if not yes:
            return
        try:
            result = act(run)
        except (RunError, OSError) as e:
            screen.notify(str(e), title=failed, severity="error", timeout=10)
            return
        screen.notify(said(result), timeout=8)
        screen.app.leave_monitor_of(run)
        screen.app.refresh_dashboards()

    screen.app.push_screen(Confirm(question), done)


RUN_ACTIONS = (
    RunAction("s", "stop", "Stop run", "gracefully stop: finish the step, save a checkpoint and the adapter", live,
              stop),
    RunAction("K", "kill", "Kill run", "kill now (shift+k, so it is never a slip); steps since the last checkpoint "
                                       "are lost", live, kill),
    RunAction("u", "resume", "Resume run", "continue a stopped or crashed run from its last checkpoint", resumable,
              resume),
    RunAction("x", "export", "Export run", "write the adapter, or a merged model, to a folder", has_result, export),
    RunAction("c", "chat", "Chat with run", "talk to what the run trained, side by side with the base model",
              has_result, chat),
    RunAction("d", "describe", "Describe run", "the run whole: its profile, the plan and why each auto was decided, "
                                               "devices and versions", always, describe),
    RunAction("y", "copy_id", "Copy run id", "copy the run's id to the clipboard (OSC 52: works over SSH too)",
              always, copy_id),
    RunAction("P", "copy_path", "Copy run folder", "copy the run folder's path to the clipboard (OSC 52)", always,
              copy_path),
    RunAction("exclamation_mark", "shell", "Shell in run folder", "a shell ($SHELL) in the run folder, the app "
                                                                  "suspended; exit comes back", always, shell),
    RunAction("t", "note", "Note on run", "your note on the run (why it ran, what it showed); the runs filter finds "
                                          "it, describe shows it", always, note),
    RunAction("A", "archive", "Archive run", "move a run that is over (or every marked one) into the archive, "
                                             "whole; asks first", always, archive),
    RunAction("D", "delete", "Delete run", "delete a run that is over (or every marked one) with everything in it; "
                                           "asks first", always, delete),
)
BY_NAME = {a.name: a for a in RUN_ACTIONS}


class RunActions:
    """The run actions of a screen, for the run `acting_run` names (the Runs list's cursor on the dashboard, the
    watched run in the monitor), each done by its entry in RUN_ACTIONS. Mixed into a Screen: `check_action`
    offers an action (footer, key, palette) only where it applies to the run's status, and the screen calls
    `refresh_bindings()` when that status changes."""

    app: Any
    notify: Callable[..., None]
    run_worker: Callable[..., Any]

    def acting_run(self) -> Run | None:
        raise NotImplementedError

    def acting_status(self) -> RunStatus | None:
        """The acting run's status as the screen last read it (None: not known yet, or no run)."""
        raise NotImplementedError

    def resumed(self) -> None:
        """Called after a resume is asked for (the monitor repaints)."""

    def applies(self, name: str) -> bool:
        action = BY_NAME.get(name)
        return action is None or action.applies(self.acting_status())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.applies(action)

    def act(self, name: str) -> None:
        if self.applies(name) and (run := self.acting_run()):
            BY_NAME[name].do(self, run)


def _action_method(name: str) -> Callable[[RunActions], None]:
    def method(self: RunActions) -> None:
        self.act(name)
    method.__name__ = f"action_{name}"
    method.__doc__ = BY_NAME[name].help
    return method


for _action in RUN_ACTIONS:  # every entry is a screen action; no action exists without its entry
    setattr(RunActions, f"action_{_action.name}", _action_method(_action.name))


def run_action_commands(screen: RunActions, which: str) -> Iterator[SystemCommand]:
    """The palette's commands for the run actions that apply now ("the selected run", "this run")."""
    for a in RUN_ACTIONS:
        if screen.applies(a.name):
            yield SystemCommand(a.title, f"{which}: {a.help}", getattr(screen, f"action_{a.name}"))


def run_bindings(shown: tuple[str, ...] = ("s",)) -> list[Binding]:
    """Key bindings for the run actions; `shown` are the keys the footer lists (when they apply)."""
    return [Binding(a.key, a.name, a.title.split()[0], show=a.key in shown) for a in RUN_ACTIONS]


GENERAL_KEYS = (("tab / shift+tab", "move between the lists, fields and buttons"),
                ("enter", "open what the cursor is on; in a dialog, answer it"),
                ("esc", "back, or cancel a dialog or a search"))


def help_table(bindings: list[Binding], display: Callable[[Binding], str],
               general: tuple[tuple[str, str], ...] = (), columns: int = 1) -> Table:
    """`key  description` for each binding of a screen, the keys as they are typed ("/", "?", "^p"; keys
    bound together joined by " / "); descriptions wrap in their own column. With `columns=2` (a wide terminal)
    the rows are laid out in two halves side by side, so that a screen of many keys fits without scrolling."""
    titles = {a.name: a.help for a in RUN_ACTIONS}
    rows = list(general)
    for b in bindings:
        action = b.action.split(".")[-1].split("(")[0]
        keys = " / ".join(display(Binding(k.strip(), b.action, b.description)) for k in b.key.split(","))
        rows.append((keys, titles.get(action, b.tooltip or b.description)))  # a tooltip says more than the footer
    return laid_out(rows, columns)


def laid_out(rows: list[tuple[str, str]], columns: int = 1) -> Table:
    """Rows of (key or mark, what it means) in one column, or with `columns=2` and enough rows, in two halves
    side by side."""
    if columns < 2 or len(rows) < 6:
        return key_table(rows)
    # Split where the wrapped heights balance (a description of ~40 characters takes a line in either half).
    heights = [1 + len(what) // 40 for _, what in rows]
    total, run_sum, half = sum(heights), 0, len(rows)
    for i, h in enumerate(heights):
        if run_sum + h / 2 >= total / 2:
            half = i
            break
        run_sum += h
    outer = Table.grid(padding=(0, 3), expand=True)
    outer.add_column(ratio=1)
    outer.add_column(ratio=1)
    outer.add_row(key_table(rows[:half]), key_table(rows[half:]))
    return outer


def key_table(rows: list[tuple[str, str]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for keys, what in rows:
        table.add_row(keys, what)
    return table
