"""Failure lifecycles the emulator can play, per region or per job: off by default.

SageMaker jobs do not only complete or fail in the entry point. The DAG's operator has
to handle what AWS's capacity and managed-spot machinery does to a job, so the emulator
can be told (``dev.local_aws.server --lifecycles FILE``, JSON) to do the same:

    {"regions": {"us-west-2": {"spot_never_launched": true, "max_wait_seconds": 5}},
     "jobs": {"mrt-eu-west-1-*": {"spot_interruptions": 1, "interrupt_after_seconds": 20},
              "*": {"throttle": {"DescribeTrainingJob": 2}},
              "lost-*": {"lose_create_response": 1}},
     "api_throttle": {"s3:GetObject": {"burst": 2, "every": 5},
                      "logs:*": {"burst": 1, "every": 3, "after": 10}}}

``regions`` keys are region names; ``jobs`` keys are ``fnmatch`` patterns on the job
name. A job gets the defaults, overridden by its region's entry, overridden by every
matching job pattern (in file order); only the fields an entry sets override.
What each knob does is in :class:`Lifecycle` (docs/local-stack.md has the table).
``api_throttle`` throttles any API by ``service:Operation`` pattern (:class:`ApiThrottle`,
played by :mod:`dev.local_aws.wire`); docs/emulator.md cites the source of each behaviour.
"""

from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: The operations a throttling burst can hit.
ThrottledOperation = Literal["CreateTrainingJob", "DescribeTrainingJob"]


class Lifecycle(BaseModel):
    """What happens to a job besides running its container."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Managed spot (``EnableManagedSpotTraining``) jobs only: how many times the job's
    #: instances are reclaimed. Each time, ``interrupt_after_seconds`` into its training,
    #: the processes are killed, the job shows ``Interrupted`` then ``Starting``, and the
    #: same launch restarts on fresh hosts with ``CheckpointConfig.S3Uri`` downloaded.
    spot_interruptions: int = Field(0, ge=0)
    interrupt_after_seconds: float = Field(10.0, gt=0)
    #: ... and not before the master host's checkpoint directory holds a checkpoint
    #: (``checkpoint`` index file): an interruption that a test can see resume.
    interrupt_after_checkpoint: bool = False
    #: Managed spot jobs only: capacity never comes. The job waits in ``Starting`` until
    #: ``MaxWaitTimeInSeconds`` (or ``max_wait_seconds``, if smaller), then ends ``Stopped``
    #: with SecondaryStatus ``MaxWaitTimeExceeded``; the capacity message is only in a
    #: SecondaryStatusTransitions StatusMessage, never in FailureReason (as on SageMaker).
    spot_never_launched: bool = False
    #: A local cap on ``MaxWaitTimeInSeconds`` (the real one is at least the max runtime).
    max_wait_seconds: float | None = Field(None, gt=0)
    #: The instances cannot be provisioned after the job was created: ``Starting`` for
    #: ``starting_seconds``, then ``Failed`` with ``CapacityError: Unable to provision
    #: requested ML compute capacity ...``, without TrainingStartTime or billable time.
    capacity_error_after_start: bool = False
    starting_seconds: float = Field(1.0, ge=0)
    #: Managed spot jobs: BillableTimeInSeconds = ceil(seconds the containers ran x this).
    spot_price_ratio: float = Field(0.3, gt=0, le=1)
    #: ``ThrottlingException`` bursts: the first N calls of the operation for each job
    #: name are refused (``Rate exceeded``) before anything happens.
    throttle: dict[ThrottledOperation, int] = Field(default_factory=dict)
    #: ``CreateTrainingJob`` creates the job, then the first N responses for this job
    #: name are lost (the connection closes before the answer): the client's retry meets
    #: ``ResourceInUse`` and must follow the job it made (local_aws.wire).
    lose_create_response: int = Field(0, ge=0)


class ApiThrottle(BaseModel):
    """A throttling pattern on one API: after ``after`` calls go through, ``burst`` calls
    in a row are refused, then (``every`` > 0) the pattern repeats every ``every`` calls.
    Counted per region and ``service:Operation``; the refusal is the service's own
    throttling error (local_aws.wire.THROTTLE_ERRORS)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    burst: int = Field(1, ge=1)
    every: int = Field(0, ge=0)
    after: int = Field(0, ge=0)

    def model_post_init(self, context: object, /) -> None:
        if self.every and self.every <= self.burst:
            raise ValueError(f"every ({self.every}) must exceed burst ({self.burst}): no call would go through")

    def refuses(self, call_number: int) -> bool:
        """Whether the ``call_number``-th call (1-based) is refused."""
        index = call_number - 1 - self.after
        if index < 0 or (not self.every and index >= self.burst):
            return False
        return index % self.every < self.burst if self.every else True


class LifecycleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    regions: dict[str, Lifecycle] = Field(default_factory=dict)
    jobs: dict[str, Lifecycle] = Field(default_factory=dict)
    #: ``service:Operation`` fnmatch patterns (``s3:GetObject``, ``logs:*``) -> pattern.
    api_throttle: dict[str, ApiThrottle] = Field(default_factory=dict)

    def for_job(self, region: str, job_name: str) -> Lifecycle:
        values: dict[str, object] = {}
        entries = [self.regions.get(region)] + [
            lifecycle for pattern, lifecycle in self.jobs.items() if fnmatch.fnmatchcase(job_name, pattern)
        ]
        for entry in entries:
            if entry is not None:
                values.update({name: getattr(entry, name) for name in entry.model_fields_set})
        return Lifecycle(**values)  # type: ignore[arg-type]


def load_lifecycles(path: str | os.PathLike[str] | None) -> LifecycleConfig:
    """The file's configuration (a clear pydantic error names a bad field); none: all off."""
    if not path:
        return LifecycleConfig()
    return LifecycleConfig.model_validate(json.loads(Path(path).read_text()))
