"""The Batch launchers' logic: the array child's line and durable launch, the service
job's arguments and the trigger that waits for it (docs/batch.md)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regional_training.launch import batch_jobs
from regional_training.launch.attempts import Candidate, capacity_signal, resolve
from regional_training.launch.batch_launcher import (
    ARRAY_INDEX_VARIABLE,
    EXIT_REFUSED,
    EXIT_TERMINATED,
    Launcher,
    LaunchError,
    array_index,
    load_job,
    select_line,
)
from regional_training.launch.job import Job
from regional_training.plan import array_file
from regional_training.plan.targets import Target
from tests.unit.plan.test_array_file import target_lists


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(target_lists(), st.integers(min_value=0, max_value=20))
def test_the_child_reads_the_line_the_seeds_sed_prints(targets: list[Target], index: int) -> None:
    text = array_file.render(targets)
    count = len(array_file.parse(text))
    if index >= count:
        with pytest.raises(LaunchError, match=f"AWS_BATCH_JOB_ARRAY_INDEX={index} but the array file has {count}"):
            select_line(text, index)
        return
    sed = subprocess.run(["sed", "-n", f"{index + 1}p"], input=text, capture_output=True, text=True, check=True)
    assert select_line(text, index) == array_file.parse(sed.stdout)[0]


def test_sed_is_there() -> None:
    assert shutil.which("sed"), "the contract is stated in sed's terms"


@pytest.mark.parametrize("value", [None, "", "-1", "one"])
def test_a_process_outside_an_array_job_is_refused(value: str | None) -> None:
    env = {} if value is None else {"AWS_BATCH_JOB_ARRAY_INDEX": value}
    with pytest.raises(LaunchError, match="AWS_BATCH_JOB_ARRAY_INDEX" if value is not None else "MRT_ARRAY_INDEX"):
        array_index(env)
    assert array_index({"AWS_BATCH_JOB_ARRAY_INDEX": "3"}) == 3


def test_a_one_line_runs_plain_job_reads_its_line_from_the_projects_variable() -> None:
    # An array has 2 to 10,000 children (ArrayProperties.size) and "Environment variables
    # cannot start with AWS_BATCH" (ContainerOverrides.environment, botocore's Batch model):
    # a one-line run's plain job learns its line from MRT_ARRAY_INDEX.
    assert ARRAY_INDEX_VARIABLE == "MRT_ARRAY_INDEX" and not ARRAY_INDEX_VARIABLE.startswith("AWS_BATCH")
    assert array_index({ARRAY_INDEX_VARIABLE: "0"}) == 0
    # In an array job Batch's own index wins.
    assert array_index({"AWS_BATCH_JOB_ARRAY_INDEX": "2", ARRAY_INDEX_VARIABLE: "0"}) == 2
    with pytest.raises(LaunchError, match=ARRAY_INDEX_VARIABLE):
        array_index({ARRAY_INDEX_VARIABLE: "x"})


# --- the durable launch, with a fake SageMaker per region ---------------------------------

def target(region: str, dataset: str = "boston", option: str = "on_demand") -> dict[str, Any]:
    return Target(region, f"s3://data-{region}/datasets/c/{dataset}/", "c", dataset, 1, 1, f"out-{region}",
                  purchase_option=option).to_dict()


def request(name: str) -> dict[str, Any]:
    return {"TrainingJobName": name, "Tags": [{"Key": "target", "Value": "boston"}],
            "StoppingCondition": {"MaxRuntimeInSeconds": 60}}


def job(*regions: str) -> dict[str, Any]:
    first, *rest = regions
    return {"target": target(first), "request": request(f"mrt-{first}"), "max_failovers": len(rest),
            "failover": [{"target": target(r), "request": request(f"mrt-{r}")} for r in rest]}


class FakeSageMaker:
    """One region's jobs; a created job completes (or ends as ``outcome``) after ``polls`` describes."""

    exceptions = type("Exceptions", (), {"ClientError": ClientError})

    def __init__(self, region: str, jobs: dict[str, dict[str, Any]], *, refuse: str | None = None,
                 outcome: dict[str, Any] | None = None, polls: int = 2) -> None:
        self.region, self.jobs, self.refuse, self.outcome, self.polls = region, jobs, refuse, outcome, polls
        self.created: list[str] = []
        self.stopped: list[str] = []
        self.describes: dict[str, int] = {}

    def create_training_job(self, **request: Any) -> dict[str, Any]:
        name = request["TrainingJobName"]
        if self.refuse:
            raise ClientError({"Error": {"Code": self.refuse, "Message": "no capacity"}}, "CreateTrainingJob")
        assert name not in self.jobs, f"{name} created twice"
        self.created.append(name)
        self.jobs[name] = {"TrainingJobName": name, "TrainingJobStatus": "InProgress"}
        return {"TrainingJobArn": name}

    def describe_training_job(self, TrainingJobName: str) -> dict[str, Any]:
        found = self.jobs.get(TrainingJobName)
        if found is None:
            raise ClientError({"Error": {"Code": "ValidationException", "Message": "not found"}},
                              "DescribeTrainingJob")
        count = self.describes[TrainingJobName] = self.describes.get(TrainingJobName, 0) + 1
        if found["TrainingJobStatus"] == "InProgress" and count > self.polls:
            found.update(self.outcome or {"TrainingJobStatus": "Completed"})
        return dict(found)

    def stop_training_job(self, TrainingJobName: str) -> None:
        self.stopped.append(TrainingJobName)


