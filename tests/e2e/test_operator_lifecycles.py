"""The training operator against the emulator's SageMaker lifecycles (issue 10).

A spot job that never gets capacity ends ``Stopped``/``MaxWaitTimeExceeded`` (the
capacity message only in a status transition), and a job that fails for capacity after
start: both move the target to its next candidate *within the same task try*, the move
naming SageMaker's reason. With no candidate left, the spot job's task fails without
Airflow's retries (which would only find the same ended job) and is recorded in
SageMaker's words, ``MaxWaitTimeExceeded``, not "job ended Stopped" (issue 33). A
throttling burst on Create/DescribeTrainingJob loses nothing and creates one job.
The operator is driven as the worker and the triggerer drive it: ``execute`` until it
defers, then ``execute_complete`` with the event the provider's trigger sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from airflow.exceptions import TaskDeferred
from airflow.sdk.exceptions import AirflowFailException

from dev.local_aws.fake_entry_point import SHARD_MAGIC
from dev.local_stack import TRAINING_REPOSITORY, aws_client, fake_image_map, local_aws, wait_for_job_end
from regional_training.launch.job import Job
from regional_training.launch.retry_policy import Decision, classify
from regional_training.operators import CapacityExhaustedError, DurableSageMakerTrainingOperator
from regional_training.record.collection import collect
from regional_training.run.run_layout import RunLayout
from regional_training.runtime.aws_io import BOTOCORE_CONFIG

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

BUCKET = "mrt-op-lifecycles"
LIFECYCLES = {
    "regions": {"us-west-2": {"spot_never_launched": True, "max_wait_seconds": 3}},
    "jobs": {
        "cap-*": {"capacity_error_after_start": True},
        "thr-*": {"throttle": {"CreateTrainingJob": 2, "DescribeTrainingJob": 3}},
    },
}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with local_aws(fake_image_map(), lifecycles=LIFECYCLES, max_concurrent_jobs=4) as url:
        for region in ("us-east-1", "us-west-2", "eu-west-1"):
            s3 = aws_client("s3", url, region)
            bucket = f"{BUCKET}-{region}"
            config = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            s3.create_bucket(Bucket=bucket, **config)
            s3.put_object(Bucket=bucket, Key="data/shard-0", Body=SHARD_MAGIC + b"x" * 64)
        yield url


@pytest.fixture
def aws_conn(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    import json

    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(
        {"conn_type": "aws", "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"}}))
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    return endpoint


def _request(name: str, region: str, *, spot: bool = False) -> dict[str, Any]:
    bucket = f"{BUCKET}-{region}"
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": f"123456789012.dkr.ecr.{region}.amazonaws.com/"
                                   f"{TRAINING_REPOSITORY}:local", "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::123456789012:role/mrt-sagemaker-execution",
        "HyperParameters": {"max_steps": "10", "seconds": "1"},
        "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/data/"}}}],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/output"},
        "ResourceConfig": {"InstanceType": "ml.g5.12xlarge", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        "Tags": [{"Key": "purchase_option", "Value": "spot" if spot else "on_demand"}],
    }
    if spot:
        request["EnableManagedSpotTraining"] = True
        request["StoppingCondition"]["MaxWaitTimeInSeconds"] = 1200
        request["CheckpointConfig"] = {"S3Uri": f"s3://{bucket}/checkpoints/{name}"}
    return request


class _Ti:
    """The task instance as the operator uses it: XCom (its moves) and try numbers."""

    task_id, map_index, try_number, max_tries = "train", -1, 1, 2

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value

    def xcom_pull(self, key: str, **_: Any) -> Any:
        return self.xcom.get(key)


def _operator(first: dict[str, Any], region: str, failover: list[dict[str, Any]]) -> DurableSageMakerTrainingOperator:
    return DurableSageMakerTrainingOperator(task_id="train", config=first, region_name=region, failover=failover,
                                            max_failovers=len(failover), check_interval=1,
                                            botocore_config=BOTOCORE_CONFIG)


def _wait(endpoint: str, region: str, name: str, timeout: float = 120) -> dict[str, Any]:
    return wait_for_job_end(aws_client("sagemaker", endpoint, region), name, timeout=timeout)


def _event(job: dict[str, Any]) -> dict[str, Any]:
    """What the provider's SageMakerTrigger yields for an ended job."""
    status = job["TrainingJobStatus"]
    if status == "Completed":
        return {"status": "success", "job_name": job["TrainingJobName"]}
    return {"status": status.lower(), "job_name": job["TrainingJobName"], "message": job.get("FailureReason", "")}


