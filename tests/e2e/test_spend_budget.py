"""A budget that holds (issue 31), end to end: the real DAG (``dag.test``), the emulator
as a server, the campaign database.

Boston at two scan points: the plan puts both on us-west-2's prepaid reserved
instances (0 USD), within a budget of 6 USD, and either point alone could fail over
to us-east-1 spot (2 h x 2.48 USD x 1.15 = 5.704 USD: the plan's ``fits_budget``). The
emulator refuses every us-west-2 create (ResourceLimitExceeded), so both fail over.
Every launch is reserved in the ledger before its create; ``dag.test`` runs the points
one after the other, so the first point's job has completed (its recorded actual cost,
cents, replaces its 5.704 USD reservation) when the second point's failover is reserved:
it fits. Two failovers running at once would not (5.704 + 5.704 > 6): that refusal,
and the others, are tested on the real database in tests/integration/test_budget_ledger.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from helpers import jobs_of_run, run_dag

from dev.local_stack import LOCAL_RUN_CONF, fake_image_map, local_aws, seed_aws

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

BUDGET = Decimal(6)
FAILOVER_USD = Decimal("5.704")  # 1 instance x 2 h x 2.48 USD spot x (1 + 0.15 allowance)


@pytest.fixture(scope="module")
def starved_west(campaign_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An emulator where us-west-2 has no capacity: CreateTrainingJob -> ResourceLimitExceeded."""
    log = tmp_path_factory.mktemp("aws") / "local-aws.log"
    with local_aws(fake_image_map(), capacity_error_regions=("us-west-2",), log_path=log) as endpoint:
        seed_aws(endpoint, campaign_dsn)
        yield endpoint


