"""Durable training tasks (issue 5), against the local emulator and real Postgres.

The operator is driven the way Airflow drives it: ``execute`` until it defers, a retry
or clear is a fresh ``execute`` of a new instance, ``execute_complete`` when the
trigger fires, ``on_kill`` when the task is killed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from dev.local_stack import LOCAL_RUN_CONF, aws_client, wait_for_job_status
from regional_training.launch.backends import WAIT_MARGIN_SECONDS
from regional_training.operators import DurableSageMakerTrainingOperator
from regional_training.plan.targets import Target
from regional_training.plan.training_request import build_request, sagemaker_hyperparameters
from regional_training.runtime.settings import settings_from_mapping

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

REGION = "us-west-2"
GOOD = Target(REGION, "s3://mrt-campaign-data-us-west-2/datasets/seattle-rain-2026/seattle-rain-2026-v1/",
              "seattle-rain-2026", "seattle-rain-2026-v1", 2, 3, "mrt-output-us-west-2")


def _request(run_id: str, target: Target = GOOD, *, seconds: int = 2, max_runtime: int = 3600) -> dict[str, Any]:
    settings = settings_from_mapping({
        "mrt_aws_account_id": "123456789012",
        "mrt_sagemaker_role_arn": "arn:aws:iam::123456789012:role/mrt-sagemaker-execution",
        "mrt_training_image_repository": "multi-region-training/resnet50-horovod",
        "mrt_training_image_tag": "local",
        "mrt_central_bucket": "mrt-central-artifacts",
        "mrt_central_region": "us-east-1",
    })
    hps = sagemaker_hyperparameters({"max_steps": 5, "seconds": seconds}, processes_per_host=2)
    return build_request(target=target, settings=settings, hyperparameters=hps, dag_id="durability",
                         run_id=run_id, instance_type="ml.g5.12xlarge", instance_count=1, volume_size_gb=10,
                         max_runtime_seconds=max_runtime)


def _operator(request: dict[str, Any]) -> DurableSageMakerTrainingOperator:
    import copy

    return DurableSageMakerTrainingOperator(task_id="train", config=copy.deepcopy(request), region_name=REGION,
                                            aws_conn_id="aws_default", check_interval=1)


def _jobs(endpoint: str, base_name: str) -> dict[str, str]:
    sm = aws_client("sagemaker", endpoint, REGION)
    names = [j["TrainingJobName"] for j in sm.list_training_jobs(MaxResults=100)["TrainingJobSummaries"]
             if j["TrainingJobName"].startswith(base_name)]
    return {n: sm.describe_training_job(TrainingJobName=n)["TrainingJobStatus"] for n in names}


def _wait_for(endpoint: str, name: str, states: set[str], timeout: float = 60) -> str:
    return _wait_in(aws_client("sagemaker", endpoint, REGION), name, states, timeout)


def _wait_in(sm: Any, name: str, states: set[str], timeout: float = 60) -> str:
    """The job's status once it is one of ``states`` (fails after ``timeout``)."""
    return str(wait_for_job_status(sm, name, states, timeout=timeout, poll=0.3)["TrainingJobStatus"])


def _deferred(op: DurableSageMakerTrainingOperator) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({})  # type: ignore[arg-type]
    return deferred.value


def test_retry_while_in_progress_reattaches_and_clear_after_completion_starts_nothing(offline_stack: str) -> None:
    request = _request("retry-in-progress", seconds=3)
    name = request["TrainingJobName"]
    first = _deferred(_operator(request))
    assert first.trigger.job_name == name
    # A retry (new task instance) while the job runs: follows it, creates nothing.
    retry = _deferred(_operator(request))
    assert retry.trigger.job_name == name
    assert list(_jobs(offline_stack, name)) == [name]
    assert _wait_for(offline_stack, name, {"Completed"}) == "Completed"
    result = _operator(request).execute_complete({}, {"status": "success", "job_name": name})  # type: ignore[arg-type]
    assert result["Training"]["TrainingJobName"] == name
    # Clearing the completed task: returns the same job's result without deferring.
    cleared = _operator(request).execute({})  # type: ignore[arg-type]
    assert cleared["Training"]["TrainingJobArn"] == result["Training"]["TrainingJobArn"]
    assert _jobs(offline_stack, name) == {name: "Completed"}


