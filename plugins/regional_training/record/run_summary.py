"""The run's ``summary.json`` and ``report.html``, derived from what the campaign database
records for the run, whenever a target of the run is recorded (issue 33).

Two writers, one function (:func:`write`):

* ``summarize`` writes them once every training task has ended and ``record_late`` has
  recorded what they could not (:func:`regional_training.record.recording.record_unrecorded`);
* a target recorded *after* ``summarize`` ran (a cleared training task collecting its
  job, after the campaign DB came back) writes them again from its own task
  (:func:`refresh_after_late_record`, called by :func:`regional_training.record.recording.collect_target`),
  or ``record_late`` cleared after ``summarize`` ran (once for all it recorded).

Why they cannot go stale: both read the run's rows from ``training_runs`` (never from the
XComs, which a concurrently cleared task has not pushed yet), under a per-run advisory
lock held from the read to the last write, and a recorder commits its row before it takes
the lock. So the last writer has read every row committed before it, and a row committed
later is followed by its own writer. The watcher (``check_regions``) compares its verdict
with the summary's and writes again if they differ (a re-render that failed, or a record
that raced a running ``summarize``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from regional_training.run.run_keys import BUILD_REQUESTS, SELECT_TARGETS, SUMMARIZE

if TYPE_CHECKING:
    from regional_training.run.run_context import Run

log = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    """A database value as the collectors' rows hold it (JSON-safe)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


def _usd(value: Any) -> float | None:
    return None if value is None else float(value)


