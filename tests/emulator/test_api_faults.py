"""Faults AWS documents, played by the emulator, met by the product's own code paths.

* StopTrainingJob (SageMaker API reference, StopTrainingJob): "SageMaker sends the
  algorithm the SIGTERM signal, which delays job termination for 120 seconds. Algorithms
  might use this 120-second window to save the model artifacts"; the job goes
  ``Stopping`` then ``Stopped``; ``FailureReason`` is "If the training job failed, the
  reason it failed" (DescribeTrainingJob), so a stopped job has none.
* Throttling on S3 (``SlowDown``, 503) and CloudWatch Logs (``ThrottlingException``)
  while the product collects a job: the artifact copy (aws_io.copy_object) and the
  report's metric series (report.fetch_metric_series) lose nothing.
* A lost CreateTrainingJob response: the job exists, the client's retry meets
  ``ResourceInUse``; the training operator follows that job and makes no second one.

docs/emulator.md has the sources. Stand-in entry point: seconds per test.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from airflow.exceptions import TaskDeferred

from dev.local_aws.fake_entry_point import SHARD_MAGIC
from dev.local_stack import TRAINING_REPOSITORY, aws_client, fake_image_map, local_aws, wait_for_job_end
from regional_training.plan.metric_format import METRIC_DEFINITIONS

pytestmark = [pytest.mark.integration]

REGION = "us-east-1"
BUCKET = "mrt-api-faults"
CENTRAL = "mrt-api-faults-central"
#: 2 of every 3 calls refused: each collection call is refused at least once, and a
#: client with the product's retries (adaptive, 10 attempts) gets through every time.
BURST = {"burst": 2, "every": 3}
LIFECYCLES = {
    "jobs": {"lost-*": {"lose_create_response": 1}},
    "api_throttle": {op: BURST for op in ("s3:CopyObject", "s3:UploadPartCopy", "logs:DescribeLogStreams",
                                          "logs:GetLogEvents")},
}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with local_aws(fake_image_map(), lifecycles=LIFECYCLES, max_concurrent_jobs=2, stop_grace_seconds=20) as url:
        s3 = aws_client("s3", url, REGION)
        for bucket in (BUCKET, CENTRAL):
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=BUCKET, Key="data/shard-0", Body=SHARD_MAGIC + b"x" * 64)
        yield url


@pytest.fixture
def aws_conn(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The product's hooks (aws_io, report) on this emulator."""
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(
        {"conn_type": "aws", "extra": {"endpoint_url": endpoint, "region_name": REGION}}))
    return endpoint


def _request(name: str, *, seconds: float = 1, steps: int = 10) -> dict[str, Any]:
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": f"123456789012.dkr.ecr.{REGION}.amazonaws.com/{TRAINING_REPOSITORY}:local",
            "TrainingInputMode": "File",
            "MetricDefinitions": METRIC_DEFINITIONS},
        "RoleArn": "arn:aws:iam::123456789012:role/mrt-sagemaker-execution",
        "HyperParameters": {"max_steps": str(steps), "seconds": str(seconds)},
        "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/data/"}}}],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
        "ResourceConfig": {"InstanceType": "ml.g5.12xlarge", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }


