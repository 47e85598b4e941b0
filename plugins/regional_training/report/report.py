"""The per-run report: one self-contained HTML page a person opens after a night's run.

The summary step writes it to ``run_layout.RunLayout.report`` (next to ``summary.json``).
Input is what the run already records, nothing new to keep in step:

* ``summary`` -- :func:`regional_training.report.summary.summarize`'s result (its ``rows`` are
  the recorded ``training_runs`` rows plus their failover ``moves``);
* ``series`` -- per target key, the job's metric points over its steps, read from its
  CloudWatch log stream by :func:`fetch_metric_series` with the request's own
  ``MetricDefinitions`` (the regexes SageMaker applies, :mod:`metric_format`);
* ``links`` -- per target key (and ``""`` for the run), ``label -> URL``
  (:func:`regional_training.report.links.report_links` builds them);
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

from regional_training.plan.metric_format import LINE_PREFIX, METRIC_DEFINITIONS

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
    from regional_training.runtime.aws_hooks import AwsLogsHook
    from regional_training.runtime.aws_io import AWS_CONN_ID, BOTOCORE_CONFIG

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
#: Up to this many targets the step charts draw one named line per target; above it one
#: line per region (the median of its targets, their min-max as a band): a key of 2,000
#: entries names nothing.
LEGEND_LIMIT = 12
#: From this many targets the report is a summary (issue 33): per region and status, the
#: failed and the worst targets in full, every target in the CSV beside it.
LARGE_RUN = 200
#: How many of the worst completed targets a large run's report lists in full.
WORST = 25
#: Every target of the run, one CSV line each, written beside the report.
TARGETS_CSV = "targets.csv"
#: Each named series' SVG group id starts with this, its legend entry is a legend text:
#: the browser tests count both (every line named, tests/report).
SERIES_ID = "series-"


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


def name_series(ax: Any, series: Sequence[tuple[Any, str]], *, below: bool = False, **legend: Any) -> None:
    """Give every drawn series (a line, a bar container, a patch) its legend entry, and
    its SVG group an id (:data:`SERIES_ID`), so a reader and a test can tell them apart.
    ``below``: the key under the axes in columns (many entries), else inside them."""
    for number, (artist, _) in enumerate(series):
        for part in getattr(artist, "patches", None) or [artist]:
            part.set_gid(f"{SERIES_ID}{number}")
    handles, labels = [a for a, _ in series], [label for _, label in series]
    if below:
        columns = max(1, min(4, (len(labels) + 5) // 6))
        ax.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=columns,
                  frameon=False)
    else:
        ax.legend(handles, labels, fontsize=8, **legend)


def _label(row: Mapping[str, Any]) -> str:
    return f"{row['target_key']} ({row['region_code']})"


def _planned_vs_actual(fig: Any, labels: Sequence[str], planned: Sequence[float], actual: Sequence[float],
                       title: str, description: str) -> str:
    """Planned and actual bars side by side per label, with their key."""
    ax = fig.add_subplot()
    positions = list(range(len(labels)))
    bars_planned = ax.barh([p - 0.2 for p in positions], planned, height=0.4, color="#90a4ae")
    bars_actual = ax.barh([p + 0.2 for p in positions], actual, height=0.4, color="#1565c0")
    ax.set_yticks(positions, labels)
    ax.invert_yaxis()
    ax.set_xlabel("USD")
    name_series(ax, [(bars_planned, "planned"), (bars_actual, "actual")], loc="lower right")
    ax.set_title(title)
    return svg_of(fig, description)


def cost_chart(rows: Sequence[Mapping[str, Any]]) -> str:
    """Planned vs actual cost per target (horizontal bars: any number of targets fits)."""
    labels = [_label(r) for r in rows]
    return _planned_vs_actual(new_figure(1.2 + 0.32 * len(rows), labels), labels,
                              [r.get("planned_cost_usd") or 0.0 for r in rows],
                              [r.get("actual_cost_usd") or 0.0 for r in rows], "Planned vs actual cost",
                              "Planned vs actual cost per target")


def region_cost_chart(rows: Sequence[Mapping[str, Any]]) -> str:
    """A large run: planned vs actual cost per region (the targets summed)."""
    regions = sorted({str(r["region_code"]) for r in rows})
    return _planned_vs_actual(
        new_figure(1.4 + 0.5 * len(regions)), regions,
        [sum(r.get("planned_cost_usd") or 0.0 for r in rows if r["region_code"] == g) for g in regions],
        [sum(r.get("actual_cost_usd") or 0.0 for r in rows if r["region_code"] == g) for g in regions],
        "Planned vs actual cost per region", "Planned vs actual cost per region")


def step_chart(
    metric: str, rows: Sequence[Mapping[str, Any]], series: Mapping[str, Sequence[Mapping[str, float]]]
) -> str:
    """One metric over the steps: one named line per target, or (more than
    :data:`LEGEND_LIMIT` targets) per region the median of its targets, their range shaded."""
    import statistics

    fig = new_figure(3.4)
    ax = fig.add_subplot()
    named: list[tuple[Any, str]] = []
    if len(rows) <= LEGEND_LIMIT:
        for row in rows:
            points = [p for p in series.get(row["target_key"], []) if metric in p]
            if points:
                (line,) = ax.plot([p["step"] for p in points], [p[metric] for p in points], marker=".",
                                  linewidth=1.5)
                named.append((line, _label(row)))
        title = f"{CHARTED[metric]} over the steps"
    else:
        for region in sorted({str(r["region_code"]) for r in rows}):
            by_step: dict[float, list[float]] = {}
            for row in rows:
                if row["region_code"] == region:
                    for p in series.get(row["target_key"], []):
                        if metric in p:
                            by_step.setdefault(p["step"], []).append(p[metric])
            if not by_step:
                continue
            steps = sorted(by_step)
            (line,) = ax.plot(steps, [statistics.median(by_step[s]) for s in steps], linewidth=1.5)
            band = ax.fill_between(steps, [min(by_step[s]) for s in steps], [max(by_step[s]) for s in steps],
                                   color=line.get_color(), alpha=0.15, linewidth=0)
            band.set_gid(f"{SERIES_ID}{len(named)}")  # the same series as its median line
            count = sum(1 for r in rows if r["region_code"] == region)
            named.append((line, f"{region} ({count} targets)"))
        title = f"{CHARTED[metric]} over the steps, per region (median; band: min-max)"
    ax.set_xlabel("step")
    ax.set_ylabel(CHARTED[metric])
    ax.set_title(title)
    if named:
        name_series(ax, named, below=len(named) > 6)
    return svg_of(fig, f"{CHARTED[metric]} over the steps")


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _status_key(ax: Any, statuses: Sequence[str], extra: Sequence[tuple[Any, str]] = ()) -> None:
    """The key of a chart coloured by status: one entry per status (its bars carry the
    series id of their status), then ``extra`` series."""
    from matplotlib.patches import Patch

    name_series(ax, [(Patch(color=_STATUS_COLOURS.get(s, "#6a1b9a")), s) for s in statuses] + list(extra),
                below=True)


def timeline_chart(rows: Sequence[Mapping[str, Any]]) -> str:
    """Each target's recorded job (start to end, by status) with its attempt and moves."""
    from matplotlib.dates import DateFormatter, date2num

    fig = new_figure(1.9 + 0.4 * len(rows), [_label(r) for r in rows])
    ax = fig.add_subplot()
    # The x axis is time: the jobs' starts and ends, and the moves' times (a target that
    # moved and never started has only those; without them its marks had no time axis and
    # the chart collapsed).
    times = [t for r in rows for t in (_time(r.get("training_start_time")), _time(r.get("training_end_time")),
                                       *(_time(m.get("moved_at")) for m in r.get("moves") or [])) if t]
    moved_x, moved_y = [], []
    statuses = sorted({str(r["status"]) for r in rows})  # the key's order: each status's bars one series
    for index, row in enumerate(rows):
        start, end = _time(row.get("training_start_time")), _time(row.get("training_end_time"))
        moves = row.get("moves") or []
        route = " → ".join([*(m["from_region"] for m in moves), row["region_code"]])
        note = f"{route}, attempt {row.get('attempt', 1)}"
        if start:
            finish = end or max(times)
            left = date2num(start)
            bar = ax.broken_barh([(left, max(date2num(finish) - left, 1e-5))], (index - 0.35, 0.7),
                                 color=_STATUS_COLOURS.get(row["status"], "#6a1b9a"))
            bar.set_gid(f"{SERIES_ID}{statuses.index(str(row['status']))}")
            ax.text(left, index, f" {note}", va="center", fontsize=8, color="white" if end else "black")
        else:
            ax.text(date2num(min(times)) if times else 0, index,
                    f" {note}: " + ("reused, not trained again" if row["status"] == "Reused" else "never started"),
                    va="center", fontsize=8)
        for move in moves:
            moved = _time(move.get("moved_at")) or start
            if moved:
                moved_x.append(date2num(moved))
                moved_y.append(index)
    extra = []
    if moved_x:  # all moves one marker series, so the key names it once
        (marks,) = ax.plot(moved_x, moved_y, linestyle="none", marker="x", color="black")
        extra.append((marks, "failover move"))
    ax.set_yticks(list(range(len(rows))), [_label(r) for r in rows])
    ax.invert_yaxis()
    ax.set_ylim(len(rows) - 0.5, -0.5)
    if times:
        ax.xaxis_date()
        ax.xaxis.set_major_formatter(DateFormatter("%H:%M:%S"))
        ax.set_xlabel("time (UTC)")
        if min(times) == max(times):  # one instant (one move, nothing ran): a minute each side, not a day
            ax.set_xlim(date2num(min(times)) - 1 / 1440, date2num(max(times)) + 1 / 1440)
    _status_key(ax, statuses, extra)
    ax.set_title("Jobs: start to end by region (x: failover move)")
    return svg_of(fig, "Timeline of the jobs")