def recorded_rows(conn: Any, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """The run's recorded rows (``training_runs`` plus ``moves``), in the collectors' shape."""
    from regional_training.runtime import campaign_db

    rows = []
    for row in campaign_db.fetch_dicts(conn, "run_recorded_rows.sql", {"dag_id": dag_id, "run_id": run_id}):
        row = {k: _plain(v) for k, v in row.items()}
        for name in ("metrics", "moves", "point_overrides"):  # jsonb/json: a dict or list (psycopg parses)
            if isinstance(row.get(name), str):
                row[name] = json.loads(row[name])
        row["metrics"] = row.get("metrics") or {}
        row["moves"] = row.get("moves") or []
        rows.append(row)
    return rows


def build(run: Run, rows: list[dict[str, Any]], jobs: Sequence[Mapping[str, Any]],
          left_out: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The summary (with its verdict) of ``rows``: only the planned targets' rows count."""
    from regional_training.plan import scan
    from regional_training.plan.targets import target_key_of
    from regional_training.report import summary
    from regional_training.report.verdict import compute_verdict

    planned = {str(target_key_of(j["target"])) for j in jobs}
    rows = [r for r in rows if str(r["target_key"]) in planned]
    dry_run = bool(run.params.get("dry_run"))
    result = summary.summarize(rows, run_id=run.run_id, dry_run=dry_run, planned=len(jobs),
                               left_out=[dict(i) for i in left_out],
                               metric=scan.metric_of(run.params.get(scan.PARAM_NAME)))
    result["verdict"] = compute_verdict(jobs, rows, dry_run=dry_run, left_out=left_out).to_dict()
    return result


def write(run: Run, jobs: Sequence[Mapping[str, Any]], left_out: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Derive the summary and the report from the recorded rows and write both (an
    overwrite, under the run's lock); returns the summary."""
    from airflow.configuration import conf

    from regional_training.report import links, report
    from regional_training.runtime import aws_io, campaign_db

    keys = {"dag_id": run.dag_id, "run_id": run.run_id}
    region = run.settings.central_region
    with run.campaign_db() as conn:
        campaign_db.fetch_dicts(conn, "run_summary_lock.sql", keys)
        try:
            rows = recorded_rows(conn, run.dag_id, run.run_id)
            result = build(run, rows, jobs, left_out)
            # A scan: each dataset's best model gets its stable pointer before the summary
            # that names it is written (again at a late record: the best may have changed).
            _publish_best(run, result.get("scan"))
            carries = report.fetch_carries(conn, run.dag_id, run.run_id)
            if carries:  # issue 31: what the checkpoint carry-over saved
                result["checkpoint_carry"] = report.carry_savings(carries)
            dry_run = bool(result["dry_run"])
            page = report.render_report(
                result,
                _series(run, result["rows"], jobs),
                links.report_links(result, dag_id=run.dag_id, api_base_url=conf.get("api", "base_url", fallback="")),
                plan=report.plan_from_jobs(jobs) if dry_run else None,
                spend=report.fetch_spend(conn, run.dag_id, run.run_id),
                budget_usd=_usd(run.params.get("budget_usd")),
                carries=carries,
            )
            aws_io.put_text(run.layout.summary, json.dumps(result, indent=2, sort_keys=True), region=region)
            aws_io.put_text(run.layout.report, page, region=region, content_type="text/html; charset=utf-8")
            # Beside the report: every target as CSV (a large report lists only the worst in full).
            aws_io.put_text(run.layout.uri(report.TARGETS_CSV), report.targets_csv(result["rows"]), region=region,
                            content_type="text/csv; charset=utf-8")
        finally:
            try:
                campaign_db.fetch_dicts(conn, "run_summary_unlock.sql", keys)
            except Exception as err:  # keep the write's own error; closing the session releases the lock
                log.warning("Could not release the summary lock of %s (released on close): %s", run.run_id, err)
    return result


def _publish_best(run: Run, ranking: Mapping[str, Any] | None) -> dict[str, str]:
    """A scan's best model per dataset copied (server-side) to ``runs/<run>/best/<dataset>/``
    and its pointer noted in ``ranking``; dataset -> pointer. Nothing without a scan."""
    from regional_training.plan import scan
    from regional_training.runtime import aws_io

    region = run.settings.central_region
    pointers = scan.publish_best(ranking, layout=run.layout,
                                 copy=lambda src, dst: aws_io.copy_object(src, dst, dest_region=region))
    for dataset, pointer in pointers.items():
        log.info("Best model of %s: %s", dataset, pointer)
    return pointers


#: Beside the report: each target's metric series with the job it was read from, so a
#: target recorded late re-reads its own job's log only, not every target's (500 cleared
#: targets would otherwise read 500 x 500 logs).
SERIES_CACHE = "metric_series.json"


def _series(run: Run, rows: list[dict[str, Any]], jobs: Sequence[Mapping[str, Any]]
            ) -> dict[str, list[dict[str, float]]]:
    """Each row's metric series: the cached one when its job is the same, else read now."""
    from regional_training.report import report
    from regional_training.runtime import aws_io

    region, uri = run.settings.central_region, run.layout.uri(SERIES_CACHE)
    try:
        cached = json.loads(aws_io.get_text(uri, region=region))
    except Exception:  # first write (or unreadable): read every job's log
        cached = {}
    def job(row: Mapping[str, Any]) -> str:  # the same job, ended the same way: the same log
        return "|".join(str(row.get(k)) for k in ("training_job_name", "training_job_arn", "status",
                                                   "training_end_time"))

    fresh = [r for r in rows if (cached.get(str(r["target_key"])) or {}).get("job") != job(r)]
    series = {key: entry["points"] for key, entry in cached.items()}
    series.update(report.fetch_run_series(fresh, jobs))
    keep = {str(r["target_key"]): {"job": job(r), "points": series.get(str(r["target_key"]), [])} for r in rows}
    aws_io.put_text(uri, json.dumps(keep, sort_keys=True), region=region, content_type="application/json")
    return {key: entry["points"] for key, entry in keep.items()}


def written_headline(run: Run) -> str | None:
    """The verdict headline of the ``summary.json`` written last (``None``: none written)."""
    from regional_training.runtime import aws_io

    try:
        return str(json.loads(aws_io.get_text(run.layout.summary, region=run.settings.central_region))
                   ["verdict"]["headline"])
    except Exception as err:  # missing or unreadable: the caller writes it
        log.info("No readable summary at %s (%s): writing it.", run.layout.summary, type(err).__name__)
        return None


def planned_inputs(run: Run) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """``(jobs, left_out)`` from the run's XComs; ``None`` when ``summarize`` has not
    written a summary yet (it will read every row itself) or outside a task."""
    if run.ti is None or not run.ti.xcom_pull(task_ids=SUMMARIZE):
        return None
    jobs = run.ti.xcom_pull(task_ids=BUILD_REQUESTS)
    if not jobs:
        return None
    left_out = run.ti.xcom_pull(task_ids=SELECT_TARGETS, key="left_out") or []
    return list(jobs), list(left_out)


def refresh_after_late_record(run: Run, target_key: str) -> bool:
    """A target recorded after ``summarize`` ran: write the summary and report again,
    so they say what is now recorded. ``False``: nothing to refresh (no summary yet)."""
    inputs = None if run.ti is None or run.ti.task_id == SUMMARIZE else planned_inputs(run)
    if inputs is None:
        return False
    result = write(run, *inputs)
    log.info("Target %s recorded after summarize: summary and report written again (%s).", target_key,
             result["verdict"]["headline"])
    return True
