"""The hard cap (issue 31, item 4) on the real PostgreSQL server and the emulator as a
server, with jobs really running: when a run's actual spend would cross its
``budget_hard_cap_usd`` before the guard looks again, the guard stops its newest running
job (StopTrainingJob), records it with the figures, stops nothing more on its next look,
and the run launches nothing more."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg2
import pytest
from run_stub import RunStub

from dev.local_aws.fake_entry_point import SHARD_MAGIC
from dev.local_stack import TRAINING_REPOSITORY, aws_client, fake_image_map, local_aws, wait_for_job_status
from regional_training.launch import budget

pytestmark = pytest.mark.integration

REGION = "us-east-1"
BUCKET = "mrt-hard-cap"
RATE = Decimal(10)  # USD per instance-hour
HORIZON = 300.0  # the guard's period (dags/budget_guard.py): 5 minutes


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    # jobs that train for 10 minutes: they are running when the guard looks
    with local_aws(fake_image_map(seconds=600), max_concurrent_jobs=4, stop_grace_seconds=2) as url:
        s3 = aws_client("s3", url, REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="data/shard-0", Body=SHARD_MAGIC + b"x" * 64)
        yield url


def request(name: str) -> dict[str, Any]:
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": f"123456789012.dkr.ecr.{REGION}.amazonaws.com/"
                                   f"{TRAINING_REPOSITORY}:local", "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::123456789012:role/mrt-sagemaker-execution",
        "HyperParameters": {"max_steps": "10"},
        "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/data/"}}}],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
        "ResourceConfig": {"InstanceType": "ml.g5.12xlarge", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 1200},
    }


def launch(conn: Any, run: RunStub, target: str, name: str, cap: float) -> budget.Decision:
    return budget.reserve_launch(conn, budget.Launch(
        dag_id=run.dag_id, run_id=run.run_id, target_key=target, job_name=name, region_code=REGION,
        purchase_option="on_demand", instance_count=1, billing_usd_per_hour=RATE, expected_cost_usd=Decimal(5)),
        budget_usd=None, hard_cap_usd=cap)


def test_the_hard_cap_stops_the_newest_running_job_and_records_it(campaign_dsn: str, endpoint: str) -> None:
    sm = aws_client("sagemaker", endpoint, REGION)
    run = RunStub(campaign_dsn, {"budget_hard_cap_usd": 32})
    names = [f"mrt-cap-{run.run_id[-2:].strip('-_')}-{i}" for i in range(3)]
    with contextlib.closing(psycopg2.connect(campaign_dsn)) as conn:
        for i, name in enumerate(names):  # each reserved (cap recorded), then created, oldest first
            launch(conn, run, f"boston-{i}", name, 32)
            sm.create_training_job(**request(name))
            time.sleep(1.1)  # CreationTime has whole seconds in the emulator: an order to find
        started = [wait_for_job_status(sm, n, {"InProgress"}, timeout=120) for n in names]
        for job in started:
            while "TrainingStartTime" not in job:
                time.sleep(0.5)
                job.update(sm.describe_training_job(TrainingJobName=job["TrainingJobName"]))
        latest_start = max(job["TrainingStartTime"] for job in started)

        def describe(region: str, name: str) -> dict[str, Any]:
            assert region == REGION
            return sm.describe_training_job(TrainingJobName=name)  # type: ignore[no-any-return]

        stopped: list[str] = []

        def stop(region: str, name: str) -> bool:
            sm.stop_training_job(TrainingJobName=name)
            stopped.append(name)
            return True

        # an hour on: 3 jobs x 1 h x 10 USD = 30 USD spent, 32.50 by the next look (+2.50)
        # over the cap of 32: stopping the newest brings the next look to 31.67
        an_hour_on = latest_start + timedelta(hours=1)
        stops = budget.enforce_hard_caps(conn, describe=describe, stop=stop, horizon_seconds=HORIZON,
                                         now=an_hour_on)
        assert stopped == [names[2]]
        assert [(s.run_id, s.target_key, s.job_name, s.hard_cap_usd) for s in stops] == [
            (run.run_id, "boston-2", names[2], Decimal(32))]
        assert Decimal(30) <= stops[0].actual_usd < Decimal("30.2")
        assert Decimal("32.5") <= stops[0].projected_usd < Decimal("32.7")
        assert wait_for_job_status(sm, names[2], {"Stopping", "Stopped"}, timeout=60)["TrainingJobStatus"]
        assert [sm.describe_training_job(TrainingJobName=n)["TrainingJobStatus"] for n in names[:2]] == [
            "InProgress", "InProgress"]
        with conn.cursor() as cur:
            cur.execute("SELECT job_name, target_key, hard_cap_usd, actual_usd, projected_usd FROM budget_cap_stops"
                        " WHERE run_id = %s", (run.run_id,))
            assert cur.fetchall() == [(names[2], "boston-2", Decimal(32), stops[0].actual_usd,
                                       stops[0].projected_usd)]
        conn.commit()

        # the next look at the same moment: the stopped job burns nothing; 2 x 10 x (1 + 1/12)
        # = 21.67 USD plus the stopped job's billed seconds: under the cap, nothing more stopped
        assert budget.enforce_hard_caps(conn, describe=describe, stop=stop, horizon_seconds=HORIZON,
                                        now=an_hour_on) == []
        assert stopped == [names[2]]

        # the run launches nothing more: a failover or new attempt is refused, named
        with pytest.raises(budget.OverBudgetError, match=r"target boston-2: over_budget: the run's hard cap "
                           r"\(budget_hard_cap_usd 32\.00 USD\) stopped 1 job\(s\)"):
            launch(conn, run, "boston-2", f"{names[2]}-a2", 32)
        # a job reserved before the stop (a retried create of the same name) is followed
        assert launch(conn, run, "boston-0", names[0], 32).already

    for name in names[:2]:
        sm.stop_training_job(TrainingJobName=name)


def test_a_run_without_a_cap_or_under_it_is_left_alone(campaign_dsn: str, endpoint: str) -> None:
    sm = aws_client("sagemaker", endpoint, REGION)
    uncapped, roomy = RunStub(campaign_dsn, {}), RunStub(campaign_dsn, {"budget_hard_cap_usd": 1000})
    with contextlib.closing(psycopg2.connect(campaign_dsn)) as conn:
        budget.reserve_launch(conn, budget.Launch(
            dag_id=uncapped.dag_id, run_id=uncapped.run_id, target_key="t", job_name="mrt-uncapped-0",
            region_code=REGION, purchase_option="on_demand", instance_count=1, billing_usd_per_hour=RATE,
            expected_cost_usd=Decimal(5)), budget_usd=None)
        launch(conn, roomy, "t", "mrt-roomy-0", 1000)
        for name in ("mrt-uncapped-0", "mrt-roomy-0"):
            sm.create_training_job(**request(name))
        job = wait_for_job_status(sm, "mrt-roomy-0", {"InProgress"}, timeout=120)
        described: list[str] = []

        def describe(region: str, name: str) -> dict[str, Any]:
            described.append(name)
            return sm.describe_training_job(TrainingJobName=name)  # type: ignore[no-any-return]

        def stop(region: str, name: str) -> bool:
            raise AssertionError(f"stopped {name}")

        assert budget.enforce_hard_caps(conn, describe=describe, stop=stop, horizon_seconds=HORIZON,
                                        now=job["CreationTime"] + timedelta(hours=10)) == []
        assert "mrt-uncapped-0" not in described and "mrt-roomy-0" in described
    for name in ("mrt-uncapped-0", "mrt-roomy-0"):
        sm.stop_training_job(TrainingJobName=name)
