from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from airflow.sdk.exceptions import TaskDeferred
from sagemaker_fake import ALTERNATIVE, REQUEST, FakeSageMaker

from regional_training.launch import preflight
from regional_training.launch.attempts import is_capacity_error
from regional_training.launch.backends import WAIT_MARGIN_SECONDS, wait_limit_seconds
from regional_training.launch.job import Job
from regional_training.launch.jobs import job_reference, resolve_job
from regional_training.launch.retry_policy import NotRetriedError
from regional_training.operators import (
    DurableSageMakerTrainingOperator,
    NoCapacityError,
    StoppingSageMakerTrigger,
)


@pytest.mark.parametrize(
    "text",
    [
        "ResourceLimitExceeded",
        "CapacityError: Unable to provision requested ML compute capacity.",
        "InsufficientInstanceCapacity: We currently do not have sufficient p4d capacity",
        "ClientError: insufficient capacity in the requested Availability Zone",
    ],
)
def test_capacity_errors_are_recognised(text: str) -> None:
    assert is_capacity_error(text)


@pytest.mark.parametrize("text", [None, "", "AlgorithmError: exit code 2", "ValidationException: bad role"])
def test_other_errors_are_not_capacity_errors(text: str | None) -> None:
    assert not is_capacity_error(text)


def test_wait_limit_follows_runtime_and_spot_max_wait() -> None:
    assert wait_limit_seconds({"StoppingCondition": {"MaxRuntimeInSeconds": 7200}}) == 7200 + WAIT_MARGIN_SECONDS
    spot = {"StoppingCondition": {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 90000}}
    assert wait_limit_seconds(spot) == 90000 + WAIT_MARGIN_SECONDS


# --- The operator in the provider's test style: hook patched, describe answers, TaskDeferred.


def operator(max_failovers: int = 1) -> DurableSageMakerTrainingOperator:
    return DurableSageMakerTrainingOperator(
        task_id="train", config=copy.deepcopy(REQUEST), region_name="us-west-2", check_interval=5,
        failover=[{"request": copy.deepcopy(ALTERNATIVE), "region": "us-east-1"}], max_failovers=max_failovers,
    )


def deferred(call: Any) -> Any:
    with pytest.raises(TaskDeferred) as raised:
        call()
    trigger = raised.value.trigger
    assert isinstance(trigger, StoppingSageMakerTrigger)
    assert raised.value.method_name == "execute_complete"
    return trigger


def test_execute_creates_the_job_and_defers_in_its_region(sagemaker: FakeSageMaker) -> None:
    trigger = deferred(lambda: operator().execute({}))
    assert (trigger.job_name, trigger.region_name) == ("mrt-a", "us-west-2")
    assert sagemaker.created == [("us-west-2", "mrt-a")]
    # Both candidates' regions described, then created in one: one hook (boto3 session) per region.
    assert sorted(region for _, region in sagemaker.hooks) == ["us-east-1", "us-west-2"]


def test_a_retry_reattaches_to_the_running_job(sagemaker: FakeSageMaker) -> None:
    sagemaker.jobs[("us-west-2", "mrt-a")] = {"TrainingJobStatus": "InProgress"}
    trigger = deferred(lambda: operator().execute({}))
    assert trigger.job_name == "mrt-a" and sagemaker.created == []


def test_a_retry_after_a_failure_creates_one_new_attempt(sagemaker: FakeSageMaker) -> None:
    sagemaker.jobs[("us-west-2", "mrt-a")] = {"TrainingJobStatus": "Failed", "FailureReason": "AlgorithmError"}
    trigger = deferred(lambda: operator().execute({}))
    assert trigger.job_name == "mrt-a-a2" and sagemaker.created == [("us-west-2", "mrt-a-a2")]


def test_a_completed_job_is_returned_without_deferring(sagemaker: FakeSageMaker) -> None:
    sagemaker.jobs[("us-west-2", "mrt-a")] = {"TrainingJobStatus": "Completed"}
    assert operator().execute({})["Training"]["TrainingJobName"] == "mrt-a"
    assert sagemaker.created == []


