"""
### Budget guard: the hard cap

Every 5 minutes, for every training run with the Param `budget_hard_cap_usd` and a job
still running (issue 31): adds up the run's actual spend (settled jobs, billed time of
ended ones, time since each running job started at its instances x billing rate) and,
when that spend would cross the cap before the next check, stops the run's newest
running jobs (`StopTrainingJob`) until it would not. Each stop is recorded in
`budget_cap_stops` with the figures; the run then launches nothing more (its targets
fail `over_budget`). See docs/placement.md, "Hard cap".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import dag

from regional_training.runtime.taskflow import task

#: The guard's period, also its look-ahead: a cap holds to within one period's burn.
GUARD_PERIOD = timedelta(minutes=5)

default_args = {
    "owner": "ml-platform",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
}


@dag(
    dag_id="budget_guard",
    doc_md=__doc__,
    description="Stop the newest running jobs of a run whose actual spend would cross its hard cap",
    schedule=GUARD_PERIOD,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),  # fixed; catchup off: only the latest period runs
    catchup=False,
    is_paused_upon_creation=True,
    max_active_runs=1,
    dagrun_timeout=GUARD_PERIOD * 2,
    default_args=default_args,
    tags=["training", "sagemaker", "budget"],
)
def budget_guard() -> None:
    @task
    def enforce_hard_caps() -> list[dict[str, Any]]:
        from regional_training.launch import budget

        return [{k: str(v) for k, v in stop.__dict__.items()}
                for stop in budget.guard_hard_caps(GUARD_PERIOD.total_seconds())]

    enforce_hard_caps()


budget_guard()