@pytest.fixture()
def stack(starved_west: str, campaign_dsn: str, airflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    from dev.local_stack import in_process_env

    for key, value in in_process_env(dsn=campaign_dsn, endpoint=starved_west, airflow_home=airflow_db).items():
        monkeypatch.setenv(key, value)
    return starved_west


def test_every_launch_is_reserved_and_a_completed_job_counts_its_actual_cost(stack: str, campaign_dsn: str) -> None:
    conf = {**LOCAL_RUN_CONF, "placement": "cheapest", "campaigns": ["boston-winter-2026"], "estimated_hours": 2,
            "count_instances_in_use": True,  # the select task lists each region's InProgress jobs: none but ours
            "budget_usd": int(BUDGET), "scan": {"grid": {"learning_rate": [0.05, 0.5]}, "metric": "train:accuracy"}}
    dag_run, states = run_dag(conf)
    assert str(dag_run.state) == "success" and states["train"] == ["success", "success"]
    jobs = jobs_of_run(stack, dag_run.run_id)
    assert sorted((j["Region"], j["TagMap"]["purchase_option"]) for j in jobs) == [("us-east-1", "spot")] * 2

    conn = psycopg2.connect(campaign_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT target_key, job_name, region_code, purchase_option, expected_cost_usd,"
                        " billing_usd_per_hour FROM budget_ledger WHERE run_id = %s ORDER BY reserved_at",
                        (dag_run.run_id,))
            ledger = cur.fetchall()
            cur.execute("SELECT count(*) FROM budget_refusals WHERE run_id = %s", (dag_run.run_id,))
            (refused,) = cur.fetchone()
            cur.execute("SELECT target_key, actual_cost_usd FROM training_runs WHERE run_id = %s", (dag_run.run_id,))
            actual = dict(cur.fetchall())
    finally:
        conn.close()
    # each point: its us-west-2 job reserved before the create was refused (reserved: 0
    # USD), then its failover reserved before it was created, with the plan's figures
    # (spot billed at the on-demand rate, which the cost so far uses)
    p01, p02 = "boston-winter-2026-v1_p01", "boston-winter-2026-v1_p02"
    assert sorted((key, region, option, expected, rate) for key, _, region, option, expected, rate in ledger) == [
        (p01, "us-east-1", "spot", FAILOVER_USD, Decimal("7.09")), (p01, "us-west-2", "reserved", 0, 0),
        (p02, "us-east-1", "spot", FAILOVER_USD, Decimal("7.09")), (p02, "us-west-2", "reserved", 0, 0)]
    assert {name for _, name, region, *_ in ledger if region == "us-east-1"} == {j["TrainingJobName"] for j in jobs}
    # the second failover fitted because the first job's actual cost replaced its
    # reservation (5.704 + 5.704 would not fit): nothing refused
    first = next(key for key, _, region, *_ in ledger if region == "us-east-1")
    assert actual[first] + FAILOVER_USD <= BUDGET < 2 * FAILOVER_USD
    assert refused == 0


def _reservations(campaign_dsn: str, run_id: str) -> list[tuple[Any, ...]]:
    """The run's budget-ledger rows: (job name, region, when it was reserved)."""
    conn = psycopg2.connect(campaign_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT job_name, region_code, reserved_at FROM budget_ledger WHERE run_id = %s", (run_id,))
            return cur.fetchall()
    finally:
        conn.close()


def test_batch_service_reserves_each_job_before_it_submits_the_service_job(offline_stack: str,
                                                                        campaign_dsn: str) -> None:
    """``launcher=batch_service``: the service job is what makes the training job (Batch
    creates it when capacity comes), so the budget must hold the job before the submit."""
    from datetime import UTC, datetime

    from dev.local_stack import aws_client
    from regional_training.runtime import identifiers

    conf = {**LOCAL_RUN_CONF, "launcher": "batch_service", "placement": "cheapest",
            "campaigns": ["boston-winter-2026"], "estimated_hours": 2, "budget_usd": int(BUDGET)}
    dag_run, states = run_dag(conf)
    assert str(dag_run.state) == "success" and states["train"] == ["success"]
    ledger = _reservations(campaign_dsn, dag_run.run_id)
    [(job_name, region, reserved_at)] = ledger
    batch = aws_client("batch", offline_stack, region)
    summaries = batch.list_service_jobs(jobQueue=f"mrt-sagemaker-{region}",
                                        filters=[{"name": "JOB_NAME", "values": [f"{job_name}*"]}])
    services = [batch.describe_service_job(jobId=s["jobId"]) for s in summaries["jobSummaryList"]]
    [service] = [s for s in services if s["tags"].get("dag_run") == identifiers.tag_value(dag_run.run_id)]
    assert service["jobName"] == job_name and service["status"] == "SUCCEEDED"
    submitted = datetime.fromtimestamp(service["createdAt"] / 1000, tz=UTC)
    assert reserved_at <= submitted, (reserved_at, submitted)


def test_batch_array_reserves_every_first_launch_before_it_submits_the_array_job(offline_stack: str,
                                                                              campaign_dsn: str) -> None:
    """``launcher=batch_array``: the child creates the job inside AWS Batch, without the
    campaign database, so the launch task reserves each target's first job before the
    submit (failovers inside a child are not reserved: docs/placement.md)."""
    from datetime import UTC, datetime

    from dev.local_stack import CENTRAL_REGION, aws_client
    from regional_training.launch import batch_jobs

    conf = {**LOCAL_RUN_CONF, "launcher": "batch_array", "placement": "cheapest",
            "campaigns": ["boston-winter-2026"], "estimated_hours": 2, "budget_usd": int(BUDGET)}
    dag_run, states = run_dag(conf)
    assert str(dag_run.state) == "success" and states["train"] == ["success"], states
    [job] = jobs_of_run(offline_stack, dag_run.run_id)
    ledger = _reservations(campaign_dsn, dag_run.run_id)
    [(job_name, region, reserved_at)] = ledger
    assert (job_name, region) == (job["TrainingJobName"], job["Region"])
    batch = aws_client("batch", offline_stack, CENTRAL_REGION)
    name = batch_jobs.array_job_name(dag_run.dag_id, dag_run.run_id)
    [summary] = batch.list_jobs(jobQueue=batch_jobs.batch_settings().launcher_queue,
                                filters=[{"name": "JOB_NAME", "values": [name]}])["jobSummaryList"]
    submitted = datetime.fromtimestamp(summary["createdAt"] / 1000, tz=UTC)
    assert reserved_at <= submitted, (reserved_at, submitted)


@pytest.fixture(scope="module")
def slow_jobs(campaign_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An emulator whose jobs train for two minutes: running while the budget guard looks."""
    log = tmp_path_factory.mktemp("aws") / "local-aws.log"
    with local_aws(fake_image_map(seconds=120), log_path=log, stop_grace_seconds=2) as endpoint:
        seed_aws(endpoint, campaign_dsn)
        yield endpoint


def test_the_hard_cap_stops_the_running_job_and_the_run_fails(
        slow_jobs: str, campaign_dsn: str, airflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget guard (dags/budget_guard.py's task body, here in a thread beside
    ``dag.test``) sees the run's on-demand job burn 7.09 USD/h against a hard cap of 1 USD
    within its look-ahead, stops it and records it; the target fails Stopped and the run
    fails naming it; nothing more is launched."""
    import threading

    from dev.local_stack import in_process_env
    from regional_training.launch import budget

    for key, value in in_process_env(dsn=campaign_dsn, endpoint=slow_jobs, airflow_home=airflow_db).items():
        monkeypatch.setenv(key, value)
    stops: list[budget.CapStop] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def guard() -> None:
        while not done.is_set():
            try:
                stops.extend(budget.guard_hard_caps(horizon_seconds=3600))
            except BaseException as err:  # reported by the test, not lost in the thread
                errors.append(err)
                return
            done.wait(1)

    watcher = threading.Thread(target=guard, daemon=True)
    watcher.start()
    try:
        conf = {**LOCAL_RUN_CONF, "placement": "cheapest", "campaigns": ["boston-winter-2026"], "estimated_hours": 2,
                "purchase_options": ["on_demand"], "budget_hard_cap_usd": 1}
        dag_run, states = run_dag(conf)
    finally:
        done.set()
        watcher.join(timeout=30)
    assert not errors, errors
    assert str(dag_run.state) == "failed" and states["train"] == ["failed"]
    jobs = jobs_of_run(slow_jobs, dag_run.run_id)
    assert [(j["Region"], j["TrainingJobStatus"]) for j in jobs] == [("us-east-1", "Stopped")]
    assert [(s.run_id, s.job_name, s.hard_cap_usd) for s in stops] == [
        (dag_run.run_id, jobs[0]["TrainingJobName"], Decimal(1))]
    conn = psycopg2.connect(campaign_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT target_key, job_name, hard_cap_usd, projected_usd > hard_cap_usd FROM budget_cap_stops"
                        " WHERE run_id = %s", (dag_run.run_id,))
            recorded = cur.fetchall()
            cur.execute("SELECT target_key, budget_usd FROM budget_refusals WHERE run_id = %s", (dag_run.run_id,))
            refused = cur.fetchall()
            cur.execute("SELECT status, failure_reason FROM training_runs WHERE run_id = %s", (dag_run.run_id,))
            rows = cur.fetchall()
    finally:
        conn.close()
    assert recorded == [("boston-winter-2026-v1", jobs[0]["TrainingJobName"], Decimal(1), True)]
    # the row says who stopped the job and why, before SageMaker's own words
    assert [status for status, _ in rows] == ["Stopped"]
    assert rows[0][1].startswith("stopped by the run's budget hard cap of 1.0000 USD (spent "), rows[0][1]
    assert "; SageMaker: " in rows[0][1]
    # a job stopped by StopTrainingJob is not tried again by the train task (the refusal
    # of a later launch after a cap stop: tests/integration/test_budget_hard_cap.py)
    assert refused == []
    assert len(jobs) == 1
