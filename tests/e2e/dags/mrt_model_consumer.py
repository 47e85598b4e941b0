"""Test-only downstream DAG scheduled on the trained-model asset (issue 15).

Loaded by the real services of tests/e2e/test_services.py as a DAG bundle of its own
(``mrt-test-dags``), never deployed: it returns what a downstream evaluation or
registration DAG would read, each triggering model event's ``extra``.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task

from regional_training.run.assets import MODEL

DAG_ID = "mrt_model_consumer"


@dag(dag_id=DAG_ID, schedule=[MODEL], catchup=False, tags=["test"])
def mrt_model_consumer() -> None:
    @task
    def models(**context: Any) -> list[dict[str, Any]]:
        return [dict(event.extra) for event in context["triggering_asset_events"][MODEL]]

    models()


mrt_model_consumer()