def concurrency_chart(rows: Sequence[Mapping[str, Any]]) -> str:
    """A large run's timeline: jobs running at each moment, one named line per region."""
    from matplotlib.dates import DateFormatter

    fig = new_figure(3.4)
    ax = fig.add_subplot()
    named = []
    for region in sorted({str(r["region_code"]) for r in rows}):
        events: list[tuple[datetime, int]] = []
        for row in rows:
            start, end = _time(row.get("training_start_time")), _time(row.get("training_end_time"))
            if row["region_code"] == region and start:
                events.append((start, 1))
                if end:
                    events.append((end, -1))
        if not events:
            continue
        events.sort()
        xs, ys, running = [], [], 0
        for moment, change in events:
            running += change
            xs.append(moment)
            ys.append(running)
        (line,) = ax.step(xs, ys, where="post", linewidth=1.3)
        named.append((line, region))
    ax.set_ylabel("jobs running")
    if named:
        ax.xaxis.set_major_formatter(DateFormatter("%H:%M"))
        ax.set_xlabel("time (UTC)")
        name_series(ax, named, below=len(named) > 6, loc="upper right")
    ax.set_title("Jobs running per region")
    return svg_of(fig, "Jobs running per region over time")


def spend_series(ledger: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[datetime, float]]]:
    """Committed and actual spend over time from the run's budget ledger (V007): a job
    commits its expected cost when reserved, and its actual cost replaces it when settled."""
    events: list[tuple[datetime, float, float]] = []  # (when, committed change, actual change)
    for job in ledger:
        expected = float(job.get("expected_cost_usd") or 0.0)
        reserved = _time(job.get("reserved_at"))
        if reserved:
            events.append((reserved, expected, 0.0))
        settled, actual = _time(job.get("settled_at")), job.get("actual_cost_usd")
        if settled and actual is not None:
            events.append((settled, float(actual) - expected, float(actual)))
    events.sort(key=lambda e: e[0])
    committed = actual_total = 0.0
    out: dict[str, list[tuple[datetime, float]]] = {"committed": [], "actual": []}
    for moment, d_committed, d_actual in events:
        committed += d_committed
        actual_total += d_actual
        out["committed"].append((moment, round(committed, 4)))
        out["actual"].append((moment, round(actual_total, 4)))
    return out


