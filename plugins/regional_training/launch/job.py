"""The target's job as it travels between tasks, typed (issue 28).

:meth:`Job.from_xcom` reads the payload ``build_jobs`` makes (one XCom entry, JSON; its
keys in :mod:`regional_training.launch.jobs`) and :meth:`Job.to_xcom` gives it back key for key,
so runs in flight, stored ``requests.json`` files and tests keep the same format; inside
a try the job is this frozen dataclass. :class:`JobState` is one described job,
normalised the same way for every backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from regional_training.launch.attempts import LIVE_STATES, Candidate, capacity_signal, ended_reason
from regional_training.plan.targets import Target

#: The payload key of the input URIs pre-flight found (``preflight.CHECKED_INPUTS``).
CHECKED_INPUTS = "preflight_checked_inputs"
#: The payload's keys, in the order ``build_jobs`` writes them (later ones are optional).
KNOWN_KEYS = ("target", "request", "failover", "max_failovers", "hyperparameters_sha256", "training_image",
              "entry_point", "point_id", "point_overrides", CHECKED_INPUTS, "reuse_keys")

#: A ``CreateTrainingJob`` request, as botocore's model shapes it.
Request = dict[str, Any]


@dataclass(frozen=True)
class Placement:
    """One place a target may train: its target row there and the request for it."""

    target: Target
    request: Request
    #: The target as the payload held it (written back unchanged: an older or partial
    #: row keeps its fields, not the defaults ``Target`` would fill in).
    target_payload: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def candidate(self) -> Candidate:
        return Candidate(self.request, self.target.region_code)

    def target_xcom(self) -> dict[str, Any]:
        return dict(self.target_payload) if self.target_payload is not None else self.target.to_dict()

    def to_xcom(self) -> dict[str, Any]:
        return {"target": self.target_xcom(), "request": self.request}


@dataclass(frozen=True)
class Job:
    """One target's job: the planned placement, its ranked alternatives and what it runs."""

    planned: Placement
    alternatives: tuple[Placement, ...] = ()
    #: How many moves to alternatives the target may make (``None``: the payload had no limit).
    max_failovers: int | None = None
    hyperparameters_sha256: str | None = None
    training_image: str | None = None
    entry_point: str | None = None
    point_id: str | None = None
    point_overrides: Mapping[str, Any] | None = None
    #: The planned request's input URIs pre-flight found in its region (not checked again).
    checked_inputs: tuple[str, ...] = ()
    #: Per copy, the keys reuse records the job under (``reuse.job_keys``).
    reuse_keys: Mapping[str, Any] | None = None
    #: The payload's keys, in order, as it came: :meth:`to_xcom` writes exactly these.
    keys: tuple[str, ...] = field(default=KNOWN_KEYS[:9], compare=False)
    #: Keys this version does not know, kept as they came.
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def with_field(self, key: str, **changes: Any) -> Job:
        """This job with ``changes`` and its payload key ``key`` written after the ones it
        had (if new): the payload then reads exactly as ``{**payload, key: value}`` did, key
        for key and in order, so runs in flight and stored payloads keep one format."""
        keys = self.keys if key in self.keys else (*self.keys, key)
        return replace(self, keys=keys, **changes)

    @property
    def target(self) -> Target:
        return self.planned.target

    @property
    def request(self) -> Request:
        return self.planned.request

    @property
    def base_name(self) -> str:
        return str(self.planned.request["TrainingJobName"])

    @property
    def placements(self) -> tuple[Placement, ...]:
        """The planned placement, then its alternatives, cut to ``max_failovers`` moves."""
        every = (self.planned, *self.alternatives)
        return every if self.max_failovers is None else every[: self.max_failovers + 1]

    @property
    def targets(self) -> list[Target]:
        return [p.target for p in self.placements]

    @property
    def candidates(self) -> list[Candidate]:
        """The target's candidates in rank order, cut to ``max_failovers`` moves."""
        return [p.candidate for p in self.placements]

    @classmethod
    def from_xcom(cls, payload: Mapping[str, Any]) -> Job:
        def placement(entry: Mapping[str, Any]) -> Placement:
            return Placement(Target.from_dict(dict(entry["target"])), dict(entry["request"]), entry["target"])

        limit = payload.get("max_failovers")
        return cls(
            planned=placement(payload),
            alternatives=tuple(placement(e) for e in payload.get("failover") or ()),
            max_failovers=None if limit is None else int(limit),
            hyperparameters_sha256=payload.get("hyperparameters_sha256"),
            training_image=payload.get("training_image"),
            entry_point=payload.get("entry_point"),
            point_id=payload.get("point_id"),
            point_overrides=payload.get("point_overrides"),
            checked_inputs=tuple(payload.get(CHECKED_INPUTS) or ()),
            reuse_keys=payload.get("reuse_keys"),
            keys=tuple(payload),
            extra={k: v for k, v in payload.items() if k not in KNOWN_KEYS},
        )

    def to_xcom(self) -> dict[str, Any]:
        """The payload :meth:`from_xcom` read, key for key (JSON-serialisable)."""
        values: dict[str, Any] = {
            "target": self.planned.target_xcom(), "request": self.planned.request,
            "failover": [p.to_xcom() for p in self.alternatives], "max_failovers": self.max_failovers,
            "hyperparameters_sha256": self.hyperparameters_sha256, "training_image": self.training_image,
            "entry_point": self.entry_point, "point_id": self.point_id, "point_overrides": self.point_overrides,
            CHECKED_INPUTS: list(self.checked_inputs), "reuse_keys": self.reuse_keys, **self.extra,
        }
        return {key: values[key] for key in self.keys}


