"""The report in a real headless chromium: opened from disk (offline), charts drawn, no
console error, printable; screenshots kept as test artifacts."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import report_support as rs

from regional_training.report import render_report


def _dry_run() -> str:
    summary, plan = rs.dry_run_plan()
    return render_report(summary, plan=plan)


CASES = {
    "four-regions": lambda: render_report(*rs.four_region_run()),
    "failed-and-moved": lambda: render_report(*rs.failed_and_moved_run()),
    "dry-run": _dry_run,
}
CHARTS = {"four-regions": 5, "failed-and-moved": 5, "dry-run": 0}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_report_renders_offline_with_its_charts_and_no_console_error(
    case: str, browser: Any, artifacts: Path
) -> None:
    page = artifacts / f"report-{case}.html"
    page.write_text(CASES[case]())
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
    rows = browser.execute_script("return document.querySelectorAll('tbody tr').length")
    assert rows >= 4
    assert rs.console_errors(browser) == []
    shot = artifacts / f"report-{case}.png"
    rs.full_page_screenshot(browser, shot)
    rs.assert_not_blank(shot)
    pdf = base64.b64decode(browser.print_page())
    assert pdf.startswith(b"%PDF") and len(pdf) > 5000
    (artifacts / f"report-{case}.pdf").write_bytes(pdf)
