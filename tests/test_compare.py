"""Comparing runs: the figures, the curves and the profile keys that differ; the CLI and the app."""

from __future__ import annotations

import json
from pathlib import Path

from textual.widgets import DataTable

from conftest import studio
from studio.runs.compare import compare_runs, short_labels
from studio.runs.folder import Run
from studio.ui.app import StudioApp
from studio.ui.compare import RUN_COLUMNS as COMPARE_COLUMNS
from studio.ui.dashboard import RUN_COLUMNS
from ui_fixtures import fake_inventory, notifications, record_run, screen_text
from waiting import until


def test_short_labels_drop_what_every_id_shares() -> None:
    assert short_labels(["20260911-090000-llama-qlora", "20260911-100000-llama-qlora"]) == ["090000", "100000"]
    assert short_labels(["20260911-090000-a", "20260912-100000-b"]) == ["20260911-090000-a", "20260912-100000-b"]
    assert short_labels(["x-1-y", "x-1-y-z"]) == ["y", "y-z"]


def test_the_comparison_has_each_runs_curve_and_only_the_keys_that_differ(studio_env: Path) -> None:
    a = record_run(studio_env, "20260911-090000-qlora", rank=16, floor=1.1)
    b = record_run(studio_env, "20260911-100000-qlora", status="oom", rank=64, floor=0.9)
    result = compare_runs([Run(a), Run(b)])
    assert [f.summary.status for f in result.runs] == ["completed", "failed"]
    assert len(result.runs[0].train) == 40 and result.runs[1].train[-1][1] < result.runs[0].train[-1][1]
    assert result.profile_diff == [("method.rank", ["16", "64"])]
    assert result.runs[0].best_eval == min(y for _, y in result.runs[0].evals)


def test_a_run_whose_profile_is_damaged_is_compared_without_it(studio_env: Path) -> None:
    a = record_run(studio_env, "20260911-090000-qlora")
    b = record_run(studio_env, "20260911-100000-qlora", rank=32)
    (b / "profile.toml").write_text("[method\n")
    result = compare_runs([Run(a), Run(b)])
    assert result.profile_diff == [] and "20260911-100000-qlora" in result.unreadable[0]


def test_studio_compare_prints_figures_and_the_diff(studio_env: Path) -> None:
    record_run(studio_env, "20260911-090000-qlora", rank=16)
    record_run(studio_env, "20260911-100000-qlora", rank=64, floor=0.9)
    proc = studio("compare", "20260911-090000", "20260911-100000")
    assert proc.returncode == 0, proc.stderr
    assert "method.rank" in proc.stdout and "16" in proc.stdout and "64" in proc.stdout
    data = json.loads(studio("compare", "20260911-090000", "20260911-100000", "--json", check=True).stdout)
    assert data["profile_diff"] == {"method.rank": ["16", "64"]} and len(data["runs"][1]["loss_curve"]) == 40
    one = studio("compare", "20260911-090000")
    assert one.returncode == 2 and "two or more" in one.stderr


async def test_mark_two_runs_and_compare_them_in_the_app(studio_env: Path) -> None:
    from studio.ui.compare import Comparison

    record_run(studio_env, "20260911-090000-qlora", rank=16)
    record_run(studio_env, "20260911-100000-qlora", rank=64, floor=0.9)
    async with StudioApp(inventory=fake_inventory()).run_test(size=(120, 40)) as pilot:
        said = notifications(pilot.app)
        runs = pilot.app.screen.query_one("#runs", DataTable)
        await until(pilot, lambda: runs.row_count == 2, "both runs listed")
        await pilot.press("C")  # nothing marked: told how
        await until(pilot, lambda: any("mark two or more" in t for t in said), "how to compare")
        assert not isinstance(pilot.app.screen, Comparison)
        # one meaning of "train time" on both screens: the training the steps took (40 steps of 9.5 s)
        dashboard_time = str(runs.get_row("20260911-090000-qlora")[RUN_COLUMNS.index("train time")])
        await pilot.press("tab", "m", "j", "m", "C")
        await until(pilot, lambda: isinstance(pilot.app.screen, Comparison), "the comparison")
        screen = pilot.app.screen
        table = screen.query_one("#compare-runs", DataTable)
        await until(pilot, lambda: table.row_count == 2, "both runs compared")
        compared = [str(table.get_row_at(i)[COMPARE_COLUMNS.index("train time")]) for i in range(2)]
        assert dashboard_time == "6:20" and compared == ["6:20", "6:20"]
        diff = screen.query_one("#compare-diff", DataTable)
        assert diff.row_count == 1 and str(diff.get_row_at(0)[0]) == "method.rank"
        await pilot.press("e")
        await until(pilot, lambda: screen.show_eval, "the eval curves")


