"""The per-run report: one self-contained HTML page a person opens after a night's run.

The summary step writes it to ``run_layout.RunLayout.report`` (next to ``summary.json``).
Input is what the run already records, nothing new to keep in step:

* ``summary`` -- :func:`regional_training.summary.summarize`'s result (its ``rows`` are
  the recorded ``training_runs`` rows plus their failover ``moves``);
* ``series`` -- per target key, the job's metric points over its steps, read from its
  CloudWatch log stream by :func:`fetch_metric_series` with the request's own
  ``MetricDefinitions`` (the regexes SageMaker applies, :mod:`metric_format`);
* ``links`` -- per target key (and ``""`` for the run), ``label -> URL``
  (:func:`regional_training.links.report_links` builds them);
* ``plan`` -- for a dry run, the selected targets with their ranked ``alternatives``
  (:func:`plan_from_jobs`), so the plan shows in the same form.

Charts are matplotlib figures saved as inline SVG: matplotlib is the long-kept standard
plotting library, renders on a server with no display (the ``Figure`` API, no pyplot
global state), and SVG needs no JavaScript, no CDN and no fonts shipped (text stays
text: searchable, printable, small). The page works opened from disk, from S3, or
served by the campaign view.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from regional_training.metric_format import LINE_PREFIX, METRIC_DEFINITIONS

#: SageMaker's log group for training jobs; each host logs to ``<job>/algo-<n>-<epoch>``.
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
#: Rank 0 runs on the first host and is the only rank that prints metric lines.
FIRST_HOST_STREAM = "{job_name}/algo-1-"
#: The entry point prints ``step=<n>`` on every metric line (images/training/train.py).
_STEP = re.compile(rf"{re.escape(LINE_PREFIX)}.*?\bstep=(\d+)")

#: Metric names (as SageMaker reports them) charted over the steps, with their titles.
CHARTED = {
    "train:images_per_sec": "images/sec",
    "train:loss": "training loss",
    "train:accuracy": "training accuracy",
}
#: Above this many targets the step charts drop their legend (it would hide the lines).
LEGEND_LIMIT = 12

_STATUS_COLOURS = {"Completed": "#2e7d32", "Reused": "#1565c0", "Failed": "#c62828", "Stopped": "#ef6c00",
                   "NotStarted": "#757575"}


# -- metric series from the job's log ---------------------------------------------------


def parse_metric_series(
    messages: Iterable[str], definitions: Sequence[Mapping[str, str]] | None = None
) -> list[dict[str, float]]:
    """Per-step points of every defined metric in ``messages`` (log lines, in order).

    Each point is ``{"step": n, <metric name>: value, ...}``; a line without ``step=``
    counts as the step after the previous one. ``definitions`` are the request's
    ``MetricDefinitions`` (default: :data:`METRIC_DEFINITIONS`), so the report reads
    exactly what SageMaker read.
    """
    patterns = [(d["Name"], re.compile(d["Regex"])) for d in (definitions or METRIC_DEFINITIONS)]
    points: list[dict[str, float]] = []
    for message in messages:
        for line in message.splitlines():
            values = {}
            for name, pattern in patterns:
                match = pattern.search(line)
                if match:
                    values[name] = float(match.group(1))
            if not values:
                continue
            step = _STEP.search(line)
            values["step"] = float(step.group(1)) if step else (points[-1]["step"] + 1 if points else 0.0)
            points.append(values)
    return points


def logs_hook(region: str) -> Any:
    """The Amazon provider's CloudWatch Logs hook in ``region``, its client made now."""
    from regional_training.aws_hooks import AwsLogsHook
    from regional_training.aws_io import AWS_CONN_ID, BOTOCORE_CONFIG

    hook = AwsLogsHook(aws_conn_id=AWS_CONN_ID, region_name=region, config=BOTOCORE_CONFIG)
    hook.conn  # noqa: B018 - resolve the connection here, not in a worker thread
    return hook


