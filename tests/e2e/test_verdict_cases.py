"""Issue 11's cases on the real DAG (``dag.test()``, real Postgres, the emulator).

Each asserts the run's final state, the named error, the jobs created (none where the
input was bad) and that rows already in ``training_runs`` are unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

import helpers
import psycopg2
import pytest
from helpers import jobs_of_run, rows_of_run

from dev.local_stack import LOCAL_RUN_CONF

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]


def run_dag(conf: dict[str, Any]) -> tuple[Any, dict[str, list[str]]]:
    return helpers.run_dag({**LOCAL_RUN_CONF, "placement": "region_local", **conf})


def _all_rows(dsn: str) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM training_runs ORDER BY run_id, target_key")
            return cur.fetchall()
    finally:
        conn.close()


def _execute_sql(dsn: str, statement: str, params: tuple[Any, ...]) -> None:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, params)
    finally:
        conn.close()


def _logged(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> str:
    """What the run logged: to stdout through Airflow's structlog, or through logging once
    another module's services have reconfigured it (a full suite's order)."""
    return capsys.readouterr().out + caplog.text


def test_a_target_that_cannot_be_recorded_fails_the_run_naming_it(
    offline_stack: str, campaign_dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A database that refuses one of four targets' rows: its job completed, its training
    task retries the recording and fails, record_late cannot record it either, and the run
    must not end green; no second job is created for it."""
    from regional_training.runtime import campaign_db

    caplog.set_level(logging.INFO, logger="regional_training")

    real_execute = campaign_db.execute

    def flaky_execute(conn: Any, query: str, params: dict[str, Any]) -> Any:
        if query == "upsert_training_run.sql" and params.get("region_code") == "eu-west-1":
            raise psycopg2.OperationalError("server closed the connection unexpectedly")
        return real_execute(conn, query, params)

    monkeypatch.setattr(campaign_db, "execute", flaky_execute)
    dag_run, states = run_dag({})
    assert str(dag_run.state) == "failed", states
    assert sorted(states["train"]) == ["failed"] + ["success"] * 3
    assert states["summarize"] == ["success"] and states["check_regions"] == ["failed"]
    out = _logged(capsys, caplog)
    assert "Target dublin-urban-2026-v1 (train[" in out and "could not be recorded: OperationalError" in out
    assert "1 of 4 planned target(s) not completed or not recorded" in out
    assert "(eu-west-1, map index" in out and "not recorded - train[" in out and "ended failed" in out
    assert "Clearing train[i] collects a job that completed without training it again" in out
    # Four jobs, one per target, all completed (the retries created none); three rows recorded.
    jobs = jobs_of_run(offline_stack, dag_run.run_id)
    assert sorted(j["Region"] for j in jobs) == ["eu-central-1", "eu-west-1", "us-east-1", "us-west-2"]
    assert {j["TrainingJobStatus"] for j in jobs} == {"Completed"}
    rows = rows_of_run(campaign_dsn, dag_run.run_id, "region_code", "status")
    assert [r["region_code"] for r in rows] == ["eu-central-1", "us-east-1", "us-west-2"]


