"""The seed's own array file (issue 33): four ``region,s3_uri`` lines, no header, given to
the Param ``array_file``, train four targets through the real DAG (``dag.test()``, real
Postgres, the emulator as a server, the stand-in entry point) on the default launcher and
through ``batch_array`` (its text, then an ``s3://`` URI of it); a malformed one is
refused by ``select_targets`` naming the line, the field and what to add, before any job
exists, and is not retried."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import helpers
import pytest
from helpers import jobs_of_run, rows_of_run

from dev.local_stack import CENTRAL_BUCKET, CENTRAL_REGION, LOCAL_RUN_CONF, aws_client
from regional_training.launch import batch_jobs
from regional_training.plan import array_file
from regional_training.run import run_layout

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

#: Exactly the seed's format: region,s3_uri, no header (the four recorded-region copies).
SEED_FILE = (
    "us-east-1,s3://mrt-campaign-data-us-east-1/datasets/boston-winter-2026/boston-winter-2026-v1/\n"
    "us-west-2,s3://mrt-campaign-data-us-west-2/datasets/seattle-rain-2026/seattle-rain-2026-v1/\n"
    "eu-west-1,s3://mrt-campaign-data-eu-west-1/datasets/dublin-urban-2026/dublin-urban-2026-v1/\n"
    "eu-central-1,s3://mrt-campaign-data-eu-central-1/datasets/munich-autobahn-2026/munich-autobahn-2026-v1/\n"
)
EXPECTED = sorted(
    (line.split(",")[0], line.split(",")[1].rstrip("/").split("/")[-1]) for line in SEED_FILE.splitlines())


def run_dag(conf: dict[str, Any]) -> tuple[Any, dict[str, list[str]]]:
    # placement=cheapest (the default): the file, not the placement, decides the regions.
    return helpers.run_dag({**LOCAL_RUN_CONF, **conf})


def stored(endpoint: str, run_id: str, name: str) -> str:
    key = f"runs/{run_layout.run_key('multi_region_training', run_id)}/{name}"
    return str(aws_client("s3", endpoint, CENTRAL_REGION).get_object(Bucket=CENTRAL_BUCKET, Key=key)["Body"]
               .read().decode())


def assert_four_trained(endpoint: str, dsn: str, dag_run: Any, states: dict[str, list[str]]) -> None:
    assert str(dag_run.state) == "success", states
    assert states["train"] == ["success"] * 4
    run_id = dag_run.run_id
    rows = rows_of_run(dsn, run_id, "region_code", "target_key", "status", "purchase_option")
    assert sorted((r["region_code"], r["target_key"]) for r in rows) == EXPECTED
    assert {(r["status"], r["purchase_option"]) for r in rows} == {("Completed", "on_demand")}
    jobs = jobs_of_run(endpoint, run_id)
    assert sorted((j["Region"], j["TagMap"]["target"]) for j in jobs) == EXPECTED
    assert all(j["TrainingJobStatus"] == "Completed" for j in jobs)
    # The same lines in the stored file the children read, in this project's longer form.
    assert sorted((r["region"], r["target_key"]) for r in array_file.parse(stored(endpoint, run_id, "array.csv"))) \
        == EXPECTED
    summary = json.loads(stored(endpoint, run_id, "summary.json"))
    assert summary["completed"] == 4 and summary["failed"] == []
    assert "4 of 4 target(s) completed" in stored(endpoint, run_id, "report.html")


def test_the_seeds_file_trains_four_targets_on_the_default_launcher(offline_stack: str, campaign_dsn: str) -> None:
    dag_run, states = run_dag({"array_file": SEED_FILE})
    assert states["launch_batch_array"] == ["skipped"]
    assert_four_trained(offline_stack, campaign_dsn, dag_run, states)


def test_the_seeds_file_at_an_s3_uri_trains_four_targets_through_batch_array(offline_stack: str,
                                                                              campaign_dsn: str) -> None:
    s3 = aws_client("s3", offline_stack, CENTRAL_REGION)
    s3.put_object(Bucket=CENTRAL_BUCKET, Key="inputs/seed-array.csv", Body=SEED_FILE.encode())
    dag_run, states = run_dag({"array_file": f"s3://{CENTRAL_BUCKET}/inputs/seed-array.csv",
                               "launcher": "batch_array"})
    assert states["launch_batch_array"] == ["success"]
    assert_four_trained(offline_stack, campaign_dsn, dag_run, states)
    # One array job of four children, each succeeded on its first attempt.
    batch = aws_client("batch", offline_stack, CENTRAL_REGION)
    name = batch_jobs.array_job_name("multi_region_training", dag_run.run_id)
    (summary,) = batch.list_jobs(jobQueue="mrt-launchers", filters=[{"name": "JOB_NAME", "values": [name]}])[
        "jobSummaryList"]
    children = batch.describe_jobs(jobs=[c["jobId"] for c in batch.list_jobs(arrayJobId=summary["jobId"])[
        "jobSummaryList"]])["jobs"]
    assert sorted((c["status"], len(c["attempts"])) for c in children) == [("SUCCEEDED", 1)] * 4


@pytest.mark.parametrize(("text", "message"), [
    (SEED_FILE.replace("eu-west-1,", "eu-west-1 ") ,
     "param 'array_file' line 3: field 's3_uri' is missing in 'eu-west-1 s3://mrt-campaign-data-eu-west-1/"),
    (SEED_FILE + "us-east-2,s3://mrt-campaign-data-us-east-1/datasets/x/y/\n",
     "param 'array_file' line 5: field 'region' = 'us-east-2' is not a region of the campaign database"),
])
def test_a_malformed_file_is_refused_before_any_job_naming_line_field_and_fix(
        offline_stack: str, capsys: pytest.CaptureFixture[str], text: str, message: str) -> None:
    dag_run, states = run_dag({"array_file": text})
    assert str(dag_run.state) == "failed"
    assert states["select_targets"] == ["failed"]
    assert "train" not in states or set(states["train"]) <= {"upstream_failed", "skipped", "None"}
    assert jobs_of_run(offline_stack, dag_run.run_id) == []
    (select,) = [ti for ti in dag_run.get_task_instances() if ti.task_id == "select_targets"]
    assert select.try_number == 1  # not retried: the same file fails the same way
    out = capsys.readouterr().out
    assert message in out


def test_a_child_given_the_seeds_file_itself_exits_2_naming_the_fields_to_add(offline_stack: str) -> None:
    # The seed's own file handed straight to the launcher job definition (as the seed's
    # design did): each child refuses its line with exit 2 and the fields to add, no
    # traceback, no training job, and one attempt only: the definition's evaluateOnExit
    # exits on 2 (the emulator applies it as Batch does), though attempts allow a retry.
    s3 = aws_client("s3", offline_stack, CENTRAL_REGION)
    s3.put_object(Bucket=CENTRAL_BUCKET, Key="inputs/seed-direct/array.csv", Body=SEED_FILE.encode())
    s3.put_object(Bucket=CENTRAL_BUCKET, Key="inputs/seed-direct/requests.json", Body=b'{"jobs": {}}')
    batch = aws_client("batch", offline_stack, CENTRAL_REGION)
    definition = batch.describe_job_definitions(jobDefinitionName="mrt-launcher", status="ACTIVE")["jobDefinitions"]
    strategy = max(definition, key=lambda d: d["revision"])["retryStrategy"]
    assert {"onExitCode": "2", "action": "EXIT"} in strategy["evaluateOnExit"]
    assert strategy["attempts"] > 1  # so one attempt below is the rule's doing, not the limit
    parent = batch.submit_job(
        jobName="mrt-seed-direct", jobQueue="mrt-launchers", jobDefinition="mrt-launcher",
        arrayProperties={"size": 4},
        parameters={"array_uri": f"s3://{CENTRAL_BUCKET}/inputs/seed-direct/array.csv",
                    "requests_uri": f"s3://{CENTRAL_BUCKET}/inputs/seed-direct/requests.json",
                    "region": CENTRAL_REGION, "poll_seconds": "1"})["jobId"]
    deadline = time.monotonic() + 180
    while batch.describe_jobs(jobs=[parent])["jobs"][0]["status"] not in ("SUCCEEDED", "FAILED"):
        assert time.monotonic() < deadline, "the array job did not end"
        time.sleep(1)
    ids = [c["jobId"] for c in batch.list_jobs(arrayJobId=parent)["jobSummaryList"]]
    children = sorted(batch.describe_jobs(jobs=ids)["jobs"], key=lambda c: c["arrayProperties"]["index"])
    assert [c["status"] for c in children] == ["FAILED"] * 4
    for child in children:
        assert [a["container"]["exitCode"] for a in child["attempts"]] == [2], child["attempts"]
        log = Path(child["attempts"][0]["container"]["logStreamName"]).read_text()
        # The file is read whole before a child takes its line: each names the first bad one.
        assert "Refused (exit 2, not retried): array line 1: expected 5 fields" in log, log
        assert "add target_key,campaign_key,output_bucket" in log and "Traceback" not in log, log