def _follow(endpoint: str, first: dict[str, Any], region: str, failover: list[dict[str, Any]]
            ) -> tuple[dict[str, Any], list[tuple[str, str]], _Ti]:
    """One task try: execute, then resume after each deferral until it returns; the
    (region, job) of every deferral."""
    ti = _Ti()
    deferrals: list[tuple[str, str]] = []
    with pytest.raises(TaskDeferred) as deferred:
        _operator(first, region, failover).execute({"ti": ti})  # type: ignore[arg-type, typeddict-item]
    while True:
        trigger = deferred.value.trigger
        deferrals.append((trigger.region_name, trigger.job_name))
        job = _wait(endpoint, trigger.region_name, trigger.job_name)
        try:
            # A fresh operator, as the worker resumes it after the triggerer.
            return (_operator(first, region, failover).execute_complete(  # type: ignore[arg-type, typeddict-item]
                {"ti": ti}, _event(job)), deferrals, ti)
        except TaskDeferred as again:
            deferred = pytest.ExceptionInfo.from_exc_info((TaskDeferred, again, again.__traceback__))


@pytest.mark.parametrize(("name", "first_region", "spot"), [
    ("spot-never", "us-west-2", True),  # Stopped / MaxWaitTimeExceeded
    ("cap-after-start", "eu-west-1", False),  # Failed / CapacityError after start
])
def test_a_job_that_ends_for_capacity_moves_within_the_same_try(
    aws_conn: str, name: str, first_region: str, spot: bool
) -> None:
    first = _request(name, first_region, spot=spot)
    # The failover candidate, in another region (its name outside the lifecycle patterns).
    fallback = {"request": _request(f"fallback-{name}", "us-east-1"), "region": "us-east-1"}
    result, deferrals, ti = _follow(aws_conn, first, first_region, [fallback])
    assert [region for region, _ in deferrals] == [first_region, "us-east-1"]
    assert result["Training"]["TrainingJobStatus"] == "Completed"
    ended = _wait(aws_conn, first_region, name)
    if spot:
        assert (ended["TrainingJobStatus"], ended["SecondaryStatus"]) == ("Stopped", "MaxWaitTimeExceeded")
        assert "FailureReason" not in ended or "capacity" not in ended["FailureReason"].lower()
    else:
        assert ended["FailureReason"].startswith("CapacityError")
    # The task's extra links (console, logs) follow the job it moved to.
    assert (ti.xcom["mrt_training_job"]["region_name"], ti.xcom["mrt_training_job"]["job_name"]) == (
        "us-east-1", f"fallback-{name}")
    moves = ti.xcom["placement_moves"]
    assert [(m["from_region"], m["to_region"]) for m in moves] == [(first_region, "us-east-1")]
    # The move says why in SageMaker's words (placement_moves.error_message).
    assert moves[0]["error_message"].startswith("MaxWaitTimeExceeded: " if spot else "CapacityError: ")
    # No second job anywhere: one in the starved region, one where it moved.
    for region, expected in ((first_region, [name]), ("us-east-1", [f"fallback-{name}"])):
        names = [j["TrainingJobName"] for j in aws_client("sagemaker", aws_conn, region)
                 .list_training_jobs(MaxResults=100)["TrainingJobSummaries"]
                 if name in j["TrainingJobName"]]
        assert names == expected, (region, names)