def test_a_refused_creation_fails_over_to_the_next_region(sagemaker: FakeSageMaker) -> None:
    sagemaker.refuse = {"us-west-2"}
    trigger = deferred(lambda: operator().execute({}))
    assert (trigger.job_name, trigger.region_name) == ("mrt-b", "us-east-1")
    assert sagemaker.created == [("us-east-1", "mrt-b")]
    assert sorted(region for _, region in sagemaker.hooks) == ["us-east-1", "us-west-2"]  # one hook per region


def test_a_job_that_ended_for_capacity_fails_over_within_the_same_try(sagemaker: FakeSageMaker) -> None:
    deferred(lambda: operator().execute({}))
    sagemaker.jobs[("us-west-2", "mrt-a")] = {"TrainingJobStatus": "Stopped", "SecondaryStatus": "MaxWaitTimeExceeded"}
    # Resumed in a fresh operator, as Airflow does: re-defers on the next candidate.
    event = {"status": "stopped", "job_name": "mrt-a", "message": "stopped"}
    trigger = deferred(lambda: operator().execute_complete({}, event))
    assert (trigger.job_name, trigger.region_name) == ("mrt-b", "us-east-1")
    # The moved job completes: the resumed task returns it.
    sagemaker.jobs[("us-east-1", "mrt-b")] = {"TrainingJobStatus": "Completed"}
    result = operator().execute_complete({}, {"status": "success", "job_name": "mrt-b"})
    assert result["Training"]["TrainingJobName"] == "mrt-b"
    assert sagemaker.created == [("us-west-2", "mrt-a"), ("us-east-1", "mrt-b")]


def test_failover_is_bounded_by_max_failovers(sagemaker: FakeSageMaker) -> None:
    sagemaker.jobs[("us-west-2", "mrt-a")] = {"TrainingJobStatus": "Failed", "FailureReason": "CapacityError"}
    with pytest.raises(NoCapacityError, match="max_failovers=0"):
        operator(max_failovers=0).execute_complete({}, {"status": "failed", "job_name": "mrt-a", "message": "x"})
    assert sagemaker.created == []


def test_a_job_that_failed_for_another_reason_fails_the_try(sagemaker: FakeSageMaker) -> None:
    sagemaker.jobs[("us-west-2", "mrt-a")] = {"TrainingJobStatus": "Failed", "FailureReason": "AlgorithmError"}
    # A deterministic failure: the task fails without an automatic retry (no second paid job).
    with pytest.raises(NotRetriedError, match=r"AlgorithmError.*not retried"):
        operator().execute_complete({}, {"status": "failed", "job_name": "mrt-a", "message": "AlgorithmError"})
    assert sagemaker.created == []


def test_a_job_that_failed_inside_sagemaker_is_retried(sagemaker: FakeSageMaker) -> None:
    sagemaker.jobs[("us-west-2", "mrt-a")] = {"TrainingJobStatus": "Failed",
                                              "FailureReason": "InternalServerError: We encountered an internal error"}
    with pytest.raises(RuntimeError, match="InternalServerError") as raised:
        operator().execute_complete({}, {"status": "failed", "job_name": "mrt-a", "message": "InternalServerError"})
    assert not isinstance(raised.value, NotRetriedError)


# --- The trigger: every outcome resumes the task, which collects a completed job.

def _trigger_events(polled: dict[str, Any]) -> list[Any]:
    """What the trigger yields when the provider's polling ends with ``polled``."""
    import asyncio

    from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger
    from airflow.triggers.base import TriggerEvent

    async def provider_run(self: Any) -> Any:
        yield TriggerEvent(polled)

    trigger = StoppingSageMakerTrigger(job_name="mrt-a", job_type="Training", region_name="us-west-2")
    with mock.patch.object(SageMakerTrigger, "run", provider_run):

        async def collect() -> list[Any]:
            return [event async for event in trigger.run()]

        return asyncio.run(collect())


