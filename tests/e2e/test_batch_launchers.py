"""The AWS Batch launchers (issues 16, 29), end to end: the real DAG with ``dag.test()``,
the launcher entry point as Batch array children (local processes of the emulator's
Batch), service jobs through the emulated Batch into the emulated SageMaker.

Each emulated Batch behaviour a test relies on quotes its source (botocore's Batch
model, the AWS Batch user guide); docs/emulator.md lists them all.

The stand-in entry point trains in most of them (the launch path is the point); the
last one (marked ``training``) has the array children launch real training through the
toolkit, as tests/e2e/test_real_training.py does for launcher=airflow.
"""

from __future__ import annotations

import io
import json
import os
import signal
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helpers
import psycopg2
import pytest
from helpers import TRAINING_REGIONS, jobs_of_run, rows_of_run

from dev.local_stack import (
    CENTRAL_BUCKET,
    CENTRAL_REGION,
    LOCAL_RUN_CONF,
    aws_client,
    fake_image_map,
    local_aws,
    seed_aws,
)
from regional_training.launch import batch_jobs
from regional_training.plan import array_file
from regional_training.report.links import report_links
from regional_training.run import run_layout
from regional_training.runtime import identifiers

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]
REGIONS = ["eu-central-1", "eu-west-1", "us-east-1", "us-west-2"]
ROW_COLUMNS = ("region_code", "target_key", "status", "failure_reason", "metrics", "hyperparameters_sha256",
               "attempt", "purchase_option")


def run_dag(conf: dict[str, Any]) -> tuple[Any, dict[str, list[str]]]:
    return helpers.run_dag({**LOCAL_RUN_CONF, "placement": "region_local", **conf})


def run_prefix(run_id: str) -> str:
    return f"runs/{run_layout.run_key('multi_region_training', run_id)}"


