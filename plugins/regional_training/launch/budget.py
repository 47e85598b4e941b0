"""A budget that holds at launch (issue 31): no job may push a run's committed spend
over its ``budget_usd``.

The placement checks the budget once, against expected costs. A run then spends more
than planned: a failover moves a target to a dearer candidate, a person's clear makes a
new attempt, a spot job runs longer. So every training job is *reserved* in the campaign
database's ``budget_ledger`` (V007) just before it is created, under a per-run lock:

    committed = settled jobs' actual cost
              + jobs recorded with an actual cost (training_runs)
              + for every other job: max(expected cost, cost so far)   (running or pending)

and the launch is refused when ``committed + the job's expected cost > budget_usd``: the
refusal is recorded (``budget_refusals``, with the figures) and :class:`OverBudgetError`
fails the target's task naming the target, region and figures (no automatic retry: the
same figures would refuse it again). See docs/placement.md "Budget at launch".

No import-time I/O; the SQL lives in ``include/sql/queries/budget_*.sql``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from regional_training.launch.retry_policy import NotRetriedError

if TYPE_CHECKING:
    from regional_training.launch.attempts import Attempt
    from regional_training.launch.job import Job
    from regional_training.plan.targets import Target

#: Job states after which SageMaker bills nothing more (DescribeTrainingJob's
#: TrainingJobStatus, botocore's sagemaker service-2.json).
ENDED_STATES = frozenset({"Completed", "Failed", "Stopped"})


#: The Param of the optional hard cap on a run's actual spend (:func:`enforce_hard_caps`).
HARD_CAP_PARAM = "budget_hard_cap_usd"


class OverBudgetError(NotRetriedError):
    """A launch that would push the run's committed spend over ``budget_usd``."""


@dataclass(frozen=True)
class Launch:
    """One job about to be created for a target (what the ledger reserves)."""

    dag_id: str
    run_id: str
    target_key: str
    job_name: str
    region_code: str
    purchase_option: str
    instance_count: int
    billing_usd_per_hour: Decimal
    expected_cost_usd: Decimal

    @classmethod
    def of(cls, *, dag_id: str, run_id: str, target: Target, job_name: str, instance_count: int) -> Launch:
        """The launch of ``target`` (the candidate being created) as job ``job_name``.

        A target without prices (region-local placement) reserves 0 USD: the run has no
        planned cost to hold it to, and its actual cost is unknown.
        """
        return cls(
            dag_id=dag_id, run_id=run_id, target_key=target.target_key, job_name=job_name,
            region_code=target.region_code, purchase_option=target.purchase_option,
            instance_count=int(instance_count),
            billing_usd_per_hour=_money(target.billing_usd_per_hour),
            expected_cost_usd=_money(target.planned_cost_usd),
        )


@dataclass(frozen=True)
class Decision:
    """What :func:`reserve_launch` decided, with the figures it decided on."""

    reserved: bool
    #: ``True``: the job was reserved by an earlier call (a retried create): not checked again.
    already: bool
    committed_usd: Decimal
    launch_usd: Decimal
    budget_usd: Decimal | None

    @property
    def total_usd(self) -> Decimal:
        return self.committed_usd + self.launch_usd


def _money(value: Any) -> Decimal:
    return Decimal(0) if value is None else Decimal(str(value))


def settled_costs(ended: Sequence[tuple[Attempt | None, Target, int]]) -> dict[str, float]:
    """Billed cost of the target's ended jobs whose description is known: {job name: USD}.

    ``ended``: (attempt, its candidate's target, instance count) for each candidate's
    newest attempt (``attempts.Resolution.newest``); live ones and ``None`` are skipped.
    The cost is the collector's (``placement.actual_cost_usd``: billable seconds at the
    billing rate), so a settled job counts what its row will say.
    """
    from regional_training.plan.placement import actual_cost_usd

    out: dict[str, float] = {}
    for attempt, target, count in ended:
        if attempt is None or not attempt.description:
            continue
        if attempt.description.get("TrainingJobStatus") not in ENDED_STATES:
            continue
        cost = actual_cost_usd(attempt.description.get("BillableTimeInSeconds") or 0,
                               target.billing_usd_per_hour or 0, count, quantum=Decimal("0.0001"))
        out[attempt.name] = float(cost or 0)
    return out


