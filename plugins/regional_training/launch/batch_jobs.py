"""The AWS Batch launchers' DAG side (the ``launcher`` Param; docs/batch.md).

* ``batch_array``: :class:`BatchArrayLaunchOperator` (the provider's ``AwsBaseOperator``
  with its Batch hook) stores the run's requests next to the array file and submits
  **one** array job of size N (the array file's lines) in the central region, whose child N runs
  :mod:`regional_training.launch.batch_launcher` on line N. It does not wait for the array:
  each target's ``train`` task follows the job its child makes
  (``DurableSageMakerTrainingOperator`` in follow mode, :func:`array_child`).
* ``batch_service``: each ``train`` task submits its request as a Batch **service job**
  (``SubmitServiceJob``, ``SAGEMAKER_TRAINING``) to its region's queue
  (:func:`service_job_args`) and defers on :class:`BatchServiceJobTrigger` until it
  ends. Batch, not the task, creates the training job, under a name of its own
  (``AWSBatch<payload name><32 hex>``) and a new one each time it re-queues the job
  after a ``CapacityError``: the target's job is the one
  ``DescribeServiceJob.latestAttempt.serviceResourceId`` names (``TrainingJobArn``), as
  the SageMaker SDK's ``aws_batch`` module reads it (:func:`describe_service_attempt`).
  The service job itself is found by its name, the attempt's deterministic name
  (:func:`find_service_job`). A job re-queued for capacity (``statusReason``
  ``CAPACITY:*``) longer than ``batch_capacity_wait_minutes``, or terminated by the
  queue's ``jobStateTimeLimitActions`` for it, is reported as a capacity refusal, so the
  operator moves the target to its next candidate.

Queue and job-definition names are deployment settings, Airflow Variables read at run
time (:func:`batch_settings`); the defaults are what ``deploy/`` and the local stack
create.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields

# The trigger and what it decides with live in a light module (the triggerer imports it in
# its event loop); these names stay here for triggers stored under the old path and callers.
from regional_training.launch.triggers import CAPACITY_PREFIX, SERVICE_ENDED
from regional_training.launch.triggers import BatchServiceJobTrigger as BatchServiceJobTrigger
from regional_training.launch.triggers import epoch_seconds as _epoch_seconds
from regional_training.launch.triggers import service_job_failed_for_capacity as service_job_failed_for_capacity
from regional_training.report.links import BatchArrayJobLink
from regional_training.run.run_keys import LAUNCH_BATCH_ARRAY
from regional_training.runtime.aws_hooks import BatchClientHook

if TYPE_CHECKING:
    from airflow.sdk import Context

#: The launch task's id in the DAG (the train tasks read its XCom in follow mode); run_keys'.
LAUNCH_TASK_ID = LAUNCH_BATCH_ARRAY
#: AWS Batch refuses array jobs smaller than this (ArrayProperties.size: 2 to 10,000): one
#: line is submitted as a plain job whose environment names its line in
#: :data:`regional_training.launch.batch_launcher.ARRAY_INDEX_VARIABLE` (Batch refuses overrides
#: of its own ``AWS_BATCH*`` variables).
MIN_ARRAY_SIZE = 2
#: ``serviceResourceId.name`` of a SageMaker training job (botocore's ServiceResourceIdName).
TRAINING_JOB_ARN = "TrainingJobArn"


@dataclass(frozen=True)
class BatchSettings:
    #: The central region's job queue of the array job (a Fargate or EC2 compute environment).
    launcher_queue: str
    #: The launcher's job definition (the Airflow image running batch_launcher).
    launcher_job_definition: str
    #: Each region's service-job queue (SAGEMAKER_TRAINING service environment): ``{region}`` is replaced.
    service_queue_pattern: str

    def service_queue(self, region: str) -> str:
        return self.service_queue_pattern.format(region=region)


#: Variable name -> (field, default).
VARIABLES = {
    "mrt_batch_launcher_queue": ("launcher_queue", "mrt-launchers"),
    "mrt_batch_launcher_job_definition": ("launcher_job_definition", "mrt-launcher"),
    "mrt_batch_service_queue_pattern": ("service_queue_pattern", "mrt-sagemaker-{region}"),
}


def batch_settings() -> BatchSettings:
    """The Batch names, from Airflow Variables (call inside a task only)."""
    from airflow.sdk import Variable

    return BatchSettings(**{field: Variable.get(name, default=default) for name, (field, default) in VARIABLES.items()})


def requests_uri(array_uri: str) -> str:
    """Where the run's requests are stored: next to its array file."""
    from regional_training.launch.batch_launcher import REQUESTS_FILE

    return array_uri.rsplit("/", 1)[0] + "/" + REQUESTS_FILE