def spend_chart(ledger: Sequence[Mapping[str, Any]], planned_usd: float | None,
                budget_usd: float | None = None) -> str:
    """Planned, committed and actual spend over the run (issue 31's budget ledger)."""
    from matplotlib.dates import DateFormatter

    fig = new_figure(3.2)
    ax = fig.add_subplot()
    lines = spend_series(ledger)
    named: list[tuple[Any, str]] = []
    moments = [m for m, _ in lines["committed"]]
    for name, colour in (("committed", "#ef6c00"), ("actual", "#1565c0")):
        points = lines[name]
        if points:
            (line,) = ax.step([m for m, _ in points], [v for _, v in points], where="post", color=colour)
            named.append((line, f"{name} USD"))
    if planned_usd is not None and moments:
        (line,) = ax.plot([moments[0], moments[-1]], [planned_usd, planned_usd], color="#90a4ae", linestyle="--")
        named.append((line, "planned USD"))
    if budget_usd is not None and moments:
        (line,) = ax.plot([moments[0], moments[-1]], [budget_usd, budget_usd], color="#c62828", linestyle=":")
        named.append((line, "budget USD"))
    ax.set_ylabel("USD")
    if moments:
        ax.xaxis.set_major_formatter(DateFormatter("%H:%M"))
        ax.set_xlabel("time (UTC)")
    if named:
        name_series(ax, named, loc="lower right")
    ax.set_title("Spend over the run: planned, committed, actual")
    return svg_of(fig, "Spend over the run")


