"""The emulator's spot, capacity and throttling lifecycles, as SageMaker reports them.

The emulator runs as a server with a lifecycle file (``--lifecycles``); jobs run the
stand-in entry point (no TensorFlow), so these take seconds. Real training through a
spot interruption is in test_toolkit_launch.py.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import botocore.config
import botocore.exceptions
import pytest

from dev.local_aws.fake_entry_point import SHARD_MAGIC
from dev.local_stack import TRAINING_REPOSITORY, aws_client, fake_image_map, local_aws, wait_for_job_end

pytestmark = [pytest.mark.integration]

BUCKET = "mrt-lifecycles"
LIFECYCLES = {
    "regions": {"us-west-2": {"spot_never_launched": True, "max_wait_seconds": 3}},
    "jobs": {
        "cap-*": {"capacity_error_after_start": True},
        "thr-*": {"throttle": {"CreateTrainingJob": 2, "DescribeTrainingJob": 3}},
        "spot-int-*": {"spot_interruptions": 1, "interrupt_after_seconds": 1},
        "spot-runs-out-*": {"max_wait_seconds": 4},
    },
}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with local_aws(fake_image_map(), lifecycles=LIFECYCLES, max_concurrent_jobs=4) as url:
        for region in ("us-east-1", "us-west-2"):
            s3 = aws_client("s3", url, region)
            bucket = f"{BUCKET}-{region}"
            if region == "us-east-1":
                s3.create_bucket(Bucket=bucket)
            else:
                s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
            s3.put_object(Bucket=bucket, Key="data/shard-0", Body=SHARD_MAGIC + b"x" * 64)
        yield url


def _sm(endpoint: str, region: str, **config: Any) -> Any:
    import boto3

    return boto3.client(
        "sagemaker", region_name=region, endpoint_url=endpoint, aws_access_key_id="testing",
        aws_secret_access_key="testing", config=botocore.config.Config(**config) if config else None,
    )


def _request(name: str, region: str, *, spot: bool = False, seconds: float = 1) -> dict[str, Any]:
    bucket = f"{BUCKET}-{region}"
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": f"123456789012.dkr.ecr.{region}.amazonaws.com/"
                                   f"{TRAINING_REPOSITORY}:local", "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::123456789012:role/mrt-sagemaker-execution",
        "HyperParameters": {"max_steps": "10", "seconds": str(seconds)},
        "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/data/"}}}],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/output"},
        "ResourceConfig": {"InstanceType": "ml.g5.12xlarge", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }
    if spot:
        request["EnableManagedSpotTraining"] = True
        request["StoppingCondition"]["MaxWaitTimeInSeconds"] = 1200
        request["CheckpointConfig"] = {"S3Uri": f"s3://{bucket}/checkpoints/{name}"}
    return request


def _wait(sm: Any, name: str, timeout: float = 90) -> dict[str, Any]:
    return wait_for_job_end(sm, name, timeout=timeout)


def _statuses(job: dict[str, Any]) -> list[str]:
    return [t["Status"] for t in job["SecondaryStatusTransitions"]]


def test_a_completed_job_has_a_real_transition_history(endpoint: str) -> None:
    sm = _sm(endpoint, "us-east-1")
    sm.create_training_job(**_request("plain-1", "us-east-1"))
    job = _wait(sm, "plain-1")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert _statuses(job) == ["Starting", "Downloading", "Training", "Uploading", "Completed"]
    transitions = job["SecondaryStatusTransitions"]
    for earlier, later in itertools.pairwise(transitions):
        assert earlier["EndTime"] == later["StartTime"]
    assert all(t["StatusMessage"] for t in transitions)
    assert job["BillableTimeInSeconds"] == job["TrainingTimeInSeconds"] >= 1


def test_a_spot_job_that_never_gets_capacity_ends_max_wait_time_exceeded(endpoint: str) -> None:
    sm = _sm(endpoint, "us-west-2")
    sm.create_training_job(**_request("spot-starved", "us-west-2", spot=True))
    running = sm.describe_training_job(TrainingJobName="spot-starved")
    assert (running["TrainingJobStatus"], running["SecondaryStatus"]) == ("InProgress", "Starting")
    job = _wait(sm, "spot-starved")
    assert job["TrainingJobStatus"] == "Stopped"
    assert job["SecondaryStatus"] == "MaxWaitTimeExceeded"
    # The capacity message is only in a transition's StatusMessage, never in FailureReason.
    assert "FailureReason" not in job
    starting = next(t for t in job["SecondaryStatusTransitions"] if t["Status"] == "Starting")
    assert starting["StatusMessage"].startswith("Insufficient capacity error from EC2")
    assert _statuses(job) == ["Starting", "Stopping", "MaxWaitTimeExceeded"]
    assert "TrainingStartTime" not in job and "BillableTimeInSeconds" not in job
    # What the product records and reports: SageMaker's secondary status and message (issue 33).
    from regional_training.launch.attempts import ended_reason

    assert job["SecondaryStatusTransitions"][-1]["StatusMessage"]
    assert ended_reason(job).startswith("MaxWaitTimeExceeded: ")
    # On-demand jobs in the same region are not starved.
    sm.create_training_job(**_request("on-demand-west", "us-west-2"))
    assert _wait(sm, "on-demand-west")["TrainingJobStatus"] == "Completed"


def test_a_spot_job_whose_wait_runs_out_while_training_ends_max_wait_time_exceeded(endpoint: str) -> None:
    """The Managed Spot Training Lifecycle's other way to run out of wait: the job got
    instances and trained, and MaxWaitTimeInSeconds (wait plus runtime) ran out first:
    InProgress (Starting ... Training) -> Stopping -> Stopped / MaxWaitTimeExceeded, with
    training and billable time (it ran), and no FailureReason (it did not fail)."""
    sm = _sm(endpoint, "us-east-1")
    sm.create_training_job(**_request("spot-runs-out-1", "us-east-1", spot=True, seconds=60))
    job = _wait(sm, "spot-runs-out-1")
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Stopped", "MaxWaitTimeExceeded")
    assert _statuses(job) == ["Starting", "Downloading", "Training", "Stopping", "MaxWaitTimeExceeded"]
    assert "FailureReason" not in job
    assert job["BillableTimeInSeconds"] >= 1 and job["TrainingTimeInSeconds"] >= 1


def test_a_stop_by_a_person_and_max_runtime_end_stopped_with_their_own_secondary_status(endpoint: str) -> None:
    sm = _sm(endpoint, "us-east-1")
    sm.create_training_job(**_request("stopped-by-hand", "us-east-1", seconds=60))
    runtime = _request("runtime-runs-out", "us-east-1", seconds=60)
    runtime["StoppingCondition"]["MaxRuntimeInSeconds"] = 2
    sm.create_training_job(**runtime)
    deadline = time.monotonic() + 30
    while sm.describe_training_job(TrainingJobName="stopped-by-hand")["SecondaryStatus"] != "Training":
        assert time.monotonic() < deadline, "stopped-by-hand never reached Training"
        time.sleep(0.2)
    sm.stop_training_job(TrainingJobName="stopped-by-hand")
    by_hand, ran_out = _wait(sm, "stopped-by-hand"), _wait(sm, "runtime-runs-out")
    assert (by_hand["TrainingJobStatus"], by_hand["SecondaryStatus"]) == ("Stopped", "Stopped")
    assert (ran_out["TrainingJobStatus"], ran_out["SecondaryStatus"]) == ("Stopped", "MaxRuntimeExceeded")
    assert "FailureReason" not in by_hand and "FailureReason" not in ran_out


def test_capacity_error_after_start_fails_without_start_or_billable_time(endpoint: str) -> None:
    sm = _sm(endpoint, "us-east-1")
    sm.create_training_job(**_request("cap-1", "us-east-1"))
    job = _wait(sm, "cap-1")
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith("CapacityError: Unable to provision requested ML compute capacity")
    assert "TrainingStartTime" not in job and "BillableTimeInSeconds" not in job
    assert _statuses(job) == ["Starting", "Failed"]


def test_throttling_bursts_lose_nothing_and_create_one_job(endpoint: str) -> None:
    no_retry = _sm(endpoint, "us-east-1", retries={"max_attempts": 1, "mode": "standard"})
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        no_retry.create_training_job(**_request("thr-1", "us-east-1"))
    assert refused.value.response["Error"]["Code"] == "ThrottlingException"
    # A client that retries (botocore's standard mode backs off) gets through.
    retrying = _sm(endpoint, "us-east-1", retries={"max_attempts": 5, "mode": "standard"})
    retrying.create_training_job(**_request("thr-1", "us-east-1"))
    names = [j["TrainingJobName"] for j in retrying.list_training_jobs(MaxResults=100)["TrainingJobSummaries"]]
    assert names.count("thr-1") == 1
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        no_retry.describe_training_job(TrainingJobName="thr-1")
    assert refused.value.response["Error"]["Code"] == "ThrottlingException"
    assert _wait(retrying, "thr-1")["TrainingJobStatus"] == "Completed"


def test_a_spot_interruption_restarts_the_job_and_bills_less_than_it_ran(endpoint: str) -> None:
    sm = _sm(endpoint, "us-east-1")
    sm.create_training_job(**_request("spot-int-1", "us-east-1", spot=True, seconds=8))
    job = _wait(sm, "spot-int-1", timeout=120)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert _statuses(job) == [
        "Starting", "Downloading", "Training", "Interrupted", "Starting", "Downloading", "Training", "Uploading",
        "Completed",
    ]
    assert 1 <= job["BillableTimeInSeconds"] < job["TrainingTimeInSeconds"]