def array_job_name(dag_id: str, run_id: str) -> str:
    """A deterministic Batch job name per DAG run (letters, digits, - and _; 128 at most)."""
    from regional_training.run.run_layout import run_key

    digest = hashlib.sha256(f"{dag_id}\0{run_id}".encode()).hexdigest()[:10]
    return f"mrt-array-{digest}-{run_key(dag_id, run_id).split('/')[-1]}"[:128].replace(".", "-")


class BatchArrayLaunchOperator(AwsBaseOperator[BatchClientHook]):
    """Submit the run's one array job (``launcher=batch_array``); skipped otherwise.

    Returns ``{"job_id", "region", "size", "index": {target_key: line index}}``: the
    train tasks find their child by it. A retried or cleared task reattaches to the
    run's array job if it is still queued or running (same deterministic job name).

    Built on the provider's ``AwsBaseOperator`` (connection, region, botocore config,
    hook) rather than its ``BatchOperator``: every field of a ``SubmitJob`` is decided
    in :meth:`execute`, and the task neither waits for the array nor reads its logs,
    which is what ``BatchOperator`` adds. Its module, hook, links, trigger and log
    fetcher, and its four ``__init__`` levels (one deep copy of the DAG's 35 Params each),
    were part of every parse of the DAG (docs/benchmarks.md, "DAG parse time").
    """

    aws_hook_class = BatchClientHook  # the provider's, naming its caller cheaply (aws_hooks)
    template_fields = aws_template_fields("array_uri", "jobs")
    #: One link, formatted from the job this try submitted or reattached to, never read
    #: back from XCom (links.BatchArrayJobLink).
    operator_extra_links = (BatchArrayJobLink(),)
    ui_color = "#c3dae0"  # the provider's Batch operators' colour

    def __init__(self, *, array_uri: Any, jobs: Any, central_region: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.array_uri, self.jobs, self.central_region = array_uri, jobs, central_region
        self.job_id: str | None = None  # the job this try submitted or reattached to (link, on_kill)

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from regional_training.launch.jobs import resolve_job
        from regional_training.plan import array_file
        from regional_training.plan.targets import target_key_of
        from regional_training.run.run_context import current_run
        from regional_training.runtime import aws_io, identifiers

        run = current_run()
        if run.params.get("launcher") != "batch_array":
            raise AirflowSkipException(f"launcher={run.params.get('launcher')!r}: no array job")
        jobs = [resolve_job(context.get("ti"), item) for item in self.jobs or []]
        if not jobs:
            raise AirflowSkipException("nothing to launch (dry run, or every target reused)")
        region = run.settings.central_region
        settings = batch_settings()
        lines = array_file.parse(aws_io.get_text(self.array_uri, region=region))
        index = {line["target_key"]: i for i, line in enumerate(lines)}
        stored = {"jobs": {target_key_of(job["target"]): job for job in jobs}}
        aws_io.put_text(requests_uri(self.array_uri), json.dumps(stored, sort_keys=True), region=region,
                        content_type="application/json")
        self.region_name = region  # before self.hook is first made: the hook's region
        name = array_job_name(run.dag_id, run.run_id)
        array = len(lines) >= MIN_ARRAY_SIZE
        submit: dict[str, Any] = {
            "jobName": name,
            "jobQueue": settings.launcher_queue,
            "jobDefinition": settings.launcher_job_definition,
            "parameters": {"array_uri": self.array_uri, "requests_uri": requests_uri(self.array_uri),
                           "region": region},
            # The Airflow role may terminate only jobs tagged with this DAG (deploy/iam, on_kill).
            "tags": {"dag_id": run.dag_id, "dag_run": identifiers.tag_value(run.run_id)},
        }
        if array:
            submit["arrayProperties"] = {"size": len(lines)}
        else:
            from regional_training.launch.batch_launcher import ARRAY_INDEX_VARIABLE

            submit["containerOverrides"] = {"environment": [{"name": ARRAY_INDEX_VARIABLE, "value": "0"}]}
        result = {"region": region, "size": len(lines), "array": array, "index": index}
        existing = self._live_job(settings.launcher_queue, name)
        if existing:
            self.log.info("Reattaching to the run's array job %s (%s).", existing, name)
            self.job_id = existing  # the job's link (links.BatchArrayJobLink)
            return {**result, "job_id": existing}
        if "budget_usd" in run.params:  # issue 31: every first launch held before the submit
            from regional_training.launch import budget
            from regional_training.launch.job import Job

            budget.reserve_first_launches(run, [Job.from_xcom(job) for job in jobs])
        self.log.info("Submitting AWS Batch job %s to queue %s (definition %s).", name,
                      submit["jobQueue"], submit["jobDefinition"])
        self.job_id = str(self.hook.client.submit_job(**submit)["jobId"])
        self.log.info("Array job %s: %d child(ren), one per array-file line.", self.job_id, len(lines))
        return {**result, "job_id": self.job_id}

    def on_kill(self) -> None:
        """Terminates the array job this try submitted or reattached to, as the provider's
        ``BatchOperator`` does (its children stop their training jobs first: batch_launcher)."""
        if self.job_id:
            response = self.hook.client.terminate_job(jobId=self.job_id, reason="Task killed by the user")
            self.log.info("AWS Batch job (%s) terminated: %s", self.job_id, response)

    def _live_job(self, queue: str, name: str) -> str | None:
        """The run's array job ``name`` in ``queue``, if one is queued or running already."""
        client: Any = self.hook.client  # botocore's client (BatchProtocol types only a few calls)
        pages = client.get_paginator("list_jobs").paginate(
            jobQueue=queue, filters=[{"name": "JOB_NAME", "values": [name]}])
        for page in pages:
            for summary in page.get("jobSummaryList", []):
                if summary.get("status") not in ("SUCCEEDED", "FAILED"):
                    return str(summary["jobId"])
        return None


def array_child(launch: dict[str, Any], target_key: str) -> str:
    """The Batch job id of the child that launches ``target_key``."""
    if target_key not in launch["index"]:
        raise KeyError(f"target {target_key!r} is not a line of the array file")
    return f"{launch['job_id']}:{launch['index'][target_key]}" if launch["array"] else str(launch["job_id"])


def describe_batch_job(job_id: str, *, region: str) -> dict[str, Any]:
    from regional_training.runtime.aws_io import AWS_CONN_ID, BOTOCORE_CONFIG

    hook = BatchClientHook(aws_conn_id=AWS_CONN_ID, region_name=region, config=BOTOCORE_CONFIG)
    jobs = hook.client.describe_jobs(jobs=[job_id]).get("jobs", [])
    if not jobs:
        raise RuntimeError(f"AWS Batch job {job_id} not found in {region}")
    return dict(jobs[0])


def client_token(job_name: str) -> str:
    """``clientToken`` of a service job: one per deterministic training-job name (64 max)."""
    return hashlib.sha256(job_name.encode()).hexdigest()[:64]


def service_job_args(request: dict[str, Any], name: str, *, queue: str, params: dict[str, Any]) -> dict[str, Any]:
    """``SubmitServiceJob`` arguments for one training-job attempt."""
    payload = {**request, "TrainingJobName": name}
    args: dict[str, Any] = {
        "jobName": name[:128],
        "jobQueue": queue,
        "serviceJobType": "SAGEMAKER_TRAINING",
        "serviceRequestPayload": json.dumps(payload, sort_keys=True, default=str),
        "clientToken": client_token(name),
        "schedulingPriority": int(params.get("batch_scheduling_priority") or 0),
        "tags": {t["Key"]: t["Value"] for t in request.get("Tags", [])},
    }
    if params.get("batch_share_identifier"):
        args["shareIdentifier"] = params["batch_share_identifier"]
    return args


def find_service_job(client: Any, queue: str, name: str) -> dict[str, Any] | None:
    """The newest service job named ``name`` in ``queue`` (its ListServiceJobs summary), or
    ``None``. ``name`` is the attempt's deterministic training-job name, unique to (DAG
    run, target, candidate, attempt), so the project can always ask for it; the
    ``JOB_NAME`` filter is case-insensitive and lists every status (botocore's model), so
    only an exact match is taken."""
    pages = client.get_paginator("list_service_jobs").paginate(
        jobQueue=queue, filters=[{"name": "JOB_NAME", "values": [name]}])
    found = [s for page in pages for s in page.get("jobSummaryList", []) if s.get("jobName") == name]
    return max(found, key=lambda s: _epoch_seconds(s.get("createdAt"))) if found else None


def training_job_of(service_job: dict[str, Any]) -> str | None:
    """The name of the training job Batch made for ``service_job`` last: what
    ``latestAttempt.serviceResourceId`` names when it is a ``TrainingJobArn`` (as the
    SageMaker SDK's ``aws_batch`` TrainingQueuedJob reads it); ``None`` before any."""
    resource = (service_job.get("latestAttempt") or {}).get("serviceResourceId") or {}
    if resource.get("name") != TRAINING_JOB_ARN or not resource.get("value"):
        return None
    return str(resource["value"]).rsplit("/", 1)[-1]


def describe_service_attempt(client: Any, queue: str, name: str,
                             describe_training_job: Callable[[str], dict[str, Any] | None]) -> dict[str, Any] | None:
    """What :func:`regional_training.launch.attempts.resolve` sees of attempt ``name`` under
    ``launcher=batch_service``: ``None`` if no service job has that name (create it);
    else the description of the training job Batch made for it last, except while the
    service job is not ended (Batch owns it then: it may re-queue and make a new job
    after a ``CapacityError``), when it is ``InProgress``. A service job that ended
    without a training job (terminated while queued) is ``Failed`` with Batch's reason.
    ``TrainingJobName`` is always the real job's name where there is one: what the row,
    the report's log streams, the links and ``on_kill`` use."""
    summary = find_service_job(client, queue, name)
    if summary is None:
        return None
    service = client.describe_service_job(jobId=summary["jobId"])
    real = training_job_of(service)
    status, reason = str(service.get("status")), str(service.get("statusReason") or "")
    description = describe_training_job(real) if real else None
    base = {"TrainingJobName": real or name, "BatchServiceJobId": summary["jobId"], "BatchStatus": status,
            "BatchStatusReason": reason}
    if status not in SERVICE_ENDED:
        return {**(description or {}), **base, "TrainingJobStatus": "InProgress"}
    if description is not None and (status == "SUCCEEDED" or description["TrainingJobStatus"] != "InProgress"):
        return {**description, **base}
    # Ended without a (finished) training job: terminated while queued, or refused.
    failure = f"{CAPACITY_ERROR}: {reason}" if CAPACITY_PREFIX in reason else reason or f"service job {status}"
    return {**base, "TrainingJobStatus": "Failed", "FailureReason": failure}


#: How a service job that Batch ended while re-queued for capacity is reported to
#: :func:`regional_training.launch.attempts.capacity_signal` (one of its capacity codes).
CAPACITY_ERROR = "CapacityError"




def submit_service_job(request: dict[str, Any], name: str, *, region: str, params: dict[str, Any],
                       aws_conn_id: str | None, botocore_config: dict[str, Any] | None) -> str:
    """The id of attempt ``name``'s service job: the one already submitted (found by its
    name: a cleared or retried task reattaches), else a new one. Batch rejects a second
    request with the same ``clientToken``; if that happens (the first request's response
    was lost), the job it made is found by name."""
    from botocore.exceptions import ClientError

    hook = BatchClientHook(aws_conn_id=aws_conn_id, region_name=region, config=botocore_config)
    queue = batch_settings().service_queue(region)
    client: Any = hook.client
    existing = find_service_job(client, queue, name)
    if existing is not None:
        return str(existing["jobId"])
    args = service_job_args(request, name, queue=queue, params=params)
    try:
        return str(client.submit_service_job(**args)["jobId"])
    except ClientError:
        existing = find_service_job(client, queue, name)
        if existing is None:
            raise
        return str(existing["jobId"])


def batch_client(region: str, *, aws_conn_id: str | None, botocore_config: dict[str, Any] | None) -> Any:
    """botocore's Batch client in ``region`` through the provider's hook."""
    return BatchClientHook(aws_conn_id=aws_conn_id, region_name=region, config=botocore_config).client


def service_attempt_describer() -> Callable[[str, str], dict[str, Any] | None]:
    """``describe(region, name)`` for :func:`regional_training.launch.attempts.resolve` under
    ``launcher=batch_service`` outside the operator (a late recording by ``record_late``):
    the backend's (:class:`regional_training.launch.batch_service.BatchServiceBackend`)
    with the default connection."""
    from regional_training.launch.backends import Connection, backend_for
    from regional_training.launch.driver import describer
    from regional_training.runtime import aws_io

    return describer(backend_for("batch_service", Connection(  # type: ignore[no-any-return]
        hook=aws_io.sagemaker_hook, aws_conn_id=aws_io.AWS_CONN_ID, botocore_config=aws_io.BOTOCORE_CONFIG)))
