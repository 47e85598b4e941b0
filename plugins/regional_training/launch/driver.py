"""The one create -> wait -> fail over -> new attempt decision (issue 28).

:func:`next_step` turns :func:`regional_training.launch.attempts.resolve`'s answer (which
candidate and attempt is the target's job), the backend's descriptions, the regions that
refused a creation in this try and whether this is an automatic retry into what to do
now: ``done``, ``wait`` on (candidate, name), ``create`` then wait, ``exhausted``, or
``refuse`` a new attempt. The deferrable training operator and the blocking AWS Batch
array child both call it (and :func:`create`, :func:`stop`) and differ only in how they
wait: the operator defers on the backend's trigger, the child polls
(:func:`regional_training.launch.batch_launcher.Launcher.run`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from regional_training.launch.attempts import Attempt, Candidate, Resolution, is_capacity_error, resolve

if TYPE_CHECKING:
    from regional_training.launch.backends import Backend

StepKind = Literal["done", "wait", "create", "exhausted", "refuse"]
#: region -> (error code, message) of the creations refused for capacity in this try.
Refused = dict[str, tuple[str, str]]
#: Where a step's warnings go: a stdlib logger (the Batch child) or the task's (``self.log``).
Log = Any


@dataclass(frozen=True)
class Step:
    """What to do now, and the resolution it came from (moves, newest jobs)."""

    kind: StepKind
    resolution: Resolution
    #: The candidate acted on (``None`` when ``exhausted``).
    candidate: Candidate | None = None
    #: ``refuse``: why no new attempt is made (the previous job and its reason).
    refusal: str | None = None

    @property
    def attempt(self) -> Attempt:
        assert self.resolution.attempt is not None, f"a {self.kind} step has no attempt"
        return self.resolution.attempt

    @property
    def real_name(self) -> str:
        """The name of the job that really trains (under ``batch_service``, Batch's)."""
        return str((self.attempt.description or {}).get("TrainingJobName") or self.attempt.name)


def describer(backend: Backend) -> Any:
    """``describe(region, name)`` for :func:`regional_training.launch.attempts.resolve`: the
    backend's state's description, or ``None`` (no such job)."""

    def describe(region: str, name: str) -> dict[str, Any] | None:
        state = backend.describe(region, name)
        return None if state is None else state.description

    return describe


def next_step(candidates: Sequence[Candidate], backend: Backend, *, refused: Mapping[str, tuple[str, str]],
              automatic_retry: Callable[[], bool], resolution: Resolution | None = None) -> Step:
    """The next step for a target whose ranked ``candidates`` are run by ``backend``.

    ``resolution``: one the caller has just made with the same arguments (a resumed
    try's), so nothing is described twice. ``automatic_retry()``: whether this is Airflow's
    retry or a Batch attempt after the first (asked only before a new attempt); then a new
    attempt after a deterministic failure (``retry_policy``: ``failed_job``) is refused,
    since it would end the same way.
    """
    resolution = resolution or resolve(candidates, describer(backend), refused=refused)
    if resolution.action == "exhausted" or resolution.index is None or resolution.attempt is None:
        return Step("exhausted", resolution)
    candidate = candidates[resolution.index]
    if resolution.action in ("done", "wait"):
        return Step(resolution.action, resolution, candidate)
    previous = resolution.newest[resolution.index] if resolution.newest else None
    if previous is not None and previous.description and automatic_retry():
        from regional_training.launch.retry_policy import refusal

        words = refusal(previous.description)
        if words:
            return Step("refuse", resolution, candidate, words)
    return Step("create", resolution, candidate)


def create(backend: Backend, candidate: Candidate, name: str, log: Log) -> tuple[str, str] | None:
    """Create attempt ``name``. ``None``: the job exists now, made by this call or found
    (``ResourceInUse``: the name is this attempt's own, so it is our create whose response
    was lost, met again by botocore's retry, or a concurrent try's: follow it, never a
    second job). ``(code, message)``: the region refused it for capacity or quota (no job:
    the target moves on). Any other error is raised."""
    from botocore.exceptions import ClientError

    try:
        backend.create(candidate, name)
    except ClientError as err:
        error = err.response.get("Error", {})
        code, message = str(error.get("Code")), str(error.get("Message"))
        if code == "ResourceInUse":
            log.warning("Training job %s in %s already exists (%s): following it.", name, candidate.region, message)
            return None
        if not is_capacity_error(code) and not is_capacity_error(message):
            raise
        log.warning("No capacity for %s in %s (%s: %s).", name, candidate.region, code, message)
        return code, message
    return None


def stop(backend: Backend, region: str, name: str, log: Log) -> None:
    """Stop the job on a user's kill (the caller has decided it was one); an error (the
    job already ended, or was never created) is logged, not raised: the kill goes on."""
    try:
        backend.stop(region, name)
    except Exception as err:
        log.warning("StopTrainingJob %s: %s", name, err)