def launcher(job_: dict[str, Any], regions: dict[str, FakeSageMaker], attempt: int = 1) -> Launcher:
    return Launcher(Job.from_xcom(job_), lambda region: regions[region], poll_seconds=0.001, batch_attempt=attempt)


def test_a_new_child_creates_its_job_and_waits_for_it() -> None:
    sm = FakeSageMaker("eu-west-1", {})
    assert launcher(job("eu-west-1"), {"eu-west-1": sm}).run() == 0
    assert sm.created == ["mrt-eu-west-1"]


def test_a_retried_child_reattaches_to_the_running_job() -> None:
    sm = FakeSageMaker("eu-west-1", {"mrt-eu-west-1": {"TrainingJobName": "mrt-eu-west-1",
                                                       "TrainingJobStatus": "InProgress"}})
    assert launcher(job("eu-west-1"), {"eu-west-1": sm}, attempt=2).run() == 0
    assert sm.created == []


def test_a_failed_job_fails_the_child_naming_job_and_region(caplog: pytest.LogCaptureFixture) -> None:
    sm = FakeSageMaker("eu-west-1", {}, outcome={"TrainingJobStatus": "Failed",
                                                 "FailureReason": "AlgorithmError: DataLossError"})
    assert launcher(job("eu-west-1"), {"eu-west-1": sm}).run() == 1
    assert "Training job mrt-eu-west-1 in eu-west-1 ended Failed: AlgorithmError" in caplog.text


def test_a_stopped_job_fails_the_child_in_sagemakers_words(caplog: pytest.LogCaptureFixture) -> None:
    # A Stopped job has no FailureReason: its SecondaryStatus and message say why
    # (attempts.ended_reason), never "no reason given".
    sm = FakeSageMaker("eu-west-1", {}, outcome={
        "TrainingJobStatus": "Stopped", "SecondaryStatus": "MaxRuntimeExceeded",
        "SecondaryStatusTransitions": [{"Status": "Training", "StatusMessage": "Training image download completed."},
                                       {"Status": "MaxRuntimeExceeded",
                                        "StatusMessage": "Training job runtime exceeded MaxRuntimeInSeconds"}]})
    assert launcher(job("eu-west-1"), {"eu-west-1": sm}).run() == 1
    assert ("Training job mrt-eu-west-1 in eu-west-1 ended Stopped: MaxRuntimeExceeded: Training job runtime "
            "exceeded MaxRuntimeInSeconds") in caplog.text
    assert "no reason given" not in caplog.text