def reserve_launch(conn: Any, launch: Launch, *, budget_usd: float | Decimal | None,
                   settled_usd_by_job: Mapping[str, float] | None = None,
                   hard_cap_usd: float | Decimal | None = None) -> Decision:
    """Reserve ``launch`` in the ledger, or refuse it (raises :class:`OverBudgetError`).

    One transaction under the run's lock: settle the target's earlier jobs
    (``settled_usd_by_job``: their billed cost where known), sum the run's committed
    spend without this job, then reserve it or record the refusal. A job already
    reserved (the same name: a retried create) is not checked again, so a create whose
    response was lost is followed, never refused after the fact. ``budget_usd`` ``None``:
    every launch is reserved (the ledger still shows the spend). ``hard_cap_usd`` (the
    Param ``budget_hard_cap_usd``) is recorded for the budget guard
    (:func:`enforce_hard_caps`); once the cap has stopped a job of the run, every new
    launch of the run is refused (recorded with the cap as its budget).
    """
    from regional_training.runtime.campaign_db import load_sql

    budget = None if budget_usd is None else Decimal(str(budget_usd))
    binds = {**launch.__dict__, "settled_usd_by_job": json.dumps(dict(settled_usd_by_job or {}))}
    try:
        with conn.cursor() as cur:
            cur.execute(load_sql("queries/budget_lock.sql"), binds)
            cur.execute("SELECT 1 FROM budget_ledger WHERE dag_id = %(dag_id)s AND run_id = %(run_id)s"
                        " AND job_name = %(job_name)s", binds)
            already = cur.fetchone() is not None
            if hard_cap_usd is not None:
                cur.execute(load_sql("queries/budget_hard_cap_set.sql"),
                            {**binds, "hard_cap_usd": Decimal(str(hard_cap_usd))})
            cur.execute(load_sql("queries/budget_cap_stopped.sql"), binds)
            capped = cur.fetchone()
            if capped is not None and not already:
                cur.execute(load_sql("queries/budget_committed.sql"), binds)
                committed = Decimal(cur.fetchone()[0]).quantize(Decimal("0.0001"))
                cur.execute(load_sql("queries/budget_refuse.sql"),
                            {**binds, "budget_usd": capped[0], "committed_usd": committed,
                             "launch_usd": launch.expected_cost_usd})
                conn.commit()
                raise OverBudgetError(
                    f"target {launch.target_key}: over_budget: the run's hard cap (budget_hard_cap_usd "
                    f"{Decimal(capped[0]):.2f} USD) stopped {capped[1]} job(s) of the run; launching "
                    f"{launch.job_name} in {launch.region_code} is refused; no job was created")
            if not already:  # a retried create settled them the first time
                cur.execute(load_sql("queries/budget_settle.sql"), binds)
            cur.execute(load_sql("queries/budget_committed.sql"), binds)
            committed = Decimal(cur.fetchone()[0]).quantize(Decimal("0.0001"))
            decision = Decision(reserved=True, already=already, committed_usd=committed,
                                launch_usd=launch.expected_cost_usd, budget_usd=budget)
            if not already and budget is not None and decision.total_usd > budget:
                cur.execute(load_sql("queries/budget_refuse.sql"),
                            {**binds, "budget_usd": budget, "committed_usd": committed,
                             "launch_usd": launch.expected_cost_usd})
                conn.commit()
                raise OverBudgetError(refusal_message(launch, decision))
            cur.execute(load_sql("queries/budget_reserve.sql"), binds)
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    return decision


def refusal_message(launch: Launch, decision: Decision) -> str:
    return (f"target {launch.target_key}: over_budget: launching {launch.job_name} in {launch.region_code} "
            f"({launch.purchase_option}, expected {decision.launch_usd:.2f} USD) would commit "
            f"{decision.total_usd:.2f} USD, over budget_usd {decision.budget_usd:.2f} "
            f"(committed so far {decision.committed_usd:.2f} USD); no job was created")


