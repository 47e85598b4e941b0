"""Live capacity (issue 31) against the emulator: another DAG's InProgress jobs are
counted per region and instance type through ListTrainingJobs (paginated) and
DescribeTrainingJob; ended jobs and the run's own jobs are not."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dev.local_aws.fake_entry_point import SHARD_MAGIC
from dev.local_stack import TRAINING_REPOSITORY, aws_client, fake_image_map, local_aws, wait_for_job_end
from regional_training.plan import capacity

pytestmark = pytest.mark.integration

BUCKET = "mrt-capacity"
REGION = "us-east-1"
#: Spot jobs that never get capacity stay InProgress (Starting) until their wait runs out.
LIFECYCLES = {"jobs": {"other-*": {"spot_never_launched": True, "max_wait_seconds": 600}}}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with local_aws(fake_image_map(), lifecycles=LIFECYCLES, max_concurrent_jobs=8) as url:
        s3 = aws_client("s3", url, REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="data/shard-0", Body=SHARD_MAGIC + b"x" * 64)
        yield url


def _request(name: str, instance_type: str, count: int = 1) -> dict[str, Any]:
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": f"123456789012.dkr.ecr.{REGION}.amazonaws.com/"
                                   f"{TRAINING_REPOSITORY}:local", "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::123456789012:role/mrt-sagemaker-execution",
        "HyperParameters": {"max_steps": "10", "seconds": "1"},
        "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/data/"}}}],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
        "ResourceConfig": {"InstanceType": instance_type, "InstanceCount": count, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600, "MaxWaitTimeInSeconds": 1200},
        "EnableManagedSpotTraining": True,
        "CheckpointConfig": {"S3Uri": f"s3://{BUCKET}/checkpoints/{name}"},
    }


def test_another_dags_running_jobs_are_counted_per_type_across_pages(endpoint: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    sm = aws_client("sagemaker", endpoint, REGION)
    for i in range(3):
        sm.create_training_job(**_request(f"other-dag-g5-{i}", "ml.g5.12xlarge"))
    sm.create_training_job(**_request("other-dag-p4d", "ml.p4d.24xlarge", count=2))
    sm.create_training_job(**_request("other-dag-ours", "ml.g5.12xlarge", count=4))
    sm.create_training_job(**_request("other-dag-stopped", "ml.g5.12xlarge"))
    sm.stop_training_job(TrainingJobName="other-dag-stopped")  # ended: holds nothing
    assert wait_for_job_end(sm, "other-dag-stopped", timeout=120)["TrainingJobStatus"] == "Stopped"
    # pages of 2 summaries: the counter must follow NextToken to see every job
    real_paginate = sm.get_paginator("list_training_jobs").paginate
    pages: list[int] = []

    class SmallPages:
        def paginate(self, **kwargs: Any) -> Any:
            for page in real_paginate(**kwargs, PaginationConfig={"PageSize": 2}):
                pages.append(len(page["TrainingJobSummaries"]))
                yield page

    monkeypatch.setattr(sm, "get_paginator", lambda name: SmallPages())
    assert capacity.count_in_use(sm, "ml.g5.12xlarge", exclude={"other-dag-ours"}) == 3
    assert len(pages) >= 3 and max(pages) <= 2
    assert capacity.in_use_by_region([REGION, REGION], "ml.p4d.24xlarge", client_for=lambda r: sm) == {REGION: 2}
    assert capacity.in_use_by_region([REGION], "ml.p5.48xlarge", client_for=lambda r: sm) == {}


def test_a_heterogeneous_cluster_counts_only_its_matching_groups() -> None:
    description = {"ResourceConfig": {"InstanceGroups": [
        {"InstanceType": "ml.g5.12xlarge", "InstanceCount": 2, "InstanceGroupName": "a"},
        {"InstanceType": "ml.p4d.24xlarge", "InstanceCount": 1, "InstanceGroupName": "b"}]}}
    assert capacity.instances_of_type(description, "ml.g5.12xlarge") == 2
    assert capacity.instances_of_type({"ResourceConfig": {}}, "ml.g5.12xlarge") == 0
