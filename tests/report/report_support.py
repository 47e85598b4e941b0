"""Realistic report inputs and browser checks shared by the report tests and the bench.

The rows have the shape the collectors return (``training_runs`` columns plus the
failover ``moves``); the metric series are parsed from log lines printed with the
entry point's own :func:`format_metric_line`, so the inputs go through the real parser.
"""

from __future__ import annotations

import hashlib
import html.parser
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from regional_training.plan.metric_format import format_metric_line
from regional_training.report.report import parse_metric_series
from regional_training.report.summary import summarize

REGIONS = ("eu-central-1", "eu-west-1", "us-east-1", "us-west-2")
DATASETS = {
    "eu-central-1": "munich-autobahn-2026-v1",
    "eu-west-1": "dublin-urban-2026-v1",
    "us-east-1": "boston-winter-2026-v1",
    "us-west-2": "seattle-rain-2026-v1",
}
START = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
HASH = hashlib.sha256(b"hyperparameters").hexdigest()


def log_lines(index: int, steps: int = 48) -> list[str]:
    """What a job's rank 0 prints: a metric line every 4 steps, loss falling."""
    lines = ["Starting training (rank 0 of 8)"]
    for step in range(4, steps + 1, 4):
        lines.append(format_metric_line(
            step=step, epoch=1 + step // 16, train_loss=2.5 / (1 + step / 8) + index * 0.01,
            train_accuracy=min(0.99, 0.2 + step / 60), images_per_sec=2100.0 + 40 * index + step,
        ))
        lines.append(f"step {step} done")
    return lines


def row(index: int, region: str, dataset: str, *, status: str = "Completed", **extra: Any) -> dict[str, Any]:
    series = parse_metric_series(log_lines(index))
    last = series[-1]
    start = START + timedelta(minutes=3 * index)
    job = f"mrt-{dataset}"[:63]
    base: dict[str, Any] = {
        "dag_id": "multi_region_training", "run_id": "scheduled__2026-11-27T02:00:00+00:00",
        "target_key": dataset, "region_code": region, "dataset_id": index + 1, "copy_id": index + 1,
        "training_job_name": job,
        "training_job_arn": f"arn:aws:sagemaker:{region}:123456789012:training-job/{job}",
        "status": status, "failure_reason": None, "hyperparameters_sha256": HASH,
        "instance_type": "ml.p4d.24xlarge", "instance_count": 2,
        "training_start_time": start.isoformat(),
        "training_end_time": (start + timedelta(minutes=80 + 7 * index)).isoformat(),
        "billable_seconds": (80 + 7 * index) * 60, "attempt": 1,
        "purchase_option": ("spot", "reserved", "on_demand", "spot")[index % 4], "placement_rank": 1,
        "price_per_instance_hour": 12.5 + index, "billing_usd_per_hour": 12.5 + index,
        "planned_cost_usd": round(40.0 + 3.25 * index, 2), "actual_cost_usd": round(35.5 + 2.75 * index, 2),
        "metrics": {k: v for k, v in last.items() if k != "step"},
        "source_artifact_uri": f"s3://mrt-output-{region}/{job}/output/model.tar.gz",
        "model_artifact_uri": f"s3://mrt-central-artifacts/runs/x/artifacts/{dataset}/model.tar.gz",
        "moves": [],
    }
    return {**base, **extra}


def four_region_run() -> tuple[dict[str, Any], dict[str, list[dict[str, float]]]]:
    """A clean 4-region run: every target completed."""
    rows = [row(i, region, DATASETS[region]) for i, region in enumerate(REGIONS)]
    summary = summarize(rows, run_id=rows[0]["run_id"])
    return summary, {r["target_key"]: parse_metric_series(log_lines(i)) for i, r in enumerate(rows)}


def failed_and_moved_run() -> tuple[dict[str, Any], dict[str, list[dict[str, float]]]]:
    """One region failed (its entry point raised), one target failed over eu-west-1 -> us-east-1."""
    rows = [row(i, region, DATASETS[region]) for i, region in enumerate(REGIONS)]
    rows[0] = row(0, "eu-central-1", DATASETS["eu-central-1"], status="Failed", attempt=2,
                  failure_reason="AlgorithmError: ValueError: no TFRecord shards under /opt/ml/input/data/train",
                  model_artifact_uri=None, actual_cost_usd=3.1)
    moved = DATASETS["eu-west-1"]
    rows[1] = row(1, "us-east-1", moved, moves=[{
        "move_number": 1, "from_region": "eu-west-1", "to_region": "us-east-1", "from_option": "reserved",
        "to_option": "on_demand", "error_code": "ResourceLimitExceeded",
        "error_message": "The account-level service limit 'ml.p4d.24xlarge for training job usage' is 0 Instances",
    }], purchase_option="on_demand", placement_rank=2)
    summary = summarize(rows, run_id="manual__2026-11-28T01:00:00+00:00")
    series = {r["target_key"]: parse_metric_series(log_lines(i))
              for i, r in enumerate(rows) if r["status"] == "Completed"}
    return summary, series


