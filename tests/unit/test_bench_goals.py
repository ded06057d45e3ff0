"""The benchmark's verdict on the performance goals (``bench/eventpipe_bench/goals.py``): each figure is
judged against its goal at the goal's edge, and a figure the run did not measure is never counted as met."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from eventpipe_bench.goals import GOALS, MIN_EVENTS, judge, judge_files, judge_runs, lines  # noqa: E402


def _results(**over: object) -> dict:
    res = {
        "events": 1_000_167,
        "transform_records_per_s": 400_000.0,
        "notebook_overhead_s": 1.5,
        "notebook_overhead_runs_s": [1.2, 2.5, 1.5],
        "peak_rss_mb": 1023.9,
        "rss_against_mb": 931.0,
        "ratios": {
            "end_to_end_vs_limit_sum": 1.6,
            "end_to_end_vs_dlt_same_run": 6.0,
            "load_vs_copy_existing_rows": 0.8,
        },
    }
    res.update(over)
    return res


def _verdict(res: dict) -> dict[str, bool | None]:
    return {v["goal"]: v["met"] for v in judge(res)}


def test_every_goal_is_met_exactly_at_its_edge() -> None:
    assert _verdict(_results()) == {g.key: True for g in GOALS}


@pytest.mark.parametrize(
    ("over", "missed"),
    [
        ({"transform_records_per_s": 399_999.0}, "transform_records_per_s"),
        ({"notebook_overhead_s": 1.51}, "notebook_overhead_s"),
        ({"notebook_overhead_runs_s": [0.4, 2.51]}, "notebook_overhead_worst_s"),
        ({"peak_rss_mb": 1024.0}, "peak_rss_mb"),
        ({"rss_against_mb": 930.0}, "peak_rss_growth_pct"),  # 1023.9 is 10.1 % over 930
        ({"ratios": {"end_to_end_vs_limit_sum": 1.61}}, "end_to_end_vs_limit_sum"),
        ({"ratios": {"end_to_end_vs_dlt_same_run": 5.99}}, "end_to_end_vs_dlt_same_run"),
        ({"ratios": {"load_vs_copy_existing_rows": 0.79}}, "load_vs_copy_existing_rows"),
    ],
)
def test_a_figure_past_its_goal_is_not_met(over: dict, missed: str) -> None:
    verdict = _verdict(_results(**over))
    assert verdict[missed] is False
    assert all(met for key, met in verdict.items() if key != missed and met is not None)


def test_a_figure_not_measured_is_neither_met_nor_missed() -> None:
    res = {"transform_records_per_s": 500_000.0, "ratios": {}}
    verdict = _verdict(res)
    assert verdict.pop("transform_records_per_s") is True
    assert set(verdict.values()) == {None}
    printed = lines(judge(res))
    assert sum("not measured" in line for line in printed) == len(GOALS) - 1
    assert not any(line.endswith(": met") for line in printed if "not measured" in line)


def _by_goal(verdicts: list[dict]) -> dict[str, dict]:
    return {v["goal"]: v for v in verdicts}


def test_over_several_runs_the_median_is_judged_and_every_run_goals_on_the_worst_run() -> None:
    runs = [
        _results(ratios={"end_to_end_vs_limit_sum": 1.44}, notebook_overhead_runs_s=[1.1]),
        _results(ratios={"end_to_end_vs_limit_sum": 1.70}, notebook_overhead_runs_s=[2.6]),  # both missed
        _results(ratios={"end_to_end_vs_limit_sum": 1.57}, notebook_overhead_runs_s=[1.3]),
    ]
    v = _by_goal(judge_runs(runs))
    e2e = v["end_to_end_vs_limit_sum"]
    assert (e2e["value"], e2e["met"], e2e["met_in"], e2e["measured_in"]) == (1.57, True, 2, 3)
    worst = v["notebook_overhead_worst_s"]
    assert (worst["value"], worst["met"], worst["met_in"]) == (2.6, False, 2)
    dlt = v["end_to_end_vs_dlt_same_run"]  # the ratios above replace the dlt ratio: measured by no run
    assert (dlt["value"], dlt["met"], dlt["measured_in"]) == (None, None, 0)


def test_judging_files_exits_by_the_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(_results()))
    bad.write_text(json.dumps(_results(transform_records_per_s=10.0)))
    assert judge_files([str(good), str(good)]) == 0
    assert judge_files([str(good), str(bad), str(bad)]) == 1  # the median run misses the transform goal
    assert "transform_records_per_s" in capsys.readouterr().out
    assert judge_files([str(good), str(tmp_path / "missing.json")]) == 2
    assert "cannot read results file" in capsys.readouterr().out


def test_a_small_run_is_not_judged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert judge(_results(events=MIN_EVENTS - 1)) == []
    assert len(judge(_results(events=1_000_167))) == len(GOALS)
    small = tmp_path / "small.json"
    small.write_text(json.dumps(_results(events=20_000)))
    assert judge_files([str(small)]) == 2
    assert "fewer than" in capsys.readouterr().out


def test_a_file_that_is_not_results_and_a_wrong_rss_against_get_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from eventpipe_bench.cli import main

    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    assert judge_files([str(listing)]) == 2
    assert "is not a results file" in capsys.readouterr().out
    # read before anything runs: no database, no demo API, no temp folder is made for a wrong path
    assert main(["--rss-against", str(tmp_path / "missing.json")]) == 2
    assert capsys.readouterr().out.strip().startswith("bench: --rss-against: cannot read results file")