def test_after_a_failure_one_new_attempt_but_not_on_batchs_automatic_retry(caplog: pytest.LogCaptureFixture) -> None:
    failed = {"TrainingJobName": "mrt-eu-west-1", "TrainingJobStatus": "Failed",
              "FailureReason": "AlgorithmError: DataLossError"}
    sm = FakeSageMaker("eu-west-1", {"mrt-eu-west-1": dict(failed)})
    # Every further Batch attempt would refuse the same way: the refusal's exit code,
    # which the job definition's evaluateOnExit does not retry (docs/batch.md).
    assert launcher(job("eu-west-1"), {"eu-west-1": sm}, attempt=2).run() == EXIT_REFUSED
    assert f"Refused (exit {EXIT_REFUSED}, not retried): training job mrt-eu-west-1 ended Failed" in caplog.text
    assert sm.created == []  # Batch's retry would pay for the same failure
    assert launcher(job("eu-west-1"), {"eu-west-1": sm}, attempt=1).run() == 0  # a new submission does
    assert sm.created == ["mrt-eu-west-1-a2"]


def test_a_region_without_capacity_moves_the_target_to_its_next_candidate() -> None:
    west = FakeSageMaker("us-west-2", {}, refuse="ResourceLimitExceeded")
    east = FakeSageMaker("us-east-1", {})
    assert launcher(job("us-west-2", "us-east-1"), {"us-west-2": west, "us-east-1": east}).run() == 0
    assert west.created == [] and east.created == ["mrt-us-east-1"]


def test_no_capacity_anywhere_fails_the_child_and_a_refused_creation_may_be_retried(
        caplog: pytest.LogCaptureFixture) -> None:
    # A creation refused for capacity leaves no job: Batch's retry asks again (exit 1).
    west = FakeSageMaker("us-west-2", {}, refuse="ResourceLimitExceeded")
    assert launcher(job("us-west-2"), {"us-west-2": west}).run() == 1
    assert "no capacity for mrt-us-west-2: tried us-west-2: no capacity;" in caplog.text
    assert "Refused" not in caplog.text


def spot_wait_ran_out(name: str) -> dict[str, Any]:
    return {"TrainingJobName": name, "TrainingJobStatus": "Stopped", "SecondaryStatus": "MaxWaitTimeExceeded",
            "SecondaryStatusTransitions": [
                {"Status": "Starting", "StatusMessage": "Insufficient capacity error from EC2 while launching "
                                                        "instances, retrying!"},
                {"Status": "MaxWaitTimeExceeded", "StatusMessage": "Training job exceeded MaxWaitTimeInSeconds"}]}


def test_every_candidates_job_ended_for_capacity_is_a_refusal_batch_does_not_retry(
        caplog: pytest.LogCaptureFixture) -> None:
    # Both candidates' jobs ended for capacity (spot waits ran out): a Batch retry would
    # describe the same ended jobs and create nothing, so the child exits with the
    # refusal's code (the operator's CapacityExhaustedError), naming each move in
    # SageMaker's words.
    west = FakeSageMaker("us-west-2", {"mrt-us-west-2": spot_wait_ran_out("mrt-us-west-2")})
    east = FakeSageMaker("us-east-1", {}, outcome=spot_wait_ran_out("mrt-us-east-1"))
    assert launcher(job("us-west-2", "us-east-1"), {"us-west-2": west, "us-east-1": east}).run() == EXIT_REFUSED
    assert west.created == [] and east.created == ["mrt-us-east-1"]
    assert "Training job mrt-us-east-1 in us-east-1 ended for lack of capacity: moving on." in caplog.text
    refusal = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("Refused"))
    assert refusal.startswith(f"Refused (exit {EXIT_REFUSED}, not retried): no capacity for mrt-us-west-2: tried "
                              "us-west-2: MaxWaitTimeExceeded: Training job exceeded MaxWaitTimeInSeconds")
    assert "us-east-1: MaxWaitTimeExceeded" in refusal
    assert "max_failovers=1" in refusal