@pytest.mark.parametrize("status", ["success", "failed", "stopped", "timeout", "error"])
def test_every_outcome_resumes_on_a_worker_unchanged(status: str) -> None:
    from airflow.triggers.base import TaskSuccessEvent

    polled = {"status": status, "job_name": "mrt-a", "message": "x"}
    (event,) = _trigger_events(polled)
    assert not isinstance(event, TaskSuccessEvent) and event.payload == polled


# --- The DAG's way: one group argument, a reference to the job stored as its own XCom.


def _target(region: str, option: str) -> dict[str, Any]:
    return {"region_code": region, "s3_uri": f"s3://data-{region}/drive-1/", "campaign_key": "c1",
            "dataset_key": "drive-1", "dataset_id": 1, "copy_id": 1, "output_bucket": f"out-{region}",
            "purchase_option": option}


JOB = {"target": _target("us-west-2", "reserved"), "request": REQUEST, "max_failovers": 1,
       "failover": [{"target": _target("us-east-1", "spot"), "request": ALTERNATIVE}]}


class FakeTaskInstance:
    """Answers ``xcom_pull`` from ``stored`` (task id, key) and records each pull."""

    def __init__(self, stored: dict[tuple[str, str], Any]) -> None:
        self.stored, self.pulls = stored, []

    task_id, map_index, try_number, max_tries = "train", 0, 1, 2

    def xcom_pull(self, *, task_ids: str, key: str, **_: Any) -> Any:
        self.pulls.append((task_ids, key))
        return copy.deepcopy(self.stored.get((task_ids, key)))

    def xcom_push(self, *, key: str, value: Any) -> None:
        self.stored[(self.task_id, key)] = value


def test_a_reference_is_small_and_names_its_target() -> None:
    reference = job_reference(JOB, "jobs_to_launch")
    assert reference == {"task_id": "jobs_to_launch", "xcom_key": "job drive-1", "target_key": "drive-1",
                         "region": "us-west-2"}
    assert len(json.dumps(reference)) < len(json.dumps(JOB)) / 3


def test_the_operator_pulls_only_its_own_job_and_keeps_the_reference(sagemaker: FakeSageMaker) -> None:
    reference = job_reference(JOB, "jobs_to_launch")
    ti = FakeTaskInstance({("jobs_to_launch", "job drive-1"): JOB, ("jobs_to_launch", "job other"): {}})
    train = DurableSageMakerTrainingOperator(task_id="train", job=reference, check_interval=5)
    trigger = deferred(lambda: train.execute({"ti": ti}))
    assert [p for p in ti.pulls if p[0] == "jobs_to_launch"] == [("jobs_to_launch", "job drive-1")]
    assert (train.config, train.region_name, train.max_failovers) == (REQUEST, "us-west-2", 1)
    assert train.failover == [{"request": ALTERNATIVE, "region": "us-east-1"}]
    assert train.job == reference  # the rendered fields hold the request once
    assert (trigger.job_name, trigger.region_name) == ("mrt-a", "us-west-2")


def test_a_whole_job_needs_no_pull_and_a_missing_one_is_named() -> None:
    assert resolve_job(None, JOB) == JOB
    with pytest.raises(ValueError, match="target drive-1: no XCom 'job drive-1' of task 'jobs_to_launch'"):
        resolve_job(FakeTaskInstance({}), job_reference(JOB, "jobs_to_launch"))


def test_only_the_planned_region_skips_the_inputs_pre_flight_found(sagemaker: FakeSageMaker) -> None:
    uri = "s3://data-us-west-2/drive-1/"
    channel = {"ChannelName": "train", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri}}}
    job = preflight.with_checked_inputs(Job.from_xcom({**JOB, "request": {**REQUEST, "InputDataConfig": [channel]}})
                                        ).to_xcom()
    assert job[preflight.CHECKED_INPUTS] == [uri]
    train = DurableSageMakerTrainingOperator(task_id="train", job=job, check_interval=5)
    train._start({})
    assert train._hook("us-west-2").checked_s3_urls == {uri}
    assert train._hook("us-east-1").checked_s3_urls == frozenset()  # the failover's: checked as the provider does
    # A job pre-flight did not pass (no field) checks everything.
    unchecked = DurableSageMakerTrainingOperator(task_id="train", job=JOB, check_interval=5)
    unchecked._start({})
    assert unchecked._hook("us-west-2").checked_s3_urls == frozenset()


