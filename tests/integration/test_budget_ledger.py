"""A budget that holds (issue 31) on the real PostgreSQL server: each launch is reserved
in budget_ledger before its job is created, and refused (recorded with its figures,
raising OverBudgetError that names the target) when it would push the run's committed
spend over budget_usd. The launches are decided by the real attempts.resolve over job
descriptions as SageMaker returns them (DescribeTrainingJob's fields)."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from typing import Any

import psycopg2
import pytest
from run_stub import RunStub

from regional_training.launch import budget
from regional_training.launch.attempts import resolve
from regional_training.launch.job import Job

pytestmark = pytest.mark.integration



def target(dataset: str, region: str, option: str, planned: float, rate: float) -> dict[str, Any]:
    return {"region_code": region, "s3_uri": f"s3://mrt-campaign-data-{region}/datasets/{dataset}/",
            "campaign_key": dataset, "dataset_key": f"{dataset}-v1", "dataset_id": 1, "copy_id": 1,
            "output_bucket": f"mrt-output-{region}", "purchase_option": option, "placement_rank": 1,
            "price_per_instance_hour": rate, "billing_usd_per_hour": rate, "planned_cost_usd": planned}


def job(dataset: str, *candidates: tuple[str, str, float, float]) -> Job:
    """A build step's job: its candidates (region, option, planned USD, USD/instance-hour)."""
    entries = [{"target": target(dataset, *c), "request": {
        "TrainingJobName": f"mrt-{dataset}-{c[0]}", "ResourceConfig": {"InstanceCount": 1}}} for c in candidates]
    return Job.from_xcom({**entries[0], "failover": entries[1:], "max_failovers": len(entries) - 1})


class Jobs:
    """DescribeTrainingJob answers by (region, name); ``None``: no such job."""

    def __init__(self) -> None:
        self.described: dict[tuple[str, str], dict[str, Any]] = {}

    def describe(self, region: str, name: str) -> dict[str, Any] | None:
        return self.described.get((region, name))

    def launch(self, run: RunStub, the_job: Job) -> budget.Decision:
        """What the operator does before CreateTrainingJob: resolve, then reserve."""
        resolution = resolve(the_job.candidates, self.describe)
        assert resolution.action == "create"
        decision = budget.reserve_for(run, the_job, resolution)
        region = the_job.candidates[resolution.index].region
        self.described[(region, resolution.attempt.name)] = {"TrainingJobStatus": "InProgress"}
        return decision

    def end(self, region: str, name: str, status: str, billable: int, **extra: Any) -> None:
        self.described[(region, name)] = {"TrainingJobStatus": status, "BillableTimeInSeconds": billable, **extra}


def ledger(dsn: str, run: RunStub) -> list[tuple]:
    with contextlib.closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute("SELECT target_key, job_name, region_code, expected_cost_usd, actual_cost_usd FROM budget_ledger"
                    " WHERE dag_id = %s AND run_id = %s ORDER BY reserved_at, job_name", (run.dag_id, run.run_id))
        return cur.fetchall()


def refusals(dsn: str, run: RunStub) -> list[tuple]:
    with contextlib.closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute("SELECT target_key, job_name, region_code, purchase_option, budget_usd, committed_usd, launch_usd"
                    " FROM budget_refusals WHERE dag_id = %s AND run_id = %s", (run.dag_id, run.run_id))
        return cur.fetchall()


STARVED = {"SecondaryStatus": "MaxWaitTimeExceeded", "FailureReason": "no spot capacity"}


def test_a_budget_that_fits_the_plan_refuses_the_failover_that_does_not(campaign_dsn: str) -> None:
    run = RunStub(campaign_dsn, {"budget_usd": 250})
    jobs = Jobs()
    boston = job("boston", ("us-east-1", "on_demand", 100.0, 10.0))
    dublin = job("dublin", ("eu-west-1", "spot", 100.0, 25.0), ("us-east-1", "on_demand", 160.0, 16.0))
    # the plan: 200 USD of 250
    assert jobs.launch(run, boston).total_usd == Decimal(100)
    assert jobs.launch(run, dublin).total_usd == Decimal(200)
    # dublin's spot job never got capacity (billed 0 s): it moves to us-east-1 on-demand,
    # 160 USD; boston still runs (100 committed): 260 > 250
    jobs.end("eu-west-1", "mrt-dublin-eu-west-1", "Stopped", 0, **STARVED)
    with pytest.raises(budget.OverBudgetError) as refused:
        jobs.launch(run, dublin)
    message = str(refused.value)
    assert message.startswith("target dublin-v1: over_budget: launching mrt-dublin-us-east-1 in us-east-1")
    assert "would commit 260.00 USD, over budget_usd 250.00 (committed so far 100.00 USD)" in message
    assert refusals(campaign_dsn, run) == [("dublin-v1", "mrt-dublin-us-east-1", "us-east-1", "on_demand",
                                            Decimal(250), Decimal(100), Decimal(160))]
    # no reservation for the refused job; dublin's starved job is settled at what it billed
    assert ledger(campaign_dsn, run) == [
        ("boston-v1", "mrt-boston-us-east-1", "us-east-1", Decimal(100), None),
        ("dublin-v1", "mrt-dublin-eu-west-1", "eu-west-1", Decimal(100), Decimal(0)),
    ]
    # the task is not retried automatically: the same figures would refuse it again
    from regional_training.launch.retry_policy import NotRetriedError

    assert isinstance(refused.value, NotRetriedError)