def test_a_refused_creation_after_an_ended_one_may_still_be_retried() -> None:
    # us-west-2's job ended for capacity, but us-east-1 refused the creation: a later
    # retry may get capacity there, so Batch's retry is allowed (exit 1).
    west = FakeSageMaker("us-west-2", {"mrt-us-west-2": spot_wait_ran_out("mrt-us-west-2")})
    east = FakeSageMaker("us-east-1", {}, refuse="InsufficientCapacityError")
    assert launcher(job("us-west-2", "us-east-1"), {"us-west-2": west, "us-east-1": east}).run() == 1


def test_sigterm_stops_the_training_job() -> None:
    sm = FakeSageMaker("eu-west-1", {}, polls=10**9)
    child = launcher(job("eu-west-1"), {"eu-west-1": sm})
    child.terminated.set()
    assert child.run() == EXIT_TERMINATED
    assert sm.stopped == ["mrt-eu-west-1"]


def test_load_job_takes_the_lines_stored_request() -> None:
    targets = [Target.from_dict(target("eu-west-1")), Target.from_dict(target("us-east-1", "dublin"))]
    text = array_file.render(targets)
    stored = {"jobs": {t.target_key: {"target": t.to_dict(), "request": request(f"mrt-{t.region_code}")}
                       for t in targets[:1]}}
    loaded = load_job(text, stored, 0)
    assert loaded is not None and loaded.request["TrainingJobName"] == "mrt-eu-west-1"
    assert load_job(text, stored, 1) is None  # not launched in this run (e.g. reused)


# --- batch_service -------------------------------------------------------------------------

def test_service_job_args_are_idempotent_per_attempt() -> None:
    req = request("mrt-eu-west-1")
    args = batch_jobs.service_job_args(req, "mrt-eu-west-1", queue="q", params={"batch_scheduling_priority": 5})
    again = batch_jobs.service_job_args(req, "mrt-eu-west-1", queue="q", params={"batch_scheduling_priority": 5})
    retry = batch_jobs.service_job_args(req, "mrt-eu-west-1-a2", queue="q", params={})
    assert args["clientToken"] == again["clientToken"] != retry["clientToken"]
    assert len(args["clientToken"]) <= 64 and args["serviceJobType"] == "SAGEMAKER_TRAINING"
    assert json.loads(args["serviceRequestPayload"])["TrainingJobName"] == "mrt-eu-west-1"
    assert json.loads(retry["serviceRequestPayload"])["TrainingJobName"] == "mrt-eu-west-1-a2"
    assert args["schedulingPriority"] == 5 and "shareIdentifier" not in args
    shared = batch_jobs.service_job_args(req, "x", queue="q", params={"batch_share_identifier": "perception"})
    assert shared["shareIdentifier"] == "perception" and args["tags"] == {"target": "boston"}


class FakeBatch:
    def __init__(self, answers: list[dict[str, Any]]) -> None:
        self.answers = answers
        self.terminated: list[str] = []

    async def describe_service_job(self, jobId: str) -> dict[str, Any]:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    async def terminate_service_job(self, jobId: str, reason: str) -> None:
        self.terminated.append(jobId)


def run_trigger(answers: list[dict[str, Any]], wait: float, monkeypatch: pytest.MonkeyPatch
                ) -> tuple[dict[str, Any], FakeBatch]:
    fake = FakeBatch(answers)

    class Hook:
        @asynccontextmanager
        async def _conn(self) -> AsyncIterator[FakeBatch]:
            yield fake

        async def get_async_conn(self) -> Any:
            return self._conn()

    trigger = batch_jobs.BatchServiceJobTrigger(service_job_id="sj-1", job_name="mrt-us-west-2",
                                                region_name="us-west-2", capacity_wait_seconds=wait, poll_seconds=0)
    monkeypatch.setattr(trigger, "hook", lambda: Hook())

    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("no event")

    return asyncio.run(first()), fake


