"""AWS Batch, emulated for the DAG's Batch launchers (docs/batch.md), patched into moto's server.

moto's own Batch runs jobs in Docker, which CI does not have. This module answers the
calls the launchers and deploy/ make, over moto's HTTP server (restJson1, the real
botocore client). Every behaviour below has its AWS source, or is marked assumed, in
docs/emulator.md ("AWS Batch"):

* compute environments, service environments, job queues (with
  ``jobStateTimeLimitActions``) and job definitions: recorded and described;
* ``SubmitJob`` (with ``arrayProperties``, 2..10,000 children; ``AWS_BATCH*`` overrides
  refused), ``DescribeJobs``, ``ListJobs``, ``TerminateJob``/``CancelJob``. A job or array
  child runs its job definition's command (``Ref::name`` parameters substituted;
  ``python`` is this server's interpreter) as a local process with Batch's variables
  set: SUBMITTED -> RUNNABLE -> STARTING -> RUNNING -> SUCCEEDED/FAILED, a parent PENDING
  while its children run, exit code 128 + signal for a killed child,
  ``retryStrategy.attempts`` re-runs unless an ``evaluateOnExit`` rule says EXIT (the
  submit's ``retryStrategy`` overrides the definition's); ``TerminateJob`` sends SIGTERM, then SIGKILL
  after the grace period, as ECS does;
* ``SubmitServiceJob``/``DescribeServiceJob``/``ListServiceJobs``/``TerminateServiceJob``
  (``SAGEMAKER_TRAINING``): Batch creates ``AWSBatch<payload name><32 hex>`` training
  jobs in the queue's region's emulated SageMaker, maps their status to SCHEDULED,
  STARTING, RUNNING, SUCCEEDED or FAILED with SageMaker's messages prefixed
  ``Received status from SageMaker: ``, re-queues after a ``CapacityError`` with a new
  training job (``CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - ...``, not counted against
  ``retryStrategy``), honours the queue's ``jobStateTimeLimitActions`` and rejects a
  repeated ``clientToken``.

Process logs: ``<workdir>/batch/<job id>[-<index>]-<attempt>.log``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from dev.local_aws.clients import client, shared_client

log = logging.getLogger("local_aws.batch")

ACCOUNT = "123456789012"
ENDED = ("SUCCEEDED", "FAILED")
#: Batch's reason for a service job re-queued after SageMaker's CapacityError (the
#: ``jobStateTimeLimitActions`` reason of SageMaker queues, user guide).
CAPACITY_REASON = "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"
#: How Batch prefixes SageMaker's messages in a service job's ``statusReason``.
SAGEMAKER_PREFIX = "Received status from SageMaker: "
TRAINING_JOB_PREFIX = "AWSBatch"
#: SageMaker's TrainingJobName limit.
TRAINING_JOB_NAME_MAX = 63
#: A local knob (queue tag): ``jobStateTimeLimitActions``' maxTimeSeconds (600 at least on
#: AWS) scaled by this, so a test waits seconds, not ten minutes.
TIME_LIMIT_SCALE_TAG = "local:time-limit-scale"
#: SageMaker SecondaryStatus -> service-job status (user guide, "Mapping AWS Batch service
#: job status to SageMaker AI status"; ``Starting`` is assumed to be SCHEDULED: capacity is
#: not acquired yet).
SECONDARY_TO_BATCH = {
    "Pending": "SCHEDULED", "Starting": "SCHEDULED", "Downloading": "STARTING", "Training": "RUNNING",
    "Uploading": "RUNNING", "Interrupted": "RUNNING", "Restarting": "RUNNING", "Stopping": "RUNNING",
}
#: "Environment variables cannot start with AWS_BATCH" (ContainerOverrides.environment,
#: botocore's model).
RESERVED_ENV_PREFIX = "AWS_BATCH"


def name_filter(filters: list[dict[str, Any]] | None) -> Any:
    """The ``JOB_NAME`` filter of ListJobs/ListServiceJobs as a predicate, or ``None``:
    "a case-insensitive match for the job name. If the value ends with an asterisk (*),
    the filter matches any job name that begins with the string before the '*'"
    (botocore's model, ``filters``)."""
    values = [v for f in filters or [] if f["name"] == "JOB_NAME" for v in f["values"]]
    others = [f["name"] for f in filters or [] if f["name"] != "JOB_NAME"]
    if others:
        raise BatchClientError(f"the emulator supports only the JOB_NAME filter, not {others}")
    if not values:
        return None
    wanted = [v.lower() for v in values]

    def match(name: str) -> bool:
        lowered = name.lower()
        return any(lowered.startswith(w[:-1]) if w.endswith("*") else lowered == w for w in wanted)

    return match


def _ms() -> int:
    return int(time.time() * 1000)


def _refuse_reserved(environment: list[dict[str, str]]) -> None:
    reserved = [e["name"] for e in environment if e["name"].startswith(RESERVED_ENV_PREFIX)]
    if reserved:
        raise BatchClientError(f"Environment variables cannot start with {RESERVED_ENV_PREFIX}: {reserved}")


#: ``RetryStrategy.evaluateOnExit``: "Array of up to 5 objects" (AWS Batch API reference).
MAX_EXIT_RULES = 5
EXIT_ACTIONS = ("RETRY", "EXIT")


def _glob(pattern: str | None, value: str) -> bool:
    """An ``EvaluateOnExit`` pattern: an exact match, or "can end with an asterisk (*) so
    that only the start of the string needs to be an exact match" (absent: no condition)."""
    if pattern is None:
        return True
    return value.startswith(pattern[:-1]) if pattern.endswith("*") else value == pattern


def exit_action(rules: list[dict[str, Any]], *, exit_code: int, reason: str, status_reason: str) -> str:
    """``RETRY`` or ``EXIT`` for an attempt that ended non-zero: the first rule whose every
    given condition (``onExitCode``, ``onReason``, ``onStatusReason``) matches decides
    (its ``action``, not case-sensitive); "If none of the EvaluateOnExit conditions in a
    RetryStrategy match, then the job is retried" (API reference ``EvaluateOnExit``)."""
    for rule in rules:
        if (_glob(rule.get("onExitCode"), str(exit_code)) and _glob(rule.get("onReason"), reason)
                and _glob(rule.get("onStatusReason"), status_reason)):
            return str(rule["action"]).upper()
    return "RETRY"


def _check_retry_strategy(strategy: dict[str, Any] | None) -> None:
    """Refuse what the API reference says a ``RetryStrategy`` cannot hold."""
    rules = (strategy or {}).get("evaluateOnExit")
    if not rules:
        return
    if "attempts" not in (strategy or {}):
        raise BatchClientError("retryStrategy.evaluateOnExit needs retryStrategy.attempts")
    if len(rules) > MAX_EXIT_RULES:
        raise BatchClientError(f"retryStrategy.evaluateOnExit holds {len(rules)} rules; at most {MAX_EXIT_RULES}")
    for rule in rules:
        if str(rule.get("action", "")).upper() not in EXIT_ACTIONS:
            raise BatchClientError(f"evaluateOnExit action {rule.get('action')!r} is not RETRY or EXIT")
        code = rule.get("onExitCode")
        if code is not None and not code.rstrip("*").isdigit() and code != "*":
            raise BatchClientError(f"evaluateOnExit onExitCode {code!r}: only digits, optionally ending with *")


def exit_code(returncode: int) -> int:
    """A container's exit code as Docker/ECS report it: 128 + the signal for a process
    killed by one (SIGKILL: 137), where Python's ``returncode`` is ``-signal``."""
    return 128 - returncode if returncode < 0 else returncode


class BatchClientError(Exception):
    def __init__(self, message: str, code: str = "ClientException") -> None:
        super().__init__(message)
        self.code, self.message = code, message


def batch_arn(region: str, resource: str) -> str:
    """The ARN of a Batch resource (``job/<id>``, ``job-queue/<name>``, ...) in ``region``."""
    return f"arn:aws:batch:{region}:{ACCOUNT}:{resource}"


@dataclass
class Attempt:
    started_at: int
    log_path: str
    stopped_at: int | None = None
    exit_code: int | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"startedAt": self.started_at, "container": {"logStreamName": self.log_path}}
        if self.stopped_at is not None:
            out["stoppedAt"] = self.stopped_at
            out["container"]["exitCode"] = self.exit_code
            out["statusReason"] = self.reason or ""
        return out