def _counts(endpoint: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{endpoint}/_mrt/api-calls", timeout=10) as answer:  # noqa: S310 (local)
        return json.loads(answer.read())


def _model(endpoint: str, uri: str) -> dict[str, Any]:
    bucket, _, key = uri[len("s3://"):].partition("/")
    body = aws_client("s3", endpoint, REGION).get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return json.load(tar.extractfile("model.json"))  # type: ignore[arg-type]


def test_a_stopped_job_keeps_its_model_and_has_no_failure_reason(endpoint: str) -> None:
    sm = aws_client("sagemaker", endpoint, REGION)
    sm.create_training_job(**_request("stop-1", seconds=60, steps=20))
    deadline = time.monotonic() + 60
    while sm.describe_training_job(TrainingJobName="stop-1")["SecondaryStatus"] != "Training":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    time.sleep(7)  # a few steps (3 s each)
    started = time.monotonic()
    sm.stop_training_job(TrainingJobName="stop-1")
    # The call returns at once; the algorithm has its grace period (20 s here, 120 on AWS).
    assert time.monotonic() - started < 5
    assert sm.describe_training_job(TrainingJobName="stop-1")["TrainingJobStatus"] == "Stopping"
    job = wait_for_job_end(sm, "stop-1", timeout=60)
    assert job["TrainingJobStatus"] == "Stopped"
    assert "FailureReason" not in job
    assert [t["Status"] for t in job["SecondaryStatusTransitions"]][-2:] == ["Stopping", "Stopped"]
    # The entry point saved its model on SIGTERM; SageMaker uploads /opt/ml/model after the stop.
    model = _model(endpoint, job["ModelArtifacts"]["S3ModelArtifacts"])
    assert model["stopped"] is True and 1 <= model["steps"] < 20


def test_a_throttling_burst_during_collection_loses_nothing(aws_conn: str) -> None:
    from regional_training.report import report
    from regional_training.runtime import aws_io

    sm = aws_client("sagemaker", aws_conn, REGION)
    sm.create_training_job(**_request("collect-1"))
    job = wait_for_job_end(sm, "collect-1", timeout=90)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    before = _counts(aws_conn)

    dest = f"s3://{CENTRAL}/artifacts/collect-1/model.tar.gz"
    aws_io.copy_object(job["ModelArtifacts"]["S3ModelArtifacts"], dest, dest_region=REGION)
    series = report.fetch_metric_series("collect-1", REGION, definitions=METRIC_DEFINITIONS)

    after = _counts(aws_conn)
    for operation in ("s3:CopyObject", "logs:DescribeLogStreams", "logs:GetLogEvents"):
        assert after.get(f"throttled {operation}", 0) > before.get(f"throttled {operation}", 0), operation
    # Nothing lost: the copy is the job's model, and every step's metric was read.
    assert _model(aws_conn, dest) == _model(aws_conn, job["ModelArtifacts"]["S3ModelArtifacts"])
    assert [point["step"] for point in series] == list(range(1, 11))
    assert all("train:loss" in point for point in series)


def test_a_lost_create_response_makes_no_second_job(aws_conn: str) -> None:
    from regional_training.operators import DurableSageMakerTrainingOperator
    from regional_training.runtime.aws_io import BOTOCORE_CONFIG

    class Ti:
        task_id, map_index, try_number, max_tries = "train", -1, 1, 2
        xcom: dict[str, Any] = {}

        def xcom_push(self, key: str, value: Any) -> None:
            self.xcom[key] = value

        def xcom_pull(self, key: str, **_: Any) -> Any:
            return self.xcom.get(key)

    def operator() -> DurableSageMakerTrainingOperator:
        return DurableSageMakerTrainingOperator(task_id="train", config=_request("lost-1"), region_name=REGION,
                                                check_interval=1, botocore_config=BOTOCORE_CONFIG)

    before = _counts(aws_conn).get("lost sagemaker:CreateTrainingJob", 0)
    ti = Ti()
    # The create succeeds, its response is lost, botocore retries and meets ResourceInUse:
    # the try follows the job it made (defers on it) instead of failing or making another.
    with pytest.raises(TaskDeferred) as deferred:
        operator().execute({"ti": ti})  # type: ignore[arg-type, typeddict-item]
    assert (deferred.value.trigger.region_name, deferred.value.trigger.job_name) == (REGION, "lost-1")
    assert _counts(aws_conn).get("lost sagemaker:CreateTrainingJob", 0) == before + 1
    job = wait_for_job_end(aws_client("sagemaker", aws_conn, REGION), "lost-1", timeout=90)
    result = operator().execute_complete({"ti": ti}, {"status": "success", "job_name": "lost-1"})  # type: ignore[arg-type, typeddict-item]
    assert result["Training"]["TrainingJobStatus"] == job["TrainingJobStatus"] == "Completed"
    names = [j["TrainingJobName"] for j in aws_client("sagemaker", aws_conn, REGION)
             .list_training_jobs(MaxResults=100)["TrainingJobSummaries"] if j["TrainingJobName"].startswith("lost-")]
    assert names == ["lost-1"]