def test_record_late_records_a_target_its_training_task_could_not(
    offline_stack: str, campaign_dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A database blip only while the training tasks run: eu-west-1's task fails to record
    its completed job, the record_late step records it (no new job) before summarize,
    which only reads, and the run is green."""
    from regional_training.runtime import campaign_db

    caplog.set_level(logging.INFO, logger="regional_training")

    real_execute = campaign_db.execute

    def blip_in_train(conn: Any, query: str, params: dict[str, Any]) -> Any:
        from airflow.sdk import get_current_context

        if (query == "upsert_training_run.sql" and params.get("region_code") == "eu-west-1"
                and get_current_context()["ti"].task_id == "train"):
            raise psycopg2.OperationalError("server closed the connection unexpectedly")
        return real_execute(conn, query, params)

    monkeypatch.setattr(campaign_db, "execute", blip_in_train)
    dag_run, states = run_dag({})
    assert str(dag_run.state) == "success", states
    assert sorted(states["train"]) == ["failed"] + ["success"] * 3
    assert states["record_late"] == ["success"] and states["summarize"] == ["success"]
    out = _logged(capsys, caplog)
    assert "Recorded 1 target(s) whose training task did not: dublin-urban-2026-v1 (Completed)" in out
    jobs = jobs_of_run(offline_stack, dag_run.run_id)
    assert sorted(j["Region"] for j in jobs) == ["eu-central-1", "eu-west-1", "us-east-1", "us-west-2"]
    rows = rows_of_run(campaign_dsn, dag_run.run_id, "region_code", "status", "model_artifact_uri")
    assert [(r["region_code"], r["status"]) for r in rows] == [
        (r, "Completed") for r in ["eu-central-1", "eu-west-1", "us-east-1", "us-west-2"]]
    assert all(r["model_artifact_uri"] for r in rows)


@pytest.mark.parametrize("case", ["every dataset left out", "no ready campaign"])
def test_nothing_to_train_is_a_clean_success(offline_stack: str, campaign_dsn: str, case: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing to train, for either reason: success, the reason in the log, and the
    per-target tasks skipped; the same outcome as a dry run."""
    before = _all_rows(campaign_dsn)
    if case == "every dataset left out":  # a budget no spot or on-demand job fits
        dag_run, states = helpers.run_dag({**LOCAL_RUN_CONF, "placement": "cheapest", "budget_usd": 0.01,
                                           "purchase_options": ["spot", "on_demand"]})
        reason = "every selected dataset was left out by placement"
    else:
        conn = psycopg2.connect(campaign_dsn)
        try:
            with conn, conn.cursor() as cur:
                cur.execute("UPDATE campaigns SET status = 'labelling' WHERE status = 'ready' RETURNING campaign_id")
                ready = [r[0] for r in cur.fetchall()]
            try:
                dag_run, states = run_dag({})
            finally:
                with conn, conn.cursor() as cur:
                    cur.execute("UPDATE campaigns SET status = 'ready' WHERE campaign_id = ANY(%s)", (ready,))
        finally:
            conn.close()
        reason = "no target selected: no campaign is 'ready'"
    assert str(dag_run.state) == "success", states
    assert set(states.get("train", ["skipped"])) == {"skipped"}, states
    assert states["check_regions"] == ["success"]
    assert reason in capsys.readouterr().out
    assert jobs_of_run(offline_stack, dag_run.run_id) == []
    assert _all_rows(campaign_dsn) == before


def test_an_unknown_param_fails_before_anything_with_the_nearest_name(
    offline_stack: str, campaign_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _all_rows(campaign_dsn)
    dag_run, states = run_dag({"instance_cuont": 4})
    assert str(dag_run.state) == "failed", states
    assert states["select_targets"] == ["failed"]
    select = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "select_targets")
    assert select.try_number == 1  # a Param error is not retried
    assert "'instance_cuont' (did you mean 'instance_count'?)" in capsys.readouterr().out
    assert jobs_of_run(offline_stack, dag_run.run_id) == []
    assert _all_rows(campaign_dsn) == before


def test_a_float_for_an_integer_param_is_refused_at_trigger_time(offline_stack: str, campaign_dsn: str) -> None:
    from airflow.exceptions import ParamValidationError

    before = _all_rows(campaign_dsn)
    with pytest.raises(ParamValidationError, match="epochs"):
        run_dag({"epochs": 3.0})
    assert _all_rows(campaign_dsn) == before


def test_a_missing_output_bucket_fails_preflight_with_zero_jobs(
    offline_stack: str, campaign_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _all_rows(campaign_dsn)
    _execute_sql(campaign_dsn, "UPDATE regions SET output_bucket = %s WHERE region_code = %s",
                 ("mrt-output-does-not-exist", "eu-west-1"))
    try:
        dag_run, states = run_dag({})
    finally:
        _execute_sql(campaign_dsn, "UPDATE regions SET output_bucket = %s WHERE region_code = %s",
                     ("mrt-output-eu-west-1", "eu-west-1"))
    assert str(dag_run.state) == "failed", states
    assert states["jobs_to_launch"] == ["failed"]
    out = capsys.readouterr().out
    assert "mrt-output-does-not-exist" in out and "eu-west-1" in out
    assert jobs_of_run(offline_stack, dag_run.run_id) == []
    assert _all_rows(campaign_dsn) == before


def test_two_campaigns_with_the_same_dataset_key_both_train(offline_stack: str, campaign_dsn: str) -> None:
    """Dataset keys are unique per campaign only (the schema's rule): a second campaign
    whose dataset has the same key trains too, each under ``campaign.dataset``."""
    shared = "munich-autobahn-2026-v1"
    _execute_sql(campaign_dsn, "UPDATE campaigns SET status = 'ready' WHERE campaign_key = %s", ("berlin-night-2026",))
    _execute_sql(campaign_dsn, "UPDATE datasets SET dataset_key = %s WHERE dataset_key = %s",
                 (shared, "berlin-night-2026-v1"))
    try:
        dag_run, states = run_dag({"campaigns": ["munich-autobahn-2026", "berlin-night-2026"],
                                   "regions": ["eu-central-1"]})
    finally:
        _execute_sql(campaign_dsn, "UPDATE datasets SET dataset_key = %s WHERE dataset_id = "
                     "(SELECT d.dataset_id FROM datasets d JOIN campaigns c USING (campaign_id) "
                     "WHERE c.campaign_key = %s)", ("berlin-night-2026-v1", "berlin-night-2026"))
        _execute_sql(campaign_dsn, "UPDATE campaigns SET status = 'labelling' WHERE campaign_key = %s",
                     ("berlin-night-2026",))
    assert str(dag_run.state) == "success", states
    assert states["train"] == ["success"] * 2
    jobs = jobs_of_run(offline_stack, dag_run.run_id)
    keys = [f"berlin-night-2026.{shared}", f"munich-autobahn-2026.{shared}"]
    assert sorted(j["TagMap"]["target"] for j in jobs) == keys
    assert {j["TrainingJobStatus"] for j in jobs} == {"Completed"}
    rows = rows_of_run(campaign_dsn, dag_run.run_id, "target_key", "status", "model_artifact_uri")
    assert [r["target_key"] for r in rows] == keys
    assert [r["status"] for r in rows] == ["Completed", "Completed"]
    assert len({r["model_artifact_uri"] for r in rows}) == 2  # two models, two places