def fetch_metric_series(
    job_name: str,
    region: str,
    *,
    definitions: Sequence[Mapping[str, str]] | None = None,
    hook: Any = None,
) -> list[dict[str, float]]:
    """Read a job's metric points from its first host's CloudWatch log stream(s).

    Uses the Amazon provider's ``AwsLogsHook`` in the job's own region (the emulator
    offline, through the connection's ``endpoint_url``); ``hook``: one already made for
    that region. A job that never logged (or never started) has no stream: an empty
    series, not an error.
    """
    hook = hook or logs_hook(region)
    prefix = FIRST_HOST_STREAM.format(job_name=job_name)
    streams: list[str] = []
    paginator = hook.conn.get_paginator("describe_log_streams")
    try:
        for page in paginator.paginate(logGroupName=LOG_GROUP, logStreamNamePrefix=prefix):
            streams += [s["logStreamName"] for s in page.get("logStreams", [])]
    except hook.conn.exceptions.ResourceNotFoundException:
        return []
    # A spot job resumed after an interruption logs to a new stream: read them in order.
    messages = (event["message"] for stream in sorted(streams) for event in hook.get_log_events(LOG_GROUP, stream))
    return parse_metric_series(messages, definitions)


def fetch_run_series(
    rows: Sequence[Mapping[str, Any]],
    jobs: Sequence[Mapping[str, Any]] = (),
    *,
    fetch: Callable[..., list[dict[str, float]]] = fetch_metric_series,
    max_workers: int = 8,
) -> dict[str, list[dict[str, float]]]:
    """Metric series of every row's recorded job, keyed by target key.

    ``jobs`` (the build step's) supply each target's ``MetricDefinitions``; a row whose
    job never started is skipped.
    """
    from concurrent.futures import ThreadPoolExecutor

    definitions = {j["target"]["dataset_key"]: j["request"].get("MetricDefinitions") for j in jobs}
    started = [row for row in rows if row.get("training_job_arn")]
    # The connection is read here (in a task, through the supervisor); the threads only
    # call AWS, with one thread-safe boto3 client per region.
    hooks = {region: logs_hook(region) for region in sorted({row["region_code"] for row in started})}
    # One log read per job, each a few API calls: in parallel, so 500 targets take seconds.
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        results = pool.map(
            lambda row: fetch(row["training_job_name"], row["region_code"],
                              definitions=definitions.get(row["target_key"]), hook=hooks[row["region_code"]]),
            started,
        )
        return {row["target_key"]: series for row, series in zip(started, results, strict=True)}


