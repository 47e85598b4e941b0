"""Issue 33 (3): a job's end in SageMaker's own words, and what each end means for retries.

A ``Stopped`` job has no ``FailureReason``: its ``SecondaryStatus`` (``MaxWaitTimeExceeded``,
``MaxRuntimeExceeded``, ``Stopped``) and status message say why, and that is what is
recorded, raised and reported. A spot job whose wait ran out is a capacity signal (the
target fails over); with no candidate left the task fails without Airflow's retries, which
would only find the same ended jobs. The descriptions below are shaped like the emulator's
(tests/emulator/test_lifecycles.py checks those against the emulator itself).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException
from sagemaker_fake import ALTERNATIVE, REQUEST, FakeSageMaker

from regional_training.launch.attempts import Candidate, capacity_signal, ended_reason, resolve
from regional_training.launch.job import Job
from regional_training.launch.retry_policy import Decision, NotRetriedError, check_new_attempt, classify
from regional_training.operators import CapacityExhaustedError, DurableSageMakerTrainingOperator, NoCapacityError
from regional_training.record.collection import collect
from regional_training.run.run_layout import RunLayout


def _transitions(*steps: tuple[str, str]) -> list[dict[str, Any]]:
    return [{"Status": status, "StatusMessage": message} for status, message in steps]


#: A managed spot job that never got capacity (Managed Spot Training Lifecycle:
#: InProgress/Starting -> Stopping/Stopping -> Stopped/MaxWaitTimeExceeded), no FailureReason.
SPOT_WAIT_RAN_OUT = {
    "TrainingJobName": "mrt-a", "TrainingJobStatus": "Stopped", "SecondaryStatus": "MaxWaitTimeExceeded",
    "SecondaryStatusTransitions": _transitions(
        ("Starting", "Insufficient capacity error from EC2 while launching instances, retrying!"),
        ("Stopping", "Stopping the training job"),
        ("MaxWaitTimeExceeded", "Training job exceeded MaxWaitTimeInSeconds provided")),
}
RUNTIME_RAN_OUT = {
    "TrainingJobName": "mrt-a", "TrainingJobStatus": "Stopped", "SecondaryStatus": "MaxRuntimeExceeded",
    "SecondaryStatusTransitions": _transitions(
        ("Starting", "Launching requested ML instances"),
        ("Training", "Training image download completed. Training in progress."),
        ("Stopping", "Stopping the training job"),
        ("MaxRuntimeExceeded", "Training job exceeded MaxRuntimeInSeconds provided")),
}
STOPPED_BY_A_PERSON = {
    "TrainingJobName": "mrt-a", "TrainingJobStatus": "Stopped", "SecondaryStatus": "Stopped",
    "SecondaryStatusTransitions": _transitions(
        ("Training", "Training image download completed. Training in progress."),
        ("Stopping", "Stopping the training job"), ("Stopped", "Training job stopped")),
}


def test_a_spot_job_whose_wait_ran_out_is_named_by_sagemakers_words() -> None:
    words = ended_reason(SPOT_WAIT_RAN_OUT)
    assert words.startswith("MaxWaitTimeExceeded: Training job exceeded MaxWaitTimeInSeconds provided")
    # Why the wait ran out is only in an earlier transition: kept.
    assert "earlier: Insufficient capacity error from EC2 while launching instances, retrying!" in words
    assert "job ended Stopped" not in words


def test_max_runtime_and_a_persons_stop_are_named_by_sagemakers_words() -> None:
    assert ended_reason(RUNTIME_RAN_OUT).startswith(
        "MaxRuntimeExceeded: Training job exceeded MaxRuntimeInSeconds provided (The job stopped because it "
        "exceeded the maximum allowed runtime)")
    assert ended_reason(STOPPED_BY_A_PERSON) == (
        "Stopped: Training job stopped (The training job has stopped (StopTrainingJob: a person, or a user's kill "
        "of the task))")


def test_a_failed_job_keeps_its_failure_reason_and_a_bare_stop_still_says_what_it_is() -> None:
    assert ended_reason({"TrainingJobStatus": "Failed", "FailureReason": "AlgorithmError: exit 2"}) == (
        "AlgorithmError: exit 2")
    # No transitions, no secondary status: the status itself, never "job ended Stopped".
    assert ended_reason({"TrainingJobStatus": "Stopped"}).startswith("Stopped (The training job has stopped")
    # A FailureReason on a Stopped job (not documented, but kept if SageMaker sends one).
    with_reason = {**SPOT_WAIT_RAN_OUT, "FailureReason": "no spot capacity"}
    assert ended_reason(with_reason).endswith("; FailureReason: no spot capacity")


def test_max_wait_time_exceeded_is_capacity_and_fails_over() -> None:
    verdict = classify(SPOT_WAIT_RAN_OUT)
    assert (verdict.decision, verdict.error_class) == (Decision.FAILOVER, "MaxWaitTimeExceeded")
    assert verdict.reason.startswith("MaxWaitTimeExceeded: ")
    assert capacity_signal(SPOT_WAIT_RAN_OUT) == ("MaxWaitTimeExceeded", ended_reason(SPOT_WAIT_RAN_OUT))
    assert classify("MaxWaitTimeExceeded: Training job exceeded MaxWaitTimeInSeconds provided").decision is (
        Decision.FAILOVER)


@pytest.mark.parametrize(("description", "error_class"), [(RUNTIME_RAN_OUT, "MaxRuntimeExceeded"),
                                                          (STOPPED_BY_A_PERSON, "Stopped")])
def test_max_runtime_and_a_persons_stop_fail_without_automatic_retry(description: dict[str, Any],
                                                                     error_class: str) -> None:
    verdict = classify(description)
    assert (verdict.decision, verdict.error_class) == (Decision.FAILED_JOB, error_class)
    assert verdict.reason == ended_reason(description)
    # Airflow's automatic retry creates no new job, and says SageMaker's words why.
    with pytest.raises(NotRetriedError, match=rf"mrt-a ended Stopped: {error_class}: Training job"):
        check_new_attempt(description, try_number=2, max_tries=2, retries=2)
    check_new_attempt(description, try_number=4, max_tries=5, retries=2)  # a clear's first try: one new attempt


def test_a_status_message_alone_does_not_override_a_job_that_trained() -> None:
    """SageMaker waited for capacity, then got it and the job trained: a later stop or
    failure is the job's own, not a capacity signal (status messages are "subject to change")."""
    waited_then_trained = {**RUNTIME_RAN_OUT, "SecondaryStatusTransitions": [
        {"Status": "Starting", "StatusMessage": "Insufficient capacity error from EC2 while launching instances, "
                                                 "retrying!"}, *RUNTIME_RAN_OUT["SecondaryStatusTransitions"][1:]]}
    assert capacity_signal(waited_then_trained) is None
    assert classify(waited_then_trained).decision is Decision.FAILED_JOB