def reserve_for(run: Any, job: Job, resolution: Any) -> Decision:
    """Reserve the job ``resolution`` is about to create for the target of ``job`` (its
    candidates' targets carry the prices) in ``run``'s ledger,
    against the run's ``budget_usd`` Param; raises :class:`OverBudgetError`.

    ``resolution`` is ``attempts.Resolution`` with action ``create``: its ``newest``
    attempts (each candidate's newest job) give the billed cost of the target's ended jobs.
    """
    targets, candidates = job.targets, job.candidates

    def count(index: int) -> int:
        return int(candidates[index].request["ResourceConfig"]["InstanceCount"])

    index, attempt = resolution.index, resolution.attempt
    launch = Launch.of(dag_id=run.dag_id, run_id=run.run_id, target=targets[index], job_name=attempt.name,
                       instance_count=count(index))
    ended = [(a, targets[i], count(i)) for i, a in enumerate(resolution.newest)]
    with run.campaign_db() as conn:
        decision = reserve_launch(conn, launch, budget_usd=run.params.get("budget_usd"),
                                  settled_usd_by_job=settled_costs(ended),
                                  hard_cap_usd=run.params.get(HARD_CAP_PARAM))
    logging.getLogger(__name__).info(
        "Budget: %s reserved %.2f USD for %s (committed before it %.2f USD, budget %s).", launch.target_key,
        decision.launch_usd, launch.job_name, decision.committed_usd,
        "none" if decision.budget_usd is None else f"{decision.budget_usd:.2f} USD")
    return decision


def reserve_first_launches(run: Any, jobs: Sequence[Job]) -> list[Decision]:
    """``launcher=batch_array``: reserve each job's first launch (its planned candidate,
    attempt 1 under its deterministic name) before the one array job that creates them is
    submitted; raises :class:`OverBudgetError` naming the first target that does not fit,
    and then nothing is submitted.

    The array's children create the jobs inside AWS Batch, where the campaign database is
    not reachable (the launcher image gets no database connection: least privilege), so
    their failovers and new attempts are not reserved; docs/placement.md says what holds
    the budget there. A job reserved before (a retried launch task, a cleared run whose
    attempt 1 exists) is not checked again (:func:`reserve_launch`).
    """
    from regional_training.launch.attempts import Attempt, Resolution

    decisions = []
    for job in jobs:
        name = job.base_name
        creating = Resolution("create", 0, Attempt(1, name, None), None, (), (None,))
        decisions.append(reserve_for(run, job, creating))
    return decisions


# --- the hard cap ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CapStop:
    """A job the hard cap stopped, with the figures it was stopped on."""

    dag_id: str
    run_id: str
    target_key: str
    job_name: str
    region_code: str
    hard_cap_usd: Decimal
    actual_usd: Decimal
    projected_usd: Decimal


@dataclass
class _CapJob:
    row: dict[str, Any]
    spent_usd: Decimal
    burn_usd_per_hour: Decimal  # 0: ended (or ending), nothing more to stop
    created: Any


def _hours(seconds: float | Decimal) -> Decimal:
    return Decimal(str(seconds)) / Decimal(3600)


