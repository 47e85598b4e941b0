"""The DAG's steps as plain functions; the DAG file only wires them into tasks.

Each step is a transaction: its outputs are keyed by the DAG run, written with
overwrite or UPSERT, so a retry or a cleared task repeats it without side effects.
"""

from __future__ import annotations

import logging
from typing import Any

from regional_training import array_file, campaign_db, collection, summary, training_request
from regional_training.params import processes_per_host, training_hyperparameters
from regional_training.settings import Settings
from regional_training.targets import Target, validate_rows

log = logging.getLogger(__name__)
CAMPAIGN_DB_CONN_ID = "campaign_db"


def campaign_db_connection() -> Any:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id=CAMPAIGN_DB_CONN_ID).get_conn()


def select_targets(conn: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Query and validate this run's targets (raises naming the bad row or Param)."""
    processes_per_host(params)  # cross-field Param check, before anything else
    campaigns, regions = list(params["campaigns"]), list(params["regions"])
    with conn.cursor() as cur:
        cur.execute("SELECT region_code FROM regions")
        known = {row[0] for row in cur.fetchall()}
    rows = campaign_db.fetch_dicts(conn, "select_targets.sql", {"campaign_keys": campaigns, "region_codes": regions})
    targets = validate_rows(rows, requested_campaigns=campaigns, allowed_regions=regions, known_regions=known)
    log.info("Selected %d target(s): %s", len(targets), ", ".join(t.target_key for t in targets))
    return [t.to_dict() for t in targets]


def array_file_uri(settings: Settings, dag_id: str, run_id: str) -> str:
    return f"s3://{settings.central_bucket}/runs/{training_request.run_key(dag_id, run_id)}/array.csv"


def build_jobs(
    *,
    array_text: str,
    targets: list[dict[str, Any]],
    params: dict[str, Any],
    settings: Settings,
    dag_id: str,
    run_id: str,
) -> list[dict[str, Any]]:
    """One validated request per array-file line, plus what the collectors need.

    Built from the stored array file (the record of what this run trains), cross-checked
    against the selected targets. Each job holds its target, request and the
    hyperparameter hash.
    """
    by_key = {Target.from_dict(t).target_key: Target.from_dict(t) for t in targets}
    lines = array_file.parse(array_text)
    if sorted(line["target_key"] for line in lines) != sorted(by_key):
        raise ValueError("the array file's targets differ from the selected targets; re-run select_targets")
    hyperparameters = training_request.sagemaker_hyperparameters(
        training_hyperparameters(params), processes_per_host=processes_per_host(params)
    )
    digest = training_request.hyperparameters_sha256(hyperparameters)
    jobs = []
    for line in lines:
        target = by_key[line["target_key"]]
        request = training_request.build_request(
            target=target,
            settings=settings,
            hyperparameters=hyperparameters,
            dag_id=dag_id,
            run_id=run_id,
            instance_type=params["instance_type"],
            instance_count=params["instance_count"],
            volume_size_gb=params["volume_size_gb"],
            max_runtime_seconds=params["max_runtime_hours"] * 3600,
        )
        training_request.validate_request(request)
        jobs.append({"target": target.to_dict(), "request": request, "hyperparameters_sha256": digest})
    log.info("Built %d request(s); hyperparameters sha256 %s", len(jobs), digest)
    return jobs


def training_operator_kwargs(job: dict[str, Any]) -> dict[str, Any]:
    """Per-job kwargs of the mapped training operator: the request, in its own region."""
    return {"config": job["request"], "region_name": job["target"]["region_code"]}


def collect_job(*, job: dict[str, Any], settings: Settings, dag_id: str, run_id: str) -> dict[str, Any]:
    from regional_training import aws_io

    region = job["target"]["region_code"]
    conn = campaign_db_connection()
    try:
        return collection.collect(
            job=job,
            dag_id=dag_id,
            run_id=run_id,
            central_bucket=settings.central_bucket,
            run_key=training_request.run_key(dag_id, run_id),
            describe=lambda name: aws_io.describe_training_job(name, region=region),
            copy=lambda src, dst: aws_io.copy_object(src, dst, dest_region=settings.central_region),
            upsert=lambda row: campaign_db.execute(conn, "upsert_training_run.sql", row),
        )
    finally:
        conn.close()


def summarize_run(
    *, rows: list[dict[str, Any]], settings: Settings, dag_id: str, run_id: str, dry_run: bool, planned: int
) -> dict[str, Any]:
    import json

    from regional_training import aws_io

    result = summary.summarize(rows, run_id=run_id, dry_run=dry_run, planned=planned)
    uri = f"s3://{settings.central_bucket}/runs/{training_request.run_key(dag_id, run_id)}/summary.json"
    aws_io.put_text(uri, json.dumps(result, indent=2, sort_keys=True), region=settings.central_region)
    for line in result["text"].splitlines():
        log.info("%s", line)
    return {**result, "summary_uri": uri}