def test_studio_compare_prints_whole_run_ids(studio_env: Path) -> None:
    record_run(studio_env, "20260911-090000-llama-3.1-8b-qlora-12gb")
    record_run(studio_env, "20260911-100000-llama-3.1-8b-qlora-12gb", rank=64)
    out = studio("compare", "20260911-090000", "20260911-100000", check=True).stdout
    assert "20260911-090000-llama-3.1-8b-qlora-12gb" in out and "20260911-100000-llama-3.1-8b-qlora-12gb" in out


async def test_the_comparison_follows_new_steps_and_aligns_runs_by_tokens_or_time(studio_env: Path) -> None:
    from studio.ui.charts import LossChart
    from studio.ui.compare import Comparison

    record_run(studio_env, "20260911-090000-qlora", rank=16)
    b = record_run(studio_env, "20260911-100000-qlora", rank=64, floor=0.9)
    async with StudioApp(inventory=fake_inventory()).run_test(size=(120, 40)) as pilot:
        runs = pilot.app.screen.query_one("#runs", DataTable)
        await until(pilot, lambda: runs.row_count == 2, "both runs listed")
        await pilot.press("tab", "m", "j", "m", "C")
        await until(pilot, lambda: isinstance(pilot.app.screen, Comparison), "the comparison")
        screen = pilot.app.screen
        table = screen.query_one("#compare-runs", DataTable)
        await until(pilot, lambda: table.row_count == 2, "both runs compared")

        def steps_of_b() -> str:
            return str(table.get_row("20260911-100000-qlora")[COMPARE_COLUMNS.index("steps")])

        def chart() -> list[str]:
            widget = screen.query_one(LossChart)
            return [widget.render_line(y).text.strip() for y in range(widget.size.height)]

        assert steps_of_b() == "40/40" and "step" in chart()
        # b is resumed for more steps while it is compared: its new steps show without a key
        events = (b / "events.jsonl").read_text().splitlines()
        last = json.loads([e for e in events if '"step"' in e and '"loss"' in e][-1])
        more = [dict(last, step=s, max_steps=60, tokens=s * 32768, elapsed_s=s * 9.5, time=last["time"] + s)
                for s in range(41, 61)]
        with (b / "events.jsonl").open("a") as f:
            f.write("".join(json.dumps(e) + "\n" for e in more))
        await until(pilot, lambda: steps_of_b() == "60/60", "the new steps")

        await pilot.press("a")
        await until(pilot, lambda: "tokens seen" in chart(), "the curves against tokens")
        assert any("1.0M" in row or "2.0M" in row for row in chart())  # 40 and 60 x 32,768 tokens: 1.3M, 2.0M
        # (labels at round steps)
        await pilot.press("a")
        await until(pilot, lambda: "time trained" in chart(), "the curves against time")
        assert any("5:00" in row for row in chart())   # 40 and 60 steps of 9.5 s: 6:20 and 9:30, labelled each 5 min
        await pilot.press("a")
        await until(pilot, lambda: "step" in chart(), "back to steps")
        await pilot.press("question_mark")
        await until(pilot, lambda: "tokens seen or time trained" in screen_text(pilot.app), "a in the help")


def test_preference_runs_compare_by_their_reward_margin_and_accuracy(studio_env: Path) -> None:
    a = record_run(studio_env, "20260911-090000-a-dpo", objective="dpo")
    b = record_run(studio_env, "20260912-090000-b-sft")
    result = compare_runs([Run(a), Run(b)])
    dpo, sft = result.runs
    assert dpo.margins[-1] == (40, 2.8) and dpo.reward_accuracy == 1.0 and not sft.margins
    out = studio("compare", a.name, b.name).stdout
    header, first, second = out.splitlines()[:3]
    assert "margin" in header and "acc" in header
    assert first.split()[-2:] == ["+2.800", "100%"] and second.split()[-2:] == ["-", "-"]
    assert "margin" not in studio("compare", b.name, record_run(studio_env, "20260913-090000-c-sft").name).stdout