def fetch_spend(conn: Any, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """The run's budget ledger rows (``run_spend_ledger.sql``), for :func:`spend_chart`."""
    from regional_training.runtime import campaign_db

    return campaign_db.fetch_dicts(conn, "run_spend_ledger.sql", {"dag_id": dag_id, "run_id": run_id})


def fetch_carries(conn: Any, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """The run's copied checkpoint carry-overs with their earlier jobs' cost
    (``run_checkpoint_savings.sql``), for :func:`carry_savings`."""
    from regional_training.runtime import campaign_db

    return campaign_db.fetch_dicts(conn, "run_checkpoint_savings.sql", {"dag_id": dag_id, "run_id": run_id})


def carry_savings(carries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What checkpoint carry-over saved (issue 31): each new job resumed from its earlier
    job's checkpoint instead of step 0, so it did not redo the work that job paid for.
    Per carry, that work is taken as the earlier job's billable time (GPU-hours = its
    instance-hours x GPUs per instance) and actual cost: an upper bound, as the steps after
    its last checkpoint are redone. ``None`` where the earlier job's cost is not recorded."""
    from regional_training.plan.training_request import GPUS_PER_INSTANCE

    items, hours_total, usd_total, known = [], 0.0, 0.0, 0
    for carry in carries:
        cost, rate, count = (carry.get("from_actual_cost_usd"), carry.get("from_billing_usd_per_hour"),
                             carry.get("from_instance_count"))
        gpus = GPUS_PER_INSTANCE.get(str(carry.get("instance_type")))
        gpu_hours = usd = None
        if cost is not None:
            usd = float(cost)
            if rate and count and gpus:
                # cost / per-instance rate = instance-hours (all its instances); x GPUs each
                gpu_hours = float(cost) / float(rate) * gpus
        if usd is not None:
            usd_total += usd
            hours_total += gpu_hours or 0.0
            known += 1
        items.append({**{k: carry.get(k) for k in ("target_key", "job_name", "from_job_name", "from_region",
                                                    "to_region", "resumed_step", "bytes_copied")},
                      "seconds": None if carry.get("seconds") is None else float(carry["seconds"]),
                      "saved_gpu_hours": None if gpu_hours is None else round(gpu_hours, 3),
                      "saved_usd": None if usd is None else round(usd, 2)})
    return {"carries": items, "saved_gpu_hours": round(hours_total, 3) if known else None,
            "saved_usd": round(usd_total, 2) if known else None}


# -- the page -------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5rem;color:#212121;max-width:110rem}
h1{font-size:1.4rem} h2{font-size:1.15rem;margin-top:1.6rem;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.78rem;margin:.5rem 0}
table#targets{width:100%}
th,td{border:1px solid #ddd;padding:.2rem .3rem;text-align:left;vertical-align:top}
th{background:#f5f5f5} td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.time{font-variant-numeric:tabular-nums} td.region{white-space:nowrap}
td.job{font-family:ui-monospace,monospace;font-size:.72rem;overflow-wrap:break-word;min-width:8rem;max-width:16rem}
td.reason{min-width:10rem;overflow-wrap:break-word} td.moves{min-width:7rem;overflow-wrap:anywhere}
td.key{overflow-wrap:break-word;max-width:14rem}
.Completed{color:#2e7d32;font-weight:600}
.Reused{color:#1565c0;font-weight:600} .Failed,.NotStarted,.Stopped{color:#c62828;font-weight:600}
svg.chart{width:100%;max-width:64rem;height:auto;display:block;margin:.5rem 0}
.wide{overflow-x:auto}
.figure{break-inside:avoid;page-break-inside:avoid}
@media print{body{margin:0;max-width:none} a{color:inherit;text-decoration:none} table{font-size:.6rem}
 table#targets{width:auto} .wide{overflow:visible} h2{break-after:avoid} tr{break-inside:avoid}
 svg.chart{max-width:100%} td.job{min-width:0} td.reason{min-width:0}}
@page{size:A4 landscape;margin:12mm}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _cell(value: Any, spec: str | None = None, css: str | None = None) -> str:
    if spec is not None:
        return f'<td class="num">{_e(_num(value, spec))}</td>'
    attr = f' class="{css}"' if css else ""
    return f"<td{attr}>{_e('-' if value is None else value)}</td>"


def when(value: Any) -> str | None:
    """A recorded time as a person reads it: UTC to the second, no microseconds."""
    moment = _time(value)
    if moment is None:
        return None
    if moment.tzinfo is not None:
        from datetime import UTC

        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _links(items: Mapping[str, str]) -> str:
    return " · ".join(f'<a href="{_e(url)}">{_e(label)}</a>' for label, url in items.items() if url)


def _table(head: Sequence[str], body: Iterable[str], table_id: str) -> str:
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    return (f'<div class="wide"><table id="{table_id}"><thead><tr>{header}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _reason(row: Mapping[str, Any]) -> str | None:
    if row.get("failure_reason"):
        return str(row["failure_reason"])
    if row.get("reused_from_run_id"):
        return f"reused from run {row['reused_from_run_id']}"
    return None


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
            + _cell(row["region_code"], css="region") + _cell(row["target_key"], css="key")
            + f'<td class="{_e(row["status"])}">{_e(row["status"])}</td>'
            + _cell(row.get("purchase_option")) + _cell(row.get("attempt"))
            + _cell(row.get("training_job_name"), css="job")
            + _cell(when(row.get("training_start_time")), css="time")
            + _cell(when(row.get("training_end_time")), css="time")
            + _cell(metrics.get("train:images_per_sec"), ".1f")
            + _cell(metrics.get("train:loss"), ".4f")
            + _cell(metrics.get("train:accuracy"), ".4f")
            + _cell(row.get("planned_cost_usd"), ".2f") + _cell(row.get("actual_cost_usd"), ".2f")
            + _cell(moves or None, css="moves")
            + _cell(_reason(row), css="reason")
            + f"<td>{_links(links.get(row['target_key'], {}))}</td></tr>"
        )
    return _table(head, body, "targets")


CSV_COLUMNS = ("region", "target", "status", "purchase_option", "attempt", "job", "start", "end", "images_per_sec",
               "loss", "accuracy", "planned_usd", "actual_usd", "failover_moves", "failure_reason")


def targets_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """Every target as one CSV line (the report's :data:`TARGETS_CSV`)."""
    import csv

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        metrics = row.get("metrics") or {}
        writer.writerow([
            row["region_code"], row["target_key"], row["status"], row.get("purchase_option") or "",
            row.get("attempt") if row.get("attempt") is not None else "", row.get("training_job_name") or "",
            when(row.get("training_start_time")) or "", when(row.get("training_end_time")) or "",
            *(("" if metrics.get(k) is None else metrics[k])
              for k in ("train:images_per_sec", "train:loss", "train:accuracy")),
            "" if row.get("planned_cost_usd") is None else f"{row['planned_cost_usd']:.2f}",
            "" if row.get("actual_cost_usd") is None else f"{row['actual_cost_usd']:.2f}",
            "; ".join(f"{m['from_region']}->{m.get('to_region') or 'none'}" for m in row.get("moves") or []),
            _reason(row) or "",
        ])
    return buffer.getvalue()


def worst_rows(rows: Sequence[Mapping[str, Any]], count: int = WORST) -> list[Mapping[str, Any]]:
    """A large run's rows in full: every target not done, then the ``count`` done ones
    that overran their planned cost most (then the slowest)."""
    from regional_training.report.summary import DONE_STATUSES

    failed = [r for r in rows if r["status"] not in DONE_STATUSES]

    def overrun(row: Mapping[str, Any]) -> tuple[float, float]:
        metrics = row.get("metrics") or {}
        return ((row.get("actual_cost_usd") or 0.0) - (row.get("planned_cost_usd") or 0.0),
                -(metrics.get("train:images_per_sec") or 0.0))

    done = sorted((r for r in rows if r["status"] in DONE_STATUSES and r["status"] != "Reused"),
                  key=overrun, reverse=True)
    return failed + done[:count]


def _group_table(rows: Sequence[Mapping[str, Any]], by: str, table_id: str) -> str:
    """A large run per region or per status: counts, cost and median throughput."""
    import statistics

    from regional_training.report.summary import DONE_STATUSES

    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(str(row[by]), []).append(row)
    head = (by.replace("_code", ""), "targets", "completed", "reused", "not completed", "planned USD", "actual USD",
            "median images/sec")
    body = []
    for name in sorted(groups):
        members = groups[name]
        speeds = [float(s) for r in members
                  if (s := (r.get("metrics") or {}).get("train:images_per_sec")) is not None]
        body.append(
            f'<tr data-group="{_e(name)}">' + _cell(name) + _cell(len(members), "d")
            + _cell(sum(1 for r in members if r["status"] == "Completed"), "d")
            + _cell(sum(1 for r in members if r["status"] == "Reused"), "d")
            + _cell(sum(1 for r in members if r["status"] not in DONE_STATUSES), "d")
            + _cell(sum(r.get("planned_cost_usd") or 0.0 for r in members), ".2f")
            + _cell(sum(r.get("actual_cost_usd") or 0.0 for r in members), ".2f")
            + _cell(statistics.median(speeds) if speeds else None, ".1f") + "</tr>")
    return _table(head, body, table_id)


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
    from regional_training.plan.scan import describe

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


def _carry_section(savings: Mapping[str, Any]) -> str:
    carries = savings["carries"]
    head = ("target", "from job", "moved", "resumed at step", "bytes copied", "copy seconds", "saved GPU-hours",
            "saved USD")
    body = [
        f'<tr data-target="{_e(c["target_key"])}">' + _cell(c["target_key"], css="key")
        + _cell(c["from_job_name"], css="job") + _cell(f"{c['from_region']} → {c['to_region']}")
        + _cell(c.get("resumed_step"), "d") + _cell(c.get("bytes_copied"), ",d") + _cell(c.get("seconds"), ".1f")
        + _cell(c.get("saved_gpu_hours"), ".2f") + _cell(c.get("saved_usd"), ".2f") + "</tr>"
        for c in carries
    ]
    total = (f'<p id="carry-saved">{len(carries)} failed-over job(s) resumed from the checkpoint of the job before '
             f'them instead of step 0: about {_e(_num(savings.get("saved_gpu_hours"), ".2f"))} GPU-hours and '
             f'{_e(_num(savings.get("saved_usd"), ".2f"))} USD of work not redone (at most: the steps after each '
             "last checkpoint are redone).</p>")
    return "<h2>Checkpoint carry-over</h2>" + total + _table(head, body, "carries")


def _left_out(items: Sequence[Mapping[str, Any]]) -> str:
    from regional_training.plan.targets import left_out_name  # a scan's item names its point (issue 33)

    body = [
        f'<tr data-target="{_e(i["dataset_key"])}">' + _cell(left_out_name(i)) + _cell(i.get("campaign_key"))
        + _cell(i.get("reason")) + _cell(i.get("explanation")) + "</tr>"
        for i in items
    ]
    return _table(("dataset", "campaign", "reason", "why"), body, "left-out")


def _headline(summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
              plan: Sequence[Mapping[str, Any]] | None) -> str:
    if summary.get("dry_run"):
        return f"dry run: {len(plan or [])} target(s) planned, nothing launched"
    reused = summary.get("reused") or 0
    # "Completed" counts a reused target as done (its model is in this run's place), and says so.
    return (f"{summary.get('completed', 0)} of {summary.get('targets', len(rows))} target(s) completed"
            + (f" ({reused} reused from an identical earlier job, not trained again)" if reused else ""))


def render_report(
    summary: Mapping[str, Any],
    series: Mapping[str, Sequence[Mapping[str, float]]] | None = None,
    links: Mapping[str, Mapping[str, str]] | None = None,
    *,
    plan: Sequence[Mapping[str, Any]] | None = None,
    spend: Sequence[Mapping[str, Any]] | None = None,
    budget_usd: float | None = None,
    carries: Sequence[Mapping[str, Any]] | None = None,
) -> str:
    """The run's report as one self-contained HTML document (see the module docstring).

    ``spend``: the run's budget ledger rows (:func:`fetch_spend`), charted as planned,
    committed and actual spend over time; ``carries``: the run's checkpoint carry-overs
    (:func:`fetch_carries`), with the GPU-hours and dollars they saved. From :data:`LARGE_RUN` targets the page is a
    summary: per region and status, the failed and worst targets in full, every target in
    the CSV written beside the report (:data:`TARGETS_CSV`, :func:`targets_csv`)."""
    series, links = series or {}, links or {}
    rows = list(summary.get("rows") or [])
    run_id = summary["run_id"]
    large = len(rows) >= LARGE_RUN
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Training run {_e(run_id)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Training run {_e(run_id)}</h1>",
        f'<p id="headline">{_e(_headline(summary, rows, plan))}. '
        f'Planned cost {_e(_num(summary.get("planned_cost_usd"), ".2f"))} USD, '
        f'actual {_e(_num(summary.get("actual_cost_usd"), ".2f"))} USD.</p>',
    ]
    if links.get(""):
        parts.append(f"<p>{_links(links[''])}</p>")
    if summary.get("failed"):
        shown = summary["failed"] if not large else summary["failed"][:WORST]
        items = "".join(
            f"<li><b>{_e(f['region'])}</b> {_e(f['target'])}: {_e(f['status'])} — {_e(f.get('reason'))}</li>"
            for f in shown
        )
        more = (f"<p>{len(summary['failed']) - len(shown)} more in the targets table below.</p>"
                if len(shown) < len(summary["failed"]) else "")
        parts.append(f'<h2>Failed</h2><ul id="failed">{items}</ul>{more}')
    if plan:
        parts += ["<h2>Plan: placement and ranked alternatives</h2>", _plan_rows(plan)]
    if summary.get("scan"):
        order = "higher" if summary["scan"]["higher_is_better"] else "lower"
        parts += [f"<h2>Parameter scan: points ranked by {_e(summary['scan']['metric'])} ({order} is better)</h2>",
                  _scan_rows(summary["scan"])]
    if rows and large:
        shown_rows = worst_rows(rows)
        parts += [
            "<h2>Per region</h2>", _group_table(rows, "region_code", "by-region"),
            "<h2>Per status</h2>", _group_table(rows, "status", "by-status"),
            f'<h2>Targets: the {len(shown_rows)} not completed or costliest over plan</h2>'
            f'<p id="all-targets">All {len(rows)} targets: <a href="{TARGETS_CSV}" download>{TARGETS_CSV}</a> '
            "(beside this report).</p>",
            _target_rows(shown_rows, links),
            f'<h2>Cost</h2><div class="figure">{region_cost_chart(rows)}</div>',
            f'<h2>Timeline</h2><div class="figure">{concurrency_chart(rows)}</div>',
        ]
    elif rows:
        parts += ["<h2>Targets</h2>",
                  f'<p id="all-targets">Also as CSV: <a href="{TARGETS_CSV}" download>{TARGETS_CSV}</a>.</p>',
                  _target_rows(rows, links)]
        parts.append(f'<h2>Cost</h2><div class="figure">{cost_chart(rows)}</div>')
        parts.append(f'<h2>Timeline</h2><div class="figure">{timeline_chart(rows)}</div>')
    if rows and spend:
        parts.append(f'<h2>Spend</h2><div class="figure">'
                     f'{spend_chart(spend, summary.get("planned_cost_usd"), budget_usd)}</div>')
    if carries:
        parts.append(_carry_section(carry_savings(carries)))
    if rows and any(series.get(r["target_key"]) for r in rows):
        parts.append("<h2>Training over the steps</h2>")
        parts += [f'<div class="figure">{step_chart(metric, rows, series)}</div>' for metric in CHARTED]
    if summary.get("left_out"):
        parts += ["<h2>Left out of the plan</h2>", _left_out(summary["left_out"])]
    parts.append("</body></html>")
    return "\n".join(parts)