def plan_from_jobs(jobs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The dry-run plan from the build step's jobs: each target with its alternatives."""
    return [{**job["target"], "alternatives": [f["target"] for f in job.get("failover", [])]} for job in jobs]


# -- charts -------------------------------------------------------------------------


#: Above this many rows a chart uses fixed margins: the constrained-layout solver takes
#: tens of seconds over hundreds of tick labels (bench/report_bench.py).
FIXED_LAYOUT_ROWS = 40


def new_figure(height: float, labels: Sequence[str] = ()) -> Any:
    """A figure ``height`` inches tall; ``labels``: the y tick labels, if one per row."""
    from matplotlib.figure import Figure

    if len(labels) <= FIXED_LAYOUT_ROWS:
        return Figure(figsize=(9, height), layout="constrained")
    fig = Figure(figsize=(9, height))
    left_inches = 0.3 + 0.065 * max(len(label) for label in labels)  # ~9 pt characters
    fig.subplots_adjust(left=min(0.6, left_inches / 9), right=0.97, top=1 - 0.45 / height, bottom=0.6 / height)
    return fig


def svg_of(fig: Any, title: str) -> str:
    import matplotlib

    buffer = io.StringIO()
    # Text stays text (no glyph paths): smaller, searchable; a fixed salt makes the same
    # input render the same bytes.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "mrt-report", "font.size": 9}):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    return text.replace("<svg ", f'<svg role="img" aria-label="{html.escape(title)}" class="chart" ', 1)


def _label(row: Mapping[str, Any]) -> str:
    return f"{row['target_key']} ({row['region_code']})"


def cost_chart(rows: Sequence[Mapping[str, Any]]) -> str:
    """Planned vs actual cost per target (horizontal bars: any number of targets fits)."""
    labels = [_label(r) for r in rows]
    fig = new_figure(1.2 + 0.32 * len(rows), labels)
    ax = fig.add_subplot()
    positions = list(range(len(rows)))
    planned = [r.get("planned_cost_usd") or 0.0 for r in rows]
    actual = [r.get("actual_cost_usd") or 0.0 for r in rows]
    ax.barh([p - 0.2 for p in positions], planned, height=0.4, label="planned", color="#90a4ae")
    ax.barh([p + 0.2 for p in positions], actual, height=0.4, label="actual", color="#1565c0")
    ax.set_yticks(positions, labels)
    ax.invert_yaxis()
    ax.set_xlabel("USD")
    ax.legend(loc="lower right")
    ax.set_title("Planned vs actual cost")
    return svg_of(fig, "Planned vs actual cost per target")


def step_chart(
    metric: str, rows: Sequence[Mapping[str, Any]], series: Mapping[str, Sequence[Mapping[str, float]]]
) -> str:
    """One metric over the steps, one line per target."""
    fig = new_figure(3.2)
    ax = fig.add_subplot()
    for row in rows:
        points = [p for p in series.get(row["target_key"], []) if metric in p]
        if points:
            # markers only while a reader can tell the lines apart (and the SVG stays small)
            few = len(rows) <= LEGEND_LIMIT
            ax.plot([p["step"] for p in points], [p[metric] for p in points], label=_label(row),
                    marker="." if few else None, linewidth=1.5 if few else 0.6)
    ax.set_xlabel("step")
    ax.set_ylabel(CHARTED[metric])
    ax.set_title(f"{CHARTED[metric]} over the steps")
    if len(rows) <= LEGEND_LIMIT and ax.lines:
        ax.legend(fontsize=8)
    return svg_of(fig, f"{CHARTED[metric]} over the steps")


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def timeline_chart(rows: Sequence[Mapping[str, Any]]) -> str:
    """Each target's recorded job (start to end, by status) with its attempt and moves."""
    from matplotlib.dates import DateFormatter, date2num

    fig = new_figure(1.4 + 0.4 * len(rows), [_label(r) for r in rows])
    ax = fig.add_subplot()
    times = [t for r in rows for t in (_time(r.get("training_start_time")), _time(r.get("training_end_time"))) if t]
    for index, row in enumerate(rows):
        start, end = _time(row.get("training_start_time")), _time(row.get("training_end_time"))
        moves = row.get("moves") or []
        route = " → ".join([*(m["from_region"] for m in moves), row["region_code"]])
        note = f"{route}, attempt {row.get('attempt', 1)}"
        if start:
            finish = end or max(times)
            left = date2num(start)
            ax.broken_barh([(left, max(date2num(finish) - left, 1e-5))], (index - 0.35, 0.7),
                           color=_STATUS_COLOURS.get(row["status"], "#6a1b9a"))
            ax.text(left, index, f" {note}", va="center", fontsize=8, color="white" if end else "black")
        else:
            ax.text(date2num(min(times)) if times else 0, index, f" {note}: never started", va="center", fontsize=8)
        for move in moves:
            moved = _time(move.get("moved_at")) or start
            if moved:
                ax.plot([date2num(moved)], [index], marker="x", color="black")
    ax.set_yticks(list(range(len(rows))), [_label(r) for r in rows])
    ax.invert_yaxis()
    ax.set_ylim(len(rows) - 0.5, -0.5)
    if times:
        ax.xaxis_date()
        ax.xaxis.set_major_formatter(DateFormatter("%H:%M:%S"))
        ax.set_xlabel("time (UTC)")
    ax.set_title("Jobs: start to end by region (x: failover move)")
    return svg_of(fig, "Timeline of the jobs")


# -- the page -------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5rem;color:#212121}
h1{font-size:1.4rem} h2{font-size:1.15rem;margin-top:1.6rem;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border:1px solid #ddd;padding:.25rem .45rem;text-align:left;vertical-align:top}
th{background:#f5f5f5} td.num{text-align:right;font-variant-numeric:tabular-nums}
.Completed{color:#2e7d32;font-weight:600}
.Reused{color:#1565c0;font-weight:600} .Failed,.NotStarted,.Stopped{color:#c62828;font-weight:600}
svg.chart{width:100%;max-width:64rem;height:auto;display:block;margin:.5rem 0}
.wide{overflow-x:auto}
.figure{break-inside:avoid;page-break-inside:avoid}
@media print{body{margin:0} a{color:inherit} table{font-size:.6rem} .wide{overflow:visible}}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _cell(value: Any, spec: str | None = None) -> str:
    if spec is not None:
        return f'<td class="num">{_e(_num(value, spec))}</td>'
    return f"<td>{_e('-' if value is None else value)}</td>"


def _links(items: Mapping[str, str]) -> str:
    return " · ".join(f'<a href="{_e(url)}">{_e(label)}</a>' for label, url in items.items() if url)


def _table(head: Sequence[str], body: Iterable[str], table_id: str) -> str:
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    return (f'<div class="wide"><table id="{table_id}"><thead><tr>{header}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _target_rows(rows: Sequence[Mapping[str, Any]], links: Mapping[str, Mapping[str, str]]) -> str:
    head = ("region", "target", "status", "purchase option", "attempt", "job", "start", "end", "images/sec",
            "loss", "accuracy", "planned USD", "actual USD", "failover moves", "failure reason", "links")
    body = []
    for row in rows:
        metrics = row.get("metrics") or {}
        moves = "; ".join(
            f"{m['from_region']} → {m.get('to_region') or 'none'} ({m.get('error_code')})"
            for m in row.get("moves") or []
        )
        body.append(
            f'<tr data-target="{_e(row["target_key"])}">'
            + _cell(row["region_code"]) + _cell(row["target_key"])
            + f'<td class="{_e(row["status"])}">{_e(row["status"])}</td>'
            + _cell(row.get("purchase_option")) + _cell(row.get("attempt"))
            + _cell(row.get("training_job_name"))
            + _cell(row.get("training_start_time")) + _cell(row.get("training_end_time"))
            + _cell(metrics.get("train:images_per_sec"), ".1f")
            + _cell(metrics.get("train:loss"), ".4f")
            + _cell(metrics.get("train:accuracy"), ".4f")
            + _cell(row.get("planned_cost_usd"), ".2f") + _cell(row.get("actual_cost_usd"), ".2f")
            + _cell(moves or None)
            + _cell(row.get("failure_reason") or (f"reused from run {row['reused_from_run_id']}"
                                                   if row.get("reused_from_run_id") else None))
            + f"<td>{_links(links.get(row['target_key'], {}))}</td></tr>"
        )
    return _table(head, body, "targets")


def _plan_rows(plan: Sequence[Mapping[str, Any]]) -> str:
    head = ("dataset", "campaign", "choice", "region", "purchase option", "USD/instance-hour", "planned USD",
            "failure risk", "risk USD", "s3 copy")
    body = []
    for target in plan:
        # A scan's job is the dataset at one point: its target key names both.
        label = f"{target['dataset_key']}_{target['point_id']}" if target.get("point_id") else target["dataset_key"]
        for rank, candidate in enumerate([target, *target.get("alternatives", [])]):
            body.append(
                f'<tr data-target="{_e(label)}" data-rank="{rank}">'
                + _cell(label) + _cell(target.get("campaign_key"))
                + _cell("placed" if rank == 0 else f"alternative {rank}")
                + _cell(candidate["region_code"]) + _cell(candidate.get("purchase_option"))
                + _cell(candidate.get("price_per_instance_hour"), ".4f")
                + _cell(candidate.get("planned_cost_usd"), ".2f")
                # the placement's failure model (issue 31): it ranks by planned + risk USD
                + _cell(candidate.get("failure_probability"), ".1%") + _cell(candidate.get("risk_usd"), ".2f")
                + _cell(candidate.get("s3_uri")) + "</tr>"
            )
    return _table(head, body, "plan")


def _scan_rows(ranking: Mapping[str, Any]) -> str:
    """A parameter scan's points per dataset, best first (summary's ``scan``)."""
    from regional_training.scan import describe

    head = ("dataset", "rank", "point", "overrides", ranking["metric"], "images/sec", "actual USD", "region",
            "status", "model")
    body = []
    for dataset, entries in ranking["datasets"].items():
        for e in entries:
            body.append(
                f'<tr data-target="{_e(e["target_key"])}"' + (' class="best"' if e["best"] else "") + ">"
                + _cell(dataset) + _cell(("best" if e["best"] else e["rank"]) or "-") + _cell(e["point_id"])
                + _cell(describe(e["overrides"])) + _cell(e["value"], ".4f") + _cell(e["images_per_sec"], ".1f")
                + _cell(e["actual_cost_usd"], ".2f") + _cell(e["region"]) + _cell(e["status"])
                + _cell(e.get("best_model_uri") or e.get("model_artifact_uri")) + "</tr>")
    return _table(head, body, "scan")


def _left_out(items: Sequence[Mapping[str, Any]]) -> str:
    body = [
        f'<tr data-target="{_e(i["dataset_key"])}">' + _cell(i["dataset_key"]) + _cell(i.get("campaign_key"))
        + _cell(i.get("reason")) + _cell(i.get("explanation")) + "</tr>"
        for i in items
    ]
    return _table(("dataset", "campaign", "reason", "why"), body, "left-out")


def render_report(
    summary: Mapping[str, Any],
    series: Mapping[str, Sequence[Mapping[str, float]]] | None = None,
    links: Mapping[str, Mapping[str, str]] | None = None,
    *,
    plan: Sequence[Mapping[str, Any]] | None = None,
) -> str:
    """The run's report as one self-contained HTML document (see the module docstring)."""
    series, links = series or {}, links or {}
    rows = list(summary.get("rows") or [])
    run_id = summary["run_id"]
    if summary.get("dry_run"):
        headline = f"dry run: {len(plan or [])} target(s) planned, nothing launched"
    else:
        headline = f"{summary.get('completed', 0)} of {summary.get('targets', len(rows))} target(s) completed"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Training run {_e(run_id)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Training run {_e(run_id)}</h1>",
        f'<p id="headline">{_e(headline)}. Planned cost {_e(_num(summary.get("planned_cost_usd"), ".2f"))} USD, '
        f'actual {_e(_num(summary.get("actual_cost_usd"), ".2f"))} USD.</p>',
    ]
    if links.get(""):
        parts.append(f"<p>{_links(links[''])}</p>")
    if summary.get("failed"):
        items = "".join(
            f"<li><b>{_e(f['region'])}</b> {_e(f['target'])}: {_e(f['status'])} — {_e(f.get('reason'))}</li>"
            for f in summary["failed"]
        )
        parts.append(f'<h2>Failed</h2><ul id="failed">{items}</ul>')
    if plan:
        parts += ["<h2>Plan: placement and ranked alternatives</h2>", _plan_rows(plan)]
    if summary.get("scan"):
        order = "higher" if summary["scan"]["higher_is_better"] else "lower"
        parts += [f"<h2>Parameter scan: points ranked by {_e(summary['scan']['metric'])} ({order} is better)</h2>",
                  _scan_rows(summary["scan"])]
    if rows:
        parts += ["<h2>Targets</h2>", _target_rows(rows, links)]
        parts.append(f'<h2>Cost</h2><div class="figure">{cost_chart(rows)}</div>')
        parts.append(f'<h2>Timeline</h2><div class="figure">{timeline_chart(rows)}</div>')
        if any(series.get(r["target_key"]) for r in rows):
            parts.append("<h2>Training over the steps</h2>")
            parts += [f'<div class="figure">{step_chart(metric, rows, series)}</div>' for metric in CHARTED]
    if summary.get("left_out"):
        parts += ["<h2>Left out of the plan</h2>", _left_out(summary["left_out"])]
    parts.append("</body></html>")
    return "\n".join(parts)
