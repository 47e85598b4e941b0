"""The campaign view's FastAPI app, mounted by the API server at :data:`PREFIX`.

Pages (all read-only, all behind Airflow's own authentication: the same JWT, from the
UI's session cookie or a bearer token, and the same "may read DAG runs" check as the
REST API; an anonymous request gets 401, an unauthorised user 403):

* ``/`` -- recent runs from ``training_runs`` and, per dataset and region, final
  accuracy, images/sec and cost across nights, each run linking to its report;
* ``/runs/{dag_id}/{run_id}/report`` -- the run's report, read from the central bucket;
* ``/jobs/{region}/{job}`` and ``/logs/{region}/{job}`` -- a training job's description
  and its log streams, in its own region (what the train task's links open offline,
  where there is no AWS console: ``MRT_LINKS_BASE_URL``, regional_training.report.links).

SQL lives in include/sql/queries/campaign_*.sql with bound parameters; the database
session is read-only.
"""

from __future__ import annotations

import html
import re
from collections import defaultdict
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

PREFIX = "/campaign"
#: How many runs the view lists and plots by default, and at most.
DEFAULT_RUNS, MAX_RUNS = 30, 500
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$")
#: SageMaker's training job name rule.
_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_bearer = HTTPBearer(auto_error=False)


async def require_dag_run_read(
    request: Request, bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Airflow's own authentication and DAG-run read permission (imported on first use:
    only the API server needs it, and it is heavy)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import get_user, requires_access_dag

    user = await get_user(request, None, bearer)
    requires_access_dag("GET", DagAccessEntity.RUN)(request, user)


app = FastAPI(title="Training campaigns", dependencies=[Depends(require_dag_run_read)])


