"""Cost-aware placement and failover (issue 6), end to end on the offline stack."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg2
import pytest
from helpers import jobs_of_run, training_dag

from dev.local_stack import CENTRAL_BUCKET, LOCAL_RUN_CONF, aws_client, fake_image_map, local_aws, seed_aws
from regional_training.run import run_layout

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def capacity_starved_aws(campaign_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An emulator where us-west-2 has no capacity: CreateTrainingJob -> ResourceLimitExceeded."""
    log = tmp_path_factory.mktemp("aws") / "local-aws.log"
    with local_aws(fake_image_map(), capacity_error_regions=("us-west-2",), log_path=log) as endpoint:
        seed_aws(endpoint, campaign_dsn)
        yield endpoint


@pytest.fixture()
def starved_stack(capacity_starved_aws: str, campaign_dsn: str, airflow_db: Path,
                  monkeypatch: pytest.MonkeyPatch) -> str:
    from dev.local_stack import in_process_env

    for key, value in in_process_env(dsn=campaign_dsn, endpoint=capacity_starved_aws, airflow_home=airflow_db).items():
        monkeypatch.setenv(key, value)
    return capacity_starved_aws


def test_cheapest_placement_fails_over_when_a_region_has_no_capacity(starved_stack: str, campaign_dsn: str) -> None:
    endpoint = starved_stack
    conf = {**LOCAL_RUN_CONF, "placement": "cheapest", "campaigns": ["boston-winter-2026"], "estimated_hours": 2}
    dag_run = training_dag().test(run_conf=conf)
    assert str(dag_run.state) == "success"
    train = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "train")
    assert train.try_number == 1  # moved and resumed in one try: no retry hid a failure

    # The plan chose us-west-2 (prepaid reserved); it had no capacity, so the target
    # moved to its next-ranked candidate outside the blocked region: exactly one job.
    jobs = jobs_of_run(endpoint, dag_run.run_id)
    assert len(jobs) == 1
    job = jobs[0]
    assert job["Region"] == "us-east-1" and job["TagMap"]["purchase_option"] == "spot"
    assert job["EnableManagedSpotTraining"] is True
    assert job["StoppingCondition"]["MaxWaitTimeInSeconds"] > job["StoppingCondition"]["MaxRuntimeInSeconds"]
    assert job["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"].startswith(
        "s3://mrt-campaign-data-us-east-1/datasets/boston-winter-2026/")

    conn = psycopg2.connect(campaign_dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT from_region, from_option, to_region, to_option, error_code FROM placement_moves"
                    " WHERE run_id = %s ORDER BY move_number", (dag_run.run_id,))
        moves = cur.fetchall()
        cur.execute("SELECT region_code, purchase_option, status, planned_cost_usd, actual_cost_usd,"
                    " billable_seconds, billing_usd_per_hour, instance_count FROM training_runs WHERE run_id = %s",
                    (dag_run.run_id,))
        rows = cur.fetchall()
    conn.close()
    assert moves == [("us-west-2", "reserved", "us-east-1", "spot", "ResourceLimitExceeded")]
    assert len(rows) == 1
    region, option, status, planned, actual, billable, rate, count = rows[0]
    assert (region, option, status) == ("us-east-1", "spot", "Completed")
    assert planned > 0
    # Actual cost: SageMaker's billable seconds at the billing rate, per instance.
    assert actual == (Decimal(billable) * count * rate / 3600).quantize(Decimal("0.01"))

    key = f"runs/{run_layout.run_key('multi_region_training', dag_run.run_id)}/summary.json"
    summary = json.loads(aws_client("s3", endpoint, "us-east-1").get_object(Bucket=CENTRAL_BUCKET, Key=key)["Body"]
                         .read())
    assert summary["moves"]["boston-winter-2026-v1"][0]["to_region"] == "us-east-1"
    assert "us-west-2->us-east-1" in summary["text"]
    assert "planned" in summary["text"] and "actual" in summary["text"]


def test_no_copy_outside_the_starved_region_fails_naming_it(starved_stack: str) -> None:
    """Seattle's dataset exists only in us-west-2: training elsewhere is never attempted."""
    conf = {**LOCAL_RUN_CONF, "placement": "cheapest", "campaigns": ["seattle-rain-2026"], "estimated_hours": 2}
    dag_run = training_dag().test(run_conf=conf)
    assert str(dag_run.state) == "failed"
    assert jobs_of_run(starved_stack, dag_run.run_id) == []
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert states["train"] == "failed" and states["check_regions"] == "failed"
