"""AWS Batch, emulated for the DAG's Batch launchers (docs/batch.md), patched into moto's server.

moto's own Batch runs jobs in Docker, which CI does not have. This module answers the
calls the launchers make, over moto's HTTP server (restJson1, the real botocore client):

* ``CreateJobQueue``/``DescribeJobQueues``, ``RegisterJobDefinition``/``DescribeJobDefinitions``;
* ``SubmitJob`` (with ``arrayProperties``), ``DescribeJobs`` (a parent's
  ``statusSummary``, each child's status and attempts), ``ListJobs`` (by queue, status,
  job-name filter or ``arrayJobId``), ``TerminateJob``/``CancelJob``. A job or array
  child runs its job definition's command (``Ref::name`` parameters substituted;
  ``python`` is this server's interpreter, which has the package on ``PYTHONPATH``) as a
  local process with ``AWS_BATCH_JOB_ID``, ``AWS_BATCH_JOB_ARRAY_INDEX`` (children),
  ``AWS_BATCH_JOB_ATTEMPT`` and ``AWS_ENDPOINT_URL`` (this server) set; exit 0 is
  ``SUCCEEDED``, else Batch's ``retryStrategy.attempts`` runs it again; ``TerminateJob``
  sends ``SIGTERM``, then ``SIGKILL`` after the grace period, as ECS does;
* ``SubmitServiceJob``/``DescribeServiceJob``/``ListServiceJobs``/``TerminateServiceJob``
  (``SAGEMAKER_TRAINING``): the payload is created as a training job in the queue's
  region's emulated SageMaker (the real container launch of :mod:`local_aws.training_jobs`)
  once capacity is there; the same ``clientToken`` returns the same job. A queue
  tagged ``local:no-capacity-seconds`` = K has no capacity for K seconds after each
  submission: the job waits ``RUNNABLE`` with ``statusReason``
  ``CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY``, as Batch shows it.

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

log = logging.getLogger("local_aws.batch")

ACCOUNT = "123456789012"
ENDED = ("SUCCEEDED", "FAILED")
NO_CAPACITY_TAG = "local:no-capacity-seconds"
CAPACITY_REASON = "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"


def _ms() -> int:
    return int(time.time() * 1000)


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
            parameters=self.parameters, retryStrategy={"attempts": self.max_attempts}, tags=self.tags,
            container=container, dependsOn=[], platformCapabilities=["EC2"],
        )
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
        states = [c.status for c in self.children]
        if all(s == "SUCCEEDED" for s in states):
            return "SUCCEEDED"
        if all(s in ENDED for s in states):
            return "FAILED"
        if any(s in ("STARTING", "RUNNING") or s in ENDED for s in states):
            return "RUNNING"
        return "PENDING"

    def describe(self) -> dict[str, Any]:
        summary: dict[str, int] = {}
        for child in self.children:
            summary[child.status] = summary.get(child.status, 0) + 1
        ended = [c.stopped_at for c in self.children if c.stopped_at]
        out: dict[str, Any] = {
            "jobArn": self.arn, "jobName": self.name, "jobId": self.job_id, "jobQueue": self.queue,
            "status": self.status, "createdAt": self.created_at, "attempts": [],
            "jobDefinition": self.definition["jobDefinitionArn"], "parameters": self.parameters, "tags": self.tags,
            "arrayProperties": {"size": len(self.children), "statusSummary": summary},
            "container": {"command": self.children[0].command if self.children else []},
            "dependsOn": [], "platformCapabilities": ["EC2"],
        }
        if self.status in ENDED and ended:
            out["stoppedAt"] = max(ended)
            failed = [c for c in self.children if c.status == "FAILED"]
            out["statusReason"] = (f"{len(failed)} of {len(self.children)} child job(s) failed" if failed
                                   else "All child jobs succeeded")
        return out


@dataclass(kw_only=True)
class ServiceJob(_JobRecord):
    ARN_KIND: ClassVar[str] = "service-job"

    payload: dict[str, Any]
    request: dict[str, Any]
    no_capacity_seconds: float
    training_job_arn: str | None = None
    terminate_reason: str = ""

    def describe(self) -> dict[str, Any]:
        out = self._describe(
            serviceJobType="SAGEMAKER_TRAINING", serviceRequestPayload=self.request["serviceRequestPayload"],
            schedulingPriority=self.request.get("schedulingPriority", 0), tags=self.request.get("tags", {}),
            isTerminated=self.terminated, attempts=[],
        )
        if self.request.get("shareIdentifier"):
            out["shareIdentifier"] = self.request["shareIdentifier"]
        if self.training_job_arn:
            attempt = {"serviceResourceId": {"name": "TrainingJobArn", "value": self.training_job_arn}}
            out["latestAttempt"] = attempt
            out["attempts"] = [{**attempt, "startedAt": self.started_at or self.created_at}]
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
        with self.lock:
            if (region, name) in self.queues:
                raise BatchClientError(f"Job queue {name} already exists")
            self.queues[(region, name)] = {
                "jobQueueName": name, "jobQueueArn": arn, "state": body.get("state", "ENABLED"),
                "status": "VALID", "priority": body.get("priority", 1), "tags": body.get("tags") or {},
                "jobQueueType": body.get("jobQueueType", "ECS"),
                "computeEnvironmentOrder": body.get("computeEnvironmentOrder") or [],
                "serviceEnvironmentOrder": body.get("serviceEnvironmentOrder") or [],
            }
        return {"jobQueueName": name, "jobQueueArn": arn}

    def queue(self, region: str, ref: str) -> dict[str, Any]:
        name = ref.rsplit("/", 1)[-1]
        with self.lock:
            found = self.queues.get((region, name))
        if found is None:
            raise BatchClientError(f"Job queue {ref} does not exist in {region}")
        return found

    def register_job_definition(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body["jobDefinitionName"]
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
        parameters = {**(definition.get("parameters") or {}), **(body.get("parameters") or {})}
        template = overrides.get("command") or container.get("command") or []
        command = [self._substitute(arg, parameters) for arg in template]
        environment = {e["name"]: e["value"] for e in (container.get("environment") or [])}
        environment.update({e["name"]: e["value"] for e in (overrides.get("environment") or [])})
        attempts = int((body.get("retryStrategy") or definition.get("retryStrategy") or {}).get("attempts", 1))
        job_id = str(uuid.uuid4())
        common = {"name": body["jobName"], "region": region, "queue": queue["jobQueueArn"], "definition": definition,
                  "parameters": parameters, "command": command, "environment": environment,
                  "max_attempts": attempts, "tags": body.get("tags") or {}}
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
            with log_path.open("wb") as out:
                attempt = Attempt(started_at=_ms(), log_path=str(log_path))
                with self.lock:
                    job.attempts.append(attempt)
                    job.status, job.status_reason = "RUNNING", ""
                    job.started_at = job.started_at or attempt.started_at
                    job.process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                                   start_new_session=True)
                log.info("Batch job %s attempt %d: pid %d: %s", job.job_id, number, job.process.pid, " ".join(argv))
                code = job.process.wait()
            with self.lock:
                attempt.stopped_at, attempt.exit_code = _ms(), code
                attempt.reason = "Essential container in task exited"
                job.process = None
                if code == 0:
                    job.status, job.stopped_at = "SUCCEEDED", attempt.stopped_at
                    return
                if job.terminated:
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
            names = [v for f in body.get("filters") or [] if f["name"] == "JOB_NAME" for v in f["values"]]
            if names:
                entries = [e for e in entries if e.name in names]
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

    # --- service jobs --------------------------------------------------------------------------
    def submit_service_job(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        queue = self.queue(region, body["jobQueue"])
        if body.get("serviceJobType") != "SAGEMAKER_TRAINING":
            raise BatchClientError(f"serviceJobType {body.get('serviceJobType')!r} is not SAGEMAKER_TRAINING")
        payload = json.loads(body["serviceRequestPayload"])
        token = body.get("clientToken")
        with self.lock:
            if token and (region, token) in self.tokens:
                existing = self.service_jobs[self.tokens[(region, token)]]
                return {"jobArn": existing.arn, "jobName": existing.name, "jobId": existing.job_id}
            job = ServiceJob(job_id=str(uuid.uuid4()), name=body["jobName"], region=region,
                             queue=queue["jobQueueArn"], payload=payload, request=body,
                             no_capacity_seconds=float(queue["tags"].get(NO_CAPACITY_TAG, 0)))
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
        import boto3

        return boto3.client("sagemaker", region_name=region, endpoint_url=self.endpoint_url,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def _run_service_job(self, job: ServiceJob) -> None:
        from botocore.exceptions import ClientError

        job.status = "RUNNABLE"
        sm = self._sagemaker(job.region)
        while not job.terminated:
            if time.time() * 1000 - job.created_at < job.no_capacity_seconds * 1000:
                job.status_reason = CAPACITY_REASON
                time.sleep(self.poll_seconds)
                continue
            try:
                arn = sm.create_training_job(**job.payload)["TrainingJobArn"]
            except ClientError as err:
                error = err.response.get("Error", {})
                if error.get("Code") in ("ResourceLimitExceeded", "CapacityError"):
                    job.status_reason = CAPACITY_REASON  # Batch keeps it queued until capacity comes
                    time.sleep(self.poll_seconds)
                    continue
                with self.lock:
                    job.status, job.stopped_at = "FAILED", _ms()
                    job.status_reason = f"{error.get('Code')}: {error.get('Message')}"
                return
            with self.lock:
                job.training_job_arn, job.status, job.status_reason, job.started_at = arn, "RUNNING", "", _ms()
            break
        name = job.payload["TrainingJobName"]
        while True:
            if job.terminated:
                with self.lock:
                    job.status, job.stopped_at, job.status_reason = "FAILED", _ms(), job.terminate_reason
                if job.training_job_arn:
                    try:
                        sm.stop_training_job(TrainingJobName=name)
                    except ClientError as err:  # already ended
                        log.info("StopTrainingJob %s: %s", name, err)
                return
            state = sm.describe_training_job(TrainingJobName=name)
            if state["TrainingJobStatus"] in ("Completed", "Failed", "Stopped"):
                with self.lock:
                    job.stopped_at = _ms()
                    job.status = "SUCCEEDED" if state["TrainingJobStatus"] == "Completed" else "FAILED"
                    job.status_reason = state.get("FailureReason") or f"training job {state['TrainingJobStatus']}"
                return
            time.sleep(self.poll_seconds)

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
        queue = self.queue(region, body["jobQueue"])["jobQueueArn"]
        names = [v for f in body.get("filters") or [] if f["name"] == "JOB_NAME" for v in f["values"]]
        with self.lock:
            jobs = [j for j in self.service_jobs.values() if j.queue == queue and (not names or j.name in names)
                    and (names or not body.get("jobStatus") or j.status == body["jobStatus"])]
            keys = ("jobArn", "jobId", "jobName", "status", "statusReason", "createdAt", "serviceJobType",
                    "latestAttempt", "startedAt", "stoppedAt")
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

    for path in ("submitservicejob", "describeservicejob", "terminateservicejob", "listservicejobs"):
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
        "describejobqueues": lambda region, body: {"jobQueues": [
            q for (r, n), q in emulator.queues.items()
            if r == region and (not body.get("jobQueues") or n in body["jobQueues"] or q["jobQueueArn"]
                                in body["jobQueues"])]},
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


#: The launcher's job definition as deploy/ registers it (the Airflow image runs
#: regional_training.batch_launcher); locally ``python`` is the emulator's interpreter.
LAUNCHER_COMMAND = [
    "python", "-m", "regional_training.batch_launcher", "--array-uri", "Ref::array_uri",
    "--requests-uri", "Ref::requests_uri", "--region", "Ref::region", "--poll-seconds", "Ref::poll_seconds",
]


def seed_batch(endpoint: str, central_region: str, regions: list[str], *, poll_seconds: float = 1.0,
               attempts: int = 2) -> None:
    """Create what the DAG's Batch launchers expect (batch_jobs.VARIABLES' defaults): the
    launcher queue and job definition in the central region, a service-job queue per region."""
    import boto3

    def client(region: str) -> Any:
        return boto3.client("batch", region_name=region, endpoint_url=endpoint, aws_access_key_id="testing",
                            aws_secret_access_key="testing")

    central = client(central_region)
    if not central.describe_job_queues(jobQueues=["mrt-launchers"])["jobQueues"]:
        central.create_job_queue(jobQueueName="mrt-launchers", priority=1, state="ENABLED",
                                 computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "mrt-launchers"}])
        central.register_job_definition(
            jobDefinitionName="mrt-launcher", type="container", parameters={"poll_seconds": str(poll_seconds)},
            retryStrategy={"attempts": attempts},
            containerProperties={"image": "mrt-airflow:local", "command": LAUNCHER_COMMAND,
                                 "resourceRequirements": [{"type": "VCPU", "value": "0.25"},
                                                          {"type": "MEMORY", "value": "512"}]})
    for region in regions:
        batch = client(region)
        if not batch.describe_job_queues(jobQueues=[f"mrt-sagemaker-{region}"])["jobQueues"]:
            batch.create_job_queue(jobQueueName=f"mrt-sagemaker-{region}", priority=1, state="ENABLED",
                                   jobQueueType="SAGEMAKER_TRAINING",
                                   serviceEnvironmentOrder=[{"order": 1, "serviceEnvironment": f"mrt-sm-{region}"}])