def _cap_job(row: dict[str, Any], describe: Any, now: datetime) -> _CapJob:
    """What one ledger job has spent (and burns on), from its settlement or SageMaker."""
    rate = Decimal(str(row["instance_count"])) * Decimal(str(row["billing_usd_per_hour"]))
    if row["settled_usd"] is not None:
        return _CapJob(row, Decimal(str(row["settled_usd"])), Decimal(0), row["reserved_at"])
    described = describe(row["region_code"], row["job_name"])
    if described is None:  # the create never made it (refused for capacity): nothing billed
        return _CapJob(row, Decimal(0), Decimal(0), row["reserved_at"])
    status = described.get("TrainingJobStatus")
    created = described.get("CreationTime") or row["reserved_at"]
    if status in ENDED_STATES:
        return _CapJob(row, rate * _hours(described.get("BillableTimeInSeconds") or 0), Decimal(0), created)
    started = described.get("TrainingStartTime")
    so_far = rate * _hours(max((now - _aware(started)).total_seconds(), 0)) if started else Decimal(0)
    # Stopping: its billing ends within SageMaker's grace; it is already being stopped.
    return _CapJob(row, so_far, rate if status == "InProgress" else Decimal(0), created)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def enforce_hard_caps(conn: Any, *, describe: Any, stop: Any, horizon_seconds: float,
                      now: datetime | None = None) -> list[CapStop]:
    """Stop the newest running jobs of every run whose actual spend would cross its hard
    cap before the guard looks again (``horizon_seconds`` from ``now``); record each stop.

    Actual spend = each ledger job's settled cost, or (from ``describe(region, name)``:
    DescribeTrainingJob) an ended job's billed time, a running one's time since its
    TrainingStartTime, at its instances x billing rate. Projected = actual + what the
    running jobs bill over the horizon. While projected > cap, the newest running job
    (CreationTime) is stopped with ``stop(region, name)`` (``False``: it had ended
    already) and its burn leaves the projection. A stop is recorded only after StopTrainingJob answered; a job already
    ``Stopping`` is not running (a re-run stops and records nothing new).
    """
    from regional_training.runtime.campaign_db import fetch_dicts, load_sql

    now = now or datetime.now(UTC)
    horizon = _hours(horizon_seconds)
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in fetch_dicts(conn, "budget_cap_jobs.sql", {}):
        runs.setdefault((row["dag_id"], row["run_id"]), []).append(row)
    stops: list[CapStop] = []
    for (dag_id, run_id), rows in runs.items():
        cap = Decimal(str(rows[0]["hard_cap_usd"]))
        jobs = [_cap_job(row, describe, now) for row in rows]
        actual = sum((j.spent_usd for j in jobs), Decimal(0))
        projected = actual + sum((j.burn_usd_per_hour for j in jobs), Decimal(0)) * horizon
        running = sorted((j for j in jobs if j.burn_usd_per_hour > 0), key=lambda j: _aware(j.created), reverse=True)
        for job in running:
            if projected <= cap:
                break
            projected_before = projected
            projected -= job.burn_usd_per_hour * horizon
            if stop(job.row["region_code"], job.row["job_name"]) is False:
                continue  # it ended between the describe and the stop: nothing to record
            stop_row = CapStop(dag_id, run_id, job.row["target_key"], job.row["job_name"], job.row["region_code"],
                               cap, actual.quantize(Decimal("0.0001")), projected_before.quantize(Decimal("0.0001")))
            with conn.cursor() as cur:
                cur.execute(load_sql("queries/budget_cap_stop_record.sql"), stop_row.__dict__)
            conn.commit()
            stops.append(stop_row)
            logging.getLogger(__name__).warning(
                "Hard cap: run %s would spend %.2f USD by the next check (actual %.2f USD, cap %.2f USD): "
                "stopped its newest running job %s (%s, %s).", run_id, projected_before, actual, cap,
                job.row["job_name"], job.row["target_key"], job.row["region_code"])
    return stops


def guard_hard_caps(horizon_seconds: float) -> list[CapStop]:
    """The budget guard's task: :func:`enforce_hard_caps` through the Airflow connections."""
    from regional_training.runtime import aws_io, campaign_db

    def describe(region: str, name: str) -> dict[str, Any] | None:
        return aws_io.describe_training_job(name, region=region)

    def stop(region: str, name: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            aws_io.sagemaker_hook(region).conn.stop_training_job(TrainingJobName=name)
        except ClientError as err:  # SageMaker: ValidationException for a job that is not InProgress
            if err.response.get("Error", {}).get("Code") == "ValidationException":
                return False
            raise
        return True

    conn = campaign_db.airflow_connection()
    try:
        return enforce_hard_caps(conn, describe=describe, stop=stop, horizon_seconds=horizon_seconds)
    finally:
        conn.close()