def _fetch(query_file: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from regional_training.runtime import campaign_db

    conn: Any = PostgresHook(postgres_conn_id="campaign_db").get_conn()
    try:
        # A read-only view: the server refuses any write (psycopg 3 or psycopg2).
        if hasattr(conn, "set_session"):
            conn.set_session(readonly=True)
        else:
            conn.read_only = True
        rows = campaign_db.fetch_dicts(conn, query_file, params)
    finally:
        conn.close()
    return [{k: float(v) if isinstance(v, Decimal) else v for k, v in row.items()} for row in rows]


def _e(value: Any) -> str:
    return html.escape("-" if value is None else str(value))


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


#: Up to this many dataset/region lines a trend chart draws each, named in its key; above
#: it one line per region (the median of its datasets each night): 500 keys name nothing.
TREND_LINES = 20


def trend_chart(points: list[dict[str, Any]], column: str, title: str) -> str:
    """One named line per dataset and region across nights (or, past :data:`TREND_LINES`,
    per region), with its key below the chart (matplotlib, inline SVG)."""
    import statistics

    from matplotlib.dates import DateFormatter

    from regional_training.report.report import name_series, new_figure, svg_of

    lines: dict[str, list[tuple[Any, float]]] = defaultdict(list)
    for p in points:
        if p[column] is not None and p["night"] is not None:
            lines[f"{p['dataset_key']} ({p['region_code']})"].append((p["night"], p[column]))
    per_region = len(lines) > TREND_LINES
    if per_region:
        nights: dict[str, dict[Any, list[float]]] = defaultdict(lambda: defaultdict(list))
        for p in points:
            if p[column] is not None and p["night"] is not None:
                nights[p["region_code"]][p["night"]].append(p[column])
        lines = defaultdict(list, {
            f"{region} (median of {len({q['dataset_key'] for q in points if q['region_code'] == region})} datasets)":
                [(night, statistics.median(values)) for night, values in sorted(by_night.items())]
            for region, by_night in nights.items()})
    # the key goes below the axes, in columns: the figure grows with it
    fig = new_figure(3.0 + 0.2 * ((len(lines) + 3) // 4))
    ax = fig.add_subplot()
    named = []
    for label, values in sorted(lines.items()):
        (line,) = ax.plot([v[0] for v in values], [v[1] for v in values], marker="o", markersize=3)
        named.append((line, label))
    ax.set_title(f"{title} across nights" + (", per region" if per_region else ""))
    ax.set_ylabel(title)
    if lines:
        ax.xaxis.set_major_formatter(DateFormatter("%m-%d %H:%M"))
        name_series(ax, named, below=True)
    else:
        ax.text(0.5, 0.5, "no recorded runs yet", ha="center", va="center", transform=ax.transAxes)
    return svg_of(fig, f"{title} across nights")


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#212121}
table{border-collapse:collapse;font-size:.85rem} th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left}
th{background:#f5f5f5} td.num{text-align:right} svg.chart{width:100%;max-width:64rem;height:auto;display:block}
.done{color:#2e7d32;font-weight:600} .reused{color:#1565c0}
@media print{body{margin:0} a{color:inherit} .figure,svg.chart{break-inside:avoid}}
"""


def _run_row(run: dict[str, Any], report: str) -> str:
    """One run of the list. A reused target counts as completed (its model is in the run's
    place) and is named as reused; a run with every target accounted for says "done"."""
    from regional_training.report.report import when

    done = run["completed"] >= run["targets"]
    outcome = (f'{run["completed"]} / {run["targets"]}'
               + (f' <span class="reused">({run["reused"]} reused)</span>' if run.get("reused") else "")
               + (' <span class="done">done</span>' if done else ""))
    return (f'<tr data-run="{_e(run["run_id"])}"><td>{_e(run["dag_id"])}</td>'
            f'<td><a href="{_e(report)}">{_e(run["run_id"])}</a></td>'
            f"<td>{_e(when(run['started']))}</td><td>{_e(run['regions'])}</td>"
            f'<td class="num completed">{outcome}</td>'
            f'<td class="num">{_money(run["planned_cost_usd"])}</td>'
            f'<td class="num">{_money(run["actual_cost_usd"])}</td></tr>')


@app.get("/", response_class=HTMLResponse)
def campaign_page(limit: int = Query(DEFAULT_RUNS, ge=1, le=MAX_RUNS)) -> str:
    from regional_training.report.links import report_url

    runs = _fetch("campaign_recent_runs.sql", {"limit": limit})
    points = _fetch("campaign_trends.sql", {"limit": limit})
    rows = "".join(_run_row(r, report_url(r["dag_id"], r["run_id"])) for r in runs)
    charts = "".join(
        trend_chart(points, column, title)
        for column, title in (("accuracy", "accuracy"), ("images_per_sec", "images/sec"),
                              ("actual_cost_usd", "actual cost (USD)"))
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Training campaigns</title>'
        f"<style>{_CSS}</style></head><body><h1>Training campaigns</h1>"
        f"<h2>Recent runs</h2><table id=\"runs\"><thead><tr><th>DAG</th><th>run (report)</th><th>started</th>"
        f"<th>regions</th><th>completed</th><th>planned USD</th><th>actual USD</th></tr></thead>"
        f"<tbody>{rows}</tbody></table><h2>Per dataset and region</h2>{charts}</body></html>"
    )


@app.get("/runs/{dag_id}/{run_id}/report", response_class=HTMLResponse)
def run_report(dag_id: str, run_id: str) -> str:
    from airflow.models.variable import Variable

    from regional_training.run.run_layout import RunLayout
    from regional_training.runtime import aws_io

    bucket, region = Variable.get("mrt_central_bucket", None), Variable.get("mrt_central_region", None)
    if not bucket or not region:
        raise HTTPException(500, "Variables mrt_central_bucket and mrt_central_region must be set")
    uri = RunLayout(central_bucket=bucket, dag_id=dag_id, run_id=run_id).report
    try:
        return aws_io.get_text(uri, region=region)
    except Exception as err:
        if "NoSuchKey" in type(err).__name__ or "NoSuchKey" in str(err):
            raise HTTPException(404, f"no report for run {run_id!r} of {dag_id!r} at {uri}") from err
        raise


@app.get("/runs/{dag_id}/{run_id}/targets.csv", response_class=PlainTextResponse)
def run_targets_csv(dag_id: str, run_id: str) -> PlainTextResponse:
    """Every target of the run as CSV, written beside its report (the report links it relatively)."""
    from airflow.models.variable import Variable

    from regional_training.report.report import TARGETS_CSV
    from regional_training.run.run_layout import RunLayout
    from regional_training.runtime import aws_io

    bucket, region = Variable.get("mrt_central_bucket", None), Variable.get("mrt_central_region", None)
    if not bucket or not region:
        raise HTTPException(500, "Variables mrt_central_bucket and mrt_central_region must be set")
    uri = RunLayout(central_bucket=bucket, dag_id=dag_id, run_id=run_id).uri(TARGETS_CSV)
    try:
        text = aws_io.get_text(uri, region=region)
    except Exception as err:
        if "NoSuchKey" in type(err).__name__ or "NoSuchKey" in str(err):
            raise HTTPException(404, f"no {TARGETS_CSV} for run {run_id!r} of {dag_id!r} at {uri}") from err
        raise
    return PlainTextResponse(text, media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{TARGETS_CSV}"'})


def _check_job(region: str, job: str) -> None:
    if not _REGION.match(region):
        raise HTTPException(400, f"region {region!r} is not an AWS region code")
    if not _JOB_NAME.match(job):
        raise HTTPException(400, f"job {job!r} is not a SageMaker training job name")


@app.get("/jobs/{region}/{job}")
def job_description(region: str, job: str) -> dict[str, Any]:
    from regional_training.runtime import aws_io

    _check_job(region, job)
    description = aws_io.describe_training_job(job, region=region)
    if description is None:
        raise HTTPException(404, f"no training job {job!r} in {region}")
    return description


@app.get("/logs/{region}/{job}", response_class=PlainTextResponse)
def job_logs(region: str, job: str) -> str:
    from regional_training.report.report import LOG_GROUP
    from regional_training.runtime.aws_hooks import AwsLogsHook
    from regional_training.runtime.aws_io import BOTOCORE_CONFIG

    _check_job(region, job)
    hook = AwsLogsHook(aws_conn_id="aws_default", region_name=region, config=BOTOCORE_CONFIG)
    try:
        streams = hook.conn.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{job}/")["logStreams"]
    except hook.conn.exceptions.ResourceNotFoundException:
        streams = []
    if not streams:
        raise HTTPException(404, f"no log stream for {job!r} in {region}")
    out = []
    for stream in sorted(s["logStreamName"] for s in streams):
        out.append(f"== {stream}")
        out += [event["message"] for event in hook.get_log_events(LOG_GROUP, stream)]
    return "\n".join(out)