# --- Collection: the try that finds its job ended records it (recording.collect_target).


@pytest.fixture()
def recorded() -> Iterator[list[dict[str, Any]]]:
    """``recording.collect_target``'s calls (the run, job, moves and the resolved attempt)."""
    calls: list[dict[str, Any]] = []

    def collect_target(run: Any, job: Job, *, moves: list[dict[str, Any]], latest: Any = None) -> Any:
        calls.append({"run": run, "job": job, "moves": moves, "latest": latest})
        return {"target_key": job.target.dataset_key, "status": latest[1].status if latest else "NotStarted"}

    with mock.patch("regional_training.record.recording.collect_target", side_effect=collect_target), \
            mock.patch("regional_training.run.run_context.current_run", return_value="the run"):
        yield calls


def _ti() -> Any:
    """A task instance with nothing pushed before (no earlier moves)."""
    return mock.Mock(**{"xcom_pull.return_value": [], "try_number": 1, "max_tries": 2})


def _with_job(max_failovers: int = 1) -> DurableSageMakerTrainingOperator:
    return DurableSageMakerTrainingOperator(task_id="train", job={**JOB, "max_failovers": max_failovers},
                                            check_interval=5)


def test_a_completed_job_is_collected_and_its_row_returned(sagemaker: FakeSageMaker,
                                                           recorded: list[dict[str, Any]]) -> None:
    sagemaker.jobs[("us-west-2", "mrt-a")] = {"TrainingJobStatus": "Completed"}
    row = _with_job().execute_complete({}, {"status": "success", "job_name": "mrt-a"})
    assert row == {"target_key": "drive-1", "status": "Completed"}
    (call,) = recorded
    assert call["run"] == "the run" and call["job"].to_xcom() == {**JOB, "max_failovers": 1} and call["moves"] == []
    index, attempt = call["latest"]  # what the try resolved: collection describes nothing again
    assert (index, attempt.name) == (0, "mrt-a")
    assert sagemaker.created == []


def test_a_job_completed_after_a_failover_is_collected_with_its_move(sagemaker: FakeSageMaker,
                                                                     recorded: list[dict[str, Any]]) -> None:
    sagemaker.refuse = {"us-west-2"}
    first = _ti()
    deferred(lambda: _with_job().execute({"ti": first}))
    pushed = [c.kwargs["value"] for c in first.xcom_push.call_args_list if c.kwargs["key"] == "placement_moves"][-1]
    sagemaker.jobs[("us-east-1", "mrt-b")] = {"TrainingJobStatus": "Completed"}
    resumed = mock.Mock(**{"xcom_pull.return_value": pushed, "try_number": 1, "max_tries": 2})
    _with_job().execute_complete({"ti": resumed}, {"status": "success", "job_name": "mrt-b"})
    (call,) = recorded
    assert call["latest"][0] == 1 and call["latest"][1].name == "mrt-b"
    assert [(m["from_region"], m["to_region"]) for m in call["moves"]] == [("us-west-2", "us-east-1")]


