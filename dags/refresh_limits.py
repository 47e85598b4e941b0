"""
### Refresh live quotas and prices

Keeps the placement's inputs true to what AWS publishes (issue 31): **refresh_quotas**
reads SageMaker's training-instance quotas from Service Quotas (`ListServiceQuotas`,
`GetServiceQuota`) in every region of the campaign database, **refresh_prices** the
on-demand training prices from the Price List API (`GetProducts`, `AmazonSageMaker`,
from its `us-east-1` endpoint or `MRT_PRICING_REGION`), into `instance_capacity` and
`instance_pricing`.

Each refresh reads everything first and writes it in one transaction: a throttled, bad
or partial answer changes nothing (the task fails, recorded in `limits_refreshes`, and
retries). A row marked `manual_wins` is never overwritten; every replaced row is kept in
`instance_capacity_history` / `instance_pricing_history` with when and by which refresh
(docs/placement.md, "Live quotas and prices").

Schedule: daily at 01:00 UTC, an hour before the nightly training run plans.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import CronTriggerTimetable, dag

from regional_training.runtime.taskflow import task

default_args = {
    "owner": "ml-platform",
    "retries": 3,
    "retry_delay": timedelta(minutes=5),
    "retry_exponential_backoff": True,
}


@dag(
    dag_id="refresh_limits",
    doc_md=__doc__,
    description="Refresh SageMaker training quotas (Service Quotas) and on-demand prices (Price List API)",
    schedule=CronTriggerTimetable("0 1 * * *", timezone="UTC", run_immediately=timedelta(0)),
    catchup=False,
    is_paused_upon_creation=True,
    max_active_runs=1,
    default_args=default_args,
    tags=["training", "sagemaker", "placement"],
)
def refresh_limits() -> None:
    @task
    def refresh_quotas() -> dict[str, Any]:
        from regional_training.plan import live_limits

        return live_limits.refresh_task("quotas")

    @task
    def refresh_prices() -> dict[str, Any]:
        from regional_training.plan import live_limits

        return live_limits.refresh_task("prices")

    refresh_quotas()
    refresh_prices()


refresh_limits()
