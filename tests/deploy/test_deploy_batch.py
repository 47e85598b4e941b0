"""deploy/batch_resources.py: the Batch resources the launchers need, valid for the
platform chosen, created once (regional_training.launch.batch_resources holds the definition;
the local emulator's seed creates the same, tests/e2e/test_batch_launchers.py runs on it)."""

from __future__ import annotations

from typing import Any

import botocore.session
import pytest
from botocore.validate import validate_parameters

from deploy import batch_resources as cli
from regional_training.launch.batch_jobs import VARIABLES, BatchSettings
from regional_training.launch.batch_resources import BatchResources, create

MODEL = botocore.session.get_session().get_service_model("batch")
ACCT = "111122223333"
REGIONS = ["eu-central-1", "eu-west-1", "us-east-1", "us-west-2"]


class RecordingBatch:
    """A Batch client per region that checks each request against botocore's input shape
    and remembers what exists."""

    def __init__(self, region: str, state: dict[str, set[tuple[str, str]]], calls: list[tuple[str, str]]) -> None:
        self.region, self.state, self.calls = region, state, calls
        self.definitions: list[dict[str, Any]] = []

    def _call(self, operation: str, kind: str, name_key: str | None, params: dict[str, Any]) -> dict[str, Any]:
        validate_parameters(params, MODEL.operation_model(operation).input_shape)  # raises on a bad request
        self.calls.append((self.region, operation))
        if name_key:
            self.state.setdefault(kind, set()).add((self.region, params[name_key]))
        return {}

    def _exists(self, kind: str, names: list[str]) -> list[dict[str, str]]:
        return [{"name": n} for n in names if (self.region, n) in self.state.get(kind, set())]

    def describe_compute_environments(self, computeEnvironments: list[str]) -> dict[str, Any]:
        return {"computeEnvironments": self._exists("ce", computeEnvironments)}

    def create_compute_environment(self, **params: Any) -> dict[str, Any]:
        return self._call("CreateComputeEnvironment", "ce", "computeEnvironmentName", params)

    def describe_job_queues(self, jobQueues: list[str]) -> dict[str, Any]:
        return {"jobQueues": self._exists("queue", jobQueues)}

    def create_job_queue(self, **params: Any) -> dict[str, Any]:
        return self._call("CreateJobQueue", "queue", "jobQueueName", params)

    def describe_job_definitions(self, jobDefinitionName: str, status: str) -> dict[str, Any]:
        return {"jobDefinitions": [d for d in self.definitions if d["jobDefinitionName"] == jobDefinitionName]}

    def register_job_definition(self, **params: Any) -> dict[str, Any]:
        self._call("RegisterJobDefinition", "definition", "jobDefinitionName", params)
        self.definitions.append({**params, "status": "ACTIVE"})
        return {}

    def describe_service_environments(self, serviceEnvironments: list[str]) -> dict[str, Any]:
        return {"serviceEnvironments": self._exists("se", serviceEnvironments)}

    def create_service_environment(self, **params: Any) -> dict[str, Any]:
        return self._call("CreateServiceEnvironment", "se", "serviceEnvironmentName", params)


def resources_of(definition: dict[str, Any]) -> dict[str, str]:
    return {r["type"]: r["value"] for r in definition["containerProperties"]["resourceRequirements"]}


def fargate(**overrides: Any) -> BatchResources:
    values: dict[str, Any] = {
        "central_region": "us-east-1", "regions": REGIONS, "image": "img",
        "job_role_arn": f"arn:aws:iam::{ACCT}:role/l",
        "execution_role_arn": f"arn:aws:iam::{ACCT}:role/e", "subnets": ["subnet-1"], "security_group_ids": ["sg-1"],
    }
    return BatchResources(**{**values, **overrides})


def run(spec: BatchResources) -> tuple[list[str], list[tuple[str, str]], dict[str, RecordingBatch]]:
    state: dict[str, set[tuple[str, str]]] = {}
    calls: list[tuple[str, str]] = []
    clients: dict[str, RecordingBatch] = {}

    def client(region: str) -> RecordingBatch:
        return clients.setdefault(region, RecordingBatch(region, state, calls))

    return create(spec, client), calls, clients


