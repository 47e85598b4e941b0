"""Report benchmark (issue 14): size and render time of the per-run report; prints
figures, asserts nothing.

For each target count: the summary (summary.summarize) and the report
(report.render_report, every chart) of a run whose targets each logged 12 metric lines
(48 steps), spread over the four sample regions; one with a failed target and a
failover move every tenth target. Render time is the median of ``--repeats`` renders
in this process (matplotlib already imported: the first render's import cost is
printed separately).

    PYTHONPATH=tests/report .venv/bin/python bench/report_bench.py [--targets 4,500] [--repeats 3]

(``tests/report/report_support.py`` makes the realistic inputs the report tests use.)
"""

from __future__ import annotations

import argparse
import statistics
import time

import report_support as rs

from regional_training.metric_format import METRIC_DEFINITIONS
from regional_training.report import parse_metric_series, render_report
from regional_training.summary import summarize


def run_of(targets: int) -> tuple[dict, dict]:
    rows, series = [], {}
    for index in range(targets):
        region = rs.REGIONS[index % len(rs.REGIONS)]
        dataset = f"dataset-{index:04d}-v1"
        extra: dict = {}
        if index % 10 == 9:
            extra = {"status": "Failed", "failure_reason": "AlgorithmError: out of memory", "model_artifact_uri": None}
        elif index % 10 == 5:
            extra = {"moves": [{"move_number": 1, "from_region": "eu-west-1", "to_region": region,
                                "from_option": "spot", "to_option": "on_demand", "error_code": "CapacityError",
                                "error_message": "insufficient capacity"}]}
        rows.append(rs.row(index % 40, region, dataset, **extra))
        series[dataset] = parse_metric_series(rs.log_lines(index % 40), METRIC_DEFINITIONS)
    return summarize(rows, run_id="bench"), series


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default="4,500", help="comma-separated target counts (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="renders per count (default: %(default)s)")
    args = parser.parse_args()

    start = time.perf_counter()
    render_report(*run_of(1))
    print(f"first render incl. matplotlib import: {time.perf_counter() - start:.2f} s")
    # CPU seconds too: on a shared machine the wall time mostly measures the neighbours.
    print(f"{'targets':>8} {'summary s':>10} {'render s (median)':>18} {'render CPU s':>13} {'report KiB':>11} "
          f"{'charts':>7}")
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
        print(f"{targets:>8} {summary_s:>10.3f} {statistics.median(times):>18.2f} {statistics.median(cpu):>13.2f} "
              f"{len(page.encode()) / 1024:>11.0f} {page.count('<svg '):>7}")


if __name__ == "__main__":
    main()