def test_a_deferral_hands_the_resumed_try_its_job_and_moves(sagemaker: FakeSageMaker,
                                                           recorded: list[dict[str, Any]]) -> None:
    """The resumed try reads nothing back and pushes nothing unchanged: it gets the job the
    links name and the moves with the deferral (each XCom call is a request to the API
    server, which is a share of every target's cost: docs/services.md)."""
    sagemaker.refuse = {"us-west-2"}
    first = _ti()
    with pytest.raises(TaskDeferred) as raised:
        _with_job().execute({"ti": first})
    kwargs = raised.value.kwargs
    assert kwargs["linked_job"] == ["us-east-1", "mrt-b"]
    assert [(m["from_region"], m["to_region"]) for m in kwargs["moves"]] == [("us-west-2", "us-east-1")]
    pushed = [c.kwargs["key"] for c in first.xcom_push.call_args_list]
    # The link named each job it tried (the refused one, then the one it moved to), the moves once.
    assert sorted(pushed) == ["mrt_training_job", "mrt_training_job", "placement_moves"]
    # Resumed as Airflow does it: the deferral's kwargs plus the trigger's event.
    sagemaker.jobs[("us-east-1", "mrt-b")] = {"TrainingJobStatus": "Completed"}
    resumed = _ti()
    resumed_train = _with_job()
    resumed_train.execute_complete({"ti": resumed}, event={"status": "success", "job_name": "mrt-b"}, **kwargs)
    assert resumed.xcom_pull.call_args_list == []
    assert resumed.xcom_push.call_args_list == []
    (call,) = recorded
    assert [(m["from_region"], m["to_region"]) for m in call["moves"]] == [("us-west-2", "us-east-1")]
    # The end of the try formats the links from the operator: the job it moved to.
    from regional_training.report import links

    link = links.SageMakerTrainingJobLink().get_link(resumed_train, ti_key=mock.Mock())  # type: ignore[arg-type]
    assert link.endswith("region=us-east-1#/jobs/mrt-b")


def test_a_deferral_made_without_kwargs_reads_the_moves_back(sagemaker: FakeSageMaker,
                                                            recorded: list[dict[str, Any]]) -> None:
    moves = [{"move_number": 1, "from_region": "us-west-2", "from_option": "reserved", "to_region": "us-east-1",
              "to_option": "spot", "error_code": "ResourceLimitExceeded", "error_message": "quota 0"}]
    sagemaker.jobs[("us-east-1", "mrt-b")] = {"TrainingJobStatus": "Completed"}
    resumed = mock.Mock(**{"xcom_pull.return_value": moves, "try_number": 1, "max_tries": 2})
    _with_job().execute_complete({"ti": resumed}, {"status": "success", "job_name": "mrt-b"})
    assert resumed.xcom_pull.call_args.kwargs["key"] == "placement_moves"
    (call,) = recorded
    assert call["latest"][1].name == "mrt-b" and call["moves"][0]["from_region"] == "us-west-2"
    # It pushes the link (not handed over) but not the moves (unchanged).
    assert [c.kwargs["key"] for c in resumed.xcom_push.call_args_list] == ["mrt_training_job"]


def test_a_failed_job_is_recorded_before_the_task_fails(sagemaker: FakeSageMaker,
                                                       recorded: list[dict[str, Any]]) -> None:
    sagemaker.jobs[("us-west-2", "mrt-a")] = {"TrainingJobStatus": "Failed", "FailureReason": "AlgorithmError"}
    with pytest.raises(NotRetriedError):
        _with_job().execute_complete({"ti": _ti()}, {"status": "failed", "job_name": "mrt-a", "message": "x"})
    (call,) = recorded
    assert call["latest"][1].status == "Failed"


def test_a_recording_failure_leaves_the_training_error_as_the_tasks(sagemaker: FakeSageMaker,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    sagemaker.jobs[("us-west-2", "mrt-a")] = {"TrainingJobStatus": "Failed", "FailureReason": "AlgorithmError"}
    with mock.patch("regional_training.record.recording.collect_target", side_effect=OSError("database down")), \
            mock.patch("regional_training.run.run_context.current_run"), \
            pytest.raises(NotRetriedError, match="AlgorithmError"):
        _with_job().execute_complete({"ti": _ti()}, {"status": "failed", "job_name": "mrt-a", "message": "x"})
    assert "Could not record mrt-a now (record_late records it): OSError: database down" in capsys.readouterr().out


def test_no_capacity_anywhere_is_recorded_as_never_started(sagemaker: FakeSageMaker,
                                                           recorded: list[dict[str, Any]]) -> None:
    sagemaker.refuse = {"us-west-2", "us-east-1"}
    with pytest.raises(NoCapacityError):
        _with_job().execute({"ti": _ti()})
    (call,) = recorded
    assert call["latest"] is None and len(call["moves"]) == 2