def artifacts(endpoint: str, run_id: str) -> dict[str, dict[str, Any]]:
    """target key -> the model.json in its central artifact."""
    s3 = aws_client("s3", endpoint, CENTRAL_REGION)
    prefix = f"{run_prefix(run_id)}/artifacts/"
    out = {}
    for obj in s3.list_objects_v2(Bucket=CENTRAL_BUCKET, Prefix=prefix).get("Contents", []):
        body = s3.get_object(Bucket=CENTRAL_BUCKET, Key=obj["Key"])["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            out[obj["Key"][len(prefix):].split("/")[0]] = json.load(tar.extractfile("model.json"))  # type: ignore[arg-type]
    return out


def array_jobs(endpoint: str, run_id: str) -> list[dict[str, Any]]:
    """The run's array job(s) in the launcher queue, described, with their children (a
    one-line run's plain job is its own only child)."""
    batch = aws_client("batch", endpoint, CENTRAL_REGION)
    name = batch_jobs.array_job_name("multi_region_training", run_id)
    found = batch.list_jobs(jobQueue="mrt-launchers", filters=[{"name": "JOB_NAME", "values": [name]}])
    out = []
    for summary in found["jobSummaryList"]:
        parent = batch.describe_jobs(jobs=[summary["jobId"]])["jobs"][0]
        if "size" not in parent.get("arrayProperties", {}):
            parent["children"] = [parent]
        else:
            ids = [c["jobId"] for c in batch.list_jobs(arrayJobId=summary["jobId"])["jobSummaryList"]]
            parent["children"] = sorted(batch.describe_jobs(jobs=ids)["jobs"],
                                        key=lambda c: c["arrayProperties"]["index"])
        out.append(parent)
    return out


def comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without the wall-clock metric (images/sec differs between any two runs)."""
    return [{**r, "metrics": {k: v for k, v in (r["metrics"] or {}).items() if "images_per_sec" not in k}}
            for r in rows]


def child_log(child: dict[str, Any], attempt: int = -1) -> str:
    return Path(child["attempts"][attempt]["container"]["logStreamName"]).read_text()


def test_batch_array_runs_one_array_job_whose_children_launch_their_lines(offline_stack: str,
                                                                             campaign_dsn: str) -> None:
    endpoint = offline_stack
    dag_run, states = run_dag({"launcher": "batch_array"})
    assert str(dag_run.state) == "success", states
    assert states["launch_batch_array"] == ["success"]
    assert states["train"] == ["success"] * 4
    run_id = dag_run.run_id

    # One array job of size 4 (the array file's lines), every child succeeded once.
    arrays = array_jobs(endpoint, run_id)
    assert len(arrays) == 1
    parent = arrays[0]
    assert parent["status"] == "SUCCEEDED" and parent["arrayProperties"]["size"] == 4
    assert [c["status"] for c in parent["children"]] == ["SUCCEEDED"] * 4
    assert [len(c["attempts"]) for c in parent["children"]] == [1] * 4
    # Child N read line N and created that line's job in that line's region.
    text = aws_client("s3", endpoint, CENTRAL_REGION).get_object(
        Bucket=CENTRAL_BUCKET, Key=f"{run_prefix(run_id)}/array.csv")["Body"].read().decode()
    lines = array_file.parse(text)
    jobs = {j["TagMap"]["target"]: j for j in jobs_of_run(endpoint, run_id)}
    assert len(jobs) == 4
    for child, line in zip(parent["children"], lines, strict=True):
        log = child_log(child)
        assert f"target {line['target_key'].split('/')[-1]}" in log or line["region"] in log, log
        job = jobs[line["target_key"]]
        assert job["Region"] == line["region"] and job["TrainingJobStatus"] == "Completed"
        assert f"Creating training job {job['TrainingJobName']} in {line['region']}" in log, log

    # The same results as launcher=airflow for the same conf: statuses, rows, artifacts.
    airflow_run, airflow_states = run_dag({})
    assert str(airflow_run.state) == "success", airflow_states
    assert airflow_states["launch_batch_array"] == ["skipped"]
    assert {k: sorted(v) for k, v in airflow_states.items() if k != "launch_batch_array"} == {
        k: sorted(v) for k, v in states.items() if k != "launch_batch_array"}
    rows = comparable(rows_of_run(campaign_dsn, run_id, *ROW_COLUMNS))
    airflow_rows = comparable(rows_of_run(campaign_dsn, airflow_run.run_id, *ROW_COLUMNS))
    assert [r["region_code"] for r in rows] == REGIONS
    assert rows == airflow_rows
    batch_models, airflow_models = artifacts(endpoint, run_id), artifacts(endpoint, airflow_run.run_id)
    assert len(batch_models) == 4
    assert batch_models == airflow_models


def test_a_one_line_batch_array_run_is_a_plain_job_told_its_line(offline_stack: str, campaign_dsn: str) -> None:
    # "Array size 2 to 10,000" (ArrayProperties.size) and "Environment variables cannot
    # start with AWS_BATCH" (ContainerOverrides.environment), botocore's Batch model: one
    # line is a plain job whose child reads MRT_ARRAY_INDEX.
    endpoint = offline_stack
    dag_run, states = run_dag({"launcher": "batch_array", "regions": ["eu-west-1"]})
    assert str(dag_run.state) == "success", states
    (job,) = array_jobs(endpoint, dag_run.run_id)
    assert "size" not in job.get("arrayProperties", {}) and job["status"] == "SUCCEEDED"
    environment = {e["name"]: e["value"] for e in job["container"]["environment"]}
    assert environment == {**environment, "MRT_ARRAY_INDEX": "0"}
    assert not [n for n in environment if n.startswith("AWS_BATCH")]
    (trained,) = jobs_of_run(endpoint, dag_run.run_id, ("eu-west-1",))
    assert trained["TrainingJobStatus"] == "Completed"
    assert f"Creating training job {trained['TrainingJobName']} in eu-west-1" in child_log(job)
    assert rows_of_run(campaign_dsn, dag_run.run_id, "region_code", "status") == [
        {"region_code": "eu-west-1", "status": "Completed"}]


def test_batch_refuses_aws_batch_overrides_and_sub_two_arrays(offline_stack: str) -> None:
    batch = aws_client("batch", offline_stack, CENTRAL_REGION)
    common = {"jobName": "mrt-refused", "jobQueue": "mrt-launchers", "jobDefinition": "mrt-launcher",
              "parameters": {"array_uri": "s3://x/a.csv", "requests_uri": "s3://x/r.json", "region": CENTRAL_REGION}}
    with pytest.raises(batch.exceptions.ClientException, match="cannot start with AWS_BATCH"):
        batch.submit_job(**common, containerOverrides={"environment": [
            {"name": "AWS_BATCH_JOB_ARRAY_INDEX", "value": "0"}]})
    with pytest.raises(batch.exceptions.ClientException, match="between 2 and 10000"):
        batch.submit_job(**common, arrayProperties={"size": 1})


# --- a killed child, a failing job: an emulator whose jobs run long enough to kill a child ---

TWO_REGIONS = ["eu-west-1", "us-east-1"]  # array lines 0 and 1 (sorted by region)


@pytest.fixture(scope="module")
def slow_batch_aws(campaign_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("aws") / "local-aws.log"
    with local_aws(fake_image_map(seconds=12), stop_grace_seconds=3, log_path=log) as endpoint:
        seed_aws(endpoint, campaign_dsn)
        yield endpoint


@pytest.fixture()
def slow_stack(slow_batch_aws: str, campaign_dsn: str, airflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    from dev.local_stack import in_process_env

    for key, value in in_process_env(dsn=campaign_dsn, endpoint=slow_batch_aws, airflow_home=airflow_db).items():
        monkeypatch.setenv(key, value)
    return slow_batch_aws


def launcher_processes(index: int, attempt: int) -> list[int]:
    """pids of launcher processes (Batch children) with this array index and attempt."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = dict(kv.split(b"=", 1) for kv in (entry / "environ").read_bytes().split(b"\0") if b"=" in kv)
        except OSError:
            continue
        if (b"regional_training.launch.batch_launcher" in cmdline
                and environ.get(b"AWS_BATCH_JOB_ARRAY_INDEX") == str(index).encode()
                and environ.get(b"AWS_BATCH_JOB_ATTEMPT") == str(attempt).encode()):
            pids.append(int(entry.name))
    return pids


def test_a_killed_child_is_retried_by_batch_and_reattaches(slow_stack: str, campaign_dsn: str) -> None:
    endpoint = slow_stack
    sm = aws_client("sagemaker", endpoint, "eu-west-1")
    killed: list[int] = []
    done = threading.Event()

    def kill_child_once_its_job_trains() -> None:
        while not done.is_set():
            live = [j for j in sm.list_training_jobs(StatusEquals="InProgress")["TrainingJobSummaries"]]
            pids = launcher_processes(0, 1)
            if live and pids:
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)  # no SIGTERM: the job is not stopped, the child just dies
                killed.extend(pids)
                return
            time.sleep(0.3)

    killer = threading.Thread(target=kill_child_once_its_job_trains, daemon=True)
    killer.start()
    try:
        dag_run, states = run_dag({"launcher": "batch_array", "regions": TWO_REGIONS})
    finally:
        done.set()
        killer.join(timeout=5)
    assert killed, "the eu-west-1 child was never seen running with its job"
    assert str(dag_run.state) == "success", states

    (parent,) = array_jobs(endpoint, dag_run.run_id)
    child = parent["children"][0]
    assert child["status"] == "SUCCEEDED"
    # A container killed by SIGKILL exits 128 + 9 (Docker's convention, which ECS reports).
    assert [a["container"]["exitCode"] for a in child["attempts"]] == [128 + signal.SIGKILL, 0]
    assert "Reattaching to training job" in child_log(child, 1), child_log(child, 1)
    assert "Creating training job" not in child_log(child, 1)
    # Exactly one job per region: the retried child made no second one.
    jobs = jobs_of_run(endpoint, dag_run.run_id, tuple(TWO_REGIONS))
    assert sorted(j["Region"] for j in jobs) == TWO_REGIONS
    assert all(j["TrainingJobStatus"] == "Completed" and not j["TrainingJobName"].endswith("-a2") for j in jobs)


