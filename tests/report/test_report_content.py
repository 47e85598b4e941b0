"""The report's content: every target, figures equal to the rows, plan and failures shown."""

from __future__ import annotations

import re
import warnings
from datetime import UTC, datetime

import pytest
import report_support as rs

from regional_training.plan.metric_format import METRIC_DEFINITIONS, format_metric_line
from regional_training.report.report import parse_metric_series, plan_from_jobs, render_report, timeline_chart, when


def _check_rows_match(page: str, summary: dict) -> list[dict[str, str]]:
    targets = rs.tables(page)["targets"]
    assert [t["target"] for t in targets] == [r["target_key"] for r in summary["rows"]]
    for cells, row in zip(targets, summary["rows"], strict=True):
        metrics = row["metrics"]
        assert cells["region"] == row["region_code"]
        assert cells["status"] == row["status"]
        assert cells["purchase option"] == row["purchase_option"]
        assert cells["attempt"] == str(row["attempt"])
        assert cells["job"] == row["training_job_name"]
        # to the second, no microseconds (issue 33)
        assert cells["start"] == when(row["training_start_time"]) and cells["end"] == when(row["training_end_time"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", cells["start"]), cells["start"]
        assert cells["planned USD"] == f"{row['planned_cost_usd']:.2f}"
        assert cells["actual USD"] == f"{row['actual_cost_usd']:.2f}"
        assert cells["images/sec"] == f"{metrics['train:images_per_sec']:.1f}"
        assert cells["loss"] == f"{metrics['train:loss']:.4f}"
        assert cells["accuracy"] == f"{metrics['train:accuracy']:.4f}"
        assert cells["failure reason"] == (row["failure_reason"] or "-")
        assert cells["links"] is not None
    return targets


def test_four_region_report_lists_every_target_with_its_figures_and_charts() -> None:
    summary, series = rs.four_region_run()
    links = {r["target_key"]: {"SageMaker job": f"https://example.invalid/{r['region_code']}"} for r in summary["rows"]}
    page = render_report(summary, series, links)
    _check_rows_match(page, summary)
    assert "4 of 4 target(s) completed" in page
    total_planned = sum(r["planned_cost_usd"] for r in summary["rows"])
    assert f"Planned cost {total_planned:.2f} USD" in page
    # cost, timeline and the three step charts; every target named in the step charts' legends
    assert page.count("<svg ") == 5
    for label in ("Planned vs actual cost", "Timeline of the jobs", "images/sec over the steps",
                  "training loss over the steps", "training accuracy over the steps"):
        assert f'aria-label="{label}' in page
    for row in summary["rows"]:
        assert page.count(f"{row['target_key']} ({row['region_code']})") >= 5
        assert f'href="https://example.invalid/{row["region_code"]}"' in page
    # self-contained: nothing loaded from elsewhere, no script
    assert not re.search(r"<script|<link|<img|@import|url\((?!#)|src=", page)
    assert render_report(summary, series, links) == page, "same input, same bytes"


def test_a_failed_region_and_a_failover_move_are_shown() -> None:
    summary, series = rs.failed_and_moved_run()
    page = render_report(summary, series)
    targets = _check_rows_match(page, summary)
    failed = next(t for t in targets if t["region"] == "eu-central-1")
    assert failed["status"] == "Failed" and failed["attempt"] == "2"
    assert "AlgorithmError: ValueError: no TFRecord shards" in failed["failure reason"]
    moved = next(t for t in targets if t["target"] == rs.DATASETS["eu-west-1"])
    assert moved["region"] == "us-east-1"
    assert moved["failover moves"] == "eu-west-1 → us-east-1 (ResourceLimitExceeded)"
    assert 'id="failed"' in page and "3 of 4 target(s) completed" in page
    assert "eu-west-1 → us-east-1, attempt 1" in page  # the timeline's route label


def test_a_target_that_moved_and_never_started_has_its_move_on_a_time_axis() -> None:
    """Its only time is the move's: the timeline's axis is that minute, and the chart is
    laid out (it had no time axis and matplotlib warned its axes collapsed to zero)."""
    moved_at = datetime(2026, 12, 8, 2, 0, tzinfo=UTC)
    row = {"region_code": "eu-west-1", "target_key": "dublin-urban-2026-v1", "status": "Failed", "attempt": 1,
           "training_start_time": None, "training_end_time": None,
           "moves": [{"from_region": "us-west-2", "moved_at": moved_at}]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        svg = timeline_chart([row])
    ticks = set(re.findall(r">\s*(\d\d:\d\d:\d\d)\s*<", svg))
    assert "02:00:00" in ticks and ticks <= {f"{h}:{m}:{s}" for h, m in (("01", "59"), ("02", "00"))
                                              for s in ("00", "15", "30", "45")}
    assert "us-west-2 → eu-west-1, attempt 1: never started" in svg


def test_a_dry_run_shows_the_plan_with_alternatives_and_left_out_datasets() -> None:
    summary, plan = rs.dry_run_plan()
    page = render_report(summary, plan=plan)
    assert "dry run: 3 target(s) planned, nothing launched" in page
    cells = rs.tables(page)["plan"]
    assert len(cells) == 6
    for target in plan:
        placed, alternative = [c for c in cells if c["dataset"] == target["dataset_key"]]
        assert (placed["choice"], placed["region"], placed["purchase option"]) == (
            "placed", target["region_code"], "spot")
        assert placed["planned USD"] == f"{target['planned_cost_usd']:.2f}"
        assert (alternative["choice"], alternative["region"], alternative["planned USD"]) == (
            "alternative 1", "us-west-2", "131.08")
    left_out = rs.tables(page)["left-out"]
    assert left_out == [{"dataset": "berlin-night-2026-v1", "campaign": "berlin-night-2026", "reason": "over_budget",
                         "why": "every copy's expected cost exceeds the remaining budget"}]
    assert "<svg " not in page  # nothing ran: no charts of nothing


def test_plan_from_jobs_keeps_the_ranked_alternatives() -> None:
    _, plan = rs.dry_run_plan()
    jobs = [{"target": {k: v for k, v in t.items() if k != "alternatives"}, "request": {},
             "failover": [{"target": a, "request": {}} for a in t["alternatives"]]} for t in plan]
    assert plan_from_jobs(jobs) == plan


def test_metric_series_uses_the_request_definitions_and_the_step_of_each_line() -> None:
    lines = ["noise", format_metric_line(step=8, train_loss=1.5, images_per_sec=2000.0),
             "[metrics] val_train_loss=9 unrelated", format_metric_line(step=16, train_loss=1.25, train_accuracy=0.5)]
    points = parse_metric_series(lines, METRIC_DEFINITIONS)
    assert points == [{"step": 8.0, "train:loss": 1.5, "train:images_per_sec": 2000.0},
                      {"step": 16.0, "train:loss": 1.25, "train:accuracy": 0.5}]
    only_loss = [d for d in METRIC_DEFINITIONS if d["Name"] == "train:loss"]
    assert parse_metric_series(lines, only_loss) == [{"train:loss": 1.5, "step": 8.0},
                                                    {"train:loss": 1.25, "step": 16.0}]


@pytest.mark.parametrize("bad", ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>'])
def test_values_are_escaped(bad: str) -> None:
    summary, series = rs.four_region_run()
    summary["rows"][0]["failure_reason"] = bad
    page = render_report(summary, series)
    assert bad not in page


def test_a_large_run_names_every_target_in_the_table_and_the_charts() -> None:
    from regional_training.report.report import FIXED_LAYOUT_ROWS

    count = FIXED_LAYOUT_ROWS + 20
    rows = [rs.row(i % 40, rs.REGIONS[i % 4], f"dataset-{i:03d}-v1") for i in range(count)]
    summary = rs.summarize(rows, run_id="large")
    page = render_report(summary, {r["target_key"]: rs.parse_metric_series(rs.log_lines(0)) for r in rows})
    assert len(rs.tables(page)["targets"]) == count
    for row in rows:
        # the cost and timeline charts' labels (the step charts have no legend past LEGEND_LIMIT)
        assert page.count(f"{row['target_key']} ({row['region_code']})") == 2, row["target_key"]