@dataclass(kw_only=True)
class _JobRecord:
    """What a plain or array-child job and a service job both record and describe."""

    #: The ARN's resource type ("job" or "service-job").
    ARN_KIND: ClassVar[str] = "job"

    job_id: str
    name: str
    region: str
    queue: str
    status: str = "SUBMITTED"
    status_reason: str = ""
    created_at: int = field(default_factory=_ms)
    started_at: int | None = None
    stopped_at: int | None = None
    terminated: bool = False

    @property
    def arn(self) -> str:
        return batch_arn(self.region, f"{self.ARN_KIND}/{self.job_id}")

    def _describe(self, **fields: Any) -> dict[str, Any]:
        """DescribeJobs' common fields, then ``fields``, then the times that are set."""
        out: dict[str, Any] = {
            "jobArn": self.arn, "jobName": self.name, "jobId": self.job_id, "jobQueue": self.queue,
            "status": self.status, "statusReason": self.status_reason, "createdAt": self.created_at, **fields,
        }
        if self.started_at:
            out["startedAt"] = self.started_at
        if self.stopped_at:
            out["stoppedAt"] = self.stopped_at
        return out


@dataclass(kw_only=True)
class Job(_JobRecord):
    """A plain job or one array child."""

    definition: dict[str, Any]
    parameters: dict[str, str]
    command: list[str]
    environment: dict[str, str]
    max_attempts: int
    tags: dict[str, str]
    #: ``retryStrategy.evaluateOnExit`` (the submit's, else the job definition's).
    exit_rules: list[dict[str, Any]] = field(default_factory=list)
    array_index: int | None = None
    array_parent: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    def describe(self) -> dict[str, Any]:
        container: dict[str, Any] = {
            "command": self.command, "environment": [{"name": k, "value": v} for k, v in self.environment.items()],
        }
        if self.attempts and self.attempts[-1].exit_code is not None:
            container["exitCode"] = self.attempts[-1].exit_code
        if self.attempts:
            container["logStreamName"] = self.attempts[-1].log_path
        out = self._describe(
            attempts=[a.to_dict() for a in self.attempts], jobDefinition=self.definition["jobDefinitionArn"],
            parameters=self.parameters, tags=self.tags,
            retryStrategy={"attempts": self.max_attempts, **({"evaluateOnExit": self.exit_rules}
                                                             if self.exit_rules else {})},
            container=container, dependsOn=[],
            platformCapabilities=self.definition.get("platformCapabilities") or ["EC2"],
        )
        out.setdefault("startedAt", self.created_at)  # required in JobDetail (assumed before a start)
        if self.array_index is not None:
            out["arrayProperties"] = {"index": self.array_index}
        return out