def test_the_launchers_resources_are_created_with_the_names_the_dag_reads() -> None:
    created, calls, _ = run(fargate())
    settings = BatchSettings(**{field: default for field, default in VARIABLES.values()})
    assert f"job queue {settings.launcher_queue} in us-east-1" in created
    assert f"job definition {settings.launcher_job_definition} in us-east-1" in created
    for region in REGIONS:
        assert f"job queue {settings.service_queue(region)} in {region}" in created
        assert f"service environment mrt-sm-{region} in {region}" in created
    # Each request passed botocore's input validation (RecordingBatch._call).
    assert ("us-east-1", "CreateComputeEnvironment") in calls and len(calls) == 3 + 2 * len(REGIONS)


def test_fargate_definitions_say_fargate_and_ec2_ones_ask_for_a_whole_vcpu() -> None:
    # Fargate's fractional vCPU needs platformCapabilities=["FARGATE"] and an execution role;
    # "For Amazon EC2 resources, you must specify at least one vCPU"; Fargate's "value = 0.25
    # MEMORY = 512, 1024, or 2048" (ResourceRequirement.value, botocore's Batch model).
    definition = fargate().job_definition_request()
    resources = {r["type"]: r["value"] for r in definition["containerProperties"]["resourceRequirements"]}
    assert definition["platformCapabilities"] == ["FARGATE"] and resources["VCPU"] == "0.25"
    assert definition["containerProperties"]["executionRoleArn"].endswith(":role/e")
    ec2 = fargate(platform="EC2", execution_role_arn=None).job_definition_request()
    resources = {r["type"]: r["value"] for r in ec2["containerProperties"]["resourceRequirements"]}
    assert ec2["platformCapabilities"] == ["EC2"] and float(resources["VCPU"]) >= 1
    assert fargate().compute_environment_request()["computeResources"]["type"] == "FARGATE"
    doc = MODEL.shape_for("ResourceRequirement").members["value"].documentation
    assert "For Amazon EC2 resources, you must specify at least one vCPU" in doc  # the model's own rule
    assert resources_of(definition)["MEMORY"] in ("512", "1024", "2048")


def test_existing_resources_are_not_created_again() -> None:
    spec = fargate()
    state: dict[str, set[tuple[str, str]]] = {}
    calls: list[tuple[str, str]] = []
    clients: dict[str, RecordingBatch] = {}
    create(spec, lambda region: clients.setdefault(region, RecordingBatch(region, state, calls)))
    calls.clear()
    create(spec, lambda region: clients.setdefault(region, RecordingBatch(region, state, calls)))
    assert calls == []
    # A changed image registers a new revision (the DAG submits the newest).
    create(BatchResources(**{**spec.__dict__, "image": "img:2"}),
           lambda region: clients.setdefault(region, RecordingBatch(region, state, calls)))
    assert calls == [("us-east-1", "RegisterJobDefinition")]


def test_a_capacity_time_limit_is_within_what_batch_takes() -> None:
    queue = fargate(capacity_wait_seconds=3600).service_queue_request("eu-west-1")
    assert queue["jobStateTimeLimitActions"] == [{"reason": "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY",
                                                  "state": "RUNNABLE", "maxTimeSeconds": 3600,
                                                  "action": "TERMINATE"}]
    # "The minimum value for maxTimeSeconds is 600 (10 minutes) and its maximum value is
    # 86,400 (24 hours)" (CreateJobQueueRequest.jobStateTimeLimitActions).
    for bad in (599, 86401):
        with pytest.raises(ValueError, match="600 to 86400"):
            fargate(capacity_wait_seconds=bad)


@pytest.mark.parametrize(("argv", "message"), [
    (["--platform", "FARGATE"], "execution_role_arn"),
    (["--execution-role-arn", "arn:aws:iam::1:role/e"], "subnets"),
])
def test_the_cli_names_what_is_missing(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--central-region", "us-east-1", "--regions", "eu-west-1", "--image", "img", "--job-role-arn", "r"]
    with pytest.raises(SystemExit):
        cli.parse(base + argv)
    assert message in capsys.readouterr().err
