"""The run monitor: status, progress, charts, the log, alerts and errors, and the export dialog."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from conftest import studio
from textual.widgets import DataTable
from ui_fixtures import (
    fake_inventory,
    live_trainer,
    long_profile,
    notifications,
    record_run,
    screen_text,
)
from ui_fixtures import studio_app as app
from waiting import front, until

from studio.profiles.profile import load_profile
from studio.runs.events import Start, Step, Timeline
from studio.runs.folder import Run, list_runs
from studio.runs.state import run_status
from studio.runs.status import RunStatus
from studio.ui.app import StudioApp
from studio.ui.dashboard import Dashboard
from studio.ui.dialogs import Confirm
from studio.ui.monitor import RunMonitor


async def test_oom_run_shows_the_revised_profile(studio_env: Path) -> None:
    run_dir = record_run(studio_env, status="oom")
    async with StudioApp(open_run=Run(run_dir), inventory=fake_inventory()).run_test(size=(120, 40)) as pilot:
        monitor = await front(pilot, RunMonitor)
        await until(pilot, lambda: "+grad_accum" in str(monitor.query_one("#error-panel").render()), "the revision")
        text = str(monitor.query_one("#error-panel").render())
        assert "failed (oom)" in text and "+batch_size = 2" in text and "+grad_accum = 8" in text


@pytest.mark.slow
async def test_start_watch_and_stop_a_run(studio_env: Path) -> None:
    long_profile(studio_env)
    async with app().run_test(size=(100, 30)) as pilot:
        table = (await front(pilot, Dashboard)).query_one("#profiles", DataTable)
        assert table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value == "user:long"
        await pilot.press("r", "r")  # a double press starts one run
        monitor = await front(pilot, RunMonitor)
        await until(pilot, lambda: len(monitor.timeline.steps) >= 3)
        first = len(monitor.timeline.steps)
        await until(pilot, lambda: len(monitor.timeline.steps) > first + 2)  # the monitor keeps updating
        await pilot.press("s")
        await until(pilot, lambda: isinstance(pilot.app.screen, Confirm), "the question")
        await pilot.press("y")
        await until(pilot, lambda: monitor.status == RunStatus.STOPPED)
        assert "stopped" in str(monitor.query_one("#run-status").render())
    assert len(list_runs()) == 1
    run = list_runs()[-1]
    assert run_status(run) == RunStatus.STOPPED and run.last_complete_checkpoint() is not None


async def test_broken_events_and_deleted_run_do_not_crash(studio_env: Path) -> None:
    run_dir = record_run(studio_env)
    with (run_dir / "events.jsonl").open("a") as f:
        f.write("{corrupt\n")
    async with StudioApp(open_run=Run(run_dir), inventory=fake_inventory()).run_test(size=(80, 24)) as pilot:
        texts = notifications(pilot.app)
        await until(pilot, lambda: len(pilot.app.screen.timeline.steps) == 40, "the 40 good steps")
        import shutil

        shutil.rmtree(run_dir)
        # The app says what happened, on screen and once as a notice, and keeps working.
        await until(pilot, lambda: "folder deleted" in screen_text(pilot.app), "the deleted folder on screen")
        assert sum("folder deleted" in t for t in texts) == 1 and pilot.app.is_running


async def test_resume_after_the_run_folder_was_deleted_does_not_crash(studio_env: Path) -> None:
    run_dir = record_run(studio_env, status="crashed")
    async with app(open_run=Run(run_dir)).run_test(size=(100, 30)) as pilot:
        texts = notifications(pilot.app)
        await pilot.pause()
        shutil.rmtree(run_dir)
        await pilot.press("u")
        await until(pilot, lambda: any("no longer exists" in t for t in texts), "the answer to resume")
        assert isinstance(pilot.app.screen, RunMonitor) and not run_dir.exists()


def test_no_stall_alert_counts_from_before_a_resume() -> None:
    from studio.runs.health import health_alerts

    old = [Step(step=s, time=1000.0 + s, tokens_per_s=100.0, loss=2.0) for s in range(1, 11)]
    tl = Timeline().extend([*old, Start(time=5000.0, step=10)])
    assert not [a for a in health_alerts(tl, running=True, now=5005.0) if a.kind == "stall"]


def test_the_step_shown_is_the_latest_written_while_steps_replay() -> None:
    tl = Timeline().extend([Step(step=s, time=float(s)) for s in range(1, 31)] + [Start(time=40.0, step=20)]
                           + [Step(step=21, time=41.0), Step(step=22, time=42.0)])
    assert tl.current_step.step == 22 and tl.last_step.step == 30


async def test_a_resumed_run_drops_the_old_banner_and_alert_text_is_whole(studio_env: Path) -> None:
    run_dir = record_run(studio_env, status="completed")
    events = run_dir / "events.jsonl"
    lines = events.read_text().splitlines()
    lines[-1] = json.dumps({"event": "end", "time": 1.0, "status": "stopped", "step": 40,
                            "message": "stopped at step 40", "advice": "resume continues from step 40"})
    lines.append(json.dumps({"event": "start", "time": 2.0, "step": 40, "max_steps": 80}))
    lines.append(json.dumps({"event": "step", "time": 3.0, "step": 41, "max_steps": 80, "loss": float("nan"),
                             "tokens_per_s": 100.0}))
    events.write_text("\n".join(lines) + "\n")
    async with app(open_run=Run(run_dir)).run_test(size=(80, 24)) as pilot:
        screen = await front(pilot, RunMonitor)
        await until(pilot, lambda: "nan" in str(screen.query_one("#alerts").render()), "the alert")
        assert "stopped at step 40" not in str(screen.query_one("#error-panel").render())
        alerts = " ".join(str(screen.query_one("#alerts").render()).split())
        assert "loss is nan at step 41: lower train.learning_rate or check the data" in alerts


async def test_finished_runs_show_no_live_parts_and_offer_no_stop(studio_env: Path) -> None:
    run_dir = record_run(studio_env, status="oom")
    async with app(open_run=Run(run_dir)).run_test(size=(100, 30)) as pilot:
        screen = await until(pilot, lambda: isinstance(pilot.app.screen, RunMonitor) and pilot.app.screen.status
                             and pilot.app.screen, "the monitor of the failed run")
        assert not screen.query_one("#progress").display
        assert "waiting for the first step" not in str(screen.query_one("#memory-text").render())
        assert "ETA" not in str(screen.query_one("#progress-text").render())
        footer = lambda: screen_text(pilot.app).splitlines()[-1]  # noqa: E731
        await until(pilot, lambda: "u Resume" in footer(), "the footer of a failed run")
        assert "Stop" not in footer() and "Kill" not in footer(), footer()
        texts = notifications(pilot.app)
        for key in ("s", "K"):
            await pilot.press(key)
            await pilot.pause()
            assert pilot.app.screen is screen and not texts, f"{key} did something on a finished run"


async def test_the_monitor_names_the_apps_keys_not_cli_commands(studio_env: Path) -> None:
    run_dir = record_run(studio_env, status="oom")
    async with app(open_run=Run(run_dir)).run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: isinstance(pilot.app.screen, RunMonitor)
                    and "what to do" in str(pilot.app.screen.query_one("#error-panel").render()), "the advice")
        text = str(pilot.app.screen.query_one("#error-panel").render())
        assert "studio " not in text and "keys: f saves the revised profile" in text


async def test_the_log_pane_shows_studios_own_lines(studio_env: Path) -> None:
    run_dir = record_run(studio_env, status="completed")
    (run_dir / "trainer.log").write_text(
        "studio trainer pid 1 run x resume=False probe=False\n"
        "{'loss': '2.1', 'grad_norm': '0.6', 'learning_rate': '0.0002', 'epoch': '0.1'}\n"
        "Tokenizing train dataset:  45%|████▌     | 450/1000 [00:01<00:02, 300 examples/s]\r\n"
        "run completed at step 40\n")
    async with app(open_run=Run(run_dir)).run_test(size=(100, 30)) as pilot:
        monitor = await front(pilot, RunMonitor)
        await until(pilot, lambda: any("run completed" in line for line in monitor.log_view.shown), "the log read")
        lines = list(monitor.log_view.shown)
        assert any("run completed at step 40" in line for line in lines)
        assert not any("'grad_norm'" in line or "examples/s]" in line for line in lines)


async def test_absurd_but_well_typed_event_values_neither_crash_nor_print_300_digits(studio_env: Path) -> None:
    run_dir = record_run(studio_env)
    with (run_dir / "events.jsonl").open("a") as f:
        f.write(json.dumps({"event": "step", "time": 2e9, "step": 41, "loss": 1e308, "tokens_per_s": 1e300,
                            "tokens": 10**30}) + "\n")
    listed = studio("runs")
    assert listed.returncode == 0 and max(len(line) for line in listed.stdout.splitlines()) < 200
    assert "1e+308" not in listed.stdout and "000000000000000000" not in listed.stdout
    async with app(open_run=Run(run_dir)).run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: 41 in pilot.app.screen.timeline.steps, "the absurd step")
        await pilot.pause()
        assert pilot.app.screen.timeline.steps[41].loss is None  # read as missing
        assert isinstance(pilot.app.screen, RunMonitor) and "Traceback" not in screen_text(pilot.app)


async def test_z_zooms_the_log_on_a_short_terminal_too(studio_env: Path) -> None:
    run_dir = record_run(studio_env, status="completed")
    async with app(open_run=Run(run_dir)).run_test(size=(80, 24)) as pilot:
        await front(pilot, RunMonitor)
        box = pilot.app.screen.query_one("#log-box")
        await until(pilot, lambda: box.size.height, "the log laid out")
        small = box.size.height
        await pilot.press("z")
        await until(pilot, lambda: box.size.height > 2 * small, f"the log to take the rows (was {small} high)")


def exportable_run(home: Path) -> Path:
    """A completed run with a final adapter: what the export dialog opens on."""
    run_dir = record_run(home, status="completed")
    (run_dir / "final").mkdir()
    (run_dir / "final" / "adapter_config.json").write_text("{}")
    return run_dir


async def test_the_export_dialogs_switch_label_is_whole_at_120_columns(studio_env: Path) -> None:
    from studio.ui.dialogs import ExportDialog

    run_dir = exportable_run(studio_env)
    async with app(open_run=Run(run_dir)).run_test(size=(120, 40)) as pilot:
        await front(pilot, RunMonitor)
        await pilot.press("x")
        await until(pilot, lambda: isinstance(pilot.app.screen, ExportDialog), "the export dialog")
        await until(pilot, lambda: "bigger)" in screen_text(pilot.app), "the whole label, wrapped")


async def test_enter_in_the_export_dialog_exports_what_it_shows_and_it_offers_gguf(studio_env: Path) -> None:
    """Defect (issue 36 #3): Enter on the merge switch toggled it, so `x`, Tab, Space, Enter turned merge off
    again and the next Enter exported only the adapter; and the dialog offered no GGUF, Ollama or push."""
    from textual.widgets import Switch

    from studio.ui.dialogs import ExportDialog

    run_dir = exportable_run(studio_env)
    async with app(open_run=Run(run_dir)).run_test(size=(120, 40)) as pilot:
        await front(pilot, RunMonitor)
        seen = notifications(pilot.app)
        await pilot.press("x")
        dialog = await until(pilot, lambda: isinstance(pilot.app.screen, ExportDialog) and pilot.app.screen,
                             "the export dialog")
        assert "GGUF" in screen_text(pilot.app) and "Ollama" in screen_text(pilot.app) and "Hub" in screen_text(pilot.app)
        await pilot.press("tab", "space")
        await until(pilot, lambda: dialog.query_one("#export-merge", Switch).value, "merge on")
        await pilot.press("enter")  # on the switch: exports, as the dialog says, with merge still on
        await until(pilot, lambda: not isinstance(pilot.app.screen, ExportDialog), "the dialog closed")
        await until(pilot, lambda: any("exporting run" in n and "merged" in n for n in seen), f"the export ({seen})")


async def test_a_resuming_run_counts_its_preparation_and_drops_the_old_eta(studio_env: Path) -> None:
    """Just after `u`: a live trainer launched 7 s ago that has written nothing yet. The monitor says it is
    resuming, counts the seconds, and shows no ETA left over from the attempt before."""
    import re

    run_dir = record_run(studio_env, status="completed")
    async with app(open_run=Run(run_dir)).run_test(size=(120, 40)) as pilot:
        monitor = pilot.app.screen
        await until(pilot, lambda: isinstance(monitor, RunMonitor) and monitor.status == "completed", "the monitor")
        with live_trainer(run_dir, launched_at=time.time() - 7):
            await until(pilot, lambda: monitor.status == "running" and re.search(r"resuming[^\n]*\b\d+ s\b",
                                                                                 screen_text(pilot.app)),
                        "the monitor to say the run is resuming, with its seconds")
            text = screen_text(pilot.app)
            assert "ETA" not in text, text
            seconds = int(re.search(r"resuming[^\n]*\b(\d+) s\b", text).group(1))
            assert seconds >= 7, text  # counted from the launch, not from when the monitor noticed


async def test_a_training_run_shows_its_bar_and_the_percentage_done(studio_env: Path) -> None:
    """A live trainer at step 20 of 40: the bar is half full and says 50%; at step 40 it says 100%. (Textual's
    progress bar, 28 cells wide, had no room left for its percentage.)"""
    run_dir = record_run(studio_env, status="running")
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    events = [e for e in events if e.get("step", 0) <= 20]
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    with live_trainer(run_dir, launched_at=events[0]["time"]):  # this attempt logged the steps
        async with app(open_run=Run(run_dir)).run_test(size=(100, 30)) as pilot:
            monitor = pilot.app.screen
            await until(pilot, lambda: isinstance(monitor, RunMonitor) and monitor.status == "running",
                        "the monitor of a training run")
            await until(pilot, lambda: "step 20/40" in screen_text(pilot.app), "step 20 of 40")
            line = next(row for row in screen_text(pilot.app).splitlines() if "step 20/40" in row)
            assert "50%" in line and line.count("━") >= 20, line
            last = [e for e in events if e["event"] == "step"][-1]
            with (run_dir / "events.jsonl").open("a") as f:
                f.write(json.dumps(dict(last, step=40, time=last["time"] + 190)) + "\n")
            await until(pilot, lambda: "step 40/40" in screen_text(pilot.app), "step 40 of 40")
            line = next(row for row in screen_text(pilot.app).splitlines() if "step 40/40" in row)
            assert "100%" in line, line


async def test_log_search_highlights_counts_and_steps_through_matches(studio_env: Path) -> None:
    run_dir = record_run(studio_env, status="completed")
    (run_dir / "trainer.log").write_text("".join(
        f"step {i}/40 · loss {2 - i / 40:.4f}\n" + (f"checkpoint saved at step {i}\n" if i % 10 == 0 else "")
        for i in range(1, 41)))
    async with app(open_run=Run(run_dir)).run_test(size=(100, 30)) as pilot:
        monitor = pilot.app.screen
        await until(pilot, lambda: isinstance(monitor, RunMonitor) and len(monitor.log_view.shown) == 44, "the log")
        box = monitor.query_one("#log-box")
        await pilot.press("slash", *"checkpoint", "enter")
        await until(pilot, lambda: "4 matches" in str(box.border_title), "the count of matches")
        assert len(monitor.log_view.shown) == 44  # a search finds; the lines around a match stay
        await pilot.press("n")
        await until(pilot, lambda: "2 of 4" in str(box.border_title), "the next match")
        await pilot.press("N", "N")
        await until(pilot, lambda: "4 of 4" in str(box.border_title), "the previous match, wrapping round")
        log = monitor.query_one("#trainer-log")
        assert not log.auto_scroll  # reading a match: new lines do not pull the view away
        await pilot.press("G")
        await until(pilot, lambda: log.auto_scroll, "G follows the end again")


async def test_the_log_shows_when_each_line_was_written_and_T_hides_it(studio_env: Path, tmp_path: Path) -> None:
    run_dir = record_run(studio_env, status="completed")
    (run_dir / "trainer.log").write_text(
        "2026-12-04 18:40:01 step 1/40 · loss 2.0000\n"
        "2026-12-04 18:40:02 {'loss': 2.0, 'grad_norm': 1.0}\n"          # the Trainer's dict: noise, timed or not
        "2026-12-04 18:40:03 UserWarning: something is deprecated\n"
        "a line a native library wrote, untimed\n"
        "2026-12-04 18:41:00 step 2/40 · loss 1.9000\n")
    async with app(open_run=Run(run_dir)).run_test(size=(100, 30)) as pilot:
        monitor = pilot.app.screen
        await until(pilot, lambda: isinstance(monitor, RunMonitor) and len(monitor.log_view.shown) == 4, "the log")
        await until(pilot, lambda: "18:41:00 step 2/40" in screen_text(pilot.app), "the time of day before a line")
        assert "2026-12-04" not in screen_text(pilot.app)  # the time of day only: the panes are narrow
        await pilot.press("slash", *"^step", "enter")  # a search reads the line as written, without its time
        box = monitor.query_one("#log-box")
        await until(pilot, lambda: "2 matches" in str(box.border_title), "the lines that start with step")
        await pilot.press("escape", "right_square_bracket")  # the warning is found with its time before it
        await until(pilot, lambda: "error/warning 1 of 1" in str(box.border_title), "the warning")
        await pilot.press("G", "T")
        await until(pilot, lambda: "18:41:00" not in screen_text(pilot.app) and "step 2/40" in screen_text(pilot.app),
                    "the times hidden")
        await pilot.press("T")
        await until(pilot, lambda: "18:41:00 step 2/40" in screen_text(pilot.app), "the times back")
    saved = monitor.log_view.text()  # what ctrl+s writes: each line with its date and time
    assert saved.splitlines()[0] == "2026-12-04 18:40:01 step 1/40 · loss 2.0000", saved


async def test_failed_download_advice_says_it_once_and_names_offline_mode(studio_env: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from studio.runs.events import End, append_event
    from studio.trainer.failures import classify
    from studio.trainer.hub import DownloadError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    said = classify(DownloadError("meta-llama/Llama-3.1-8B is not in the local cache"), None)
    assert "HF_HUB_OFFLINE" in said["advice"] and "auth login" not in said["advice"]
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert "auth login" in classify(DownloadError("401 for meta-llama/Llama-3.1-8B"), None)["advice"]

    run_dir = record_run(studio_env, status="completed")
    append_event(run_dir / "events.jsonl", End(status="failed", error_kind="download", step=40,
                                               message="cannot download the model", advice=said["advice"]))
    async with app(open_run=Run(run_dir)).run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: "what to do" in screen_text(pilot.app), "the advice")
        text = " ".join(screen_text(pilot.app).split())
        assert text.count("resume") <= 2 and "then press u" not in text, text
        assert "u resumes" in text, text


async def test_export_of_a_run_with_nothing_to_export_says_so_before_asking_for_a_folder(studio_env: Path) -> None:
    run_dir = record_run(studio_env, status="completed")  # no final/ and no checkpoint
    async with app(open_run=Run(run_dir)).run_test(size=(120, 40)) as pilot:
        await front(pilot, RunMonitor)
        said = notifications(pilot.app)
        await pilot.press("x")
        await until(pilot, lambda: any("nothing to export" in t for t in said), "the reason")
        assert isinstance(pilot.app.screen, RunMonitor)  # no dialog to type a folder into for nothing


async def test_toasts_leave_the_error_panel_and_the_log_readable_at_80x24(studio_env: Path) -> None:
    run_dir = record_run(studio_env, "20260911-100000-llama-qlora", status="oom")
    async with app(open_run=Run(run_dir)).run_test(size=(80, 24), notifications=True) as pilot:
        await until(pilot, lambda: isinstance(pilot.app.screen, RunMonitor)
                    and "what to do" in str(pilot.app.screen.query_one("#error-panel").render()), "the advice")
        pilot.app.notify("a message long enough to take a few lines of a toast at eighty columns, as they do")
        await until(pilot, lambda: pilot.app.screen.query("Toast"), "the toast")
        await pilot.wait_for_scheduled_animations()  # where it comes to rest
        toast = pilot.app.screen.query("Toast").first().region
        for part in ("#error-panel", "#log-box"):
            region = pilot.app.screen.query_one(part).region
            assert not toast.overlaps(region), f"the toast {toast} covers {part} {region}"


async def test_the_monitor_gives_elapsed_time_s_per_step_the_last_checkpoint_and_eval_losses(studio_env: Path) -> None:
    run_dir = record_run(studio_env, status="completed")  # 40 steps of 9.5 s; evals every 10 steps; checkpoints too
    async with app(open_run=Run(run_dir)).run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: isinstance(pilot.app.screen, RunMonitor) and pilot.app.screen.status == "completed",
                    "the monitor")
        await until(pilot, lambda: "s/step" in screen_text(pilot.app), "the speed figures")
        text = screen_text(pilot.app)
        assert "elapsed 6:20" in text and "9.50 s/step" in text, text
        assert "eval loss 1.265" in text and "best eval 1.265 at step 40" in text, text
        assert "checkpoint step 40" in text, text


async def test_the_loss_chart_marks_each_eval_even_a_single_one_and_keeps_its_key_off_the_curve(
        studio_env: Path) -> None:
    from studio.ui.charts import EVAL_MARK

    run_dir = record_run(studio_env, status="completed")
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    kept = [e for e in events if e["event"] != "eval" or e["step"] == 20]  # one eval only
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in kept))
    async with app(open_run=Run(run_dir)).run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: isinstance(pilot.app.screen, RunMonitor) and pilot.app.screen.status == "completed",
                    "the monitor")
        await until(pilot, lambda: EVAL_MARK in screen_text(pilot.app), "the single eval point")
        chart_rows = screen_text(pilot.app).splitlines()
        assert not any("smoothed" in row and "┤" in row for row in chart_rows)  # no legend box among the curves


async def test_the_monitor_charts_learning_rate_and_throughput_the_last_steps_and_a_log_scale(
        studio_env: Path) -> None:
    from studio.ui.charts import LossChart

    run_dir = record_run(studio_env, status="running")
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    last = [e for e in events if e["event"] == "step"][-1]
    for step in range(41, 401):  # a longer run: 400 steps
        events.append(dict(last, step=step, time=last["time"] + step, max_steps=400, loss=1.0 + 100 / step))
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    async with app(open_run=Run(run_dir)).run_test(size=(120, 40)) as pilot:
        await front(pilot, RunMonitor)

        def chart() -> list[str]:
            widget = pilot.app.screen.query_one(LossChart)
            return [widget.render_line(y).text for y in range(widget.size.height)]

        def title() -> str:
            return chart()[0]

        def ticks() -> list[int]:
            axis = next(row for row in chart() if row.strip() == "step")
            return [int(t) for t in chart()[chart().index(axis) - 1].split() if t.isdigit()]

        await until(pilot, lambda: title().strip().startswith("loss:"), "the loss chart")
        assert ticks()[0] <= 100 and ticks()[-1] == 400  # every step (labels at round steps: 100 200 300 400)
        await pilot.press("v")
        await until(pilot, lambda: "learning rate" in title(), "the learning-rate chart")
        await pilot.press("v")
        await until(pilot, lambda: "tokens/s" in title(), "the throughput chart")
        await pilot.press("v")
        await until(pilot, lambda: title().strip().startswith("loss:"), "back to loss")
        await pilot.press("w")
        await until(pilot, lambda: "last 200 steps" in title(), "the last 200 steps")
        assert 201 <= ticks()[0] <= 250 and ticks()[-1] == 400
        await pilot.press("Y")
        await until(pilot, lambda: "log scale" in title(), "the log scale")
        await pilot.press("question_mark")
        await until(pilot, lambda: "log scale" in screen_text(pilot.app) and "Chart" in screen_text(pilot.app),
                    "the chart keys in the help")


async def test_w_in_the_monitor_turns_the_logs_wrapping_off_and_on(studio_env: Path) -> None:
    run_dir = record_run(studio_env, status="completed")
    long = "a traceback line that goes on " + "and on " * 40
    (run_dir / "trainer.log").write_text(f"short line\n{long}\nrun completed at step 40\n")
    async with app(open_run=Run(run_dir)).run_test(size=(100, 30)) as pilot:
        monitor = pilot.app.screen
        await until(pilot, lambda: isinstance(monitor, RunMonitor) and len(monitor.log_view.shown) == 3, "the log")
        log = monitor.query_one("#trainer-log")
        await until(pilot, lambda: len(log.lines) > 3, "the long line wrapped")
        await pilot.press("W")
        await until(pilot, lambda: len(log.lines) == 3 and log.virtual_size.width > log.size.width,
                    "one line each, wider than the pane")
        await pilot.press("W")
        await until(pilot, lambda: len(log.lines) > 3, "wrapped again")


async def test_the_monitor_says_the_runs_settings_in_one_line(studio_env: Path) -> None:
    from studio.atomic import write_json
    from studio.planning.plan import plan_run

    run_dir = record_run(studio_env, status="completed")
    plan = plan_run(load_profile(run_dir / "profile.toml"), fake_inventory())
    write_json(run_dir / "plan.json", plan.record().to_dict())  # what a start writes
    async with app(open_run=Run(run_dir)).run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: "Llama-3.1-8B · qlora r16 · batch" in screen_text(pilot.app),
                    "the settings' line")
        side = str(pilot.app.screen.query_one("#plan-text").render())
        # max_length's default; the optimizer the trainer made; gradient_checkpointing = true in its profile
        assert "len 1024 · paged_adamw_8bit · checkpointing" in side, side


async def test_a_figure_the_trainer_could_not_read_shows_as_a_dash_not_zero(studio_env: Path) -> None:
    """Issue 36 #9: "RAM (process RSS): 0.00 GiB" where the value was unreadable."""
    run_dir = record_run(studio_env, status="completed")
    events = run_dir / "events.jsonl"
    kept = []
    for line in events.read_text().splitlines():  # a CPU run whose RSS and epoch were not read
        e = json.loads(line)
        if e["event"] == "step":
            for key in ("rss_gib", "epoch", "gpu_mem_allocated_gib", "gpu_mem_reserved_gib", "gpu_mem_peak_gib",
                        "nvml_mem_used_gib"):
                e.pop(key, None)
        kept.append(json.dumps(e))
    events.write_text("\n".join(kept) + "\n")
    async with app(open_run=Run(run_dir)).run_test(size=(120, 40)) as pilot:
        monitor = await front(pilot, RunMonitor)
        await until(pilot, lambda: "RAM (process RSS)" in str(monitor.query_one("#memory-text").render()),
                    "the memory pane")
        memory = str(monitor.query_one("#memory-text").render())
        assert "0.00 GiB" not in memory and "RAM (process RSS): -" in memory, memory
        assert "epoch -" in str(monitor.query_one("#progress-text").render())


def test_the_charts_x_labels_are_evenly_spaced_by_a_round_step() -> None:
    """Defect (issue 36 #15): early in a run the x labels read 1 2 4 6 7."""
    from studio.ui.charts import even_ticks

    for lo, hi in ((1, 7), (1, 40), (0, 1000), (3, 17), (0.0, 2.5), (1, 123456)):
        ticks = even_ticks(lo, hi)
        steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:])}
        assert len(steps) <= 1 and 2 <= len(ticks) <= 5 and lo <= ticks[0] and ticks[-1] <= hi, (lo, hi, ticks)
        step = steps.pop() if steps else 1
        assert f"{step:g}".lstrip("0.").rstrip("0") in ("1", "2", "5"), (lo, hi, ticks)


