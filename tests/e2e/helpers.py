"""What the end-to-end tests share: the DAG, a run's task states, jobs and result rows."""

from __future__ import annotations

from typing import Any

import psycopg2

from dev.local_stack import aws_client
from regional_training.runtime import identifiers

ALL_REGIONS = ("eu-central-1", "eu-west-1", "us-east-1", "us-west-2")
#: The two regions the real-training tests run in (the DAG's ``regions`` Param). Here,
#: not in conftest.py: ``from conftest import`` gets whichever conftest pytest loaded last.
TRAINING_REGIONS = ("eu-west-1", "us-east-1")


def training_dag() -> Any:
    """The real DAG, parsed from its file as the dag-processor would."""
    from airflow.dag_processing.dagbag import DagBag

    from dev.local_stack import REPO

    bag = DagBag(dag_folder=str(REPO / "dags" / "multi_region_training.py"))
    assert bag.import_errors == {}
    return bag.dags["multi_region_training"]


def run_dag(conf: dict[str, Any]) -> tuple[Any, dict[str, list[str]]]:
    """Run the DAG with ``dag.test()``; the run and each task's final state(s)."""
    dag_run = training_dag().test(run_conf=conf)
    states: dict[str, list[str]] = {}
    for ti in dag_run.get_task_instances():
        states.setdefault(ti.task_id, []).append(str(ti.state))
    return dag_run, states


def jobs_of_run(endpoint: str, run_id: str, regions: tuple[str, ...] = ALL_REGIONS) -> list[dict[str, Any]]:
    """Every training job the emulator holds for ``run_id`` (by its ``dag_run`` tag)."""
    jobs = []
    for region in regions:
        sm = aws_client("sagemaker", endpoint, region)
        for summary in sm.list_training_jobs(MaxResults=100)["TrainingJobSummaries"]:
            job = sm.describe_training_job(TrainingJobName=summary["TrainingJobName"])
            tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=job["TrainingJobArn"])["Tags"]}
            if tags.get("dag_run") == identifiers.tag_value(run_id):
                jobs.append({**job, "Region": region, "TagMap": tags})
    return jobs


def rows_of_run(dsn: str, run_id: str, *columns: str) -> list[dict[str, Any]]:
    """``training_runs`` rows of one run, ordered by region, as dicts of ``columns``."""
    from psycopg2 import sql

    query = sql.SQL("SELECT {} FROM training_runs WHERE run_id = %s ORDER BY region_code, target_key").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(query, (run_id,))
            return [dict(zip(columns, r, strict=True)) for r in cur.fetchall()]
    finally:
        conn.close()
