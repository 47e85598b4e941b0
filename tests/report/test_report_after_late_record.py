"""The summary and the report stay true when targets are recorded after ``summarize`` ran
(issue 33): real PostgreSQL, the emulator's S3, and the product's own functions
(:mod:`regional_training.record.run_summary`) called as the tasks call them.

The case from the issue: the campaign DB was down while four jobs ran, so no training
task and not ``summarize`` could record a target; ``summarize`` wrote "0 of 4". Clearing
the training tasks recorded all four; each recording wrote the summary and the report
again, so they end at "4 of 4", also when two targets are recorded at the same moment.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import psycopg2
import pytest
import report_support as rs

from regional_training.plan import reuse, scan
from regional_training.record import run_summary
from regional_training.run.run_context import Run
from regional_training.run.run_keys import BUILD_REQUESTS, SELECT_TARGETS, SUMMARIZE, TRAIN
from regional_training.runtime import aws_io, campaign_db
from regional_training.runtime.settings import VARIABLES, Settings, settings_from_mapping

pytestmark = pytest.mark.integration

DAG_ID = "report_after_late_record"


class FakeTi:
    """The XComs a training task reads: summarize's result (it ran), the plan."""

    def __init__(self, task_id: str, xcoms: dict[tuple[str, str], Any]) -> None:
        self.task_id, self.xcoms = task_id, xcoms

    def xcom_pull(self, task_ids: str, key: str = "return_value", **_: Any) -> Any:
        return self.xcoms.get((task_ids, key))


@dataclass(frozen=True)
class LocalRun(Run):
    """A task's run against the test server (the Airflow connection is not there outside a task)."""

    dsn: str = ""

    @cached_property
    def settings(self) -> Settings:
        return settings_from_mapping({name: os.environ.get(f"AIRFLOW_VAR_{name.upper()}") for name in VARIABLES})

    def campaign_db(self) -> Any:  # type: ignore[override]
        import contextlib

        @contextlib.contextmanager
        def connect() -> Iterator[Any]:
            conn = psycopg2.connect(self.dsn)
            try:
                yield conn
            finally:
                conn.close()

        return connect()


