"""What a launch backend must do (docs/backends.md), and which ``launcher`` picks which.

A backend answers, for one attempt's deterministic name in one candidate's region:
:meth:`Backend.describe` (a :class:`~regional_training.launch.job.JobState`, or ``None``
when no such job exists), :meth:`Backend.create`, :meth:`Backend.stop` and
:meth:`Backend.wait` (the trigger a deferred task waits on). What to do with the answers
is :mod:`regional_training.launch.driver`'s, the same for every backend.

A new backend is one module here (a class with these methods), one line in
:data:`REGISTRY`, one value of the ``launcher`` Param's enum (``params.LAUNCHERS``, which
a unit test holds equal to the registry) and one emulator module in ``dev/local_aws/``.

This module is light (the standard library only): backends import their clients and
triggers when called.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from regional_training.launch.attempts import Candidate
    from regional_training.launch.job import JobState

#: Extra time beyond the stopping condition: start-up, download, upload.
WAIT_MARGIN_SECONDS = 3600

#: ``launcher`` Param value -> ``module:class`` of its backend (imported when picked).
REGISTRY = {
    "airflow": "regional_training.launch.sagemaker:SageMakerBackend",
    "batch_array": "regional_training.launch.batch_array:BatchArrayBackend",
    "batch_service": "regional_training.launch.batch_service:BatchServiceBackend",
}


def wait_limit_seconds(request: dict[str, Any]) -> int:
    """How long a job of this request may legitimately take, end to end."""
    stopping = request.get("StoppingCondition", {})
    runtime = int(stopping.get("MaxRuntimeInSeconds", 86400))
    # With managed spot, MaxWaitTimeInSeconds already includes the runtime.
    total = max(runtime, int(stopping.get("MaxWaitTimeInSeconds", 0)))
    return total + WAIT_MARGIN_SECONDS


def request_digest(request: dict[str, Any]) -> str:
    """A short digest of a request: logged instead of the whole request."""
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Wait:
    """What a deferred task waits on: a trigger, the method it resumes in, and how long."""

    trigger: Any
    method_name: str = "execute_complete"
    timeout_seconds: int | None = None


@dataclass
class Connection:
    """How a backend reaches AWS from where it runs.

    ``hook(region)``: the provider's ``SageMakerHook`` in a region, or anything with its
    ``describe_training_job(name)``, ``create_training_job(config, ...)`` and ``conn``
    (:class:`ClientHook` wraps a bare botocore client: the Batch child's).
    """

    hook: Callable[[str], Any]
    aws_conn_id: str | None = "aws_default"
    botocore_config: dict[str, Any] | None = None
    verify: Any = None
    poll_seconds: float = 30.0
    #: The run's Params (``batch_service`` reads its queue settings from them).
    params: dict[str, Any] = field(default_factory=dict)
    #: The task instance of the try (``batch_array`` finds its child through it).
    ti: Any = None
    #: The target the task trains.
    target_key: str | None = None


class ClientHook:
    """A botocore SageMaker client with the hook's face (what :class:`Connection` needs)."""

    def __init__(self, client: Any) -> None:
        self.conn = client

    def describe_training_job(self, name: str) -> dict[str, Any]:
        return self.conn.describe_training_job(TrainingJobName=name)  # type: ignore[no-any-return]

    def create_training_job(self, config: dict[str, Any], **_: Any) -> dict[str, Any]:
        return self.conn.create_training_job(**config)  # type: ignore[no-any-return]


class Backend(Protocol):
    """One way of running a target's job (docs/backends.md, "What a backend must do")."""

    connection: Connection

    def describe(self, region: str, name: str) -> JobState | None:
        """Attempt ``name`` in ``region``, normalised; ``None``: no such job (create it)."""

    def creator(self, candidate: Candidate, name: str) -> Wait | None:
        """``None`` when this task creates attempt ``name``; else what it waits on while
        someone else does (``batch_array``: the array child)."""

    def create(self, candidate: Candidate, name: str) -> None:
        """Create attempt ``name`` (idempotent by its name); a refusal raises botocore's
        ``ClientError`` (:func:`regional_training.launch.driver.create` reads it)."""

    def wait(self, candidate: Candidate, name: str) -> Wait:
        """The trigger that waits for live attempt ``name`` in its own region."""

    def stop(self, region: str, name: str) -> None:
        """Stop the job (its real name) on a user's kill."""


def backend_for(launcher: str, connection: Connection) -> Backend:
    """The backend of a ``launcher`` Param value."""
    if launcher not in REGISTRY:
        raise ValueError(f"Param 'launcher': {launcher!r} is none of {sorted(REGISTRY)}")
    module, _, name = REGISTRY[launcher].partition(":")
    return getattr(importlib.import_module(module), name)(connection)  # type: ignore[no-any-return]
