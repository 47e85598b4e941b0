"""The real DAG, run with ``dag.test()`` against real Postgres and the local AWS emulator."""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter
from typing import Any

import helpers
import pytest
from helpers import jobs_of_run, rows_of_run

from dev.local_stack import CENTRAL_BUCKET, LOCAL_RUN_CONF, aws_client
from regional_training.plan import array_file
from regional_training.run import run_layout

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]
REGIONS = ["eu-central-1", "eu-west-1", "us-east-1", "us-west-2"]


def run_dag(conf: dict[str, Any]) -> tuple[Any, dict[str, list[str]]]:
    # Region-local placement: one job in each of the four regions (issue 2's contract).
    return helpers.run_dag({**LOCAL_RUN_CONF, "placement": "region_local", **conf})


def _rows(dsn: str, run_id: str) -> list[dict[str, Any]]:
    return rows_of_run(dsn, run_id, "region_code", "status", "failure_reason", "billable_seconds", "metrics",
                       "model_artifact_uri", "hyperparameters_sha256")


def test_four_regions_end_to_end(offline_stack: str, campaign_dsn: str) -> None:
    endpoint = offline_stack
    dag_run, states = run_dag({})
    assert str(dag_run.state) == "success", states
    assert states["train"] == ["success"] * 4
    assert {ti.try_number for ti in dag_run.get_task_instances() if ti.task_id == "train"} == {1}
    run_id = dag_run.run_id

    # Four jobs, one per region, identical hyperparameters.
    jobs = jobs_of_run(endpoint, run_id)
    assert sorted(j["Region"] for j in jobs) == REGIONS
    assert all(j["TrainingJobStatus"] == "Completed" for j in jobs)
    assert len({json.dumps(j["HyperParameters"], sort_keys=True) for j in jobs}) == 1
    assert jobs[0]["HyperParameters"]["sagemaker_mpi_enabled"] == "true"
    assert all(j["AlgorithmSpecification"]["TrainingImage"].split(".")[3] == j["Region"] for j in jobs)

    # The array file in S3 is exactly the expected lines.
    s3 = aws_client("s3", endpoint, "us-east-1")
    key = f"runs/{run_layout.run_key('multi_region_training', run_id)}"
    # The report, written by the real summary step next to the summary: every target,
    # with its job and its charts (the per-step series read back from the job logs).
    report = s3.get_object(Bucket=CENTRAL_BUCKET, Key=f"{key}/report.html")
    assert report["ContentType"].startswith("text/html")
    page = report["Body"].read().decode()
    assert all(j["TrainingJobName"] in page for j in jobs)
    assert "4 of 4 target(s) completed" in page and page.count("<svg") >= 3
    text = s3.get_object(Bucket=CENTRAL_BUCKET, Key=f"{key}/array.csv")["Body"].read().decode()
    assert [(r["region"], r["s3_uri"]) for r in array_file.parse(text)] == [
        ("eu-central-1", "s3://mrt-campaign-data-eu-central-1/datasets/munich-autobahn-2026/munich-autobahn-2026-v1/"),
        ("eu-west-1", "s3://mrt-campaign-data-eu-west-1/datasets/dublin-urban-2026/dublin-urban-2026-v1/"),
        ("us-east-1", "s3://mrt-campaign-data-us-east-1/datasets/boston-winter-2026/boston-winter-2026-v1/"),
        ("us-west-2", "s3://mrt-campaign-data-us-west-2/datasets/seattle-rain-2026/seattle-rain-2026-v1/"),
    ]

    # Four artifacts in the central bucket, each the model its region trained on its data.
    artifacts = sorted(
        o["Key"] for o in s3.list_objects_v2(Bucket=CENTRAL_BUCKET, Prefix=f"{key}/artifacts/")["Contents"]
    )
    assert len(artifacts) == 4
    for art in artifacts:
        body = s3.get_object(Bucket=CENTRAL_BUCKET, Key=art)["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            model = json.load(tar.extractfile("model.json"))  # type: ignore[arg-type]
        assert model["files"] == 2

    # Four training-run rows with metrics, the same hyperparameter hash, and a summary.
    rows = _rows(campaign_dsn, run_id)
    assert [r["region_code"] for r in rows] == REGIONS
    assert all(r["status"] == "Completed" and r["billable_seconds"] >= 1 for r in rows)
    assert all(r["metrics"]["train:loss"] > 0 for r in rows)
    assert len({r["hyperparameters_sha256"] for r in rows}) == 1
    summary = json.loads(s3.get_object(Bucket=CENTRAL_BUCKET, Key=f"{key}/summary.json")["Body"].read())
    assert summary["completed"] == 4 and summary["failed"] == []
    assert "4 of 4 target(s) completed" in summary["text"]


def test_one_region_fails_the_others_are_collected(
    offline_stack: str, campaign_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = offline_stack
    s3 = aws_client("s3", endpoint, "eu-west-1")
    bucket, prefix = "mrt-campaign-data-eu-west-1", "datasets/dublin-urban-2026/dublin-urban-2026-v1/"
    saved = {
        o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
    }
    for key in saved:  # the eu-west-1 copy is corrupt: its jobs fail inside training
        s3.put_object(Bucket=bucket, Key=key, Body=b"not a shard")
    try:
        dag_run, states = run_dag({})
    finally:
        for key, body in saved.items():
            s3.put_object(Bucket=bucket, Key=key, Body=body)

    assert str(dag_run.state) == "failed"
    assert Counter(states["train"]) == Counter({"success": 3, "failed": 1})
    assert states["record_late"] == ["success"] and states["summarize"] == ["success"]
    assert states["check_regions"] == ["failed"]
    rows = _rows(campaign_dsn, dag_run.run_id)
    by_region = {r["region_code"]: r for r in rows}
    assert by_region["eu-west-1"]["status"] == "Failed"
    assert "DataLossError: corrupted record" in by_region["eu-west-1"]["failure_reason"]
    assert all(by_region[r]["status"] == "Completed" and by_region[r]["model_artifact_uri"] for r in REGIONS
               if r != "eu-west-1")
    key = f"runs/{run_layout.run_key('multi_region_training', dag_run.run_id)}"
    summary = json.loads(
        aws_client("s3", endpoint, "us-east-1").get_object(Bucket=CENTRAL_BUCKET, Key=f"{key}/summary.json")["Body"]
        .read()
    )
    assert [f["region"] for f in summary["failed"]] == ["eu-west-1"]
    assert "FAILED regions: eu-west-1" in summary["text"]
    # The watcher's error (in the task log) names the region and SageMaker's reason.
    out = capsys.readouterr().out
    assert "IncompleteRunError: 1 of 4 planned target(s) not completed or not recorded: " in out
    assert "(eu-west-1, map index" in out and "training failed - AlgorithmError" in out
    # An AlgorithmError is not re-created by Airflow's automatic retries: one paid job
    # for one bad input (a human clear still makes one new attempt).
    jobs = [j for j in jobs_of_run(endpoint, dag_run.run_id) if j["Region"] == "eu-west-1"]
    assert [j["TrainingJobStatus"] for j in jobs] == ["Failed"]
    assert "NotRetriedError" in out


def test_dry_run_builds_requests_and_launches_nothing(offline_stack: str, campaign_dsn: str) -> None:
    dag_run, states = run_dag({"dry_run": True})
    assert str(dag_run.state) == "success", states
    assert jobs_of_run(offline_stack, dag_run.run_id) == []
    assert _rows(campaign_dsn, dag_run.run_id) == []
