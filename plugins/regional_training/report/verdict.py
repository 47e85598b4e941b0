"""The run's verdict, computed from the plan (what was planned), not from what arrived.

Every planned target (one per job that ``build_requests`` built, in map-index order)
gets exactly one outcome, so a target that vanished downstream of planning (a training
task that failed while collecting, failed or was never run) can never vanish from the
verdict too. A target's ``train[i]`` records its row when its job ends; ``record_late``
records every launched target still without one (``recording.record_unrecorded``), so a
missing row means that recording failed twice:

=====================  ==================================================  ============================================
outcome                known from                                          what fixes it
=====================  ==================================================  ============================================
``completed``          its ``training_runs`` row: status ``Completed``     nothing
``reused``             its row: status ``Reused`` (an identical job        nothing (counts as done; not launched, so
                       completed within ``reuse_completed_within``)        the mapped indexes skip it)
``training_failed``    its row: any other job status                       clear ``train[i]`` (one new attempt)
``never_launched``     its row says ``NotStarted``; or no row and          fix the upstream failure, clear ``train[i]``
                       ``train[i]`` was upstream-failed, skipped or never
                       ran
``not_recorded``       no row: ``train[i]`` ended failed (or its state     clear ``train[i]``: a completed job is
                       is not known) and ``record_late`` could not record  collected, not trained again; a failed one
                       it either (its log says why)                        gets one new attempt
=====================  ==================================================  ============================================

"Nothing to do" (a dry run, no ``ready`` campaign, every dataset left out by placement)
is a clean verdict with a reason, never an error. :func:`raise_if_incomplete` raises
:class:`IncompleteRunError` (an ``AirflowFailException``: no retry, a retry cannot change
the outcome) naming every target that did not complete or was not recorded, with its
reason.

Inputs are what the DAG already has in XCom: the ``jobs`` list of ``build_requests``
(each with ``target``), the recorded rows (the training tasks' that succeeded and
``summarize``'s), and
optionally the task states of ``train`` per map index, as returned by
``RuntimeTaskInstance.get_task_states`` (see :func:`states_by_map_index`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from airflow.sdk.exceptions import AirflowFailException

from regional_training.plan.targets import left_out_name, target_key_of

Outcome = Literal["completed", "reused", "training_failed", "never_launched", "not_recorded"]
#: Outcomes that account for a target: it has a model in this run's place.
DONE: frozenset[str] = frozenset({"completed", "reused"})
#: Row status of a target served by an identical earlier job (regional_training.plan.reuse.REUSED).
REUSED = "Reused"
#: Job status collection records for a job that was never created (collection.NOT_STARTED).
NOT_STARTED = "NotStarted"
#: ``train`` task states meaning "no training job was launched by this task".
_NOT_RUN_STATES = frozenset({"upstream_failed", "skipped", "removed", None})


class IncompleteRunError(AirflowFailException):
    """Some planned target did not complete or was not recorded (no retry: nothing to wait for)."""


@dataclass(frozen=True)
class TargetOutcome:
    """One planned target's outcome; ``recorded``: its ``training_runs`` row exists."""

    #: The mapped ``train`` index; ``None`` for a reused target (nothing launched).
    map_index: int | None
    target_key: str
    region_code: str
    outcome: Outcome
    reason: str | None
    recorded: bool

    def describe(self) -> str:
        where = (f"{self.target_key} ({self.region_code})" if self.map_index is None
                 else f"{self.target_key} ({self.region_code}, map index {self.map_index})")
        return f"{where}: {self.outcome.replace('_', ' ')}" + (f" - {self.reason}" if self.reason else "")