def test_a_throttling_burst_loses_nothing_and_creates_one_job(aws_conn: str) -> None:
    first = _request("thr-burst", "us-east-1")
    result, deferrals, _ = _follow(aws_conn, first, "us-east-1", [])
    assert deferrals == [("us-east-1", "thr-burst")]
    assert result["Training"]["TrainingJobStatus"] == "Completed"
    names = [j["TrainingJobName"] for j in aws_client("sagemaker", aws_conn, "us-east-1")
             .list_training_jobs(MaxResults=100)["TrainingJobSummaries"] if j["TrainingJobName"].startswith("thr-")]
    assert names == ["thr-burst"]


def test_a_spot_job_whose_wait_ran_out_with_no_candidate_left_fails_without_retries(aws_conn: str) -> None:
    first = _request("spot-alone", "us-west-2", spot=True)
    ti = _Ti()
    with pytest.raises(TaskDeferred):
        _operator(first, "us-west-2", []).execute({"ti": ti})  # type: ignore[arg-type, typeddict-item]
    ended = _wait(aws_conn, "us-west-2", "spot-alone")
    assert (ended["TrainingJobStatus"], ended["SecondaryStatus"]) == ("Stopped", "MaxWaitTimeExceeded")
    with pytest.raises(CapacityExhaustedError) as raised:
        _operator(first, "us-west-2", []).execute_complete({"ti": ti}, _event(ended))  # type: ignore[arg-type, typeddict-item]
    # An AirflowFailException: Airflow's task runner fails the task at once, no up_for_retry.
    assert isinstance(raised.value, AirflowFailException) and classify(raised.value).decision is Decision.FAIL
    assert "us-west-2 (spot): MaxWaitTimeExceeded: " in str(raised.value) and "not retried" in str(raised.value)
    assert "job ended Stopped" not in str(raised.value)
    # Were the task tried again (a clear), it would find the same ended job and create none.
    ti.try_number = 2
    with pytest.raises(CapacityExhaustedError):
        _operator(first, "us-west-2", []).execute({"ti": ti})  # type: ignore[arg-type, typeddict-item]
    summaries = aws_client("sagemaker", aws_conn, "us-west-2").list_training_jobs(MaxResults=100)
    names = [j["TrainingJobName"] for j in summaries["TrainingJobSummaries"]
             if j["TrainingJobName"].startswith("spot-alone")]
    assert names == ["spot-alone"]
    # What collection records for the target (the training_runs row), from the emulator's description.
    target = {"region_code": "us-west-2", "s3_uri": f"s3://{BUCKET}-us-west-2/data/", "campaign_key": "c",
              "dataset_key": "spot-alone", "dataset_id": 1, "copy_id": 1, "output_bucket": f"{BUCKET}-us-west-2",
              "purchase_option": "spot"}
    rows: list[dict[str, Any]] = []
    sm = aws_client("sagemaker", aws_conn, "us-west-2")

    def describe(region: str, name: str) -> dict[str, Any] | None:
        try:
            return sm.describe_training_job(TrainingJobName=name)  # type: ignore[no-any-return]
        except sm.exceptions.ClientError:
            return None

    row = collect(job=Job.from_xcom({"target": target, "request": first, "hyperparameters_sha256": "0" * 64,
                                     "max_failovers": 0}),
                  dag_id="d", run_id="r", layout=RunLayout(f"{BUCKET}-us-east-1", "d", "r"), describe=describe,
                  copy=lambda *_: None, upsert=rows.append)
    assert (row["status"], row["attempt"], row["training_job_name"]) == ("Stopped", 1, "spot-alone")
    assert row["failure_reason"].startswith("MaxWaitTimeExceeded: Training job exceeded MaxWaitTimeInSeconds")
    assert "Insufficient capacity error from EC2" in row["failure_reason"]