def _corrupt_target(endpoint: str, key: str) -> Target:
    """A eu-west-1 target whose only shard is garbage: its job fails with AlgorithmError."""
    aws_client("s3", endpoint, "eu-west-1").put_object(
        Bucket="mrt-campaign-data-eu-west-1", Key=f"datasets/{key}/train-0", Body=b"garbage")
    return Target("eu-west-1", f"s3://mrt-campaign-data-eu-west-1/datasets/{key}/", "c", key, 3, 5,
                  "mrt-output-eu-west-1")


def test_a_failed_job_gets_exactly_one_new_attempt(offline_stack: str) -> None:
    request = _request("failed-attempts", _corrupt_target(offline_stack, "corrupt"))
    name = request["TrainingJobName"]
    op = DurableSageMakerTrainingOperator(task_id="t", config=_copy(request), region_name="eu-west-1",
                                          check_interval=1)
    with pytest.raises(TaskDeferred):
        op.execute({})  # type: ignore[arg-type]
    sm = aws_client("sagemaker", offline_stack, "eu-west-1")
    assert _wait_in(sm, name, {"Failed"}) == "Failed"
    retry = DurableSageMakerTrainingOperator(task_id="t", config=_copy(request), region_name="eu-west-1",
                                             check_interval=1)
    with pytest.raises(TaskDeferred) as deferred:
        retry.execute({})  # type: ignore[arg-type]
    assert deferred.value.trigger.job_name == f"{name}-a2"
    assert _wait_in(sm, f"{name}-a2", {"Failed"}) == "Failed"
    names = sorted(j["TrainingJobName"] for j in sm.list_training_jobs(MaxResults=100)["TrainingJobSummaries"]
                   if j["TrainingJobName"].startswith(name))
    assert names == [name, f"{name}-a2"]


def _copy(request: dict[str, Any]) -> dict[str, Any]:
    import copy

    return copy.deepcopy(request)


def test_a_retry_after_failover_follows_the_job_it_moved_to(offline_stack: str) -> None:
    from dataclasses import replace

    # Long enough to still run when the retry looks (a 3 s job can end first on a loaded machine).
    primary = _request("after-failover", seconds=15)
    alternative_target = replace(GOOD, region_code="us-east-1", copy_id=2, output_bucket="mrt-output-us-east-1",
                                 s3_uri="s3://mrt-campaign-data-us-east-1/datasets/boston-winter-2026/"
                                 "boston-winter-2026-v1/", purchase_option="spot")
    alternative = _request("after-failover", alternative_target, seconds=15)
    # The first try moved to the alternative and created its job there.
    _deferred(DurableSageMakerTrainingOperator(task_id="train", config=_copy(alternative), region_name="us-east-1",
                                               check_interval=1))
    retry = DurableSageMakerTrainingOperator(
        task_id="train", config=_copy(primary), region_name=REGION, check_interval=1, max_failovers=1,
        failover=[{"request": _copy(alternative), "region": "us-east-1"}],
    )
    deferred = _deferred(retry)
    assert (deferred.trigger.job_name, deferred.trigger.region_name) == (alternative["TrainingJobName"], "us-east-1")
    assert _jobs(offline_stack, primary["TrainingJobName"]) == {}  # nothing started in the first region
    assert _wait_in(aws_client("sagemaker", offline_stack, "us-east-1"), alternative["TrainingJobName"],
                    {"Completed"}, timeout=180) == "Completed"