Phase = Literal["live", "completed", "failed", "stopped"]
_PHASES: dict[str, Phase] = {"Completed": "completed", "Failed": "failed", "Stopped": "stopped"}


@dataclass(frozen=True)
class JobState:
    """One described job, the same for every backend (docs/backends.md, "Describe").

    ``description`` is the ``DescribeTrainingJob`` answer it was read from (under
    ``batch_service``, of the training job Batch made, with Batch's fields added):
    :func:`regional_training.launch.attempts.resolve` and collection read it.
    """

    phase: Phase
    #: The job's real identity: under ``batch_service`` Batch's ``AWSBatch...`` job.
    name: str
    arn: str | None
    #: ``(code, message)`` when it ended, or was refused, for lack of capacity.
    capacity: tuple[str, str] | None
    #: Why it ended, in SageMaker's words (:func:`regional_training.launch.attempts.ended_reason`).
    reason: str | None
    artifact_uri: str | None
    billable_seconds: int | None
    description: dict[str, Any]

    @property
    def ended(self) -> bool:
        return self.phase != "live"

    @property
    def failure_class(self) -> str | None:
        """The retry policy's decision for an ended, unsuccessful job (``failed_job``:
        deterministic, not retried automatically; ``failover``; ``retry``)."""
        if self.phase not in ("failed", "stopped"):
            return None
        from regional_training.launch.retry_policy import classify

        return str(classify(self.description).decision)

    @classmethod
    def of(cls, description: dict[str, Any], name: str) -> JobState:
        status = str(description.get("TrainingJobStatus"))
        phase: Phase = "live" if status in LIVE_STATES or status not in _PHASES else _PHASES[status]
        billable = description.get("BillableTimeInSeconds")
        return cls(
            phase=phase,
            name=str(description.get("TrainingJobName") or name),
            arn=description.get("TrainingJobArn"),
            capacity=capacity_signal(description),
            reason=ended_reason(description) if phase in ("failed", "stopped") else None,
            artifact_uri=(description.get("ModelArtifacts") or {}).get("S3ModelArtifacts"),
            billable_seconds=None if billable is None else int(billable),
            description=description,
        )