def dry_run_plan() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A dry run: three placed targets with ranked alternatives, one left out."""
    plan = []
    for index, region in enumerate(REGIONS[:3]):
        dataset = DATASETS[region]
        target = {
            "region_code": region, "s3_uri": f"s3://mrt-campaign-data-{region}/datasets/{dataset}/",
            "campaign_key": dataset.removesuffix("-v1"), "dataset_key": dataset, "dataset_id": index + 1,
            "copy_id": index + 1, "output_bucket": f"mrt-output-{region}", "purchase_option": "spot",
            "placement_rank": 1, "price_per_instance_hour": 11.25 + index, "billing_usd_per_hour": 11.25 + index,
            "planned_cost_usd": 45.0 + index,
        }
        alternative = {**target, "region_code": "us-west-2", "purchase_option": "on_demand", "placement_rank": 2,
                       "s3_uri": f"s3://mrt-campaign-data-us-west-2/datasets/{dataset}/",
                       "price_per_instance_hour": 32.77, "billing_usd_per_hour": 32.77, "planned_cost_usd": 131.08}
        plan.append({**target, "alternatives": [alternative]})
    left_out = [{"dataset_key": "berlin-night-2026-v1", "campaign_key": "berlin-night-2026", "reason": "over_budget",
                 "explanation": "every copy's expected cost exceeds the remaining budget"}]
    summary = summarize([], run_id="manual__dry", dry_run=True, planned=len(plan), left_out=left_out)
    return summary, plan


def large_run(targets: int) -> tuple[dict[str, Any], dict[str, list[dict[str, float]]]]:
    """A run of ``targets`` spread over the four regions (the bench's and the large-report
    tests'): every tenth target failed, every tenth (another) moved by a failover."""
    rows, series = [], {}
    for index in range(targets):
        region = REGIONS[index % len(REGIONS)]
        dataset = f"dataset-{index:04d}-v1"
        extra: dict[str, Any] = {}
        if index % 10 == 9:
            extra = {"status": "Failed", "failure_reason": "AlgorithmError: out of memory", "model_artifact_uri": None}
        elif index % 10 == 5:
            extra = {"moves": [{"move_number": 1, "from_region": "eu-west-1", "to_region": region,
                                "from_option": "spot", "to_option": "on_demand", "error_code": "CapacityError",
                                "error_message": "insufficient capacity"}]}
        rows.append(row(index % 40, region, dataset, **extra))
        series[dataset] = parse_metric_series(log_lines(index % 40))
    return summarize(rows, run_id="large"), series


#: Per chart (``svg.chart``): its title, how many series it names (SVG groups whose id
#: starts with report.SERIES_ID), how many lines it draws unnamed (a ``line2d_`` group
#: straight in the axes: a plotted line without a series id) and its legend entries.
CHART_KEYS_JS = """
return Array.from(document.querySelectorAll('svg.chart')).map(svg => {
  const ids = new Set(Array.from(svg.querySelectorAll('g[id^="series-"]')).map(g => g.id));
  const unnamed = Array.from(svg.querySelectorAll('g[id^="axes_"] > g[id^="line2d_"]')).length;
  const legend = svg.querySelectorAll('g[id^="legend_"] g[id^="text_"]').length;
  return [svg.getAttribute('aria-label'), ids.size, unnamed, legend];
});
"""


def assert_every_line_named(driver: Any) -> list[list[Any]]:
    """Every chart on the page names each line it draws: as many legend entries as series,
    no line drawn without one."""
    charts = driver.execute_script(CHART_KEYS_JS)
    for title, named, unnamed, legend in charts:
        assert unnamed == 0, f"{title}: {unnamed} line(s) drawn with no name"
        assert named == legend, f"{title}: {named} series but {legend} legend entries"
    return list(charts)


#: Whether the page, or any table's box in it, scrolls sideways (at the window's width).
SIDEWAYS_JS = """
const d = document.documentElement;
const boxes = Array.from(document.querySelectorAll('.wide')).filter(w => w.scrollWidth > w.clientWidth + 1)
  .map(w => [w.querySelector('table') ? w.querySelector('table').id : '', w.scrollWidth, w.clientWidth]);
return [d.scrollWidth > d.clientWidth + 1, boxes];
"""


class TableReader(html.parser.HTMLParser):
    """Cells of every ``<table id=...>`` in a page: ``{table id: [[cell text, ...], ...]}``."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def tables(page: str) -> dict[str, list[dict[str, str]]]:
    """Each table's body rows as ``{header: cell}``."""
    reader = TableReader()
    reader.feed(page)
    out = {}
    for name, rows in reader.tables.items():
        header, *body = rows
        out[name] = [dict(zip(header, cells, strict=True)) for cells in body]
    return out


def assert_not_blank(png: Path, *, min_colours: int = 8, min_ink: float = 0.02) -> None:
    """A screenshot shows something: several colours and some non-white pixels."""
    from PIL import Image

    with Image.open(png) as image:
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20) or []
        pixels = rgb.width * rgb.height
        ink = sum(count for count, colour in colours if sum(tuple(colour)) < 3 * 235) / pixels  # type: ignore[arg-type,misc]
    assert len(colours) >= min_colours, f"{png}: only {len(colours)} colour(s): blank"
    assert ink >= min_ink, f"{png}: {ink:.1%} non-white pixels: blank"


def console_errors(driver: Any) -> list[dict[str, Any]]:
    """The page's console messages at error level (reading drains chromedriver's log)."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def full_page_screenshot(driver: Any, path: Path) -> None:
    """The whole page, not just the first screen (the window grows to the page)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(int(height) + 40, 8000))
    assert driver.save_screenshot(str(path)), path