def test_killing_the_task_stops_the_job(offline_stack: str) -> None:
    request = _request("kill-worker", seconds=60)
    name = request["TrainingJobName"]
    op = _operator(request)
    _deferred(op)
    assert _wait_for(offline_stack, name, {"InProgress"}) == "InProgress"
    op.on_kill()
    assert _wait_for(offline_stack, name, {"Stopped", "Failed", "Completed"}) == "Stopped"


def test_killing_the_deferred_task_stops_the_job_from_the_trigger(offline_stack: str) -> None:
    request = _request("kill-deferred", seconds=60)
    name = request["TrainingJobName"]
    deferred = _deferred(_operator(request))
    assert deferred.trigger.region_name == REGION  # polled in the job's own region
    asyncio.run(deferred.trigger.on_kill())
    assert _wait_for(offline_stack, name, {"Stopped", "Failed", "Completed"}) == "Stopped"


def test_the_wait_follows_the_stopping_condition(offline_stack: str) -> None:
    runtime = 5 * 24 * 3600  # five days: far beyond the stock 60 x 30 s
    request = _request("long-wait", max_runtime=runtime, seconds=1)
    deferred = _deferred(_operator(request))
    assert deferred.timeout.total_seconds() == runtime + WAIT_MARGIN_SECONDS
    trigger = deferred.trigger
    assert trigger.attempts * trigger.waiter_delay >= runtime + WAIT_MARGIN_SECONDS
    _wait_for(offline_stack, request["TrainingJobName"], {"Completed"})


def test_a_trigger_without_region_is_refused() -> None:
    from regional_training.operators import StoppingSageMakerTrigger

    with pytest.raises(ValueError, match="region_name"):
        StoppingSageMakerTrigger(job_name="x", job_type="Training")


def test_local_run_conf_is_within_the_params_schema() -> None:
    from regional_training.plan.params import param_specs

    assert set(LOCAL_RUN_CONF) <= set(param_specs())


class _RetryTi:
    """The task instance fields the operator reads: Airflow's numbers for try 2 of a task
    with ``retries=2`` (an automatic retry) or for the first try after a clear."""

    task_id = "t"
    map_index = -1

    def __init__(self, try_number: int, max_tries: int) -> None:
        self.try_number, self.max_tries = try_number, max_tries

    def xcom_push(self, key: str, value: Any) -> None:
        pass

    def xcom_pull(self, **_: Any) -> None:
        return None


def test_an_automatic_retry_after_an_algorithm_error_creates_no_job(offline_stack: str) -> None:
    from regional_training.launch.retry_policy import NotRetriedError

    request = _request("no-auto-retry", _corrupt_target(offline_stack, "corrupt-retry"))
    name = request["TrainingJobName"]
    sm = aws_client("sagemaker", offline_stack, "eu-west-1")

    def op() -> DurableSageMakerTrainingOperator:
        return DurableSageMakerTrainingOperator(task_id="t", config=_copy(request), region_name="eu-west-1",
                                                check_interval=1, retries=2)

    with pytest.raises(TaskDeferred):
        op().execute({"ti": _RetryTi(1, 2)})  # type: ignore[arg-type, typeddict-item]
    assert _wait_in(sm, name, {"Failed"}) == "Failed"
    # Airflow's automatic retry (try 2 of 3): the same input would fail again, so no new job.
    with pytest.raises(NotRetriedError, match="AlgorithmError"):
        op().execute({"ti": _RetryTi(2, 2)})  # type: ignore[arg-type, typeddict-item]
    names = [j["TrainingJobName"] for j in sm.list_training_jobs(MaxResults=100)["TrainingJobSummaries"]
             if j["TrainingJobName"].startswith(name)]
    assert names == [name]
    # A human clear (max_tries raised to try_number + retries): exactly one new attempt.
    with pytest.raises(TaskDeferred) as deferred:
        op().execute({"ti": _RetryTi(3, 4)})  # type: ignore[arg-type, typeddict-item]
    assert deferred.value.trigger.job_name == f"{name}-a2"