def test_the_trigger_cancels_a_job_waiting_for_capacity_longer_than_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    ms = int((time.time() - 120) * 1000)
    waiting = {"status": "RUNNABLE", "statusReason": "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY", "createdAt": ms}
    event, fake = run_trigger([waiting], 60, monkeypatch)
    assert event["status"] == "capacity" and event["region"] == "us-west-2" and fake.terminated == ["sj-1"]
    assert event["message"].startswith("CAPACITY:")


def test_the_trigger_lets_a_job_wait_within_the_allowance(monkeypatch: pytest.MonkeyPatch) -> None:
    ms = int((time.time() - 10) * 1000)
    answers = [{"status": "RUNNABLE", "statusReason": "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY", "createdAt": ms},
               {"status": "RUNNING", "createdAt": ms}, {"status": "SUCCEEDED", "createdAt": ms}]
    event, fake = run_trigger(answers, 60, monkeypatch)
    assert event["status"] == "success" and fake.terminated == []


def test_the_trigger_reports_a_failed_service_job(monkeypatch: pytest.MonkeyPatch) -> None:
    event, _ = run_trigger([{"status": "FAILED", "statusReason": "AlgorithmError", "createdAt": 1}], 60, monkeypatch)
    assert event["status"] == "error" and "AlgorithmError" in event["message"]


def test_the_trigger_serializes_to_its_own_class() -> None:
    trigger = batch_jobs.BatchServiceJobTrigger(service_job_id="sj", job_name="j", region_name="eu-west-1",
                                                capacity_wait_seconds=5, poll_seconds=1)
    path, kwargs = trigger.serialize()
    assert path == "regional_training.launch.triggers.BatchServiceJobTrigger"
    assert batch_jobs.BatchServiceJobTrigger(**kwargs).serialize() == (path, kwargs)


# --- batch_service: the job AWS made ------------------------------------------------------
# DescribeServiceJob.latestAttempt.serviceResourceId names the training job Batch made
# (name "TrainingJobArn", botocore's ServiceResourceIdName), as the SageMaker SDK's
# aws_batch TrainingQueuedJob reads it; AWS names it AWSBatch<payload name><32 hex> (user
# guide, "Service job state change events" example).

REAL = "AWSBatchmrt-us-west-2" + "0" * 32
REAL2 = "AWSBatchmrt-us-west-2" + "1" * 32


class FakeServiceJobs:
    """Batch's ListServiceJobs/DescribeServiceJob for one service job named mrt-us-west-2."""

    def __init__(self, service: dict[str, Any] | None, *, name: str = "mrt-us-west-2") -> None:
        self.service, self.name = service, name
        self.listed: list[dict[str, Any]] = []

    def get_paginator(self, operation: str) -> Any:
        assert operation == "list_service_jobs"
        fake = self

        class Pages:
            def paginate(self, **kwargs: Any) -> list[dict[str, Any]]:
                fake.listed.append(kwargs)
                # The JOB_NAME filter is case-insensitive (botocore's model): a job whose
                # name differs in case is listed too, and must not be taken.
                other = {"jobId": "sj-other", "jobName": fake.name.upper(), "createdAt": 9}
                mine = [] if fake.service is None else [{"jobId": "sj-1", "jobName": fake.name, "createdAt": 1}]
                return [{"jobSummaryList": [other, *mine]}]

        return Pages()

    def describe_service_job(self, jobId: str) -> dict[str, Any]:
        assert jobId == "sj-1" and self.service is not None
        return self.service