def test_a_failover_within_the_budget_is_reserved_and_ended_jobs_count_what_they_billed(campaign_dsn: str) -> None:
    run = RunStub(campaign_dsn, {"budget_usd": 260})
    jobs = Jobs()
    boston = job("boston", ("us-east-1", "on_demand", 100.0, 10.0))
    dublin = job("dublin", ("eu-west-1", "spot", 100.0, 25.0), ("us-east-1", "on_demand", 160.0, 16.0))
    jobs.launch(run, boston)
    jobs.launch(run, dublin)
    # interrupted after 2 billed hours at 25 USD (spot is billed at the on-demand rate)
    jobs.end("eu-west-1", "mrt-dublin-eu-west-1", "Stopped", 7200, **STARVED)
    with pytest.raises(budget.OverBudgetError, match=r"would commit 310\.00 USD"):
        jobs.launch(run, dublin)  # 100 + 50 billed + 160
    # boston completes for 40 USD (its row, as the collector records it): room again
    with contextlib.closing(psycopg2.connect(campaign_dsn)) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO training_runs (dag_id, run_id, target_key, region_code, dataset_id,"
                    " training_job_name, status, hyperparameters_sha256, instance_type, instance_count,"
                    " purchase_option, actual_cost_usd) SELECT %s, %s, 'boston-v1', 'us-east-1', min(dataset_id),"
                    " 'mrt-boston-us-east-1', 'Completed', %s, 'ml.g5.12xlarge', 1, 'on_demand', 40 FROM datasets",
                    (run.dag_id, run.run_id, "0" * 64))
        conn.commit()
    decision = jobs.launch(run, dublin)
    assert (decision.committed_usd, decision.launch_usd) == (Decimal(90), Decimal(160))  # 40 + 50
    assert [row[1] for row in ledger(campaign_dsn, run)] == [
        "mrt-boston-us-east-1", "mrt-dublin-eu-west-1", "mrt-dublin-us-east-1"]


def test_a_job_running_past_its_estimate_counts_its_cost_so_far(campaign_dsn: str) -> None:
    run = RunStub(campaign_dsn, {"budget_usd": 300})
    jobs = Jobs()
    boston = job("boston", ("us-east-1", "on_demand", 100.0, 10.0))
    seattle = job("seattle", ("us-west-2", "on_demand", 100.0, 10.0))
    jobs.launch(run, boston)
    with contextlib.closing(psycopg2.connect(campaign_dsn)) as conn, conn.cursor() as cur:
        # boston has run 25 h at 10 USD/h: 250 committed, not its planned 100
        cur.execute("UPDATE budget_ledger SET reserved_at = now() - interval '25 hours'"
                    " WHERE dag_id = %s AND run_id = %s", (run.dag_id, run.run_id))
        conn.commit()
    with pytest.raises(budget.OverBudgetError, match=r"target seattle-v1: .*committed so far 250\.0"):
        jobs.launch(run, seattle)


def test_a_new_attempt_counts_the_failed_one_and_a_retried_create_is_reserved_once(campaign_dsn: str) -> None:
    run = RunStub(campaign_dsn, {"budget_usd": 150})
    jobs = Jobs()
    boston = job("boston", ("us-east-1", "on_demand", 100.0, 30.0))
    jobs.launch(run, boston)
    # the same create retried before SageMaker knew the job: the reservation is not repeated
    first = resolve(boston.candidates, lambda region, name: None)
    assert budget.reserve_for(run, boston, first).already is True
    # a bug failed it after 1 billed hour (30 USD); a person's clear makes attempt 2
    jobs.end("us-east-1", "mrt-boston-us-east-1", "Failed", 3600, FailureReason="AlgorithmError: boom")
    decision = jobs.launch(run, boston)
    assert (decision.committed_usd, decision.total_usd) == (Decimal(30), Decimal(130))
    jobs.end("us-east-1", "mrt-boston-us-east-1-a2", "Failed", 3600, FailureReason="AlgorithmError: boom")
    with pytest.raises(budget.OverBudgetError, match=r"launching mrt-boston-us-east-1-a3 .* would commit 160\.00"):
        jobs.launch(run, boston)  # 30 + 30 + 100 > 150


def test_without_a_budget_every_launch_is_reserved(campaign_dsn: str) -> None:
    run = RunStub(campaign_dsn, {"budget_usd": None})
    jobs = Jobs()
    for name in ("boston", "seattle", "dublin"):
        decision = jobs.launch(run, job(name, ("us-east-1", "on_demand", 1000.0, 100.0)))
        assert decision.budget_usd is None
    assert len(ledger(campaign_dsn, run)) == 3 and refusals(campaign_dsn, run) == []
