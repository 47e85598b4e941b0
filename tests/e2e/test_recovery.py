"""Partial failure and recovery, bad input before launch, and the trigger form's checks."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from unittest import mock

import psycopg2
import pytest
from api_server_support import ApiServer
from helpers import ALL_REGIONS, jobs_of_run, rows_of_run, training_dag

from dev.local_stack import LOCAL_RUN_CONF, aws_client

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]
REGIONS = list(ALL_REGIONS)


def _jobs(endpoint: str, run_id: str) -> dict[str, list[tuple[str, str]]]:
    """Per region, the run's (job name, status) pairs, sorted by name."""
    out: dict[str, list[tuple[str, str]]] = {}
    for job in jobs_of_run(endpoint, run_id):
        out.setdefault(job["Region"], []).append((job["TrainingJobName"], job["TrainingJobStatus"]))
    return {region: sorted(jobs) for region, jobs in out.items()}


def _rows(dsn: str, run_id: str) -> list[tuple[Any, ...]]:
    return [tuple(r.values()) for r in rows_of_run(dsn, run_id, "region_code", "status", "attempt",
                                                   "training_job_name")]


def _clear_region_and_rerun(dag: Any, dag_run: Any, region: str) -> Any:
    """What the UI's "clear" on one mapped task (and its downstream) does, then run on."""
    from airflow import settings
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import clear_task_instances
    from airflow.utils.state import DagRunState

    session = settings.Session()
    dr = session.get(DagRun, dag_run.id)
    tis = [
        ti for ti in dr.get_task_instances(session=session)
        if (ti.task_id == "train" and ti.rendered_map_index.split()[0] == region)
        or ti.task_id in {"record_late", "summarize", "check_regions"}
    ]
    assert sorted(ti.task_id for ti in tis) == ["check_regions", "record_late", "summarize", "train"]
    clear_task_instances(tis, session, dag_run_state=DagRunState.RUNNING)
    session.commit()
    # dag.test() would clear and recreate the whole run; keep ours and run what is cleared.
    def existing_run(*, dag: Any, **_: Any) -> Any:
        dr.dag = dag
        return dr

    with mock.patch("airflow.serialization.definitions.dag.SerializedDAG.clear_dags"), mock.patch(
        "airflow.models.dagrun.get_or_create_dagrun", side_effect=existing_run
    ):
        return dag.test(logical_date=dag_run.logical_date)


def test_clear_only_the_failed_region(offline_stack: str, campaign_dsn: str) -> None:
    endpoint = offline_stack
    s3 = aws_client("s3", endpoint, "eu-west-1")
    bucket, prefix = "mrt-campaign-data-eu-west-1", "datasets/dublin-urban-2026/dublin-urban-2026-v1/"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]]
    saved = {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"corrupt")
    dag = training_dag()
    try:
        failed = dag.test(run_conf={**LOCAL_RUN_CONF, "placement": "region_local"})
    finally:
        for key, body in saved.items():
            s3.put_object(Bucket=bucket, Key=key, Body=body)
    assert str(failed.state) == "failed"
    before = _jobs(endpoint, failed.run_id)
    # An AlgorithmError is not re-created by Airflow's automatic retries: one paid job.
    assert [status for _, status in before["eu-west-1"]] == ["Failed"]
    assert all(before[r] and before[r][0][1] == "Completed" and len(before[r]) == 1 for r in REGIONS
               if r != "eu-west-1")
    rows_before = _rows(campaign_dsn, failed.run_id)
    assert len(rows_before) == 4 and dict((r[0], r[1]) for r in rows_before)["eu-west-1"] == "Failed"

    rerun = _clear_region_and_rerun(dag, failed, "eu-west-1")

    assert str(rerun.state) == "success"
    after = _jobs(endpoint, failed.run_id)
    base = before["eu-west-1"][0][0]
    assert after["eu-west-1"][-1] == (f"{base}-a2", "Completed")  # a person's clear: exactly one new job
    assert len(after["eu-west-1"]) == 2
    assert {r: after[r] for r in REGIONS if r != "eu-west-1"} == {r: before[r] for r in REGIONS if r != "eu-west-1"}
    rows = _rows(campaign_dsn, failed.run_id)
    assert [(r[0], r[1]) for r in rows] == [(r, "Completed") for r in REGIONS]  # four rows, replaced not added
    assert dict((r[0], r[2]) for r in rows)["eu-west-1"] == 2


def test_a_bad_copy_row_fails_before_anything_is_launched(offline_stack: str, campaign_dsn: str) -> None:
    conn = psycopg2.connect(campaign_dsn)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM training_runs")
        rows_before = cur.fetchone()[0]
        cur.execute(
            "UPDATE dataset_copies SET s3_uri = s3_uri || 'bad,part/' WHERE region_code = 'us-west-2'"
            " AND s3_uri LIKE %s RETURNING copy_id, s3_uri",
            ("%seattle-rain%",),
        )
        copy_id, bad_uri = cur.fetchone()
    try:
        dag_run = training_dag().test(run_conf=dict(LOCAL_RUN_CONF))
    finally:
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE dataset_copies SET s3_uri = replace(s3_uri, 'bad,part/', '') WHERE copy_id = %s",
                        (copy_id,))
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert str(dag_run.state) == "failed"
    assert states["select_targets"] == "failed"
    assert _jobs(offline_stack, dag_run.run_id) == {}
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM training_runs")
        assert cur.fetchone()[0] == rows_before
    conn.close()
    assert "bad,part" in bad_uri


def _call(base: str, method: str, path: str, body: dict[str, Any] | None = None,
          token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(f"{base}{path}", method=method,  # noqa: S310 - loopback only
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


@pytest.mark.parametrize(
    ("conf", "param"),
    [
        ({"epochs": 0}, "epochs"),
        ({"instance_type": "ml.t3.medium"}, "instance_type"),
        ({"regions": ["not a region"]}, "regions"),
        ({"learning_rate": -1}, "learning_rate"),
    ],
)
def test_the_rest_api_refuses_a_conf_outside_the_params(api_server: ApiServer, conf: dict[str, Any],
                                                        param: str) -> None:
    """On the session's api-server (tests/conftest.py), what the UI form calls."""
    token = api_server.token()  # an admin's (fails naming the HTTP status if refused)
    status, body = _call(api_server.base, "POST", "/api/v2/dags/multi_region_training/dagRuns",
                         {"logical_date": None, "conf": conf}, token)
    assert status == 400, body
    assert param in json.dumps(body)
    status, runs = _call(api_server.base, "GET", "/api/v2/dags/multi_region_training/dagRuns?limit=100", None,
                         token)
    assert status == 200
    assert all(r.get("conf") != conf for r in runs["dag_runs"])
