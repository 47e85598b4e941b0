"""Report benchmark (issue 14): size and render time of the per-run report; prints
figures, asserts nothing.

For each target count: the summary (summary.summarize) and the report
(report.render_report, every chart) of a run whose targets each logged 12 metric lines
(48 steps), spread over the four sample regions; one with a failed target and a
failover move every tenth target. Render time is the median of ``--repeats`` renders
in this process (matplotlib already imported: the first render's import cost is
printed separately).

With ``--browser`` each report is also opened from disk in headless chromium (Debian's,
through its chromedriver, as tests/report does) at 1440 px wide: the time until the
page has loaded and laid out, its height in px and whether it scrolls sideways.

    .venv/bin/python -m bench.report_bench [--targets 4,500] [--repeats 3] [--browser]

(``tests/report/report_support.py`` makes the realistic inputs the report tests use.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from regional_training.report.report import render_report

# The report tests' realistic inputs, one definition: tests/ is no package, so its folder
# goes on the path here rather than on every caller's PYTHONPATH.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "report"))
import report_support as rs


def run_of(targets: int) -> tuple[dict, dict]:
    return rs.large_run(targets)


def open_browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1440,900", "--hide-scrollbars"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(300)
    return driver


def browse(driver: Any, page: str) -> tuple[float, int, bool]:
    """(seconds to load and lay out, page height px, scrolls sideways) at 1440 px."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "report.html"
        path.write_text(page)
        driver.get("about:blank")
        t0 = time.perf_counter()
        driver.get(path.as_uri())  # returns once the document has loaded
        height, wide = driver.execute_script(
            "const d = document.documentElement; return [d.scrollHeight, d.scrollWidth > d.clientWidth];")
        return time.perf_counter() - t0, int(height), bool(wide)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default="4,500", help="comma-separated target counts (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="renders per count (default: %(default)s)")
    parser.add_argument("--browser", action="store_true", help="also open each report in headless chromium")
    args = parser.parse_args()
    driver = open_browser() if args.browser else None

    start = time.perf_counter()
    render_report(*run_of(1))
    print(f"first render incl. matplotlib import: {time.perf_counter() - start:.2f} s")
    # CPU seconds too: on a shared machine the wall time mostly measures the neighbours.
    print(f"{'targets':>8} {'summary s':>10} {'render s (median)':>18} {'render CPU s':>13} {'report KiB':>11} "
          f"{'charts':>7}" + (f" {'browser s':>10} {'height px':>10} {'sideways':>9}" if driver else ""))
    for targets in (int(t) for t in args.targets.split(",")):
        t0 = time.perf_counter()
        summary, series = run_of(targets)
        summary_s = time.perf_counter() - t0
        times, cpu, page = [], [], ""
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            page = render_report(summary, series)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        line = (f"{targets:>8} {summary_s:>10.3f} {statistics.median(times):>18.2f} {statistics.median(cpu):>13.2f} "
                f"{len(page.encode()) / 1024:>11.0f} {page.count('<svg '):>7}")
        if driver is not None:
            seconds, height, wide = browse(driver, page)
            line += f" {seconds:>10.2f} {height:>10} {'yes' if wide else 'no':>9}"
        print(line, flush=True)
    if driver is not None:
        driver.quit()


if __name__ == "__main__":
    main()
