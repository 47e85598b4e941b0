"""The AWS Batch resources the Batch launchers need, as requests: ONE definition.

``deploy/batch_resources.py`` creates them in an account; the local emulator's seed
(``local_aws.batch.seed_batch``) creates the same ones, so the launchers meet the same
names and shapes offline as deployed (docs/batch.md):

* ``batch_array``, in the central region: a compute environment (Fargate by default, or
  EC2), the launcher job queue on it, and the launcher job definition (the Airflow
  image running :mod:`regional_training.launch.batch_launcher`). Fargate takes fractional
  vCPUs and needs ``platformCapabilities=["FARGATE"]``, an execution role and a network
  configuration; EC2 needs 1 vCPU at least (``ResourceRequirement.value`` in botocore's
  Batch model).
* ``batch_service``, in each training region: a ``SAGEMAKER_TRAINING`` service
  environment and its job queue, optionally with a ``jobStateTimeLimitActions`` entry
  that terminates a job re-queued for capacity (``CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY``)
  after ``capacity_wait_seconds`` (600 to 86,400 s, ``CreateJobQueue``).

The names are :data:`regional_training.launch.batch_jobs.VARIABLES`' defaults. Creation is
idempotent: what exists is described, not created again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from regional_training.launch.batch_jobs import VARIABLES

Platform = Literal["FARGATE", "EC2"]
#: The reason Batch gives a service job re-queued after SageMaker's CapacityError.
CAPACITY_REASON = "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"
#: The launcher's command (``Ref::`` parameters are the launch task's).
LAUNCHER_COMMAND = [
    "python", "-m", "regional_training.launch.batch_launcher", "--array-uri", "Ref::array_uri",
    "--requests-uri", "Ref::requests_uri", "--region", "Ref::region", "--poll-seconds", "Ref::poll_seconds",
]

#: The launcher job's retry rules: a child that refused its line (``batch_launcher.
#: EXIT_REFUSED``, 2: a bad line, index or request file, the same on every try) is not
#: retried; any other exit is, up to ``attempts`` (AWS Batch API, ``EvaluateOnExit``:
#: "If none of the EvaluateOnExit conditions in a RetryStrategy match, then the job is
#: retried"; ``onExitCode`` is a glob over the decimal exit code, ``action`` RETRY|EXIT).
RETRY_RULES = [{"onExitCode": "2", "action": "EXIT"}]


def _default(variable: str) -> str:
    return VARIABLES[variable][1]


@dataclass(frozen=True)
class BatchResources:
    """What to create; names default to what the DAG reads (``batch_jobs.VARIABLES``)."""

    central_region: str
    regions: list[str]
    #: The Airflow image (it holds regional_training): the launcher's container.
    image: str
    #: The launcher role (deploy/iam/batch-launcher-role.*): the child's AWS calls.
    job_role_arn: str
    platform: Platform = "FARGATE"
    #: Fargate: the task execution role (pulls the image, writes logs).
    execution_role_arn: str | None = None
    subnets: list[str] = field(default_factory=list)
    security_group_ids: list[str] = field(default_factory=list)
    #: EC2 only: Batch's service role (None: the service-linked role).
    service_role_arn: str | None = None
    max_vcpus: int = 16
    poll_seconds: float = 30.0
    #: Batch's retries of a launcher child (a retried child reattaches to its job).
    attempts: int = 2
    #: Instances one region's service environment may run at once.
    max_training_instances: int = 16
    #: Terminate a service job re-queued for capacity after this long (None: never; the
    #: Param ``batch_capacity_wait_minutes`` may still give up sooner).
    capacity_wait_seconds: int | None = None
    launcher_queue: str = field(default_factory=lambda: _default("mrt_batch_launcher_queue"))
    launcher_job_definition: str = field(default_factory=lambda: _default("mrt_batch_launcher_job_definition"))
    service_queue_pattern: str = field(default_factory=lambda: _default("mrt_batch_service_queue_pattern"))
    service_environment_pattern: str = "mrt-sm-{region}"

    def __post_init__(self) -> None:
        if self.platform == "FARGATE" and not self.execution_role_arn:
            raise ValueError("platform FARGATE needs execution_role_arn (containerProperties.executionRoleArn)")
        if self.platform == "FARGATE" and not self.subnets:
            raise ValueError("platform FARGATE needs subnets (computeResources.subnets)")
        if self.capacity_wait_seconds is not None and not 600 <= self.capacity_wait_seconds <= 86400:
            raise ValueError(f"capacity_wait_seconds={self.capacity_wait_seconds}: Batch takes 600 to 86400")

    @property
    def compute_environment(self) -> str:
        return self.launcher_queue

    def compute_environment_request(self) -> dict[str, Any]:
        resources: dict[str, Any] = {"type": self.platform, "maxvCpus": self.max_vcpus, "subnets": self.subnets,
                                     "securityGroupIds": self.security_group_ids}
        if self.platform == "EC2":
            resources.update({"minvCpus": 0, "instanceTypes": ["optimal"],
                              "allocationStrategy": "BEST_FIT_PROGRESSIVE"})
        request: dict[str, Any] = {"computeEnvironmentName": self.compute_environment, "type": "MANAGED",
                                   "state": "ENABLED", "computeResources": resources}
        if self.service_role_arn:
            request["serviceRole"] = self.service_role_arn
        return request

    def launcher_queue_request(self) -> dict[str, Any]:
        return {"jobQueueName": self.launcher_queue, "state": "ENABLED", "priority": 1,
                "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": self.compute_environment}]}

    def job_definition_request(self) -> dict[str, Any]:
        fargate = self.platform == "FARGATE"
        container: dict[str, Any] = {
            "image": self.image, "command": LAUNCHER_COMMAND, "jobRoleArn": self.job_role_arn,
            # Fargate takes 0.25 vCPU / 512 MiB; EC2 1 vCPU at least: the child only polls.
            "resourceRequirements": [{"type": "VCPU", "value": "0.25" if fargate else "1"},
                                     {"type": "MEMORY", "value": "512"}],
        }
        if fargate:
            container["executionRoleArn"] = self.execution_role_arn
            container["networkConfiguration"] = {"assignPublicIp": "DISABLED"}
        return {"jobDefinitionName": self.launcher_job_definition, "type": "container",
                "platformCapabilities": [self.platform], "parameters": {"poll_seconds": str(self.poll_seconds)},
                "retryStrategy": {"attempts": self.attempts, "evaluateOnExit": RETRY_RULES},
                "containerProperties": container,
                "propagateTags": True}

    def service_environment_request(self, region: str) -> dict[str, Any]:
        return {"serviceEnvironmentName": self.service_environment_pattern.format(region=region),
                "serviceEnvironmentType": "SAGEMAKER_TRAINING", "state": "ENABLED",
                "capacityLimits": [{"maxCapacity": self.max_training_instances, "capacityUnit": "NUM_INSTANCES"}]}

    def service_queue_request(self, region: str) -> dict[str, Any]:
        request: dict[str, Any] = {
            "jobQueueName": self.service_queue_pattern.format(region=region), "state": "ENABLED", "priority": 1,
            "jobQueueType": "SAGEMAKER_TRAINING",
            "serviceEnvironmentOrder": [{"order": 1, "serviceEnvironment":
                                         self.service_environment_pattern.format(region=region)}],
        }
        if self.capacity_wait_seconds is not None:
            request["jobStateTimeLimitActions"] = [{"reason": CAPACITY_REASON, "state": "RUNNABLE",
                                                    "maxTimeSeconds": self.capacity_wait_seconds,
                                                    "action": "TERMINATE"}]
        return request


def create(spec: BatchResources, client: Callable[[str], Any]) -> list[str]:
    """Create what does not exist yet (``client(region)``: a botocore Batch client);
    returns what was created, as ``<kind> <name> in <region>``."""
    created: list[str] = []
    central = client(spec.central_region)
    if not central.describe_compute_environments(computeEnvironments=[spec.compute_environment])[
            "computeEnvironments"]:
        central.create_compute_environment(**spec.compute_environment_request())
        created.append(f"compute environment {spec.compute_environment} in {spec.central_region}")
    if not central.describe_job_queues(jobQueues=[spec.launcher_queue])["jobQueues"]:
        central.create_job_queue(**spec.launcher_queue_request())
        created.append(f"job queue {spec.launcher_queue} in {spec.central_region}")
    active = central.describe_job_definitions(jobDefinitionName=spec.launcher_job_definition, status="ACTIVE")
    wanted = spec.job_definition_request()
    if not any(_same_definition(d, wanted) for d in active["jobDefinitions"]):
        central.register_job_definition(**wanted)
        created.append(f"job definition {spec.launcher_job_definition} in {spec.central_region}")
    for region in spec.regions:
        batch = client(region)
        environment = spec.service_environment_pattern.format(region=region)
        if not batch.describe_service_environments(serviceEnvironments=[environment])["serviceEnvironments"]:
            batch.create_service_environment(**spec.service_environment_request(region))
            created.append(f"service environment {environment} in {region}")
        queue = spec.service_queue_pattern.format(region=region)
        if not batch.describe_job_queues(jobQueues=[queue])["jobQueues"]:
            batch.create_job_queue(**spec.service_queue_request(region))
            created.append(f"job queue {queue} in {region}")
    return created


def _same_definition(existing: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether an ACTIVE revision already is ``wanted`` (a changed image or command
    registers a new revision; the DAG submits the newest)."""
    return all(existing.get(key) == wanted[key] for key in ("platformCapabilities", "parameters", "retryStrategy")) \
        and all((existing.get("containerProperties") or {}).get(key) == value
                for key, value in wanted["containerProperties"].items())