@pytest.fixture()
def planned(campaign_dsn: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Four targets, one per region, on the seeded datasets: (jobs, the rows they get)."""
    conn = psycopg2.connect(campaign_dsn)
    rows = campaign_db.fetch_dicts(conn, "select_targets.sql", {"campaign_keys": [], "region_codes": []})
    conn.close()
    by_region = {}
    for row in rows:
        by_region.setdefault(row["region_code"], row)
    chosen = [by_region[region] for region in sorted(by_region)][:4]
    assert len(chosen) == 4
    jobs, recorded = [], []
    for index, target in enumerate(chosen):
        jobs.append({"target": {"dataset_key": target["dataset_key"], "region_code": target["region_code"]},
                     "request": {"MetricDefinitions": []}})
        recorded.append({**rs.row(index, target["region_code"], target["dataset_key"]),
                         "dag_id": DAG_ID, "dataset_id": target["dataset_id"], "copy_id": target["copy_id"],
                         "training_job_arn": None})  # no log stream to read in this test
    return jobs, recorded


def _run(dsn: str, run_id: str, task_id: str, jobs: list[dict[str, Any]]) -> LocalRun:
    xcoms = {(SUMMARIZE, "return_value"): {"headline": "0 of 4"}, (BUILD_REQUESTS, "return_value"): jobs,
             (SELECT_TARGETS, "left_out"): []}
    return LocalRun(dag_id=DAG_ID, run_id=run_id, params={}, ti=FakeTi(task_id, xcoms), dsn=dsn)


def _record(dsn: str, row: dict[str, Any]) -> None:
    conn = psycopg2.connect(dsn)
    campaign_db.execute(conn, "upsert_training_run.sql",
                        {**reuse.NOT_REUSED, **scan.NO_POINT, **row, "metrics": json.dumps(row["metrics"])})
    conn.close()


def _written(run: LocalRun) -> tuple[dict[str, Any], str, str]:
    region = run.settings.central_region
    return (json.loads(aws_io.get_text(run.layout.summary, region=region)),
            aws_io.get_text(run.layout.report, region=region),
            aws_io.get_text(run.layout.uri("targets.csv"), region=region))


def test_targets_recorded_after_summarize_make_the_report_say_4_of_4(
    offline_stack: str, campaign_dsn: str, planned: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from regional_training.report import report

    jobs, rows = planned
    # each write reads the logs of the jobs it has not read before (metric_series.json), never all again
    read: list[str] = []
    real_fetch = report.fetch_run_series

    def counting_fetch(rows_to_read: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
        read.extend(str(r["target_key"]) for r in rows_to_read)
        return real_fetch(rows_to_read, *args, **kwargs)

    monkeypatch.setattr(report, "fetch_run_series", counting_fetch)
    run_id = "manual__late-record"
    summarize = _run(campaign_dsn, run_id, SUMMARIZE, jobs)
    # summarize ran while the DB was down for the training tasks: nothing recorded
    first = run_summary.write(summarize, jobs, [])
    assert first["verdict"]["headline"].startswith("0 of 4")
    summary, report, _ = _written(summarize)
    assert "0 of 4 target(s) completed" in report and summary["completed"] == 0
    # summarize itself never refreshes (it writes once, after its late recording)
    assert run_summary.refresh_after_late_record(summarize, "x") is False

    train = _run(campaign_dsn, run_id, TRAIN, jobs)
    # the cleared training tasks: two one after the other, two at the same moment
    rows = [{**row, "run_id": run_id} for row in rows]
    for row in rows[:2]:
        _record(campaign_dsn, row)
        assert run_summary.refresh_after_late_record(train, row["target_key"]) is True
    errors: list[BaseException] = []

    def record_late(row: dict[str, Any]) -> None:
        try:
            _record(campaign_dsn, row)
            run_summary.refresh_after_late_record(train, row["target_key"])
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=record_late, args=(row,)) for row in rows[2:]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    summary, report, csv_text = _written(train)
    assert summary["completed"] == summary["targets"] == 4 and summary["failed"] == []
    assert summary["verdict"]["ok"] and summary["verdict"]["headline"].startswith("4 of 4")
    assert "4 of 4 target(s) completed" in summary["text"]
    assert "4 of 4 target(s) completed" in report
    assert sorted(t["target"] for t in rs.tables(report)["targets"]) == sorted(r["target_key"] for r in rows)
    assert len(csv_text.splitlines()) == 5
    assert sorted(read) == sorted(r["target_key"] for r in rows), read  # each job's log read once


def test_an_all_reused_run_is_done_and_says_reused(
    offline_stack: str, campaign_dsn: str, planned: tuple[list[dict[str, Any]], list[dict[str, Any]]]
) -> None:
    jobs, rows = planned
    source_run, run_id = "manual__reuse-source", "manual__all-reused"
    for row in rows:
        _record(campaign_dsn, {**row, "run_id": source_run})
        _record(campaign_dsn, {**row, "run_id": run_id, "status": "Reused", "attempt": 0, "actual_cost_usd": 0.0,
                               "training_start_time": None, "training_end_time": None, "billable_seconds": 0,
                               "reused_from_dag_id": DAG_ID, "reused_from_run_id": source_run,
                               "reused_from_target_key": row["target_key"]})
    summarize = _run(campaign_dsn, run_id, SUMMARIZE, jobs)
    result = run_summary.write(summarize, jobs, [])
    assert (result["completed"], result["reused"], result["targets"]) == (4, 4, 4)
    assert result["verdict"]["ok"]
    _, report, _ = _written(summarize)
    assert "4 of 4 target(s) completed (4 reused from an identical earlier job, not trained again)" in report
    statuses = {t["status"] for t in rs.tables(report)["targets"]}
    assert statuses == {"Reused"}


def test_the_report_shows_spend_and_what_checkpoint_carry_over_saved(
    offline_stack: str, campaign_dsn: str, planned: tuple[list[dict[str, Any]], list[dict[str, Any]]]
) -> None:
    """Issue 31 in the report, from its own tables (V007 budget_ledger, V008
    checkpoint_carries): one target failed over from us-west-2 after its first job cost
    12.00 USD at 24 USD per instance-hour (0.5 instance-hours: 2 instances for 15 min) on
    4-GPU instances; its new job resumed at step 24: 2.00 GPU-hours and 12.00 USD not redone."""
    jobs, rows = planned
    run_id = "manual__carry-saved"
    rows = [{**row, "run_id": run_id, "instance_type": "ml.g5.12xlarge"} for row in rows]
    for row in rows:
        _record(campaign_dsn, row)
    moved = rows[0]
    conn = psycopg2.connect(campaign_dsn)
    with conn, conn.cursor() as cur:  # test set-up: what the launch path records (budget.py, checkpoint_carry.py)
        for job, region, cost in ((f"{moved['training_job_name']}-old", "us-west-2", 12.0),
                                  (moved["training_job_name"], moved["region_code"], 30.0)):
            cur.execute(
                "INSERT INTO budget_ledger (dag_id, run_id, target_key, job_name, region_code, purchase_option,"
                " instance_count, billing_usd_per_hour, expected_cost_usd, actual_cost_usd, settled_at)"
                " VALUES (%s, %s, %s, %s, %s, 'spot', 2, 24, 40, %s, now())",
                (DAG_ID, run_id, moved["target_key"], job, region, cost))
        cur.execute(
            "INSERT INTO checkpoint_carries (dag_id, run_id, target_key, job_name, from_job_name, from_region,"
            " to_region, outcome, source_uri, dest_uri, objects, bytes_copied, seconds, resumed_step)"
            " VALUES (%s, %s, %s, %s, %s, 'us-west-2', %s, 'copied', 's3://a/ckpt/', 's3://b/ckpt/', 7, 3332, 0.4,"
            " 24)",
            (DAG_ID, run_id, moved["target_key"], moved["training_job_name"], f"{moved['training_job_name']}-old",
             moved["region_code"]))
    conn.close()
    summarize = _run(campaign_dsn, run_id, SUMMARIZE, jobs)
    result = run_summary.write(summarize, jobs, [])
    saved = result["checkpoint_carry"]
    assert (saved["saved_gpu_hours"], saved["saved_usd"]) == (2.0, 12.0)
    assert saved["carries"][0]["resumed_step"] == 24 and saved["carries"][0]["bytes_copied"] == 3332
    _, report, _ = _written(summarize)
    assert "about 2.00 GPU-hours and 12.00 USD of work not redone" in report
    carry = rs.tables(report)["carries"][0]
    assert (carry["resumed at step"], carry["saved GPU-hours"], carry["saved USD"]) == ("24", "2.00", "12.00")
    assert 'aria-label="Spend over the run"' in report  # the ledger's two jobs: committed and actual