@dataclass
class ArrayJob:
    job_id: str
    name: str
    region: str
    queue: str
    definition: dict[str, Any]
    parameters: dict[str, str]
    tags: dict[str, str]
    children: list[Job]
    created_at: int = field(default_factory=_ms)

    @property
    def arn(self) -> str:
        return batch_arn(self.region, f"job/{self.job_id}")

    @property
    def status(self) -> str:
        """ListJobsRequest.jobStatus (botocore's model): "Array job parents are updated to
        PENDING when any child job is updated to RUNNABLE and remain in PENDING status
        while child jobs are running"; then SUCCEEDED if every child did, else FAILED."""
        states = [c.status for c in self.children]
        if all(s == "SUCCEEDED" for s in states):
            return "SUCCEEDED"
        if all(s in ENDED for s in states):
            return "FAILED"
        if all(s == "SUBMITTED" for s in states):
            return "SUBMITTED"
        return "PENDING"

    def describe(self) -> dict[str, Any]:
        summary: dict[str, int] = {}
        for child in self.children:
            summary[child.status] = summary.get(child.status, 0) + 1
        ended = [c.stopped_at for c in self.children if c.stopped_at]
        out: dict[str, Any] = {
            "jobArn": self.arn, "jobName": self.name, "jobId": self.job_id, "jobQueue": self.queue,
            "status": self.status, "createdAt": self.created_at, "attempts": [],
            # JobDetail marks startedAt required: a parent's is its first child's start, or
            # its createdAt before any started (assumed; docs/emulator.md).
            "startedAt": min([c.started_at for c in self.children if c.started_at] or [self.created_at]),
            "jobDefinition": self.definition["jobDefinitionArn"], "parameters": self.parameters, "tags": self.tags,
            "arrayProperties": {"size": len(self.children), "statusSummary": summary},
            "container": {"command": self.children[0].command if self.children else []},
            "dependsOn": [], "platformCapabilities": self.definition.get("platformCapabilities") or ["EC2"],
        }
        if self.status in ENDED and ended:
            out["stoppedAt"] = max(ended)
            failed = [c for c in self.children if c.status == "FAILED"]
            out["statusReason"] = (f"{len(failed)} of {len(self.children)} child job(s) failed" if failed
                                   else "All child jobs succeeded")
        return out


@dataclass
class ServiceAttempt:
    """One training job Batch made for a service job (``ServiceJobAttemptDetail``)."""

    training_job_arn: str
    started_at: int
    stopped_at: int | None = None
    reason: str | None = None

    @property
    def training_job_name(self) -> str:
        return self.training_job_arn.rsplit("/", 1)[-1]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"serviceResourceId": {"name": "TrainingJobArn", "value": self.training_job_arn},
                               "startedAt": self.started_at}
        if self.stopped_at is not None:
            out["stoppedAt"] = self.stopped_at
        if self.reason:
            out["statusReason"] = self.reason
        return out


@dataclass(kw_only=True)
class ServiceJob(_JobRecord):
    ARN_KIND: ClassVar[str] = "service-job"

    payload: dict[str, Any]
    request: dict[str, Any]
    #: The queue's ``jobStateTimeLimitActions`` (CreateJobQueue).
    time_limits: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[ServiceAttempt] = field(default_factory=list)
    #: Attempts that count against ``retryStrategy.attempts`` (capacity re-queues do not).
    counted_attempts: int = 0
    #: When the job last entered RUNNABLE (``jobStateTimeLimitActions`` count from there).
    runnable_since: int | None = None
    #: When its wait for capacity began: the first re-queue for a CapacityError since a
    #: training job last got capacity (assumed to be what a CAPACITY time limit counts).
    capacity_since: int | None = None
    scheduled_at: int | None = None
    terminate_reason: str = ""
    #: The queue's TIME_LIMIT_SCALE_TAG.
    time_scale: float = 1.0

    @property
    def max_attempts(self) -> int:
        return int((self.request.get("retryStrategy") or {}).get("attempts", 1))

    def describe(self) -> dict[str, Any]:
        # DescribeServiceJobResponse marks startedAt required: before the job starts the
        # emulator sends its createdAt (assumed; docs/emulator.md).
        out = self._describe(
            serviceJobType="SAGEMAKER_TRAINING", serviceRequestPayload=self.request["serviceRequestPayload"],
            schedulingPriority=self.request.get("schedulingPriority", 0), tags=self.request.get("tags", {}),
            isTerminated=self.terminated, attempts=[a.to_dict() for a in self.attempts],
            retryStrategy={"attempts": self.max_attempts},
        )
        out.setdefault("startedAt", self.created_at)
        if not out["statusReason"]:
            del out["statusReason"]
        if self.scheduled_at:
            out["scheduledAt"] = self.scheduled_at
        if self.request.get("shareIdentifier"):
            out["shareIdentifier"] = self.request["shareIdentifier"]
        if self.attempts:
            out["latestAttempt"] = {"serviceResourceId": self.attempts[-1].to_dict()["serviceResourceId"]}
        return out


