"""Attempts of one (DAG run, target): which SageMaker job is *the* job right now.

Attempt 1 runs under the deterministic name, attempt N > 1 under ``<name>-a<N>``. A new
attempt starts only after the previous one ended ``Failed`` or ``Stopped``; a job that
is running or completed is followed, never duplicated. So at most one job per
(DAG run, target) is ever live, whatever retries or clears happen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LIVE_STATES = frozenset({"InProgress", "Stopping"})
RETRYABLE_END_STATES = frozenset({"Failed", "Stopped"})
#: Fits the 4 characters :mod:`training_request` reserves ("-a99").
MAX_ATTEMPTS = 99


def attempt_name(base_name: str, attempt: int) -> str:
    return base_name if attempt == 1 else f"{base_name}-a{attempt}"


@dataclass(frozen=True)
class Attempt:
    number: int
    name: str
    #: ``None``: no job has this name yet.
    description: dict[str, Any] | None

    @property
    def status(self) -> str | None:
        return None if self.description is None else str(self.description["TrainingJobStatus"])


def latest_attempt(base_name: str, describe: Callable[[str], dict[str, Any] | None]) -> Attempt | None:
    """The newest existing attempt, or ``None`` if no job was ever created."""
    latest: Attempt | None = None
    for number in range(1, MAX_ATTEMPTS + 1):
        name = attempt_name(base_name, number)
        description = describe(name)
        if description is None:
            return latest
        latest = Attempt(number, name, description)
    return latest


def next_action(base_name: str, describe: Callable[[str], dict[str, Any] | None]) -> tuple[str, Attempt]:
    """What a (re)started training task must do: ``create``, ``wait`` or ``done``.

    ``create`` comes with the attempt to create (its description is ``None``).
    """
    latest = latest_attempt(base_name, describe)
    if latest is None:
        return "create", Attempt(1, attempt_name(base_name, 1), None)
    if latest.status in LIVE_STATES:
        return "wait", latest
    if latest.status == "Completed":
        return "done", latest
    if latest.status in RETRYABLE_END_STATES:
        if latest.number >= MAX_ATTEMPTS:
            raise RuntimeError(f"{base_name}: {MAX_ATTEMPTS} attempts failed; not starting another")
        number = latest.number + 1
        return "create", Attempt(number, attempt_name(base_name, number), None)
    raise RuntimeError(f"{latest.name}: unexpected training job status {latest.status!r}")
