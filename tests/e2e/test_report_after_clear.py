"""Issue 33 on the real DAG (``dag.test()``, real Postgres, the emulator): the campaign DB
refuses every row while four jobs train and while ``record_late`` runs, so the summary is
written at "0 of 4" and the watcher fails the run naming all four. The DB comes back; a
person clears the failed tasks (the training tasks and the watcher, not ``summarize``,
which succeeded): each training task collects its completed job (no new job), records it
and writes the summary and the report again, so both say 4 of 4 and the run is green.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any
from unittest import mock

import psycopg2
import pytest
from helpers import jobs_of_run, rows_of_run, training_dag

from dev.local_stack import LOCAL_RUN_CONF

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]


def _clear_failed_and_rerun(dag: Any, dag_run: Any) -> Any:
    """What the UI's "clear" of the failed task instances does, then run on."""
    from airflow import settings
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import clear_task_instances
    from airflow.utils.state import DagRunState, TaskInstanceState

    session = settings.Session()
    dr = session.get(DagRun, dag_run.id)
    tis = [ti for ti in dr.get_task_instances(session=session) if ti.state == TaskInstanceState.FAILED]
    assert sorted({ti.task_id for ti in tis}) == ["check_regions", "train"]
    clear_task_instances(tis, session, dag_run_state=DagRunState.RUNNING)
    session.commit()

    def existing_run(*, dag: Any, **_: Any) -> Any:  # dag.test() would recreate the run
        dr.dag = dag
        return dr

    with mock.patch("airflow.serialization.definitions.dag.SerializedDAG.clear_dags"), mock.patch(
        "airflow.models.dagrun.get_or_create_dagrun", side_effect=existing_run
    ):
        return dag.test(logical_date=dag_run.logical_date)


def _summary(run_id: str) -> tuple[dict[str, Any], str]:
    from regional_training.run.run_layout import RunLayout
    from regional_training.runtime import aws_io
    from regional_training.runtime.settings import VARIABLES, settings_from_mapping

    settings = settings_from_mapping({n: os.environ.get(f"AIRFLOW_VAR_{n.upper()}") for n in VARIABLES})
    layout = RunLayout(settings.central_bucket, "multi_region_training", run_id)
    return (json.loads(aws_io.get_text(layout.summary, region=settings.central_region)),
            aws_io.get_text(layout.report, region=settings.central_region))


def test_the_report_says_4_of_4_after_the_db_returns_and_the_tasks_are_cleared(
    offline_stack: str, campaign_dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from regional_training.runtime import campaign_db

    caplog.set_level(logging.INFO, logger="regional_training")
    real_execute = campaign_db.execute

    def db_down_for_rows(conn: Any, query: str, params: dict[str, Any]) -> Any:
        if query == "upsert_training_run.sql":
            raise psycopg2.OperationalError("server closed the connection unexpectedly")
        return real_execute(conn, query, params)

    dag = training_dag()
    with monkeypatch.context() as patch:
        patch.setattr(campaign_db, "execute", db_down_for_rows)
        failed = dag.test(run_conf={**LOCAL_RUN_CONF, "placement": "region_local"})
    assert str(failed.state) == "failed"
    states = {ti.task_id: str(ti.state) for ti in failed.get_task_instances() if ti.task_id != "train"}
    # record_late could record none of them either (the DB refused): it logged each, and succeeded.
    assert states["record_late"] == states["summarize"] == "success" and states["check_regions"] == "failed"
    summary, report = _summary(failed.run_id)
    assert summary["completed"] == 0 and "0 of 4 target(s) completed" in report
    jobs_before = sorted(j["TrainingJobName"] for j in jobs_of_run(offline_stack, failed.run_id))
    assert len(jobs_before) == 4

    capsys.readouterr()
    caplog.clear()
    rerun = _clear_failed_and_rerun(dag, failed)

    assert str(rerun.state) == "success"
    # no new job: each cleared task collected the job that had completed
    assert sorted(j["TrainingJobName"] for j in jobs_of_run(offline_stack, failed.run_id)) == jobs_before
    rows = rows_of_run(campaign_dsn, failed.run_id, "status")
    assert [r["status"] for r in rows] == ["Completed"] * 4
    summary, report = _summary(failed.run_id)
    assert (summary["completed"], summary["targets"]) == (4, 4) and summary["verdict"]["ok"]
    assert "4 of 4 target(s) completed" in report and "0 of 4" not in report
    # written by the training tasks as they recorded (the watcher found it true: not again)
    out = capsys.readouterr().out + caplog.text
    assert out.count("recorded after summarize: summary and report written again") == 4, out[-3000:]
    assert "writing it again from what is recorded" not in out
