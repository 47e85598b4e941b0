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
from test_array_file import target_lists

from regional_training import array_file, batch_jobs
from regional_training.batch_launcher import EXIT_TERMINATED, Launcher, LaunchError, array_index, load_job, select_line
from regional_training.targets import Target


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
    with pytest.raises(LaunchError, match="AWS_BATCH_JOB_ARRAY_INDEX"):
        array_index(env)
    assert array_index({"AWS_BATCH_JOB_ARRAY_INDEX": "3"}) == 3


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
    return Launcher(job_, lambda region: regions[region], poll_seconds=0.001, batch_attempt=attempt)


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


def test_after_a_failure_one_new_attempt_but_not_on_batchs_automatic_retry() -> None:
    failed = {"TrainingJobName": "mrt-eu-west-1", "TrainingJobStatus": "Failed",
              "FailureReason": "AlgorithmError: DataLossError"}
    sm = FakeSageMaker("eu-west-1", {"mrt-eu-west-1": dict(failed)})
    assert launcher(job("eu-west-1"), {"eu-west-1": sm}, attempt=2).run() == 1
    assert sm.created == []  # Batch's retry would pay for the same failure
    assert launcher(job("eu-west-1"), {"eu-west-1": sm}, attempt=1).run() == 0  # a new submission does
    assert sm.created == ["mrt-eu-west-1-a2"]


def test_a_region_without_capacity_moves_the_target_to_its_next_candidate() -> None:
    west = FakeSageMaker("us-west-2", {}, refuse="ResourceLimitExceeded")
    east = FakeSageMaker("us-east-1", {})
    assert launcher(job("us-west-2", "us-east-1"), {"us-west-2": west, "us-east-1": east}).run() == 0
    assert west.created == [] and east.created == ["mrt-us-east-1"]


def test_no_capacity_anywhere_fails_the_child() -> None:
    west = FakeSageMaker("us-west-2", {}, refuse="ResourceLimitExceeded")
    assert launcher(job("us-west-2"), {"us-west-2": west}).run() == 1


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
    assert loaded is not None and loaded["request"]["TrainingJobName"] == "mrt-eu-west-1"
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
    assert path == "regional_training.batch_jobs.BatchServiceJobTrigger"
    assert batch_jobs.BatchServiceJobTrigger(**kwargs).serialize() == (path, kwargs)