def test_a_failing_job_fails_its_child_and_the_run_names_the_region(
    slow_stack: str, campaign_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = slow_stack
    s3 = aws_client("s3", endpoint, "eu-west-1")
    bucket, prefix = "mrt-campaign-data-eu-west-1", "datasets/dublin-urban-2026/dublin-urban-2026-v1/"
    shard = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"][0]["Key"]
    good = s3.get_object(Bucket=bucket, Key=shard)["Body"].read()
    s3.put_object(Bucket=bucket, Key=shard, Body=b"corrupt")  # the stand-in fails: DataLossError
    try:
        dag_run, states = run_dag({"launcher": "batch_array", "regions": TWO_REGIONS})
    finally:
        s3.put_object(Bucket=bucket, Key=shard, Body=good)
    assert str(dag_run.state) == "failed", states
    assert sorted(states["train"]) == ["failed", "success"]
    assert states["check_regions"] == ["failed"]
    out = capsys.readouterr().out
    assert "eu-west-1" in out and "1 of 2 planned target(s) not completed" in out

    (parent,) = array_jobs(endpoint, dag_run.run_id)
    assert parent["status"] == "FAILED"
    failed, succeeded = parent["children"]
    assert failed["status"] == "FAILED" and succeeded["status"] == "SUCCEEDED"
    # Batch's retry of the child after a deterministic failure created no second job, and
    # exited with the refusal's code, which the definition's evaluateOnExit does not retry.
    assert [a["container"]["exitCode"] for a in failed["attempts"]] == [1, 2]
    assert "ended Failed" in child_log(failed, 0) and "creates no new job" in child_log(failed, 1)
    assert "Refused (exit 2, not retried): training job" in child_log(failed, 1)
    jobs = jobs_of_run(endpoint, dag_run.run_id, tuple(TWO_REGIONS))
    assert sorted((j["Region"], j["TrainingJobStatus"]) for j in jobs) == [("eu-west-1", "Failed"),
                                                                          ("us-east-1", "Completed")]


# --- launcher=batch_service -----------------------------------------------------------------
# Batch makes the training job, named AWSBatch<payload name><32 hex> ("Service job state
# change events" example, AWS Batch user guide), and names it in
# DescribeServiceJob.latestAttempt.serviceResourceId (TrainingJobArn): what the DAG follows.

def run_service_jobs(endpoint: str, region: str, queue: str, run_id: str) -> list[dict[str, Any]]:
    """The run's service jobs in ``queue``, described, oldest first."""
    batch = aws_client("batch", endpoint, region)
    # A JOB_NAME filter ending in * matches by prefix, case-insensitively, and "the jobStatus
    # parameter is ignored and jobs with any status are returned" (ListServiceJobsRequest,
    # botocore's model).
    summaries = batch.list_service_jobs(jobQueue=queue, filters=[{"name": "JOB_NAME", "values": ["MRT-*"]}])
    described = [batch.describe_service_job(jobId=s["jobId"]) for s in summaries["jobSummaryList"]]
    mine = [d for d in described if d["tags"].get("dag_run") == identifiers.tag_value(run_id)]
    return sorted(mine, key=lambda d: d["createdAt"])


def training_job_names(service: dict[str, Any]) -> list[str]:
    return [a["serviceResourceId"]["value"].rsplit("/", 1)[-1] for a in service["attempts"]]


def test_batch_service_jobs_queue_run_and_finish(offline_stack: str, campaign_dsn: str) -> None:
    endpoint = offline_stack
    dag_run, states = run_dag({"launcher": "batch_service", "batch_scheduling_priority": 7})
    assert str(dag_run.state) == "success", states
    assert states["launch_batch_array"] == ["skipped"] and states["train"] == ["success"] * 4
    jobs = {j["Region"]: j for j in jobs_of_run(endpoint, dag_run.run_id)}
    assert sorted(jobs) == REGIONS and all(j["TrainingJobStatus"] == "Completed" for j in jobs.values())
    rows = {r["region_code"]: r for r in rows_of_run(campaign_dsn, dag_run.run_id, "region_code", "status",
                                                     "training_job_name", "training_job_arn")}
    for region, job in jobs.items():
        (service,) = run_service_jobs(endpoint, region, f"mrt-sagemaker-{region}", dag_run.run_id)
        payload_name = json.loads(service["serviceRequestPayload"])["TrainingJobName"]
        assert service["jobName"] == payload_name
        assert job["TrainingJobName"].startswith(f"AWSBatch{payload_name[:23]}") and len(job["TrainingJobName"]) <= 63
        assert service["status"] == "SUCCEEDED" and service["schedulingPriority"] == 7
        assert service["latestAttempt"]["serviceResourceId"] == {"name": "TrainingJobArn",
                                                                 "value": job["TrainingJobArn"]}
        # The user guide's event example: "Received status from SageMaker: Training job completed".
        assert service["attempts"][-1]["statusReason"] == "Received status from SageMaker: Training job completed"
        assert rows[region] == {"region_code": region, "status": "Completed", "training_job_name":
                                job["TrainingJobName"], "training_job_arn": job["TrainingJobArn"]}


def _service_request(run: str) -> dict[str, Any]:
    """A CreateTrainingJob request for a service job of its own (output and tag by ``run``)."""
    return {
        "AlgorithmSpecification": {"TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/"
                                   "multi-region-training/resnet50-horovod:local", "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::123456789012:role/mrt-sagemaker-execution",
        "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": "s3://mrt-campaign-data-us-east-1/datasets/boston-winter-2026/"}}}],
        "OutputDataConfig": {"S3OutputPath": f"s3://{CENTRAL_BUCKET}/{run}/"},
        "ResourceConfig": {"InstanceType": "ml.g5.12xlarge", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        "Tags": [{"Key": "dag_run", "Value": run}],
    }