PRIMARY = Candidate({"TrainingJobName": "mrt-a"}, "us-west-2")
SECOND = Candidate({"TrainingJobName": "mrt-b"}, "us-east-1")


def test_exhausted_by_ended_jobs_is_final_but_by_a_refused_creation_is_not() -> None:
    ended = {("us-west-2", "mrt-a"): SPOT_WAIT_RAN_OUT,
             ("us-east-1", "mrt-b"): {**SPOT_WAIT_RAN_OUT, "TrainingJobName": "mrt-b"}}
    res = resolve([PRIMARY, SECOND], lambda region, name: ended.get((region, name)))
    assert res.action == "exhausted" and not res.retry_may_create
    assert [(m.error_code, m.error_message[:20]) for m in res.moves] == [("MaxWaitTimeExceeded",
                                                                         "MaxWaitTimeExceeded:")] * 2
    # The second region refused the creation (no job): a retry asks it again.
    res = resolve([PRIMARY, SECOND], lambda region, name: ended.get((region, name)) if name == "mrt-a" else None,
                  refused={"us-east-1": ("ResourceLimitExceeded", "quota 0")})
    assert res.action == "exhausted" and res.retry_may_create and res.refused_moves == ("us-east-1",)


# --- The operator (hook patched, as tests/unit/test_operators.py): describe answers, creates counted.

