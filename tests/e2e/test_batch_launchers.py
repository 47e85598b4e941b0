"""The AWS Batch launchers (issue 16), end to end: the real DAG with ``dag.test()``, the
launcher entry point as Batch array children (local processes of the emulator's Batch),
service jobs through the emulated Batch into the emulated SageMaker.

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

from local_stack import CENTRAL_BUCKET, CENTRAL_REGION, LOCAL_RUN_CONF, aws_client, fake_image_map, local_aws, seed_aws
from regional_training import array_file, batch_jobs, run_layout

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
    """The run's array job(s) in the launcher queue, described, with their children."""
    batch = aws_client("batch", endpoint, CENTRAL_REGION)
    name = batch_jobs.array_job_name("multi_region_training", run_id)
    found = batch.list_jobs(jobQueue="mrt-launchers", filters=[{"name": "JOB_NAME", "values": [name]}])
    out = []
    for summary in found["jobSummaryList"]:
        parent = batch.describe_jobs(jobs=[summary["jobId"]])["jobs"][0]
        ids = [c["jobId"] for c in batch.list_jobs(arrayJobId=summary["jobId"])["jobSummaryList"]]
        parent["children"] = sorted(batch.describe_jobs(jobs=ids)["jobs"], key=lambda c: c["arrayProperties"]["index"])
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
    from local_stack import in_process_env

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
        if (b"regional_training.batch_launcher" in cmdline
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
    assert [a["container"]["exitCode"] for a in child["attempts"]] == [-signal.SIGKILL, 0]
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
    # Batch's retry of the child after a deterministic failure created no second job.
    assert len(failed["attempts"]) == 2
    assert "ended Failed" in child_log(failed, 0) and "creates no new job" in child_log(failed, 1)
    jobs = jobs_of_run(endpoint, dag_run.run_id, tuple(TWO_REGIONS))
    assert sorted((j["Region"], j["TrainingJobStatus"]) for j in jobs) == [("eu-west-1", "Failed"),
                                                                          ("us-east-1", "Completed")]


# --- launcher=batch_service -----------------------------------------------------------------

def service_jobs(endpoint: str, region: str, queue: str) -> list[dict[str, Any]]:
    batch = aws_client("batch", endpoint, region)
    summaries = batch.list_service_jobs(jobQueue=queue)
    names = [s["jobId"] for s in summaries["jobSummaryList"]]
    return [batch.describe_service_job(jobId=i) for i in names]


def test_batch_service_jobs_queue_run_and_finish(offline_stack: str, campaign_dsn: str) -> None:
    endpoint = offline_stack
    dag_run, states = run_dag({"launcher": "batch_service", "batch_scheduling_priority": 7})
    assert str(dag_run.state) == "success", states
    assert states["launch_batch_array"] == ["skipped"] and states["train"] == ["success"] * 4
    jobs = {j["Region"]: j for j in jobs_of_run(endpoint, dag_run.run_id)}
    assert sorted(jobs) == REGIONS and all(j["TrainingJobStatus"] == "Completed" for j in jobs.values())
    for region, job in jobs.items():
        batch = aws_client("batch", endpoint, region)
        listed = batch.list_service_jobs(jobQueue=f"mrt-sagemaker-{region}",
                                         filters=[{"name": "JOB_NAME", "values": [job["TrainingJobName"]]}])
        (summary,) = listed["jobSummaryList"]
        service = batch.describe_service_job(jobId=summary["jobId"])
        assert service["status"] == "SUCCEEDED" and service["schedulingPriority"] == 7
        assert service["latestAttempt"]["serviceResourceId"]["value"] == job["TrainingJobArn"]
        assert service["tags"]["dag_run"] == dag_run.run_id
    rows = rows_of_run(campaign_dsn, dag_run.run_id, "region_code", "status")
    assert rows == [{"region_code": r, "status": "Completed"} for r in REGIONS]


def test_a_queue_without_capacity_moves_its_target_to_the_next_candidate(
    offline_stack: str, campaign_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = offline_stack
    # Queues of their own: us-west-2's has no capacity (the emulator's queue tag).
    for region in REGIONS:
        tags = {"local:no-capacity-seconds": "3600"} if region == "us-west-2" else {}
        batch = aws_client("batch", endpoint, region)
        if not batch.describe_job_queues(jobQueues=[f"nocap-{region}"])["jobQueues"]:
            batch.create_job_queue(jobQueueName=f"nocap-{region}", priority=1, jobQueueType="SAGEMAKER_TRAINING",
                                   serviceEnvironmentOrder=[{"order": 1, "serviceEnvironment": "local"}], tags=tags)
    monkeypatch.setenv("AIRFLOW_VAR_MRT_BATCH_SERVICE_QUEUE_PATTERN", "nocap-{region}")
    # The cheapest plan for this campaign is us-west-2 (reserved), then us-east-1 (spot).
    conf = {**LOCAL_RUN_CONF, "placement": "cheapest", "campaigns": ["boston-winter-2026"], "estimated_hours": 2,
            "launcher": "batch_service", "batch_capacity_wait_minutes": 0}
    dag_run, states = helpers.run_dag(conf)
    assert str(dag_run.state) == "success", states
    (job,) = jobs_of_run(endpoint, dag_run.run_id)
    assert job["Region"] == "us-east-1" and job["TrainingJobStatus"] == "Completed"
    (waiting,) = [j for j in service_jobs(endpoint, "us-west-2", "nocap-us-west-2")
                  if j["tags"].get("dag_run") == dag_run.run_id]
    assert waiting["status"] == "FAILED" and waiting["isTerminated"] is True
    assert "latestAttempt" not in waiting  # it never became a training job
    assert rows_of_run(campaign_dsn, dag_run.run_id, "region_code", "status") == [
        {"region_code": "us-east-1", "status": "Completed"}]
    conn = psycopg2.connect(campaign_dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT from_region, from_option, to_region, to_option, error_code FROM placement_moves"
                    " WHERE run_id = %s ORDER BY move_number", (dag_run.run_id,))
        moves = cur.fetchall()
    conn.close()
    assert moves == [("us-west-2", "reserved", "us-east-1", "spot", "CAPACITY")]


def test_the_same_client_token_twice_creates_one_service_job(offline_stack: str) -> None:
    endpoint = offline_stack
    batch = aws_client("batch", endpoint, "us-east-1")
    request = {
        "AlgorithmSpecification": {"TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/"
                                   "multi-region-training/resnet50-horovod:local", "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::123456789012:role/mrt-sagemaker-execution",
        "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": "s3://mrt-campaign-data-us-east-1/datasets/boston-winter-2026/"}}}],
        "OutputDataConfig": {"S3OutputPath": f"s3://{CENTRAL_BUCKET}/token-test/"},
        "ResourceConfig": {"InstanceType": "ml.g5.12xlarge", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        "Tags": [{"Key": "dag_run", "Value": "token-test"}],
    }
    args = batch_jobs.service_job_args(request, "mrt-token-test", queue="mrt-sagemaker-us-east-1", params={})
    first = batch.submit_service_job(**args)
    second = batch.submit_service_job(**args)
    assert first["jobId"] == second["jobId"]
    listed = batch.list_service_jobs(jobQueue="mrt-sagemaker-us-east-1",
                                     filters=[{"name": "JOB_NAME", "values": ["mrt-token-test"]}])
    assert len(listed["jobSummaryList"]) == 1
    # A new attempt has a new name, so a new token: a new job.
    other = batch.submit_service_job(**batch_jobs.service_job_args(request, "mrt-token-test-a2",
                                                                   queue="mrt-sagemaker-us-east-1", params={}))
    assert other["jobId"] != first["jobId"]
    for job_id in (first["jobId"], other["jobId"]):
        batch.terminate_service_job(jobId=job_id, reason="test done")


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