def test_service_job_lists_and_client_tokens_follow_the_model(offline_stack: str) -> None:
    endpoint = offline_stack
    batch = aws_client("batch", endpoint, "us-east-1")
    request = _service_request("token-test")
    args = batch_jobs.service_job_args(request, "mrt-Token-Test", queue="mrt-sagemaker-us-east-1", params={})
    first = batch.submit_service_job(**args)
    # "If this parameter is specified and two submit requests with identical payloads and
    # clientTokens are received, these requests are considered the same request and the
    # second request is rejected" (SubmitServiceJobRequest.clientToken, botocore's model).
    with pytest.raises(batch.exceptions.ClientException):
        batch.submit_service_job(**args)
    # JOB_NAME: "a case-insensitive match for the job name" (ListServiceJobsRequest.filters).
    for value in ("mrt-token-test", "MRT-TOKEN-TEST", "mrt-token-*"):
        listed = batch.list_service_jobs(jobQueue="mrt-sagemaker-us-east-1",
                                         filters=[{"name": "JOB_NAME", "values": [value]}])["jobSummaryList"]
        assert [s["jobId"] for s in listed] == [first["jobId"]], value
    assert batch.list_service_jobs(jobQueue="mrt-sagemaker-us-east-1", filters=[
        {"name": "JOB_NAME", "values": ["mrt-token"]}])["jobSummaryList"] == []  # no *: the whole name
    # The product finds it by name and submits nothing (a cleared task reattaches).
    found = batch_jobs.find_service_job(batch, "mrt-sagemaker-us-east-1", "mrt-Token-Test")
    assert found is not None and found["jobId"] == first["jobId"]
    assert batch_jobs.find_service_job(batch, "mrt-sagemaker-us-east-1", "mrt-token-test") is None  # exact only
    batch.terminate_service_job(jobId=first["jobId"], reason="test done")
    deadline = time.time() + 60
    while batch.describe_service_job(jobId=first["jobId"])["status"] != "FAILED" and time.time() < deadline:
        time.sleep(0.3)
    ended = batch.describe_service_job(jobId=first["jobId"])
    assert ended["status"] == "FAILED" and ended["isTerminated"] is True and ended["statusReason"] == "test done"
    # "If you don't specify a status, only RUNNING jobs are returned" (ListServiceJobsRequest.jobStatus).
    running = batch.list_service_jobs(jobQueue="mrt-sagemaker-us-east-1")["jobSummaryList"]
    assert all(s["status"] == "RUNNING" for s in running) and first["jobId"] not in [s["jobId"] for s in running]
    failed = batch.list_service_jobs(jobQueue="mrt-sagemaker-us-east-1", jobStatus="FAILED")["jobSummaryList"]
    assert first["jobId"] in [s["jobId"] for s in failed]



