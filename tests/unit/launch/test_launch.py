"""The launch seam (issue 28, docs/backends.md): the typed job at the XCom edge, the
normalised job state, the registry of backends, and the one driver both launch loops
call (the operator's and the Batch child's own tests drive it end to end)."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import pytest
from botocore.exceptions import ClientError

from regional_training.launch import driver
from regional_training.launch.attempts import Candidate
from regional_training.launch.backends import REGISTRY, Connection, backend_for
from regional_training.launch.job import Job, JobState
from regional_training.plan import params
from regional_training.plan.targets import Target

log = logging.getLogger("test_launch")


def target(region: str, option: str = "on_demand") -> dict[str, Any]:
    return Target(region, f"s3://data-{region}/datasets/c/d/", "c", "d", 1, 1, f"out-{region}",
                  purchase_option=option).to_dict()


def payload() -> dict[str, Any]:
    """A job as build_jobs and pre-flight and reuse leave it, plus a key from a later version."""
    return {
        "target": target("us-west-2", "spot"), "request": {"TrainingJobName": "mrt-a"},
        "failover": [{"target": target("us-east-1"), "request": {"TrainingJobName": "mrt-b"}},
                     {"target": target("eu-west-1"), "request": {"TrainingJobName": "mrt-c"}}],
        "max_failovers": 1, "hyperparameters_sha256": "ab" * 32, "training_image": "repo:tag",
        "entry_point": "train.py", "point_id": None, "point_overrides": None,
        "preflight_checked_inputs": ["s3://data-us-west-2/datasets/c/d/"], "reuse_keys": {"1": {"k": "v"}},
        "from_a_later_version": [1, 2],
    }


def test_the_xcom_payload_goes_back_key_for_key() -> None:
    data = payload()
    job = Job.from_xcom(data)
    assert job.to_xcom() == data and list(job.to_xcom()) == list(data)
    assert json.loads(json.dumps(job.to_xcom())) == data
    # A partial payload (an older run's, a test's) stays partial: no keys or target fields added.
    partial = {"target": {**target("eu-west-1"), "placement_rank": 2}, "request": {"TrainingJobName": "x"}}
    del partial["target"]["failure_probability"]
    assert Job.from_xcom(partial).to_xcom() == partial


def test_the_typed_job_gives_the_ranked_candidates_cut_to_max_failovers() -> None:
    job = Job.from_xcom(payload())
    assert [c.region for c in job.candidates] == ["us-west-2", "us-east-1"]  # max_failovers=1
    assert job.candidates[0] == Candidate({"TrainingJobName": "mrt-a"}, "us-west-2")
    assert job.checked_inputs == ("s3://data-us-west-2/datasets/c/d/",) and job.base_name == "mrt-a"
    unlimited = Job.from_xcom({k: v for k, v in payload().items() if k != "max_failovers"})
    assert len(unlimited.candidates) == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.max_failovers = 3  # type: ignore[misc]


def test_the_registry_is_the_launcher_params_enum() -> None:
    assert tuple(REGISTRY) == params.LAUNCHERS
    for launcher in params.LAUNCHERS:
        backend = backend_for(launcher, Connection(hook=lambda region: None))
        assert all(callable(getattr(backend, m)) for m in ("describe", "creator", "create", "wait", "stop"))
    with pytest.raises(ValueError, match="Param 'launcher': 'eks'"):
        backend_for("eks", Connection(hook=lambda region: None))


def test_a_job_state_is_normalised_in_sagemakers_words() -> None:
    live = JobState.of({"TrainingJobName": "j", "TrainingJobStatus": "InProgress"}, "j")
    assert live.phase == "live" and not live.ended and live.reason is None and live.failure_class is None
    done = JobState.of({"TrainingJobName": "j", "TrainingJobArn": "arn:j", "TrainingJobStatus": "Completed",
                        "ModelArtifacts": {"S3ModelArtifacts": "s3://o/model.tar.gz"}, "BillableTimeInSeconds": 61},
                       "j")
    assert (done.phase, done.arn, done.artifact_uri, done.billable_seconds) == (
        "completed", "arn:j", "s3://o/model.tar.gz", 61)
    ran_out = {"Status": "MaxWaitTimeExceeded", "StatusMessage": "Training job exceeded MaxWaitTimeInSeconds"}
    spot = JobState.of({"TrainingJobStatus": "Stopped", "SecondaryStatus": "MaxWaitTimeExceeded",
                        "SecondaryStatusTransitions": [ran_out]}, "j")
    assert spot.phase == "stopped" and spot.capacity is not None and spot.capacity[0] == "MaxWaitTimeExceeded"
    assert spot.reason is not None and spot.reason.startswith("MaxWaitTimeExceeded: Training job exceeded")
    assert spot.failure_class == "failover" and spot.name == "j"
    failed = JobState.of({"TrainingJobStatus": "Failed", "FailureReason": "AlgorithmError: exit 1"}, "j")
    assert failed.failure_class == "failed_job" and failed.reason == "AlgorithmError: exit 1" and not failed.capacity
    # Under batch_service the identity is the job Batch made, not the attempt's name.
    batch = JobState.of({"TrainingJobName": "AWSBatchj" + "0" * 32, "TrainingJobStatus": "InProgress"}, "j")
    assert batch.name == "AWSBatchj" + "0" * 32


class FakeBackend:
    """Jobs by (region, name); creation refused in ``refuse`` with that error code."""

    def __init__(self, jobs: dict[tuple[str, str], dict[str, Any]] | None = None,
                 refuse: dict[str, str] | None = None) -> None:
        self.jobs, self.refuse = dict(jobs or {}), dict(refuse or {})
        self.connection = Connection(hook=lambda region: None)
        self.created: list[tuple[str, str]] = []
        self.stopped: list[tuple[str, str]] = []

    def describe(self, region: str, name: str) -> JobState | None:
        found = self.jobs.get((region, name))
        return None if found is None else JobState.of({"TrainingJobName": name, **found}, name)

    def creator(self, candidate: Candidate, name: str) -> None:
        return None

    def create(self, candidate: Candidate, name: str) -> None:
        if candidate.region in self.refuse:
            raise ClientError({"Error": {"Code": self.refuse[candidate.region], "Message": "m"}}, "CreateTrainingJob")
        self.created.append((candidate.region, name))

    def wait(self, candidate: Candidate, name: str) -> Any:
        raise AssertionError("the driver never waits: its callers do")

    def stop(self, region: str, name: str) -> None:
        if (region, name) not in self.jobs:
            raise ClientError({"Error": {"Code": "ValidationException", "Message": "no job"}}, "StopTrainingJob")
        self.stopped.append((region, name))


CANDIDATES = [Candidate({"TrainingJobName": "a"}, "us-west-2"), Candidate({"TrainingJobName": "b"}, "us-east-1")]
FAILED = {"TrainingJobStatus": "Failed", "FailureReason": "AlgorithmError: exit 1"}


def never() -> bool:
    raise AssertionError("asked whether this is a retry where no new attempt is made")


@pytest.mark.parametrize(("jobs", "kind", "region", "name"), [
    ({}, "create", "us-west-2", "a"),
    ({("us-west-2", "a"): {"TrainingJobStatus": "InProgress"}}, "wait", "us-west-2", "a"),
    ({("us-west-2", "a"): {"TrainingJobStatus": "Completed"}}, "done", "us-west-2", "a"),
    ({("us-west-2", "a"): {"TrainingJobStatus": "Failed", "FailureReason": "CapacityError: none"}},
     "create", "us-east-1", "b"),
])
def test_the_next_step(jobs: dict[tuple[str, str], dict[str, Any]], kind: str, region: str, name: str) -> None:
    step = driver.next_step(CANDIDATES, FakeBackend(jobs), refused={}, automatic_retry=never)
    assert (step.kind, step.candidate and step.candidate.region, step.attempt.name) == (kind, region, name)


def test_a_new_attempt_after_a_deterministic_failure_is_refused_on_an_automatic_retry_only() -> None:
    backend = FakeBackend({("us-west-2", "a"): FAILED})
    refused = driver.next_step(CANDIDATES, backend, refused={}, automatic_retry=lambda: True)
    assert refused.kind == "refuse"
    assert refused.refusal == "training job a ended Failed: AlgorithmError: exit 1"
    cleared = driver.next_step(CANDIDATES, backend, refused={}, automatic_retry=lambda: False)
    assert (cleared.kind, cleared.attempt.name) == ("create", "a-a2")
    # A failure that is not deterministic gets its new attempt even on a retry.
    transient = FakeBackend({("us-west-2", "a"): {"TrainingJobStatus": "Failed",
                                                  "FailureReason": "InternalServerError: x"}})
    assert driver.next_step(CANDIDATES, transient, refused={}, automatic_retry=lambda: True).kind == "create"


def test_no_candidate_left_is_exhausted() -> None:
    step = driver.next_step(CANDIDATES, FakeBackend(), refused={"us-west-2": ("ResourceLimitExceeded", "m"),
                                                                "us-east-1": ("CapacityError", "m")},
                            automatic_retry=never)
    assert step.kind == "exhausted" and step.candidate is None and step.resolution.retry_may_create
    assert [m.from_region for m in step.resolution.moves] == ["us-west-2", "us-east-1"]


def test_create_follows_a_job_made_already_returns_a_capacity_refusal_and_raises_the_rest(
        caplog: pytest.LogCaptureFixture) -> None:
    backend = FakeBackend(refuse={"us-west-2": "ResourceLimitExceeded", "us-east-1": "ResourceInUse",
                                  "eu-west-1": "ValidationException"})
    assert driver.create(backend, CANDIDATES[0], "a", log) == ("ResourceLimitExceeded", "m")
    assert driver.create(backend, CANDIDATES[1], "b", log) is None
    assert "Training job b in us-east-1 already exists (m): following it." in caplog.text
    with pytest.raises(ClientError, match="ValidationException"):
        driver.create(backend, Candidate({"TrainingJobName": "c"}, "eu-west-1"), "c", log)
    assert driver.create(backend, Candidate({"TrainingJobName": "d"}, "ap-south-1"), "d", log) is None
    assert backend.created == [("ap-south-1", "d")]


def test_stop_logs_what_it_could_not_stop(caplog: pytest.LogCaptureFixture) -> None:
    backend = FakeBackend({("us-west-2", "a"): {"TrainingJobStatus": "InProgress"}})
    driver.stop(backend, "us-west-2", "a", log)
    driver.stop(backend, "us-west-2", "gone", log)
    assert backend.stopped == [("us-west-2", "a")]
    assert "StopTrainingJob gone:" in caplog.text
