"""The SageMaker the operator's unit tests talk to, through the provider's hook patched as
the provider's own operator tests do (the ``sagemaker`` fixture, tests/unit/conftest.py)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

REQUEST = {"TrainingJobName": "mrt-a", "StoppingCondition": {"MaxRuntimeInSeconds": 600},
           "Tags": [{"Key": "purchase_option", "Value": "reserved"}]}
ALTERNATIVE = {"TrainingJobName": "mrt-b", "StoppingCondition": {"MaxRuntimeInSeconds": 600},
               "Tags": [{"Key": "purchase_option", "Value": "spot"}]}


class FakeSageMaker:
    """Jobs by (region, name); ``describe_training_job`` answers like SageMaker does and
    ``create_training_job`` refuses the regions in ``refuse`` for capacity."""

    def __init__(self, refuse: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.created: list[tuple[str, str]] = []
        self.refuse = refuse
        #: The hooks that answered, with their regions (each hook is one boto3 session).
        self.hooks: set[tuple[int, str]] = set()

    def describe(self, hook: Any, name: str) -> dict[str, Any]:
        self.hooks.add((id(hook), hook.region_name))
        try:
            return {**self.jobs[(hook.region_name, name)], "TrainingJobName": name}
        except KeyError:
            raise ClientError({"Error": {"Code": "ValidationException", "Message": "not found"}},
                              "DescribeTrainingJob") from None

    def create(self, hook: Any, config: dict[str, Any], **_: Any) -> dict[str, Any]:
        if hook.region_name in self.refuse:
            raise ClientError({"Error": {"Code": "ResourceLimitExceeded", "Message": "quota 0"}},
                              "CreateTrainingJob")
        self.hooks.add((id(hook), hook.region_name))
        self.created.append((hook.region_name, config["TrainingJobName"]))
        self.jobs[(hook.region_name, config["TrainingJobName"])] = {"TrainingJobStatus": "InProgress"}
        return {"ResponseMetadata": {"HTTPStatusCode": 200}}