def test_killing_a_deferred_service_job_task_terminates_the_job_from_its_trigger(offline_stack: str) -> None:
    """A user's kill of a deferred ``batch_service`` task: Airflow calls the trigger's
    ``on_kill`` (the task is in no worker), which terminates the service job."""
    import asyncio

    from regional_training.launch.triggers import BatchServiceJobTrigger

    batch = aws_client("batch", offline_stack, "us-east-1")
    request = _service_request("kill-test")
    args = batch_jobs.service_job_args(request, "mrt-Kill-Test", queue="mrt-sagemaker-us-east-1", params={})
    job_id = batch.submit_service_job(**args)["jobId"]
    trigger = BatchServiceJobTrigger(service_job_id=job_id, job_name="mrt-Kill-Test", region_name="us-east-1",
                                     capacity_wait_seconds=600, poll_seconds=1)
    asyncio.run(trigger.on_kill())
    deadline = time.time() + 60
    while batch.describe_service_job(jobId=job_id)["status"] != "FAILED" and time.time() < deadline:
        time.sleep(0.3)
    ended = batch.describe_service_job(jobId=job_id)
    assert ended["status"] == "FAILED" and ended["isTerminated"] is True
    assert ended["statusReason"] == "Airflow task killed"


# --- capacity: an emulator whose SageMaker refuses capacity (lifecycles) ----------------------
#: The first training job Batch makes for each eu-west-1 service job fails with SageMaker's
#: CapacityError (the emulator's hex starts with the attempt number: docs/emulator.md);
#: us-west-2 never has capacity; eu-central-1's quota is exhausted (ResourceLimitExceeded).
CAPACITY_LIFECYCLES = {
    "regions": {"us-west-2": {"capacity_error_after_start": True, "starting_seconds": 0.5}},
    "jobs": {"AWSBatchmrt-eu-west-1-*00000001" + "?" * 24: {"capacity_error_after_start": True,
                                                             "starting_seconds": 0.5}},
}


