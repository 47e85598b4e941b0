"""Which SageMaker job is a target's job right now, and what to do about it.

One target has ranked *candidates* (a request in a region: the planned placement, then
its failover alternatives). Each candidate's jobs are *attempts*: attempt 1 runs under
the candidate's deterministic name, attempt N > 1 under ``<name>-a<N>``. A new attempt
starts only after the previous one ended ``Failed`` or ``Stopped``; a job that is
running or completed is followed, never duplicated. A candidate whose newest job ended
for lack of capacity (or whose creation was refused for it) blocks its region and the
target moves to the next candidate outside the blocked regions. So at most one job per
(DAG run, target) is ever live, whatever retries, clears or failovers happen.

:func:`resolve` is the one place that answers "which job, and what now?": the training
operator (``execute`` and ``execute_complete``) and collection both call it with a
``describe(region, name)`` callable, so it is pure and unit-tested with describe
sequences.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

LIVE_STATES = frozenset({"InProgress", "Stopping"})
RETRYABLE_END_STATES = frozenset({"Failed", "Stopped"})
#: Fits the 4 characters :mod:`training_request` reserves ("-a99").
MAX_ATTEMPTS = 99
#: Errors that mean "no capacity here", not "the job is broken": move to another region.
CAPACITY_ERROR_CODES = frozenset(
    {"ResourceLimitExceeded", "CapacityError", "InsufficientCapacityError", "InsufficientInstanceCapacity"}
)

#: ``describe(region, job_name)``: the job's description, or ``None`` if no such job.
Describe = Callable[[str, str], "dict[str, Any] | None"]
Action = Literal["create", "wait", "done", "exhausted"]


def attempt_name(base_name: str, attempt: int) -> str:
    return base_name if attempt == 1 else f"{base_name}-a{attempt}"


def is_capacity_error(text: str | None) -> bool:
    """Whether an error code or ``FailureReason`` says the region lacks capacity or quota."""
    if not text:
        return False
    lowered = text.lower()
    return any(code.lower() in lowered for code in CAPACITY_ERROR_CODES) or "insufficient capacity" in lowered


def capacity_signal(description: dict[str, Any] | None) -> tuple[str, str] | None:
    """``(code, message)`` if an ended job says its region had no capacity, else ``None``.

    SageMaker says so three ways: ``FailureReason`` naming a capacity error; a managed
    spot job ``Stopped`` with ``SecondaryStatus`` ``MaxWaitTimeExceeded`` (no spot
    capacity within the wait); a status transition whose message reports insufficient
    capacity before the job ever trained (a job that got its instances and then failed
    failed for a reason of its own; SageMaker's status messages are "subject to change",
    so one alone never overrides what the job did). The message is SageMaker's words for
    the job's end (:func:`ended_reason`): the move's ``error_message``.
    """
    if not description or description.get("TrainingJobStatus") not in RETRYABLE_END_STATES:
        return None
    if is_capacity_error(description.get("FailureReason")):
        return "CapacityError", ended_reason(description)
    if description.get("SecondaryStatus") == "MaxWaitTimeExceeded":
        return "MaxWaitTimeExceeded", ended_reason(description)
    transitions = description.get("SecondaryStatusTransitions") or []
    if any(t.get("Status") == "Training" for t in transitions):
        return None
    for transition in transitions:
        if "insufficient capacity" in (transition.get("StatusMessage") or "").lower():
            return "InsufficientCapacity", ended_reason(description)
    return None


#: What each ``SecondaryStatus`` of a ``Stopped`` job means, in SageMaker's own words
#: (botocore's sagemaker model, ``DescribeTrainingJobResponse.SecondaryStatus``): added to
#: the reason so that a person reading the report knows what to change.
STOPPED_SECONDARY = {
    "MaxWaitTimeExceeded": "The job stopped because it exceeded the maximum allowed wait time",
    "MaxRuntimeExceeded": "The job stopped because it exceeded the maximum allowed runtime",
    "Stopped": "The training job has stopped (StopTrainingJob: a person, or a user's kill of the task)",
}


def ended_reason(description: Mapping[str, Any]) -> str:
    """SageMaker's own words for why a job ended ``Failed`` or ``Stopped``: what is
    recorded (``training_runs.failure_reason``), reported and raised.

    ``Failed``: its ``FailureReason`` (whose prefix, ``AlgorithmError``/``ClientError``/
    ``CapacityError``, the retry policy reads). ``Stopped``: SageMaker sets no
    ``FailureReason`` ("if the training job failed, the reason it failed"), so the
    ``SecondaryStatus`` says why (``MaxWaitTimeExceeded``, ``MaxRuntimeExceeded``,
    ``Stopped``), then the last ``SecondaryStatusTransitions`` ``StatusMessage``, and a
    capacity message an earlier transition showed (a spot job that waited for capacity
    until its wait ran out says so only there); a ``FailureReason`` is kept if one came.
    """
    status = str(description.get("TrainingJobStatus") or "unknown")
    failure = str(description.get("FailureReason") or "")
    transitions = list(description.get("SecondaryStatusTransitions") or [])
    secondary = str(description.get("SecondaryStatus") or status)
    message = str(transitions[-1].get("StatusMessage") or "") if transitions else ""
    if status == "Failed" and failure:
        return failure
    words = f"{secondary}: {message}" if message else secondary
    meaning = STOPPED_SECONDARY.get(secondary) if status == "Stopped" else None
    if meaning and meaning.split(" (")[0].lower() not in words.lower():
        words += f" ({meaning})"
    capacity = next((str(t.get("StatusMessage")) for t in reversed(transitions[:-1])
                     if is_capacity_error(t.get("StatusMessage"))), None)
    if capacity:
        words += f"; earlier: {capacity}"
    if failure and failure not in words:
        words += f"; FailureReason: {failure}"
    return words


#: What a person can change when every candidate's job ended for capacity (no retry can).
CAPACITY_EXHAUSTED_ADVICE = ("every candidate's job ended for lack of capacity, and a retry would find the same ended "
                             "jobs (raise max_failovers or spot_extra_wait_hours, or add on_demand to "
                             "purchase_options")


def exhausted_message(job_name: str, moves: Sequence[Move], max_failovers: int) -> str:
    """No candidate left for ``job_name``: each region tried, in SageMaker's words (the
    moves' ``error_message``: :func:`ended_reason`), as the operator raises it and the
    Batch child logs it."""
    tried = ", ".join(f"{m.from_region}{f' ({m.from_option})' if m.from_option else ''}: {m.error_message}"
                      for m in moves) or "no candidate"
    return f"no capacity for {job_name}: tried {tried}; no further candidate within max_failovers={max_failovers}"


@dataclass(frozen=True)
class Candidate:
    """One place a target may train: a complete ``CreateTrainingJob`` request and its region."""

    request: dict[str, Any]
    region: str

    @property
    def base_name(self) -> str:
        return str(self.request["TrainingJobName"])

    @property
    def purchase_option(self) -> str | None:
        return next((t["Value"] for t in self.request.get("Tags", []) if t["Key"] == "purchase_option"), None)

    def to_dict(self) -> dict[str, Any]:
        return {"request": self.request, "region": self.region}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        return cls(request=data["request"], region=data["region"])


@dataclass(frozen=True)
class Attempt:
    number: int
    name: str
    #: ``None``: no job has this name yet.
    description: dict[str, Any] | None

    @property
    def status(self) -> str | None:
        return None if self.description is None else str(self.description["TrainingJobStatus"])


@dataclass(frozen=True)
class Move:
    """One failover move of a target (a ``placement_moves`` row, less the run's keys)."""

    move_number: int
    from_region: str
    from_option: str | None
    to_region: str | None
    to_option: str | None
    error_code: str
    error_message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Resolution:
    """What a target's task must do now.

    ``create``: create ``attempt`` (not yet a job) of ``candidates[index]``; ``wait``:
    follow the live ``attempt``; ``done``: ``attempt`` completed; ``exhausted``: every
    allowed candidate lacked capacity (``index``/``attempt`` are ``None``).
    """

    action: Action
    index: int | None
    attempt: Attempt | None
    #: The newest job the target has (candidate index, attempt): what collection records.
    latest: tuple[int, Attempt] | None
    moves: tuple[Move, ...] = field(default=())
    #: Each candidate's newest attempt (``None``: it has no job), in rank order up to
    #: the followed one (the candidates after it were not described).
    newest: tuple[Attempt | None, ...] = field(default=())
    #: The regions of ``moves`` that came from a creation refused for capacity (no job
    #: ended there): only these can change on an automatic retry, which tries to create
    #: again. A move after a job that ended for capacity (``MaxWaitTimeExceeded``, ...)
    #: is read from that job on every try, so it is final for this run.
    refused_moves: tuple[str, ...] = field(default=())

    @property
    def retry_may_create(self) -> bool:
        """Whether an automatic retry of an ``exhausted`` target could create a job."""
        return bool(self.refused_moves)

    def ended_for_capacity(self, job_name: str) -> bool:
        """Whether ``job_name`` is one of the target's jobs and ended for lack of capacity."""
        return any(a is not None and a.name == job_name and capacity_signal(a.description) for a in self.newest)


def latest_attempt(base_name: str, describe: Callable[[str], dict[str, Any] | None]) -> Attempt | None:
    """The newest existing attempt, or ``None`` if no job was ever created.

    A live or completed attempt is the newest: the next one starts only after it ended
    ``Failed`` or ``Stopped``, so its name is not asked for (each name that finds no
    job is an error answer, the dearest describe there is for botocore to parse).
    """
    latest: Attempt | None = None
    for number in range(1, MAX_ATTEMPTS + 1):
        name = attempt_name(base_name, number)
        description = describe(name)
        if description is None:
            return latest
        latest = Attempt(number, name, description)
        if _is_followed(latest):
            return latest
    return latest


def _is_followed(attempt: Attempt | None) -> bool:
    """A live or completed job: the target's job, followed and never duplicated."""
    return attempt is not None and (attempt.status in LIVE_STATES or attempt.status == "Completed")


def _next_attempt(base_name: str, latest: Attempt | None) -> Attempt:
    if latest is None:
        return Attempt(1, attempt_name(base_name, 1), None)
    if latest.status not in RETRYABLE_END_STATES:
        raise RuntimeError(f"{latest.name}: unexpected training job status {latest.status!r}")
    if latest.number >= MAX_ATTEMPTS:
        raise RuntimeError(f"{base_name}: {MAX_ATTEMPTS} attempts failed; not starting another")
    return Attempt(latest.number + 1, attempt_name(base_name, latest.number + 1), None)


def resolve(
    candidates: Sequence[Candidate],
    describe: Describe,
    *,
    refused: Mapping[str, tuple[str, str]] | None = None,
) -> Resolution:
    """Which candidate and attempt is the target's job, and what to do.

    ``candidates`` in rank order (already cut to ``max_failovers + 1``); ``refused``:
    region -> (error code, message) of creations refused for capacity (they leave no
    job to describe). A live or completed job on any candidate is followed; otherwise
    the candidates are walked in order, each one whose newest job ended for capacity
    (or whose region refused a creation) blocking its region, and the first remaining
    one gets its next attempt.
    """
    refused = dict(refused or {})
    # Described in rank order up to the first followed job: the first is the one
    # followed, so the candidates after it are not asked about (a resumed
    # task, or summarize's collection, asks one region for its completed job, not every region).
    newest: list[Attempt | None] = []
    followed: int | None = None
    for index, candidate in enumerate(candidates):
        newest.append(latest_attempt(candidate.base_name, functools.partial(describe, candidate.region)))
        if _is_followed(newest[-1]):
            followed = index
            break
    latest = next(((i, a) for i, a in reversed(list(enumerate(newest))) if a is not None), None)
    blocked: set[str] = set()
    moves: list[Move] = []
    from_refusals: list[str] = []
    for index, candidate in enumerate(candidates[: len(newest)]):
        attempt = newest[index]
        if index == followed and attempt is not None:
            action: Action = "wait" if attempt.status in LIVE_STATES else "done"
            return Resolution(action, index, attempt, (index, attempt), tuple(moves), tuple(newest))
        if candidate.region in blocked:
            continue
        signal = capacity_signal(attempt.description if attempt else None)
        if signal is None and candidate.region in refused:
            signal = refused[candidate.region]
            from_refusals.append(candidate.region)
        if signal is None:
            if followed is None:
                return Resolution("create", index, _next_attempt(candidate.base_name, attempt), latest, tuple(moves),
                                  tuple(newest))
            continue
        blocked.add(candidate.region)
        following = next((c for c in candidates[index + 1 :] if c.region not in blocked), None)
        moves.append(Move(
            move_number=len(moves) + 1,
            from_region=candidate.region,
            from_option=candidate.purchase_option,
            to_region=following.region if following else None,
            to_option=following.purchase_option if following else None,
            error_code=signal[0],
            error_message=signal[1][:1000],
        ))
    return Resolution("exhausted", None, None, latest, tuple(moves), tuple(newest), tuple(from_refusals))
