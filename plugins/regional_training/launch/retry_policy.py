"""Retries by error class, after SageMaker Pipelines' typed retry policies.

Every task retries twice with backoff (the DAG's ``default_args``), which helps only
when the cause is transient. :func:`classify` maps an exception, a
``DescribeTrainingJob`` answer or an error code / ``FailureReason`` text to a decision:

====================  ==============================================================  ================================
decision              error class                                                     what happens
====================  ==============================================================  ================================
``fail``              validation, settings and Param errors (``ValueError``:          ``AirflowFailException`` at
                      ``TargetError``, ``SettingsError``, a request botocore's model  once: no retry, no backoff
                      refuses; ``ParamValidationError``, pydantic
                      ``ValidationError``, any ``AirflowFailException``); a
                      ``ClientError`` of the request (4xx: ``ValidationException``,
                      ``AccessDeniedException``, ...)
``failed_job``        a training job that ended ``Failed`` with ``AlgorithmError``    not re-created by an automatic
                      or ``ClientError`` in its ``FailureReason``, or ended           retry: the task fails naming the
                      ``Stopped`` (``SecondaryStatus`` ``MaxRuntimeExceeded``, or     reason; a human clear still
                      ``Stopped``: ``StopTrainingJob``, a person)                     makes one new attempt
``failover``          capacity or quota (``ResourceLimitExceeded``,                   the operator moves the target to
                      ``CapacityError``, ``InsufficientCapacityError``, ...) at       its next-ranked candidate
                      creation or in a job's ``FailureReason``; a managed spot job    (:mod:`.operators`); none left:
                      ``Stopped`` with ``SecondaryStatus`` ``MaxWaitTimeExceeded``    ``CapacityExhaustedError``, no
                                                                                      retry (below)
``retry``             throttling (``ThrottlingException``, ``SlowDown``, ...), HTTP   Airflow's retry with exponential
                      5xx, ``InternalServerError``/``InternalFailure``, connection    backoff
                      errors, an unavailable campaign database; a job that failed
                      with ``InternalServerError``; no capacity in any candidate
                      when one was refused at creation (``NoCapacityError``: the
                      retry creates there again)
``retry`` (default)   anything else (unknown: keep Airflow's behaviour)               Airflow's retry with exponential
                                                                                      backoff
====================  ==============================================================  ================================

Every reason is SageMaker's own words (:func:`regional_training.launch.attempts.ended_reason`):
``FailureReason`` for a ``Failed`` job; for a ``Stopped`` one (which has no
``FailureReason``) its ``SecondaryStatus`` and the last status message, e.g.
``MaxWaitTimeExceeded: Training job exceeded MaxWaitTimeInSeconds provided``.

No candidate left after capacity failures: when every candidate's newest job *ended* for
capacity (a spot job's ``MaxWaitTimeExceeded``, a ``CapacityError``), a retry would
describe the same ended jobs and create none, so the operator raises
``CapacityExhaustedError`` (an ``AirflowFailException``: no retry, the task fails at once
naming each region and SageMaker's reason). Only when a candidate was refused at
creation (``ResourceLimitExceeded``: no job was made, nothing to read back) is the task
retried (``NoCapacityError``), since the retry asks that region again.

A human clear vs an automatic retry: Airflow 3 increments ``try_number`` for both, but
a clear also sets ``max_tries = try_number + retries`` (``clear_task_instances``), so
the first try after a clear, like the run's first try, is
``max_tries - retries + 1``, which is how Airflow itself finds "the first try of this
clear" (``RuntimeTaskInstance.get_first_reschedule_date``). A later try is an automatic
retry: :func:`is_automatic_retry`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from regional_training.launch.attempts import CAPACITY_ERROR_CODES, capacity_signal, ended_reason, is_capacity_error


class Decision(StrEnum):
    FAIL = "fail"
    FAILED_JOB = "failed_job"
    FAILOVER = "failover"
    RETRY = "retry"


THROTTLING_CODES = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded", "SlowDown",
     "ProvisionedThroughputExceededException", "RequestThrottled", "RequestThrottledException"}
)
SERVER_ERROR_CODES = frozenset(
    {"InternalServerError", "InternalFailure", "InternalError", "ServiceUnavailable", "ServiceUnavailableException",
     "InternalServerException"}
)
#: Exception class names (any module) that mean "transient": a retry may succeed.
TRANSIENT_CLASS_NAMES = frozenset(
    {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
     "CampaignDbUnavailableError", "OperationalError", "ConnectionError", "TimeoutError"}
)
#: Exception class names that mean "the input is wrong": no retry can fix it.
VALIDATION_CLASS_NAMES = frozenset({"ParamValidationError", "ValidationError", "TargetError", "SettingsError"})


@dataclass(frozen=True)
class Classification:
    decision: Decision
    #: The error class as named in the table (an error code, a FailureReason prefix, a type name).
    error_class: str
    reason: str

    @property
    def retryable(self) -> bool:
        return self.decision in (Decision.RETRY, Decision.FAILOVER)


def _is_capacity(code: str, text: str) -> bool:
    return code in CAPACITY_ERROR_CODES or is_capacity_error(text)


class NotRetriedError(AirflowFailException):
    """An error no automatic retry can fix (validation, a deterministic job failure)."""


def _from_code(code: str, message: str, http_status: int | None) -> Classification:
    if _is_capacity(code, message):
        return Classification(Decision.FAILOVER, code, message)
    if code in THROTTLING_CODES or http_status == 429:
        return Classification(Decision.RETRY, code, message)
    if code in SERVER_ERROR_CODES or (http_status is not None and http_status >= 500):
        return Classification(Decision.RETRY, code, message)
    if code or (http_status is not None and 400 <= http_status < 500):
        # A named 4xx error of the request: the same request fails the same way.
        return Classification(Decision.FAIL, code or f"HTTP {http_status}", message)
    return Classification(Decision.RETRY, "unknown", message)


def _from_description(description: Mapping[str, Any]) -> Classification:
    status = str(description.get("TrainingJobStatus"))
    if status not in ("Failed", "Stopped"):
        raise ValueError(f"a training job that is {status} has no error to classify")
    # SageMaker's own words (FailureReason; for Stopped, SecondaryStatus and its message).
    reason = ended_reason(description)
    signal = capacity_signal(dict(description))
    if signal is not None:
        # CapacityError, a spot job's MaxWaitTimeExceeded: no capacity there, not a
        # broken job; the operator moves the target on (or fails it, none left).
        return Classification(Decision.FAILOVER, signal[0], reason)
    if status == "Stopped":
        # MaxRuntimeExceeded, a person's StopTrainingJob: the same request would end
        # the same way (or be stopped again).
        return Classification(Decision.FAILED_JOB, str(description.get("SecondaryStatus") or "Stopped"), reason)
    prefix = reason.split(":", 1)[0].strip()
    if prefix in SERVER_ERROR_CODES:
        return Classification(Decision.RETRY, prefix, reason)
    # AlgorithmError (the entry point failed), ClientError (the request or its data).
    return Classification(Decision.FAILED_JOB, prefix, reason)


def _from_exception(exc: BaseException) -> Classification:
    from botocore.exceptions import ClientError

    message = str(exc)
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return _from_code(str(error.get("Code") or ""), str(error.get("Message") or message), status)
    names = {cls.__name__ for cls in type(exc).__mro__}
    if isinstance(exc, AirflowFailException) or names & VALIDATION_CLASS_NAMES:
        return Classification(Decision.FAIL, type(exc).__name__, message)
    if names & TRANSIENT_CLASS_NAMES:
        return Classification(Decision.RETRY, type(exc).__name__, message)
    if type(exc).__name__ == "NoCapacityError":
        # Every candidate tried, one of them refused at creation: a retry creates there
        # again, and capacity may have returned. (When every candidate's job ended for
        # capacity the operator raises CapacityExhaustedError, an AirflowFailException.)
        return Classification(Decision.RETRY, "NoCapacityError", message)
    if isinstance(exc, ValueError):
        return Classification(Decision.FAIL, type(exc).__name__, message)
    return Classification(Decision.RETRY, type(exc).__name__, message)


def classify(error: BaseException | Mapping[str, Any] | str) -> Classification:
    """The decision for an exception, a ``DescribeTrainingJob`` answer (``Failed`` or
    ``Stopped``), or an error code / ``FailureReason`` text."""
    if isinstance(error, BaseException):
        return _from_exception(error)
    if isinstance(error, Mapping):
        return _from_description(error)
    code = error.split(":", 1)[0].strip()
    if _is_capacity(code, error) or code == "MaxWaitTimeExceeded":
        return Classification(Decision.FAILOVER, code, error)
    if code in ("AlgorithmError", "ClientError", "MaxRuntimeExceeded"):
        return Classification(Decision.FAILED_JOB, code, error)
    return _from_code(code, error, None)


def is_automatic_retry(try_number: int, max_tries: int, retries: int) -> bool:
    """Whether this try is Airflow's automatic retry, not a run's or a clear's first try.

    Pass ``ti.try_number``, ``ti.max_tries`` and the task's ``retries``.
    """
    return try_number > max_tries - retries + 1


def refusal(description: Mapping[str, Any]) -> str | None:
    """Why an automatic retry (Airflow's, or AWS Batch's of an array child) makes no new
    attempt after the job ``description`` (``Failed``/``Stopped``): it failed
    deterministically (``failed_job``), so the same request would end the same way. The
    job and SageMaker's reason; ``None`` when a new attempt may be made. The one rule for
    both launch loops (:func:`regional_training.launch.driver.next_step`)."""
    verdict = classify(description)
    if verdict.decision is not Decision.FAILED_JOB:
        return None
    return (f"training job {description.get('TrainingJobName')} ended {description.get('TrainingJobStatus')}: "
            f"{verdict.reason}")


#: What the operator adds to a :func:`refusal` (the Batch child says what a person does there).
AIRFLOW_REFUSAL_ADVICE = ("an automatic retry would end the same way, so no new job is created (clear the task to "
                          "make one new attempt)")


def check_new_attempt(description: Mapping[str, Any], *, try_number: int, max_tries: int, retries: int) -> None:
    """Before creating a new attempt after a job that ended ``Failed``/``Stopped``.

    :raises NotRetriedError: on an automatic retry after a deterministic failure
        (``failed_job``), naming the job and its reason. A clear's first try passes.
    """
    words = refusal(description) if is_automatic_retry(try_number, max_tries, retries) else None
    if words:
        raise NotRetriedError(f"{words}; {AIRFLOW_REFUSAL_ADVICE}")


@contextmanager
def by_error_class(what: str) -> Iterator[None]:
    """Run a task's work; turn errors no retry can fix into ``NotRetriedError`` (no retry).

    Transient errors propagate unchanged (Airflow retries them with backoff).
    """
    try:
        yield
    except AirflowFailException:
        raise
    except Exception as exc:
        verdict = classify(exc)
        if verdict.decision in (Decision.FAIL, Decision.FAILED_JOB):
            raise NotRetriedError(f"{what}: {verdict.error_class}: {verdict.reason} (not retried)") from exc
        raise