def trained(name: str, status: str, reason: str | None = None) -> dict[str, Any]:
    out = {"TrainingJobName": name, "TrainingJobStatus": status,
           "TrainingJobArn": f"arn:aws:sagemaker:us-west-2:123456789012:training-job/{name}"}
    return {**out, "FailureReason": reason} if reason else out


def service(status: str, *names: str, reason: str = "") -> dict[str, Any]:
    attempts = [{"serviceResourceId": {"name": "TrainingJobArn",
                                       "value": f"arn:aws:sagemaker:us-west-2:123456789012:training-job/{n}"}}
                for n in names]
    out: dict[str, Any] = {"jobId": "sj-1", "status": status, "statusReason": reason, "attempts": attempts}
    if attempts:
        out["latestAttempt"] = {"serviceResourceId": attempts[-1]["serviceResourceId"]}
    return out


def described(jobs: dict[str, dict[str, Any]], svc: dict[str, Any] | None) -> dict[str, Any] | None:
    return batch_jobs.describe_service_attempt(FakeServiceJobs(svc), "q", "mrt-us-west-2", jobs.get)


def test_a_completed_service_job_is_its_real_training_job_and_is_not_submitted_again() -> None:
    jobs = {REAL: trained(REAL, "Completed")}
    description = described(jobs, service("SUCCEEDED", REAL))
    assert description is not None and description["TrainingJobName"] == REAL
    candidate = Candidate(request=request("mrt-us-west-2"), region="us-west-2")
    resolution = resolve([candidate], lambda region, name: described(jobs, service("SUCCEEDED", REAL)))
    # The case: with only the AWSBatch... job there, resolve must answer done, not create.
    assert resolution.action == "done" and resolution.attempt is not None
    assert resolution.attempt.description["TrainingJobName"] == REAL  # type: ignore[index]


def test_no_service_job_means_create() -> None:
    assert described({}, None) is None


def test_a_requeued_service_job_is_live_whatever_its_previous_training_job_says() -> None:
    # After a CapacityError Batch re-queues the job (RUNNABLE, CAPACITY:...) and makes a new
    # AWSBatch... job later: the failed one must not read as the target's end.
    failed = trained(REAL, "Failed", "CapacityError: Unable to provision requested ML compute capacity.")
    svc = service("RUNNABLE", REAL, reason="CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - CapacityError: ...")
    description = described({REAL: failed}, svc)
    assert description is not None and description["TrainingJobStatus"] == "InProgress"
    assert capacity_signal(description) is None
    resolution = resolve([Candidate(request=request("mrt-us-west-2"), region="us-west-2")],
                         lambda region, name: described({REAL: failed}, svc))
    assert resolution.action == "wait"


def test_the_second_training_job_is_followed_after_a_requeue() -> None:
    jobs = {REAL: trained(REAL, "Failed", "CapacityError: x"), REAL2: trained(REAL2, "Completed")}
    description = described(jobs, service("SUCCEEDED", REAL, REAL2))
    assert description is not None and description["TrainingJobName"] == REAL2
    assert description["TrainingJobStatus"] == "Completed"


def test_a_service_job_terminated_for_capacity_is_a_capacity_signal() -> None:
    # "Terminated by JobStateTimeLimit action due to reason: CAPACITY:..." (user guide,
    # job state time limit actions) with the last training job failed for capacity.
    reason = "Terminated by JobStateTimeLimit action due to reason: CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"
    jobs = {REAL: trained(REAL, "Failed", "CapacityError: x")}
    assert capacity_signal(described(jobs, service("FAILED", REAL, reason=reason))) is not None
    # ... and one that never got a training job (terminated while queued) too.
    never = described({}, service("FAILED", reason=reason))
    assert never is not None and never["TrainingJobName"] == "mrt-us-west-2" and capacity_signal(never) is not None


def test_a_failed_training_job_fails_the_attempt_with_its_own_reason() -> None:
    jobs = {REAL: trained(REAL, "Failed", "AlgorithmError: exit code 1")}
    description = described(jobs, service("FAILED", REAL, reason="Received status from SageMaker: AlgorithmError"))
    assert description is not None and description["FailureReason"] == "AlgorithmError: exit code 1"
    assert capacity_signal(description) is None


