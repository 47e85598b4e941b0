"""The report in a real headless chromium: opened from disk (offline), charts drawn and
each line named, no console error, no sideways scroll at 1440 px, printable; a
2,000-target report stays short and fast; screenshots kept as test artifacts."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import report_support as rs

from regional_training.report.report import LARGE_RUN, TARGETS_CSV, render_report, targets_csv


def _dry_run() -> str:
    summary, plan = rs.dry_run_plan()
    return render_report(summary, plan=plan)


def _with_spend() -> str:
    """Four regions with their budget ledger: the spend chart (planned, committed, actual)."""
    summary, series = rs.four_region_run()
    start = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
    ledger = [{"job_name": f"job-{i}", "target_key": r["target_key"], "reserved_at": start + timedelta(minutes=i),
               "expected_cost_usd": r["planned_cost_usd"], "settled_at": start + timedelta(minutes=90 + 7 * i),
               "actual_cost_usd": r["actual_cost_usd"]} for i, r in enumerate(summary["rows"])]
    moved = summary["rows"][1]
    carries = [{"target_key": moved["target_key"], "job_name": moved["training_job_name"],
                "from_job_name": f"{moved['training_job_name']}-a1", "from_region": "us-west-2",
                "to_region": moved["region_code"], "resumed_step": 24, "objects": 7, "bytes_copied": 3332,
                "seconds": 0.4, "from_actual_cost_usd": 12.0, "from_billing_usd_per_hour": 24.0,
                "from_instance_count": 2, "instance_type": "ml.p4d.24xlarge"}]
    return render_report(summary, series, spend=ledger, budget_usd=400.0, carries=carries)


def _many_targets() -> str:
    """Past the step charts' per-target legend: one named line per region."""
    summary, series = rs.large_run(60)
    return render_report(summary, series)


CASES = {
    "four-regions": lambda: render_report(*rs.four_region_run()),
    "with-spend": _with_spend,
    "sixty-targets": _many_targets,
    "failed-and-moved": lambda: render_report(*rs.failed_and_moved_run()),
    "dry-run": _dry_run,
}
CHARTS = {"four-regions": 5, "with-spend": 6, "sixty-targets": 5, "failed-and-moved": 5, "dry-run": 0}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_report_renders_offline_with_its_charts_and_no_console_error(
    case: str, browser: Any, artifacts: Path
) -> None:
    page = artifacts / f"report-{case}.html"
    page.write_text(CASES[case]())
    browser.set_window_size(1440, 1000)
    browser.get(page.as_uri())
    assert browser.title.startswith("Training run ")
    sizes = browser.execute_script(
        "return Array.from(document.querySelectorAll('svg.chart'))"
        ".map(s => { const r = s.getBoundingClientRect(); return [r.width, r.height,"
        " s.querySelectorAll('path, text, use').length]; })"
    )
    assert len(sizes) == CHARTS[case]
    for width, height, marks in sizes:
        assert width > 300 and height > 100 and marks > 10, (width, height, marks)
    charts = rs.assert_every_line_named(browser)
    assert all(named >= 1 for _, named, _, _ in charts), charts
    # 1440 px: neither the page nor a table scrolls sideways
    assert browser.execute_script(rs.SIDEWAYS_JS) == [False, []]
    rows = browser.execute_script("return document.querySelectorAll('tbody tr').length")
    assert rows >= 4
    assert rs.console_errors(browser) == []
    shot = artifacts / f"report-{case}.png"
    rs.full_page_screenshot(browser, shot)
    rs.assert_not_blank(shot)
    pdf = base64.b64decode(browser.print_page())
    assert pdf.startswith(b"%PDF") and len(pdf) > 5000
    (artifacts / f"report-{case}.pdf").write_bytes(pdf)


def test_a_2000_target_report_is_a_short_summary_that_renders_fast(browser: Any, artifacts: Path) -> None:
    """Issue 33: 2,000 targets were 8.8 MiB, 352,000 px and 17 s; now per region and
    status, the failed and the worst in full, all of them in the CSV beside it.
    Generous bounds (a shared CI machine); bench/report_bench.py has the figures."""
    summary, series = rs.large_run(2000)
    t0 = time.perf_counter()
    html = render_report(summary, series)
    render_s = time.perf_counter() - t0
    assert render_s < 10, f"render took {render_s:.1f} s"
    assert len(html.encode()) < 1024 * 1024, f"{len(html.encode())} bytes"
    failed = [r for r in summary["rows"] if r["status"] == "Failed"]
    listed = rs.tables(html)["targets"]
    assert {t["target"] for t in listed} >= {r["target_key"] for r in failed}  # every failed one in full
    assert len(listed) < len(summary["rows"]) and len(summary["rows"]) >= LARGE_RUN
    by_region = {r["region"]: r for r in rs.tables(html)["by-region"]}
    assert sum(int(r["targets"]) for r in by_region.values()) == 2000
    assert sum(int(r["not completed"]) for r in by_region.values()) == len(failed)
    assert {r["status"]: int(r["targets"]) for r in rs.tables(html)["by-status"]} == {
        "Completed": 2000 - len(failed), "Failed": len(failed)}
    assert f'href="{TARGETS_CSV}"' in html
    assert len(targets_csv(summary["rows"]).splitlines()) == 2001  # the header and every target

    page = artifacts / "report-2000-targets.html"
    page.write_text(html)
    browser.set_window_size(1440, 1000)
    t0 = time.perf_counter()
    browser.get(page.as_uri())
    load_s = time.perf_counter() - t0
    height = browser.execute_script("return document.documentElement.scrollHeight")
    assert load_s < 5, f"chromium took {load_s:.1f} s"
    assert height < 30000, f"{height} px tall"
    assert browser.execute_script(rs.SIDEWAYS_JS) == [False, []]
    rs.assert_every_line_named(browser)
    assert rs.console_errors(browser) == []
    pdf = base64.b64decode(browser.print_page())
    assert pdf.startswith(b"%PDF")