class BatchEmulator:
    """The Batch state of every region, and the threads running its jobs."""

    def __init__(self, *, endpoint_url: str, workdir: Path, stop_grace_seconds: float = 10.0,
                 poll_seconds: float = 0.5) -> None:
        self.endpoint_url, self.stop_grace_seconds, self.poll_seconds = endpoint_url, stop_grace_seconds, poll_seconds
        self.logdir = workdir / "batch"
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.queues: dict[tuple[str, str], dict[str, Any]] = {}
        self.compute_environments: dict[tuple[str, str], dict[str, Any]] = {}
        self.service_environments: dict[tuple[str, str], dict[str, Any]] = {}
        self.definitions: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.jobs: dict[str, Job] = {}
        self.arrays: dict[str, ArrayJob] = {}
        self.service_jobs: dict[str, ServiceJob] = {}
        self.tokens: dict[tuple[str, str], str] = {}
        self.threads: list[threading.Thread] = []

    # --- queues and job definitions -----------------------------------------------------------
    def create_job_queue(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body["jobQueueName"]
        arn = batch_arn(region, f"job-queue/{name}")
        limits = body.get("jobStateTimeLimitActions") or []
        for action in limits:
            # CreateJobQueueRequest.jobStateTimeLimitActions: "The minimum value for
            # maxTimeSeconds is 600 (10 minutes) and its maximum value is 86,400"; the only
            # state is RUNNABLE (JobStateTimeLimitActionsState), actions CANCEL/TERMINATE.
            if not 600 <= int(action["maxTimeSeconds"]) <= 86400:
                raise BatchClientError(f"maxTimeSeconds {action['maxTimeSeconds']} is not within 600..86400")
            # JobStateTimeLimitAction.action (API reference): "For job queues connected to a
            # SAGEMAKER_TRAINING service environment, the only supported value is TERMINATE";
            # for ECS, Fargate or EKS compute environments it is CANCEL.
            queue_type = body.get("jobQueueType", "ECS")
            allowed = "TERMINATE" if queue_type == "SAGEMAKER_TRAINING" else "CANCEL"
            if action["state"] != "RUNNABLE" or action["action"] != allowed:
                raise BatchClientError(f"jobStateTimeLimitActions entry {action}: a {queue_type} queue takes state "
                                       f"RUNNABLE and action {allowed}")
        queue_type = body.get("jobQueueType", "ECS")
        with self.lock:
            if (region, name) in self.queues:
                raise BatchClientError(f"Job queue {name} already exists")
            for order in body.get("serviceEnvironmentOrder") or []:
                if queue_type == "SAGEMAKER_TRAINING" and order["serviceEnvironment"].rsplit("/", 1)[-1] not in {
                        n for (r, n) in self.service_environments if r == region}:
                    raise BatchClientError(f"Service environment {order['serviceEnvironment']} does not exist")
            self.queues[(region, name)] = {
                "jobQueueName": name, "jobQueueArn": arn, "state": body.get("state", "ENABLED"),
                "status": "VALID", "priority": body.get("priority", 1), "tags": body.get("tags") or {},
                "jobQueueType": queue_type,
                "computeEnvironmentOrder": body.get("computeEnvironmentOrder") or [],
                "serviceEnvironmentOrder": body.get("serviceEnvironmentOrder") or [],
                "jobStateTimeLimitActions": limits,
            }
        return {"jobQueueName": name, "jobQueueArn": arn}

    def create_compute_environment(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        """Recorded only: the emulator runs every job at once (assumed unlimited capacity)."""
        name = body["computeEnvironmentName"]
        arn = batch_arn(region, f"compute-environment/{name}")
        with self.lock:
            if (region, name) in self.compute_environments:
                raise BatchClientError(f"Compute environment {name} already exists")
            self.compute_environments[(region, name)] = {
                "computeEnvironmentName": name, "computeEnvironmentArn": arn, "type": body["type"],
                "state": body.get("state", "ENABLED"), "status": "VALID", "tags": body.get("tags") or {},
                **({"computeResources": body["computeResources"]} if body.get("computeResources") else {}),
                **({"serviceRole": body["serviceRole"]} if body.get("serviceRole") else {}),
            }
        return {"computeEnvironmentName": name, "computeEnvironmentArn": arn}

    def create_service_environment(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        """Recorded only (``capacityLimits`` are not enforced: assumed unlimited)."""
        name = body["serviceEnvironmentName"]
        arn = batch_arn(region, f"service-environment/{name}")
        if body["serviceEnvironmentType"] != "SAGEMAKER_TRAINING":
            raise BatchClientError(f"serviceEnvironmentType {body['serviceEnvironmentType']!r} is not "
                                   "SAGEMAKER_TRAINING")
        with self.lock:
            if (region, name) in self.service_environments:
                raise BatchClientError(f"Service environment {name} already exists")
            self.service_environments[(region, name)] = {
                "serviceEnvironmentName": name, "serviceEnvironmentArn": arn,
                "serviceEnvironmentType": body["serviceEnvironmentType"], "state": body.get("state", "ENABLED"),
                "status": "VALID", "capacityLimits": body["capacityLimits"], "tags": body.get("tags") or {},
            }
        return {"serviceEnvironmentName": name, "serviceEnvironmentArn": arn}

    @staticmethod
    def _named(items: dict[tuple[str, str], dict[str, Any]], region: str, wanted: list[str] | None,
               arn_key: str) -> list[dict[str, Any]]:
        return [item for (r, n), item in items.items()
                if r == region and (not wanted or n in wanted or item[arn_key] in wanted)]

    def queue(self, region: str, ref: str) -> dict[str, Any]:
        name = ref.rsplit("/", 1)[-1]
        with self.lock:
            found = self.queues.get((region, name))
        if found is None:
            raise BatchClientError(f"Job queue {ref} does not exist in {region}")
        return found

    def register_job_definition(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body["jobDefinitionName"]
        environment = (body.get("containerProperties") or {}).get("environment") or []
        _refuse_reserved(environment)
        _check_retry_strategy(body.get("retryStrategy"))
        resources = {r["type"]: r["value"] for r in (body.get("containerProperties") or {}).get(
            "resourceRequirements") or []}
        if "FARGATE" not in (body.get("platformCapabilities") or ["EC2"]) and float(resources.get("VCPU", 1)) < 1:
            # ResourceRequirement.value (botocore's model): "For Amazon EC2 resources, you must
            # specify at least one vCPU"; fractions (0.25, 0.5) are Fargate's values.
            raise BatchClientError(f"VCPU {resources['VCPU']} needs platformCapabilities=['FARGATE'] (EC2: 1 at least)")
        with self.lock:
            revisions = self.definitions.setdefault((region, name), [])
            revision = len(revisions) + 1
            arn = batch_arn(region, f"job-definition/{name}:{revision}")
            revisions.append({**body, "jobDefinitionArn": arn, "revision": revision, "status": "ACTIVE",
                              "type": body.get("type", "container")})
        return {"jobDefinitionName": name, "jobDefinitionArn": arn, "revision": revision}

    def definition(self, region: str, ref: str) -> dict[str, Any]:
        name, _, revision = ref.rsplit("/", 1)[-1].partition(":")
        with self.lock:
            revisions = self.definitions.get((region, name)) or []
        if not revisions:
            raise BatchClientError(f"Job definition {ref} does not exist in {region}")
        return revisions[int(revision) - 1] if revision else revisions[-1]

    # --- jobs ----------------------------------------------------------------------------------
    def submit_job(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        queue = self.queue(region, body["jobQueue"])
        definition = self.definition(region, body["jobDefinition"])
        container = definition.get("containerProperties") or {}
        overrides = body.get("containerOverrides") or {}
        _refuse_reserved(overrides.get("environment") or [])
        parameters = {**(definition.get("parameters") or {}), **(body.get("parameters") or {})}
        template = overrides.get("command") or container.get("command") or []
        command = [self._substitute(arg, parameters) for arg in template]
        environment = {e["name"]: e["value"] for e in (container.get("environment") or [])}
        environment.update({e["name"]: e["value"] for e in (overrides.get("environment") or [])})
        # SubmitJob's retryStrategy "overrides the retry strategy defined in the job
        # definition" (API reference): the whole strategy, its rules with it.
        _check_retry_strategy(body.get("retryStrategy"))
        strategy = body.get("retryStrategy") or definition.get("retryStrategy") or {}
        attempts = int(strategy.get("attempts", 1))
        job_id = str(uuid.uuid4())
        common = {"name": body["jobName"], "region": region, "queue": queue["jobQueueArn"], "definition": definition,
                  "parameters": parameters, "command": command, "environment": environment,
                  "max_attempts": attempts, "tags": body.get("tags") or {},
                  "exit_rules": list(strategy.get("evaluateOnExit") or [])}
        size = (body.get("arrayProperties") or {}).get("size")
        with self.lock:
            if size:
                if not 2 <= int(size) <= 10000:
                    raise BatchClientError(f"Array size {size} must be between 2 and 10000")
                children = [Job(job_id=f"{job_id}:{i}", array_index=i, array_parent=job_id, **common)
                            for i in range(int(size))]
                array = ArrayJob(job_id=job_id, name=body["jobName"], region=region, queue=queue["jobQueueArn"],
                                 definition=definition, parameters=parameters, tags=common["tags"], children=children)
                self.arrays[job_id] = array
                for child in children:
                    self.jobs[child.job_id] = child
                    self._start(child)
                arn = array.arn
            else:
                job = Job(job_id=job_id, **common)
                self.jobs[job_id] = job
                self._start(job)
                arn = job.arn
        log.info("SubmitJob %s (%s) in %s: %s child(ren)", job_id, body["jobName"], region, size or 0)
        return {"jobArn": arn, "jobName": body["jobName"], "jobId": job_id}

    @staticmethod
    def _substitute(arg: str, parameters: dict[str, str]) -> str:
        if arg.startswith("Ref::"):
            name = arg[len("Ref::"):]
            if name not in parameters:
                raise BatchClientError(f"command references parameter {name!r}, which has no value")
            return str(parameters[name])
        return arg

    def _start(self, job: Job) -> None:
        thread = threading.Thread(target=self._run_job, args=(job,), name=f"batch-{job.job_id}", daemon=True)
        self.threads.append(thread)
        thread.start()

    def _run_job(self, job: Job) -> None:
        job.status = "RUNNABLE"
        for number in range(1, job.max_attempts + 1):
            if job.terminated:
                break
            suffix = job.job_id.replace(":", "-")
            log_path = self.logdir / f"{suffix}-{number}.log"
            env = {
                **os.environ, **job.environment,
                "AWS_BATCH_JOB_ID": job.job_id, "AWS_BATCH_JOB_ATTEMPT": str(number),
                "AWS_BATCH_JQ_NAME": job.queue.rsplit("/", 1)[-1], "AWS_BATCH_CE_NAME": "local",
                "AWS_ENDPOINT_URL": self.endpoint_url, "AWS_DEFAULT_REGION": job.region, "AWS_REGION": job.region,
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            }
            if job.array_index is not None:
                env["AWS_BATCH_JOB_ARRAY_INDEX"] = str(job.array_index)
            argv = [sys.executable if a == "python" else a for a in job.command]
            with self.lock:  # STARTING: placed, its container being started (user guide, job states)
                job.status, job.status_reason = "STARTING", ""
            with log_path.open("wb") as out:
                attempt = Attempt(started_at=_ms(), log_path=str(log_path))
                with self.lock:
                    job.attempts.append(attempt)
                    job.process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                                   start_new_session=True)
                    job.status = "RUNNING"
                    job.started_at = job.started_at or attempt.started_at
                log.info("Batch job %s attempt %d: pid %d: %s", job.job_id, number, job.process.pid, " ".join(argv))
                code = exit_code(job.process.wait())
            with self.lock:
                attempt.stopped_at, attempt.exit_code = _ms(), code
                attempt.reason = "Essential container in task exited"
                job.process = None
                if code == 0:
                    job.status, job.stopped_at = "SUCCEEDED", attempt.stopped_at
                    return
                if job.terminated:
                    break
                # The container's own reason is empty for a process that exited (ECS sets
                # one, e.g. OutOfMemoryError, only when it stopped the container).
                action = exit_action(job.exit_rules, exit_code=code, reason="", status_reason=attempt.reason or "")
                if action == "EXIT":
                    log.info("Batch job %s attempt %d exited %d: evaluateOnExit says EXIT", job.job_id, number, code)
                    break
                if number < job.max_attempts:
                    job.status, job.status_reason = "RUNNABLE", f"attempt {number} exited {code}; retrying"
            log.info("Batch job %s attempt %d exited %d", job.job_id, number, code)
        with self.lock:
            job.status, job.stopped_at = "FAILED", _ms()
            job.status_reason = job.status_reason if job.terminated else "Essential container in task exited"

    def terminate_job(self, region: str, job_id: str, reason: str) -> dict[str, Any]:
        with self.lock:
            array = self.arrays.get(job_id)
            jobs = array.children if array else [self.jobs[job_id]] if job_id in self.jobs else []
        if not jobs:
            raise BatchClientError(f"Job {job_id} does not exist in {region}")
        for job in jobs:
            with self.lock:
                if job.status in ENDED:
                    continue
                job.terminated, job.status_reason = True, reason
                process = job.process
                if process is None:
                    job.status, job.stopped_at = "FAILED", _ms()
                    continue
            threading.Thread(target=self._kill, args=(process,), daemon=True).start()
        return {}

    def _kill(self, process: subprocess.Popen[bytes]) -> None:
        """SIGTERM, then SIGKILL after the grace period (ECS's stopTimeout)."""
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=self.stop_grace_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def describe_jobs(self, ids: list[str]) -> list[dict[str, Any]]:
        with self.lock:
            return [self.arrays[i].describe() if i in self.arrays else self.jobs[i].describe()
                    for i in ids if i in self.arrays or i in self.jobs]

    def list_jobs(self, region: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        with self.lock:
            if body.get("arrayJobId"):
                array = self.arrays.get(body["arrayJobId"])
                entries: list[Any] = list(array.children) if array else []
            else:
                queue = self.queue(region, body["jobQueue"])["jobQueueArn"]
                entries = [a for a in self.arrays.values() if a.queue == queue]
                entries += [j for j in self.jobs.values() if j.queue == queue and j.array_parent is None]
            match = name_filter(body.get("filters"))
            if match is not None:  # "jobStatus is ignored and jobs with any status are returned"
                entries = [e for e in entries if match(e.name)]
            elif body.get("jobStatus"):
                entries = [e for e in entries if e.status == body["jobStatus"]]
            elif not body.get("arrayJobId"):
                entries = [e for e in entries if e.status == "RUNNING"]
            out = []
            for entry in entries:
                described = entry.describe()
                out.append({k: described[k] for k in ("jobArn", "jobId", "jobName", "createdAt", "status")
                            if k in described} | ({"arrayProperties": described["arrayProperties"]}
                                                  if "arrayProperties" in described else {}))
            return out

    # --- service jobs ----------------------------------------------------------------------------
    def submit_service_job(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        queue = self.queue(region, body["jobQueue"])
        if body.get("serviceJobType") != "SAGEMAKER_TRAINING":
            raise BatchClientError(f"serviceJobType {body.get('serviceJobType')!r} is not SAGEMAKER_TRAINING")
        if queue.get("jobQueueType") != "SAGEMAKER_TRAINING":
            raise BatchClientError(f"Job queue {queue['jobQueueName']} is not a SAGEMAKER_TRAINING queue")
        payload = json.loads(body["serviceRequestPayload"])
        token = body.get("clientToken")
        with self.lock:
            if token and (region, token) in self.tokens:
                # SubmitServiceJobRequest.clientToken (botocore's model): "two submit requests
                # with identical payloads and clientTokens ... the second request is rejected".
                raise BatchClientError(f"A request with clientToken {token} was already received")
            job = ServiceJob(job_id=str(uuid.uuid4()), name=body["jobName"], region=region,
                             queue=queue["jobQueueArn"], payload=payload, request=body,
                             time_limits=list(queue.get("jobStateTimeLimitActions") or []))
            job.time_scale = float((queue.get("tags") or {}).get(TIME_LIMIT_SCALE_TAG, 1.0))
            self.service_jobs[job.job_id] = job
            if token:
                self.tokens[(region, token)] = job.job_id
        thread = threading.Thread(target=self._run_service_job, args=(job,), name=f"service-{job.job_id}",
                                  daemon=True)
        self.threads.append(thread)
        thread.start()
        log.info("SubmitServiceJob %s (%s) in %s", job.job_id, job.name, region)
        return {"jobArn": job.arn, "jobName": job.name, "jobId": job.job_id}

    def _sagemaker(self, region: str) -> Any:
        return shared_client("sagemaker", region, self.endpoint_url)

    @staticmethod
    def training_job_name(payload_name: str, attempt: int) -> str:
        """``AWSBatch`` + the payload's name + 32 hex (AWS's service-job event example),
        cut to SageMaker's 63 characters. The hex is opaque on AWS; here its first 8
        digits are the attempt number, so a lifecycle pattern can pick one attempt."""
        room = TRAINING_JOB_NAME_MAX - len(TRAINING_JOB_PREFIX) - 32
        return f"{TRAINING_JOB_PREFIX}{payload_name[:room]}{attempt:08x}{uuid.uuid4().hex[:24]}"

    def _set(self, job: ServiceJob, status: str, reason: str = "") -> None:
        with self.lock:
            if status == "RUNNABLE" and job.status != "RUNNABLE":
                job.runnable_since = _ms()
            # Waiting for capacity spans the re-queues until a training job gets capacity
            # (STARTING: "Training job capacity has been acquired", user guide).
            if status == "RUNNABLE" and reason.startswith(CAPACITY_REASON) and job.capacity_since is None:
                job.capacity_since = _ms()
            if status in ("STARTING", "RUNNING"):
                job.capacity_since = None
            job.status, job.status_reason = status, reason
            if status in ENDED:
                job.stopped_at = _ms()

    def _time_limit(self, job: ServiceJob) -> dict[str, Any] | None:
        """The queue's ``jobStateTimeLimitActions`` entry that applies now, if any: the job
        waited RUNNABLE for that reason longer than ``maxTimeSeconds``."""
        if job.status != "RUNNABLE" or job.runnable_since is None:
            return None
        since = job.capacity_since if job.status_reason.startswith(CAPACITY_REASON) else job.runnable_since
        waited = (_ms() - (since or job.runnable_since)) / 1000.0
        for action in job.time_limits:
            if (action.get("state") == "RUNNABLE" and job.status_reason.startswith(action["reason"])
                    and waited >= float(action["maxTimeSeconds"]) * job.time_scale):
                return action
        return None

    def _run_service_job(self, job: ServiceJob) -> None:
        """SUBMITTED -> RUNNABLE -> SCHEDULED -> STARTING -> RUNNING -> SUCCEEDED/FAILED, as
        the Batch user guide's service-job status table maps SageMaker's statuses."""
        from botocore.exceptions import ClientError

        sm = self._sagemaker(job.region)
        time.sleep(self.poll_seconds)  # the scheduler's evaluation (SUBMITTED)
        self._set(job, "RUNNABLE")
        while True:
            if job.terminated:
                return self._end_terminated(job, sm)
            if job.status == "RUNNABLE":
                action = self._time_limit(job)
                if action is not None:
                    with self.lock:
                        job.terminated = True
                    # "Canceled by JobStateTimeLimit action due to reason: CAPACITY:..." (user
                    # guide, "Jobs stuck in RUNNABLE due to capacity"); TERMINATE's wording is
                    # assumed by analogy.
                    verb = "Terminated" if action["action"] == "TERMINATE" else "Canceled"
                    self._set(job, "FAILED", f"{verb} by JobStateTimeLimit action due to reason: {action['reason']}")
                    return None
                if job.attempts and job.status_reason.startswith(CAPACITY_REASON) and not self._capacity_back(job):
                    time.sleep(self.poll_seconds)
                    continue
                name = self.training_job_name(job.payload["TrainingJobName"], len(job.attempts) + 1)
                try:
                    arn = sm.create_training_job(**{**job.payload, "TrainingJobName": name})["TrainingJobArn"]
                except ClientError as err:
                    error = err.response.get("Error", {})
                    # A quota (ResourceLimitExceeded) or a bad request is not capacity: the job
                    # fails with SageMaker's error (assumed; docs/emulator.md).
                    self._set(job, "FAILED", f"{SAGEMAKER_PREFIX}{error.get('Code')}: {error.get('Message')}")
                    return None
                with self.lock:
                    job.attempts.append(ServiceAttempt(training_job_arn=arn, started_at=_ms()))
                    job.scheduled_at = job.scheduled_at or _ms()
                self._set(job, "SCHEDULED")
                continue
            attempt = job.attempts[-1]
            state = sm.describe_training_job(TrainingJobName=attempt.training_job_name)
            status, secondary = state["TrainingJobStatus"], state.get("SecondaryStatus")
            transitions = state.get("SecondaryStatusTransitions") or []
            message = (transitions[-1].get("StatusMessage") if transitions else None) or secondary or status
            if status == "InProgress" or status == "Stopping":
                batch_status = SECONDARY_TO_BATCH.get(str(secondary), "RUNNING")
                with self.lock:
                    if batch_status in ("STARTING", "RUNNING") and job.started_at is None:
                        job.started_at = _ms()
                self._set(job, batch_status, f"{SAGEMAKER_PREFIX}{message}")
            else:
                self._end_attempt(job, attempt, state)
                if job.status in ENDED:
                    return None
            time.sleep(self.poll_seconds)

    def _capacity_back(self, job: ServiceJob) -> bool:
        """Whether the service environment may try again after a CapacityError: after one
        poll (assumed; AWS does not say how soon it retries)."""
        return job.runnable_since is not None and _ms() - job.runnable_since >= self.poll_seconds * 1000

    def _end_attempt(self, job: ServiceJob, attempt: ServiceAttempt, state: dict[str, Any]) -> None:
        status, failure = state["TrainingJobStatus"], state.get("FailureReason") or ""
        with self.lock:
            attempt.stopped_at = _ms()
        if status == "Completed":
            attempt.reason = f"{SAGEMAKER_PREFIX}Training job completed"
            self._set(job, "SUCCEEDED", attempt.reason)
            return
        attempt.reason = f"{SAGEMAKER_PREFIX}{failure or 'Training job ' + status.lower()}"
        if status == "Failed" and failure.startswith("CapacityError"):
            # "Service jobs automatically retry certain types of failures, such as insufficient
            # capacity errors, without consuming your configured retry attempts" (user guide,
            # service-job-retries): a new training job once capacity is back.
            self._set(job, "RUNNABLE", f"{CAPACITY_REASON} - {failure}")
            return
        with self.lock:
            job.counted_attempts += 1
        if status == "Failed" and job.counted_attempts < job.max_attempts:
            self._set(job, "RUNNABLE", attempt.reason)
            return
        self._set(job, "FAILED", attempt.reason)

    def _end_terminated(self, job: ServiceJob, sm: Any) -> None:
        """TerminateServiceJob: the live training job is stopped, then the job FAILED."""
        from botocore.exceptions import ClientError

        attempt = job.attempts[-1] if job.attempts else None
        if attempt is not None and attempt.stopped_at is None:
            try:
                sm.stop_training_job(TrainingJobName=attempt.training_job_name)
            except ClientError as err:  # already ended
                log.info("StopTrainingJob %s: %s", attempt.training_job_name, err)
            with self.lock:
                attempt.stopped_at, attempt.reason = _ms(), f"{SAGEMAKER_PREFIX}Training job stopped"
        self._set(job, "FAILED", job.terminate_reason)

    def service_job(self, job_id: str) -> ServiceJob:
        with self.lock:
            job = self.service_jobs.get(job_id)
        if job is None:
            raise BatchClientError(f"Service job {job_id} does not exist")
        return job

    def terminate_service_job(self, job_id: str, reason: str) -> dict[str, Any]:
        job = self.service_job(job_id)
        with self.lock:
            if job.status not in ENDED:
                job.terminated, job.terminate_reason = True, reason
        return {}

    def list_service_jobs(self, region: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        """ListServiceJobsRequest (botocore's model): a ``JOB_NAME`` filter ignores
        ``jobStatus``; no filter and no status lists only RUNNING jobs."""
        queue = self.queue(region, body["jobQueue"])["jobQueueArn"]
        match = name_filter(body.get("filters"))
        with self.lock:
            jobs = [j for j in self.service_jobs.values() if j.queue == queue]
            if match is not None:
                jobs = sorted((j for j in jobs if match(j.name)), key=lambda j: j.created_at, reverse=True)
            else:
                jobs = [j for j in jobs if j.status == (body.get("jobStatus") or "RUNNING")]
            keys = ("jobArn", "jobId", "jobName", "status", "statusReason", "createdAt", "serviceJobType",
                    "latestAttempt", "startedAt", "stoppedAt", "scheduledAt", "shareIdentifier", "isTerminated")
            return [{k: v for k, v in j.describe().items() if k in keys} for j in jobs]

    def stop_all(self) -> None:
        for job in list(self.jobs.values()):
            if job.process is not None:
                job.terminated = True
                self._kill(job.process)
        for service in list(self.service_jobs.values()):
            service.terminated = True


def install(emulator: BatchEmulator) -> None:
    """Route moto's Batch URLs (plus the service-job ones it lacks) to ``emulator``."""
    from moto.batch import urls
    from moto.batch.responses import BatchResponse

    for path in ("submitservicejob", "describeservicejob", "terminateservicejob", "listservicejobs",
                 "createserviceenvironment", "describeserviceenvironments"):
        urls.url_paths[f"{{0}}/v1/{path}$"] = BatchResponse.dispatch

    def handler(action: Any) -> Any:
        def respond(self: Any) -> Any:
            body = json.loads(self.body or "{}")
            try:
                return json.dumps(action(self.region, body))
            except BatchClientError as err:
                return 400, {"x-amzn-errortype": err.code, "status": 400}, json.dumps(
                    {"__type": err.code, "message": err.message})

        return respond

    actions = {
        "createjobqueue": emulator.create_job_queue,
        "describejobqueues": lambda region, body: {"jobQueues": emulator._named(
            emulator.queues, region, body.get("jobQueues"), "jobQueueArn")},
        "createcomputeenvironment": emulator.create_compute_environment,
        "describecomputeenvironments": lambda region, body: {"computeEnvironments": emulator._named(
            emulator.compute_environments, region, body.get("computeEnvironments"), "computeEnvironmentArn")},
        "createserviceenvironment": emulator.create_service_environment,
        "describeserviceenvironments": lambda region, body: {"serviceEnvironments": emulator._named(
            emulator.service_environments, region, body.get("serviceEnvironments"), "serviceEnvironmentArn")},
        "registerjobdefinition": emulator.register_job_definition,
        "describejobdefinitions": lambda region, body: {"jobDefinitions": [
            d for (r, n), revisions in emulator.definitions.items() if r == region
            and (not body.get("jobDefinitionName") or n == body["jobDefinitionName"]) for d in revisions]},
        "submitjob": emulator.submit_job,
        "describejobs": lambda region, body: {"jobs": emulator.describe_jobs(body.get("jobs") or [])},
        "listjobs": lambda region, body: {"jobSummaryList": emulator.list_jobs(region, body)},
        "terminatejob": lambda region, body: emulator.terminate_job(region, body["jobId"], body["reason"]),
        "canceljob": lambda region, body: emulator.terminate_job(region, body["jobId"], body["reason"]),
        "submitservicejob": emulator.submit_service_job,
        "listservicejobs": lambda region, body: {"jobSummaryList": emulator.list_service_jobs(region, body)},
        "describeservicejob": lambda region, body: emulator.service_job(body["jobId"]).describe(),
        "terminateservicejob": lambda region, body: emulator.terminate_service_job(body["jobId"], body["reason"]),
    }
    for name, action in actions.items():
        setattr(BatchResponse, name, handler(action))


def seed_batch(endpoint: str, central_region: str, regions: list[str], *, poll_seconds: float = 1.0,
               attempts: int = 2) -> None:
    """Create what deploy/batch_resources.py creates (regional_training.launch.batch_resources,
    one definition): the launcher compute environment, queue and Fargate job definition
    in the central region, a SageMaker service environment and queue per region. Locally
    ``python`` in the launcher's command is this emulator's interpreter."""
    from regional_training.launch.batch_resources import BatchResources, create

    def batch_client(region: str) -> Any:
        return client("batch", region, endpoint)

    spec = BatchResources(
        central_region=central_region, regions=regions, image="mrt-airflow:local", platform="FARGATE",
        job_role_arn=f"arn:aws:iam::{ACCOUNT}:role/mrt-batch-launcher",
        execution_role_arn=f"arn:aws:iam::{ACCOUNT}:role/mrt-batch-execution",
        subnets=["subnet-local"], security_group_ids=["sg-local"], poll_seconds=poll_seconds, attempts=attempts)
    for line in create(spec, batch_client):
        log.info("seeded %s", line)