@dataclass(frozen=True)
class Verdict:
    """The run's verdict: one entry per planned target, or the reason there was nothing to do."""

    targets: tuple[TargetOutcome, ...]
    nothing_to_do: str | None = None
    #: Recorded rows whose target was not planned (logged, never counted as completed).
    unplanned: tuple[str, ...] = field(default=())

    @property
    def incomplete(self) -> tuple[TargetOutcome, ...]:
        return tuple(t for t in self.targets if t.outcome not in DONE)

    @property
    def ok(self) -> bool:
        return not self.incomplete

    def headline(self) -> str:
        if self.nothing_to_do is not None:
            return f"nothing to do: {self.nothing_to_do}"
        done = len(self.targets) - len(self.incomplete)
        reused = sum(1 for t in self.targets if t.outcome == "reused")
        return (f"{done} of {len(self.targets)} planned target(s) completed and recorded"
                + (f" ({reused} reused from an identical earlier job, not trained again)" if reused else ""))

    def lines(self) -> list[str]:
        """The verdict as log/summary lines (headline first)."""
        out = [self.headline()]
        out += [f"NOT COMPLETE {t.describe()}" for t in self.incomplete]
        out += [f"UNPLANNED row ignored: {key}" for key in self.unplanned]
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (XCom, summary.json)."""
        return {
            "ok": self.ok,
            "nothing_to_do": self.nothing_to_do,
            "headline": self.headline(),
            "targets": [asdict(t) for t in self.targets],
            "unplanned": list(self.unplanned),
        }


def nothing_to_do_reason(
    *, planned: int, dry_run: bool, left_out: Sequence[Mapping[str, Any]] = ()
) -> str | None:
    """Why there is nothing to launch, or ``None`` when targets are to be trained.

    The same clean outcome for a dry run, no selected target and every dataset left out.
    """
    if dry_run:
        return f"dry run: {planned} training request(s) built, nothing launched"
    if planned:
        return None
    if left_out:
        names = ", ".join(f"{left_out_name(i)} ({i.get('reason')})" for i in left_out)
        return f"every selected dataset was left out by placement: {names}"
    return "no target selected: no campaign is 'ready' in the selected regions"


def states_by_map_index(task_states: Mapping[str, str | None], task_id: str) -> dict[int, str | None]:
    """``{map_index: state}`` of a mapped task from one run's ``get_task_states`` answer.

    The Execution API keys mapped task instances as ``"<task_id>_<map_index>"``.
    """
    prefix = f"{task_id}_"
    out: dict[int, str | None] = {}
    for key, state in task_states.items():
        suffix = key[len(prefix):]
        if key.startswith(prefix) and suffix.isdigit():
            out[int(suffix)] = state
    return out


def _planned(jobs: Sequence[Mapping[str, Any]]) -> list[tuple[int, str, str]]:
    out = []
    for index, job in enumerate(jobs):
        target = job["target"]
        key = target_key_of(target)
        out.append((index, str(key), str(target["region_code"])))
    return out


def _from_row(index: int, key: str, row: Mapping[str, Any]) -> TargetOutcome:
    status = row.get("status")
    region = str(row.get("region_code"))  # where it ran (after any failover)
    if status == "Completed":
        return TargetOutcome(index, key, region, "completed", None, True)
    # SageMaker's own words as recorded (attempts.ended_reason); a row without them says
    # so rather than inventing a cause (a job never created has no SageMaker words at all).
    reason = row.get("failure_reason") or (
        "no job was created" if status == NOT_STARTED else f"job ended {status}; SageMaker gave no reason")
    outcome: Outcome = "never_launched" if status == NOT_STARTED else "training_failed"
    return TargetOutcome(index, key, region, outcome, str(reason), True)


def _without_row(index: int, key: str, region: str, train: str | None, states_known: bool) -> TargetOutcome:
    if states_known and train in _NOT_RUN_STATES:
        return TargetOutcome(index, key, region, "never_launched",
                             f"train[{index}] {train or 'never ran'}: no job was launched", False)
    ended = f"train[{index}] ended {train}" if states_known else f"train[{index}]'s state is not known"
    return TargetOutcome(index, key, region, "not_recorded",
                         f"{ended}; neither it nor record_late recorded the job (see their logs): clear train[{index}]",
                         False)


def compute_verdict(
    jobs: Sequence[Mapping[str, Any]],
    rows: Iterable[Mapping[str, Any]],
    *,
    dry_run: bool = False,
    left_out: Sequence[Mapping[str, Any]] = (),
    train_states: Mapping[int, str | None] | None = None,
) -> Verdict:
    """One outcome per planned job (``jobs`` from ``build_requests``, map-index order).

    ``rows`` are the recorded rows (``target_key``, ``region_code``,
    ``status``, ``failure_reason``); a missing one is explained from ``train_states``
    (``{map_index: state}``) when given.
    """
    reason = nothing_to_do_reason(planned=len(jobs), dry_run=dry_run, left_out=left_out)
    if reason is not None:
        return Verdict(targets=(), nothing_to_do=reason)
    by_key = {str(r["target_key"]): r for r in rows}
    planned = _planned(jobs)
    states_known = train_states is not None
    outcomes = []
    # Reused targets are not launched: the mapped tasks' indexes count the others only.
    launched = -1
    for _, key, region in planned:
        row = by_key.get(key)
        if row is not None and row.get("status") == REUSED:
            outcomes.append(TargetOutcome(None, key, str(row.get("region_code")), "reused",
                                          f"identical to run {row.get('reused_from_run_id')}", True))
            continue
        launched += 1
        index = launched
        if row is not None:
            outcomes.append(_from_row(index, key, row))
            continue
        outcomes.append(_without_row(index, key, region, (train_states or {}).get(index), states_known))
    planned_keys = {key for _, key, _ in planned}
    unplanned = tuple(sorted(k for k in by_key if k not in planned_keys))
    return Verdict(targets=tuple(outcomes), unplanned=unplanned)


def raise_if_incomplete(verdict: Verdict) -> None:
    """Fail the run naming every target that did not complete or was not recorded."""
    if verdict.ok:
        return
    details = "; ".join(t.describe() for t in verdict.incomplete)
    hint = ""
    if any(t.outcome == "not_recorded" for t in verdict.incomplete):
        hint = (" Clearing train[i] collects a job that completed without training it again (a failed one "
                "gets one new attempt).")
    raise IncompleteRunError(
        f"{len(verdict.incomplete)} of {len(verdict.targets)} planned target(s) not completed or not recorded: "
        f"{details}.{hint}"
    )