@pytest.fixture(scope="module")
def capacity_aws(campaign_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("aws") / "local-aws.log"
    with local_aws(fake_image_map(), lifecycles=CAPACITY_LIFECYCLES, capacity_error_regions=("eu-central-1",),
                   max_concurrent_jobs=4, log_path=log) as endpoint:
        seed_aws(endpoint, campaign_dsn)
        yield endpoint


@pytest.fixture()
def capacity_stack(capacity_aws: str, campaign_dsn: str, airflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    from dev.local_stack import in_process_env

    for key, value in in_process_env(dsn=campaign_dsn, endpoint=capacity_aws, airflow_home=airflow_db).items():
        monkeypatch.setenv(key, value)
    return capacity_aws


def test_a_job_requeued_for_capacity_ends_with_its_second_training_job(capacity_stack: str,
                                                                        campaign_dsn: str) -> None:
    """"Service jobs automatically retry certain types of failures, such as insufficient
    capacity errors, without consuming your configured retry attempts" (user guide,
    service job retry strategies): a new AWSBatch... job, listed in attempts[]."""
    endpoint = capacity_stack
    dag_run, states = run_dag({"launcher": "batch_service", "regions": ["eu-west-1"]})
    assert str(dag_run.state) == "success", states
    assert states["train"] == ["success"]
    (service,) = run_service_jobs(endpoint, "eu-west-1", "mrt-sagemaker-eu-west-1", dag_run.run_id)
    first, second = training_job_names(service)
    assert first.startswith("AWSBatch") and second.startswith("AWSBatch") and first != second
    assert service["status"] == "SUCCEEDED" and service["retryStrategy"]["attempts"] == 1  # not consumed
    assert service["latestAttempt"]["serviceResourceId"]["value"].endswith(f"/{second}")
    assert service["attempts"][0]["statusReason"].startswith("Received status from SageMaker: CapacityError")
    sm = aws_client("sagemaker", endpoint, "eu-west-1")
    assert sm.describe_training_job(TrainingJobName=first)["TrainingJobStatus"] == "Failed"
    assert sm.describe_training_job(TrainingJobName=second)["TrainingJobStatus"] == "Completed"
    # Collected once, its row naming the real job; the report's links and log stream follow it.
    rows = rows_of_run(campaign_dsn, dag_run.run_id, "region_code", "status", "training_job_name", "target_key",
                       "training_job_arn", "model_artifact_uri")
    (row,) = rows
    assert row["status"] == "Completed" and row["training_job_name"] == second
    links = report_links({"run_id": dag_run.run_id, "rows": rows}, dag_id="multi_region_training")
    assert second in links[row["target_key"]]["SageMaker job"] and second in links[row["target_key"]]["logs"]
    streams = aws_client("logs", endpoint, "eu-west-1").describe_log_streams(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=second)["logStreams"]
    assert streams, "the report reads the real job's log stream"
    assert len(artifacts(endpoint, dag_run.run_id)) == 1
    # A cleared task reattaches: the service job is found by the attempt's name, nothing
    # is submitted again, and the job it follows is the completed one.
    batch = aws_client("batch", endpoint, "eu-west-1")
    name = service["jobName"]
    found = batch_jobs.find_service_job(batch, "mrt-sagemaker-eu-west-1", name)
    assert found is not None and found["jobId"] == service["jobId"]
    seen = batch_jobs.describe_service_attempt(batch, "mrt-sagemaker-eu-west-1", name,
                                               lambda real: sm.describe_training_job(TrainingJobName=real))
    assert seen is not None and seen["TrainingJobName"] == second and seen["TrainingJobStatus"] == "Completed"
    assert len(run_service_jobs(endpoint, "eu-west-1", "mrt-sagemaker-eu-west-1", dag_run.run_id)) == 1


def test_a_region_without_capacity_moves_its_target_to_the_next_candidate(capacity_stack: str,
                                                                          campaign_dsn: str) -> None:
    endpoint = capacity_stack
    # The cheapest plan for this campaign is us-west-2 (reserved), then us-east-1 (spot).
    conf = {**LOCAL_RUN_CONF, "placement": "cheapest", "campaigns": ["boston-winter-2026"], "estimated_hours": 2,
            "launcher": "batch_service", "batch_capacity_wait_minutes": 0}
    dag_run, states = helpers.run_dag(conf)
    assert str(dag_run.state) == "success", states
    (job,) = [j for j in jobs_of_run(endpoint, dag_run.run_id) if j["TrainingJobStatus"] == "Completed"]
    assert job["Region"] == "us-east-1" and job["TrainingJobName"].startswith("AWSBatch")
    (waiting,) = run_service_jobs(endpoint, "us-west-2", "mrt-sagemaker-us-west-2", dag_run.run_id)
    # Re-queued after SageMaker's CapacityError, then terminated by the task's capacity wait.
    assert waiting["status"] == "FAILED" and waiting["isTerminated"] is True
    assert waiting["attempts"] and all("CapacityError" in a["statusReason"] for a in waiting["attempts"])
    assert rows_of_run(campaign_dsn, dag_run.run_id, "region_code", "status") == [
        {"region_code": "us-east-1", "status": "Completed"}]
    conn = psycopg2.connect(campaign_dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT from_region, from_option, to_region, to_option FROM placement_moves"
                    " WHERE run_id = %s ORDER BY move_number", (dag_run.run_id,))
        moves = cur.fetchall()
    conn.close()
    assert moves == [("us-west-2", "reserved", "us-east-1", "spot")]


def test_job_state_time_limits_terminate_a_job_requeued_for_capacity(capacity_aws: str) -> None:
    """"Terminated by JobStateTimeLimit action due to reason: CAPACITY:..." (user guide,
    job state time limit actions); maxTimeSeconds 600 to 86,400 (CreateJobQueueRequest)."""
    batch = aws_client("batch", capacity_aws, "us-west-2")
    limit = {"reason": "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY", "state": "RUNNABLE", "maxTimeSeconds": 599,
             "action": "TERMINATE"}
    queue = {"jobQueueName": "mrt-limited-us-west-2", "priority": 1, "jobQueueType": "SAGEMAKER_TRAINING",
             "serviceEnvironmentOrder": [{"order": 1, "serviceEnvironment": "mrt-sm-us-west-2"}],
             "tags": {"local:time-limit-scale": "0.005"}}  # 600 s -> 3 s here
    with pytest.raises(batch.exceptions.ClientException, match="600"):
        batch.create_job_queue(**queue, jobStateTimeLimitActions=[limit])
    batch.create_job_queue(**queue, jobStateTimeLimitActions=[{**limit, "maxTimeSeconds": 600}])
    payload = {"TrainingJobName": "mrt-limited", "RoleArn": "arn:aws:iam::123456789012:role/x",
               "AlgorithmSpecification": {"TrainingImage": "123456789012.dkr.ecr.us-west-2.amazonaws.com/"
                                          "multi-region-training/resnet50-horovod:local", "TrainingInputMode": "File"},
               "OutputDataConfig": {"S3OutputPath": "s3://mrt-limited/out/"},
               "ResourceConfig": {"InstanceType": "ml.g5.12xlarge", "InstanceCount": 1, "VolumeSizeInGB": 10},
               "StoppingCondition": {"MaxRuntimeInSeconds": 600}}
    job = batch.submit_service_job(jobName="mrt-limited", jobQueue="mrt-limited-us-west-2",
                                   serviceJobType="SAGEMAKER_TRAINING", serviceRequestPayload=json.dumps(payload))
    deadline, seen = time.time() + 90, list[str]()
    while time.time() < deadline:
        described = batch.describe_service_job(jobId=job["jobId"])
        if not seen or seen[-1] != described["status"]:
            seen.append(described["status"])
        if described["status"] == "FAILED":
            break
        time.sleep(0.2)
    assert described["status"] == "FAILED", seen
    assert described["statusReason"] == ("Terminated by JobStateTimeLimit action due to reason: "
                                         "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY")
    assert "RUNNABLE" in seen and "SCHEDULED" in seen and seen[0] in ("SUBMITTED", "RUNNABLE")
    assert len(described["attempts"]) >= 1 and not [a for a in described["attempts"] if "stoppedAt" not in a]


def test_a_quota_error_is_not_capacity(capacity_aws: str) -> None:
    """ResourceLimitExceeded is a quota ("the account-level service limit"), not an
    instance-capacity shortage: no re-queue (assumed: the job fails with SageMaker's error;
    docs/emulator.md)."""
    batch = aws_client("batch", capacity_aws, "eu-central-1")
    payload = {"TrainingJobName": "mrt-quota", "RoleArn": "arn:aws:iam::123456789012:role/x",
               "AlgorithmSpecification": {"TrainingImage": "x", "TrainingInputMode": "File"},
               "OutputDataConfig": {"S3OutputPath": "s3://mrt-quota/out/"},
               "ResourceConfig": {"InstanceType": "ml.g5.12xlarge", "InstanceCount": 1, "VolumeSizeInGB": 10},
               "StoppingCondition": {"MaxRuntimeInSeconds": 600}}
    job = batch.submit_service_job(jobName="mrt-quota", jobQueue="mrt-sagemaker-eu-central-1",
                                   serviceJobType="SAGEMAKER_TRAINING", serviceRequestPayload=json.dumps(payload))
    deadline = time.time() + 60
    while (described := batch.describe_service_job(jobId=job["jobId"]))["status"] != "FAILED":
        assert time.time() < deadline, described
        time.sleep(0.2)
    assert "ResourceLimitExceeded" in described["statusReason"] and not described["statusReason"].startswith("CAPACITY")
    assert described["attempts"] == [] and "latestAttempt" not in described


# --- the emulator's array statuses and exit codes, in process ---------------------------------

def test_array_parents_are_pending_while_children_run_and_children_start_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ListJobsRequest.jobStatus (botocore's model): "Array job parents are updated to
    PENDING when any child job is updated to RUNNABLE and remain in PENDING status while
    child jobs are running"; a job is STARTING between RUNNABLE and RUNNING (user guide,
    job states)."""
    from dev.local_aws import batch as emulated

    seen_at_start: list[str] = []
    real_popen = emulated.subprocess.Popen

    def popen(*args: Any, **kwargs: Any) -> Any:
        seen_at_start.append(next((j.status for j in batch.jobs.values() if j.process is None
                                   and j.status == "STARTING"), "none STARTING"))
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(emulated.subprocess, "Popen", popen)
    batch = emulated.BatchEmulator(endpoint_url="http://127.0.0.1:9", workdir=tmp_path, stop_grace_seconds=1)
    batch.create_job_queue("us-east-1", {"jobQueueName": "q", "computeEnvironmentOrder": []})
    batch.register_job_definition("us-east-1", {"jobDefinitionName": "d", "type": "container", "containerProperties": {
        "image": "x", "command": ["python", "-c", "import sys, time; time.sleep(1.5); sys.exit(0)"]}})
    array = batch.submit_job("us-east-1", {"jobName": "a", "jobQueue": "q", "jobDefinition": "d",
                                           "arrayProperties": {"size": 2}})
    statuses = set()
    deadline = time.time() + 30
    while (parent := batch.describe_jobs([array["jobId"]])[0])["status"] not in ("SUCCEEDED", "FAILED"):
        children = [c["status"] for c in batch.describe_jobs([f"{array['jobId']}:0", f"{array['jobId']}:1"])]
        if "RUNNING" in children:
            statuses.add(parent["status"])
        assert time.time() < deadline
        time.sleep(0.05)
    assert statuses == {"PENDING"} and parent["status"] == "SUCCEEDED"
    assert seen_at_start == ["STARTING", "STARTING"]
    # A killed container exits 128 + 9 (Docker's convention that ECS and Batch report).
    killed = batch.submit_job("us-east-1", {"jobName": "k", "jobQueue": "q", "jobDefinition": "d",
                                            "containerOverrides": {"command": ["sleep", "30"]}})
    while batch.describe_jobs([killed["jobId"]])[0]["status"] != "RUNNING":
        time.sleep(0.05)
    batch.jobs[killed["jobId"]].process.kill()  # type: ignore[union-attr]
    while (job := batch.describe_jobs([killed["jobId"]])[0])["status"] != "FAILED":
        time.sleep(0.05)
    assert job["attempts"][-1]["container"]["exitCode"] == 137


@pytest.mark.training
def test_batch_array_children_launch_real_training(real_stack: str, campaign_dsn: str) -> None:
    """The array children's jobs train for real (toolkit, mpirun, Horovod on CPU): the
    emulator's regions with TFRecords (tests/e2e/conftest.py)."""

    endpoint = real_stack
    regions = sorted(TRAINING_REGIONS)
    dag_run, states = helpers.run_dag({**LOCAL_RUN_CONF, "regions": regions, "launcher": "batch_array"})
    assert str(dag_run.state) == "success", states
    (parent,) = array_jobs(endpoint, dag_run.run_id)
    assert parent["arrayProperties"]["size"] == 2 and [c["status"] for c in parent["children"]] == ["SUCCEEDED"] * 2
    jobs = jobs_of_run(endpoint, dag_run.run_id, tuple(regions))
    assert sorted(j["Region"] for j in jobs) == regions
    for child, job in zip(parent["children"], sorted(jobs, key=lambda j: j["Region"]), strict=True):
        assert f"Creating training job {job['TrainingJobName']} in {job['Region']}" in child_log(child)
        metrics = {m["MetricName"] for m in job["FinalMetricDataList"]}
        assert {"train:loss", "train:accuracy"} <= metrics, metrics
    rows = rows_of_run(campaign_dsn, dag_run.run_id, "region_code", "status", "model_artifact_uri")
    assert [(r["region_code"], r["status"]) for r in rows] == [(r, "Completed") for r in regions]
    s3 = aws_client("s3", endpoint, CENTRAL_REGION)
    for row in rows:
        bucket, key = row["model_artifact_uri"][len("s3://"):].split("/", 1)
        with tarfile.open(fileobj=io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())) as tar:
            assert any(name.endswith("saved_model.pb") for name in tar.getnames())