def _operator(max_failovers: int) -> DurableSageMakerTrainingOperator:
    return DurableSageMakerTrainingOperator(
        task_id="train", config=copy.deepcopy(REQUEST), region_name="us-west-2", check_interval=5,
        failover=[{"request": copy.deepcopy(ALTERNATIVE), "region": "us-east-1"}], max_failovers=max_failovers)


def test_no_candidate_left_after_the_wait_ran_out_fails_without_retries(sagemaker: FakeSageMaker) -> None:
    sagemaker.jobs[("us-west-2", "mrt-a")] = SPOT_WAIT_RAN_OUT
    event = {"status": "stopped", "job_name": "mrt-a", "message": "Waiter encountered a terminal failure state"}
    with pytest.raises(CapacityExhaustedError) as raised:
        _operator(max_failovers=0).execute_complete({}, event)
    # AirflowFailException: Airflow fails the task at once (no up_for_retry), naming SageMaker's reason.
    assert isinstance(raised.value, AirflowFailException) and isinstance(raised.value, NoCapacityError)
    assert classify(raised.value).decision is Decision.FAIL
    assert "us-west-2 (reserved): MaxWaitTimeExceeded: Training job exceeded MaxWaitTimeInSeconds" in str(raised.value)
    assert "not retried" in str(raised.value)
    assert sagemaker.created == []
    # The try Airflow would have retried (were it retried) also creates nothing: the same ended job.
    with pytest.raises(CapacityExhaustedError):
        _operator(max_failovers=0).execute({})
    assert sagemaker.created == []


def test_a_stopped_job_fails_the_try_in_sagemakers_words(sagemaker: FakeSageMaker) -> None:
    sagemaker.jobs[("us-west-2", "mrt-a")] = RUNTIME_RAN_OUT
    event = {"status": "stopped", "job_name": "mrt-a", "message": "Waiter encountered a terminal failure state"}
    with pytest.raises(NotRetriedError, match=r"training job mrt-a ended Stopped: MaxRuntimeExceeded: Training job "
                                              r"exceeded MaxRuntimeInSeconds provided .*not retried"):
        _operator(max_failovers=1).execute_complete({}, event)
    assert sagemaker.created == []


def test_collection_records_sagemakers_words_not_job_ended_stopped() -> None:
    target = {"region_code": "us-west-2", "s3_uri": "s3://b/d/", "campaign_key": "c", "dataset_key": "drive-1",
              "dataset_id": 1, "copy_id": 1, "output_bucket": "b", "purchase_option": "spot"}
    job = {"target": target, "hyperparameters_sha256": "0" * 64, "max_failovers": 0,
           "request": {"TrainingJobName": "mrt-a", "ResourceConfig": {"InstanceType": "ml.g5.xlarge",
                                                                      "InstanceCount": 1}}}
    rows: list[dict[str, Any]] = []
    row = collect(job=Job.from_xcom(job), dag_id="d", run_id="r", layout=RunLayout("central", "d", "r"),
                  describe=lambda region, name: SPOT_WAIT_RAN_OUT if name == "mrt-a" else None,
                  copy=lambda *_: None, upsert=rows.append)
    assert (row["status"], row["attempt"]) == ("Stopped", 1)
    assert row["failure_reason"].startswith("MaxWaitTimeExceeded: Training job exceeded MaxWaitTimeInSeconds")
    assert rows[0]["failure_reason"] == row["failure_reason"]
