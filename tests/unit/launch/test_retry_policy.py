"""Retries by error class: the table in regional_training.launch.retry_policy, case by case."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException
from botocore.exceptions import ClientError, EndpointConnectionError, ParamValidationError

from regional_training.launch.retry_policy import (
    Decision,
    NotRetriedError,
    by_error_class,
    check_new_attempt,
    classify,
    is_automatic_retry,
)
from regional_training.operators import CapacityExhaustedError, NoCapacityError
from regional_training.plan.targets import TargetError
from regional_training.runtime.campaign_db import CampaignDbUnavailableError
from regional_training.runtime.settings import SettingsError
from regional_training.runtime.strict_params import ParamError


def client_error(code: str, status: int, message: str = "boom") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "CreateTrainingJob")


def failed(reason: str, status: str = "Failed") -> dict:
    return {"TrainingJobName": "mrt-us-east-1-x-0123456789", "TrainingJobStatus": status, "FailureReason": reason}


@pytest.mark.parametrize(
    ("error", "decision", "error_class"),
    [
        (ParamError("param 'epochs': 3.0"), Decision.FAIL, "ParamError"),
        (TargetError("target row 2: field 's3_uri'"), Decision.FAIL, "TargetError"),
        (SettingsError("Airflow Variable 'mrt_role_arn' is not set"), Decision.FAIL, "SettingsError"),
        (ValueError("training request 'x' is invalid"), Decision.FAIL, "ValueError"),
        (ParamValidationError(report="Invalid length for parameter Tags[0].Value"), Decision.FAIL,
         "ParamValidationError"),
        (client_error("ValidationException", 400), Decision.FAIL, "ValidationException"),
        (client_error("AccessDeniedException", 400), Decision.FAIL, "AccessDeniedException"),
        (client_error("ResourceLimitExceeded", 400), Decision.FAILOVER, "ResourceLimitExceeded"),
        (client_error("ThrottlingException", 400, "Rate exceeded"), Decision.RETRY, "ThrottlingException"),
        (client_error("SlowDown", 503), Decision.RETRY, "SlowDown"),
        (client_error("InternalServerError", 500), Decision.RETRY, "InternalServerError"),
        (client_error("", 502), Decision.RETRY, ""),
        (EndpointConnectionError(endpoint_url="https://api.sagemaker.us-east-1.amazonaws.com"), Decision.RETRY,
         "EndpointConnectionError"),
        (CampaignDbUnavailableError("campaign database is unavailable"), Decision.RETRY,
         "CampaignDbUnavailableError"),
        (RuntimeError("something unknown"), Decision.RETRY, "RuntimeError"),
        (NoCapacityError("no capacity for x: tried us-east-1 (spot)"), Decision.RETRY, "NoCapacityError"),
        (CapacityExhaustedError("no capacity for x: tried us-east-1 (spot): MaxWaitTimeExceeded: ..."),
         Decision.FAIL, "CapacityExhaustedError"),
        ({"TrainingJobStatus": "Stopped", "SecondaryStatus": "MaxWaitTimeExceeded"}, Decision.FAILOVER,
         "MaxWaitTimeExceeded"),
        ({"TrainingJobStatus": "Stopped", "SecondaryStatus": "MaxRuntimeExceeded"}, Decision.FAILED_JOB,
         "MaxRuntimeExceeded"),
        ("MaxWaitTimeExceeded: Training job exceeded MaxWaitTimeInSeconds provided", Decision.FAILOVER,
         "MaxWaitTimeExceeded"),
        ("MaxRuntimeExceeded: Training job exceeded MaxRuntimeInSeconds provided", Decision.FAILED_JOB,
         "MaxRuntimeExceeded"),
        (failed("AlgorithmError: argument --epochs: invalid int value: '3.0'"), Decision.FAILED_JOB,
         "AlgorithmError"),
        (failed("ClientError: Data download failed: NoSuchBucket"), Decision.FAILED_JOB, "ClientError"),
        (failed("MaxRuntimeExceeded: the job ran longer than 60s", "Stopped"), Decision.FAILED_JOB, "Stopped"),
        (failed("CapacityError: Unable to provision requested ML compute capacity"), Decision.FAILOVER,
         "CapacityError"),
        (failed("InternalServerError: We encountered an internal error."), Decision.RETRY, "InternalServerError"),
        ("AlgorithmError: exit code 1", Decision.FAILED_JOB, "AlgorithmError"),
        ("ResourceLimitExceeded", Decision.FAILOVER, "ResourceLimitExceeded"),
        ("ThrottlingException", Decision.RETRY, "ThrottlingException"),
        ("ValidationException: 1 validation error detected", Decision.FAIL, "ValidationException"),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, (str, Decision)) else str(v)[:40],
)
def test_the_table(error, decision: Decision, error_class: str) -> None:
    result = classify(error)
    assert (result.decision, result.error_class) == (decision, error_class)
    assert result.retryable is (decision in (Decision.RETRY, Decision.FAILOVER))


def test_a_running_job_has_nothing_to_classify() -> None:
    with pytest.raises(ValueError, match="InProgress"):
        classify({"TrainingJobStatus": "InProgress"})


def test_automatic_retry_vs_first_try_of_a_run_or_a_clear() -> None:
    retries = 2
    # The run's tries: max_tries = retries.
    assert [is_automatic_retry(t, 2, retries) for t in (1, 2, 3)] == [False, True, True]
    # Cleared after try 3: clear_task_instances sets max_tries = 3 + retries; next tries 4, 5, 6.
    assert [is_automatic_retry(t, 5, retries) for t in (4, 5, 6)] == [False, True, True]
    assert not is_automatic_retry(1, 0, 0)  # a task without retries


def test_an_algorithm_error_is_not_recreated_by_a_retry_but_a_clear_makes_one_attempt() -> None:
    job = failed("AlgorithmError: argument --epochs: invalid int value: '3.0'")
    with pytest.raises(NotRetriedError, match=r"mrt-us-east-1-x-0123456789 ended Failed: AlgorithmError: .*'3\.0'.*"
                                             r"clear the task"):
        check_new_attempt(job, try_number=2, max_tries=2, retries=2)
    check_new_attempt(job, try_number=4, max_tries=5, retries=2)  # first try after a clear
    # A transient job failure may be retried automatically.
    check_new_attempt(failed("InternalServerError: oops"), try_number=3, max_tries=2, retries=2)


def test_by_error_class_fails_at_once_or_lets_airflow_retry() -> None:
    expected = r"build_requests: TargetError: bad row \(not retried\)"
    with pytest.raises(NotRetriedError, match=expected) as info, by_error_class("build_requests"):
        raise TargetError("bad row")
    assert isinstance(info.value, AirflowFailException) and isinstance(info.value.__cause__, TargetError)
    with pytest.raises(ClientError), by_error_class("train"):
        raise client_error("ThrottlingException", 400)
    with pytest.raises(ParamError), by_error_class("select_targets"):
        raise ParamError("already a no-retry error: unchanged")
    with by_error_class("nothing"):
        pass