def test_the_trigger_reports_a_job_terminated_for_capacity_as_capacity(monkeypatch: pytest.MonkeyPatch) -> None:
    reason = "Terminated by JobStateTimeLimit action due to reason: CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"
    event, fake = run_trigger([{"status": "FAILED", "statusReason": reason, "createdAt": 1}], 3600, monkeypatch)
    assert event["status"] == "capacity" and fake.terminated == []


class SubmittingBatch(FakeServiceJobs):
    def __init__(self, *, exists: bool, reject: bool = False) -> None:
        super().__init__(service("RUNNING") if exists else None)
        self.reject, self.submitted = reject, 0

    def submit_service_job(self, **kwargs: Any) -> dict[str, Any]:
        self.submitted += 1
        if self.reject:  # the first request's response was lost; its job exists now
            self.service = service("RUNNING")
            raise ClientError({"Error": {"Code": "ClientException", "Message": "clientToken already used"}},
                              "SubmitServiceJob")
        return {"jobId": "sj-new"}


@pytest.mark.parametrize(("exists", "reject", "expected", "submits"), [
    (True, False, "sj-1", 0),  # a cleared or retried task reattaches: no new submit
    (False, False, "sj-new", 1),
    (False, True, "sj-1", 1),  # a repeated clientToken is rejected (model doc): found by name
])
def test_submit_finds_the_attempts_service_job_before_submitting(
    monkeypatch: pytest.MonkeyPatch, exists: bool, reject: bool, expected: str, submits: int
) -> None:
    fake = SubmittingBatch(exists=exists, reject=reject)

    class Hook:
        def __init__(self, **kwargs: Any) -> None:
            self.client = fake

    monkeypatch.setattr(batch_jobs, "BatchClientHook", Hook)
    monkeypatch.setattr(batch_jobs, "batch_settings", lambda: batch_jobs.BatchSettings("l", "d", "q-{region}"))
    job_id = batch_jobs.submit_service_job(request("mrt-us-west-2"), "mrt-us-west-2", region="us-west-2", params={},
                                           aws_conn_id=None, botocore_config=None)
    assert job_id == expected and fake.submitted == submits
    assert fake.listed[0]["filters"] == [{"name": "JOB_NAME", "values": ["mrt-us-west-2"]}]


def test_summarize_records_a_batch_service_target_by_the_job_batch_made(monkeypatch: pytest.MonkeyPatch) -> None:
    # A late recording (summarize, for a target whose task could not record it) describes
    # the attempt as the task does: through its service job, not by the attempt's name.
    from types import SimpleNamespace

    from regional_training.record import recording
    from regional_training.runtime import aws_io

    jobs = {REAL: trained(REAL, "Completed")}
    succeeded = FakeServiceJobs(service("SUCCEEDED", REAL))
    monkeypatch.setattr(batch_jobs, "batch_client", lambda region, **kwargs: succeeded)
    monkeypatch.setattr(batch_jobs, "batch_settings", lambda: batch_jobs.BatchSettings("l", "d", "q-{region}"))
    monkeypatch.setattr(aws_io, "describe_training_job", lambda name, region: jobs.get(name))
    monkeypatch.setattr(aws_io, "sagemaker_hook", lambda region: SimpleNamespace(describe_training_job=jobs.get))
    describe = recording._describer(SimpleNamespace(params={"launcher": "batch_service"}))  # type: ignore[arg-type]
    description = describe("us-west-2", "mrt-us-west-2")
    assert description is not None and description["TrainingJobName"] == REAL
    plain = recording._describer(SimpleNamespace(params={"launcher": "airflow"}))  # type: ignore[arg-type]
    assert plain("us-west-2", "mrt-us-west-2") is None  # by name: no job is called that