async def test_on_a_linux_console_the_monitor_draws_no_braille_or_rounded_corners(
        studio_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect (issue 36 #16): with TERM=linux the app drew braille and rounded corners, which the Linux console
    cannot show."""
    monkeypatch.setenv("TERM", "linux")
    run_dir = record_run(studio_env, status="completed")
    async with app(open_run=Run(run_dir)).run_test(size=(120, 40)) as pilot:
        await front(pilot, RunMonitor)
        await until(pilot, lambda: "loss" in screen_text(pilot.app) and "step 40/40" in screen_text(pilot.app),
                    "the monitor drawn")
        await pilot.pause()
        text = screen_text(pilot.app)
        assert not [c for c in text if 0x2800 <= ord(c) <= 0x28FF], "braille on a Linux console"
        assert not set("╭╮╰╯━") & set(text), [c for c in text if c in "╭╮╰╯━"][:5]


async def test_the_log_searches_by_regular_expression_jumps_to_errors_and_saves_what_it_shows(
        studio_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Habits of the tools power users live in (issue 36): a regex search, the next error or warning, save."""
    run_dir = record_run(studio_env, status="completed")
    lines = [f"step {i}/40 · loss 1.{i:02d}" for i in range(1, 41)]
    lines[12] = "WARNING: the tokenizer has no pad token; using eos"
    lines[30] = "RuntimeError: CUDA error: an illegal memory access was encountered"
    (run_dir / "trainer.log").write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(tmp_path)
    async with app(open_run=Run(run_dir)).run_test(size=(120, 40)) as pilot:
        monitor = await front(pilot, RunMonitor)
        await until(pilot, lambda: "illegal memory access" in "\n".join(monitor.log_view.shown), "the log read")
        await pilot.press("slash", *r"step 1\d/", "enter")
        title = lambda: str(monitor.query_one("#log-box").border_title)  # noqa: E731
        await until(pilot, lambda: "9 matches" in title(), "nine matches of the expression (steps 10 to 19 but 13)")
        await pilot.press("escape")
        await pilot.press("right_square_bracket")
        await until(pilot, lambda: "error/warning 1 of 2" in title(), "the first warning")
        await pilot.press("right_square_bracket")
        await until(pilot, lambda: "error/warning 2 of 2" in title(), "the error")
        await pilot.press("ctrl+s")
        saved = tmp_path / f"{run_dir.name}-log.txt"
        await until(pilot, lambda: saved.is_file(), "the saved log")
        assert "illegal memory access" in saved.read_text() and "step 40/40" in saved.read_text()


async def test_the_chart_has_a_cursor_that_reads_out_its_step_and_adjustable_smoothing(studio_env: Path) -> None:
    """Habits (issue 36): the step, loss and lr under a cursor moved with left/right; + and - smooth."""
    from studio.ui.charts import LossChart

    run_dir = record_run(studio_env, status="completed")
    async with app(open_run=Run(run_dir)).run_test(size=(120, 40)) as pilot:
        await front(pilot, RunMonitor)
        chart = pilot.app.screen.query_one(LossChart)

        def title() -> str:
            return chart.render_line(0).text

        await until(pilot, lambda: title().strip().startswith("loss:"), "the loss chart")
        assert "smoothed 0.9" in title()
        await pilot.press("minus", "minus")
        await until(pilot, lambda: "smoothed 0.6" in title(), "less smoothing")
        await pilot.press("left")
        await until(pilot, lambda: "│ step 40 · loss" in title() and "lr " in title(), "the cursor on the last step")
        await pilot.press("left", "left", "shift+left")
        await until(pilot, lambda: "│ step 28 · loss" in title(), "the cursor 12 steps back")


def test_a_memory_figure_that_could_not_be_read_shows_as_a_dash_not_as_zero() -> None:
    """Defect (issue 36 #9): a figure that was unreadable was shown as zero (or as nothing at all)."""
    from studio.runs.events import Step
    from studio.ui.widgets import memory_lines

    unread = Step(step=3, gpu_mem_peak_gib=(None, 12.0), nvml_mem_used_gib=(None, 14.0))
    text = memory_lines(unread, [80.0, 80.0]).plain
    assert "GPU0 - (not read)" in text and "GPU1" in text, text
    assert "RAM (process RSS): - (not read)" in memory_lines(Step(step=3), []).plain


async def test_an_export_that_would_not_fit_where_it_goes_asks_first(studio_env: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Habits (issue 36): a warning before an export would fill the disk. An 8B model merged in bf16 writes
    about 15 GiB; with 5 GiB free where it goes, the app says so and asks."""
    from textual.widgets import Switch

    import studio.runs.export
    from studio.ui.dialogs import Confirm, ExportDialog

    monkeypatch.setattr(studio.runs.export, "free_bytes", lambda folder: 5 * 2**30)
    run_dir = exportable_run(studio_env)
    async with app(open_run=Run(run_dir)).run_test(size=(120, 40)) as pilot:
        await front(pilot, RunMonitor)
        await pilot.press("x")
        dialog = await until(pilot, lambda: isinstance(pilot.app.screen, ExportDialog) and pilot.app.screen,
                             "the export dialog")
        await pilot.press("tab", "space")
        await until(pilot, lambda: dialog.query_one("#export-merge", Switch).value, "merge on")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, Confirm), "the question")
        assert "writes about 15.0 GiB" in screen_text(pilot.app) and "5.0 GiB free" in screen_text(pilot.app)
