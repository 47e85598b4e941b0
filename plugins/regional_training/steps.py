"""The DAG's steps as plain functions; the DAG file only wires them into tasks.

Each step is a transaction: its outputs are keyed by the DAG run, written with
overwrite or UPSERT, so a retry or a cleared task repeats it without side effects.
"""

from __future__ import annotations

import logging
from typing import Any

from regional_training import array_file, campaign_db, collection, placement, summary, training_request
from regional_training.params import processes_per_host, training_hyperparameters
from regional_training.run_layout import RunLayout
from regional_training.settings import Settings
from regional_training.targets import Target, check_row, validate_rows

log = logging.getLogger(__name__)
CAMPAIGN_DB_CONN_ID = "campaign_db"


class CampaignDbUnavailableError(RuntimeError):
    """The campaign-metadata database cannot be reached (the task retries with backoff)."""


def campaign_db_connection() -> Any:
    """A connection through ``PostgresHook``; an unreachable server is a named error."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    try:
        return PostgresHook(postgres_conn_id=CAMPAIGN_DB_CONN_ID).get_conn()
    except Exception as err:
        if type(err).__name__ != "OperationalError":  # psycopg2's or psycopg's
            raise
        raise CampaignDbUnavailableError(
            f"campaign database (connection {CAMPAIGN_DB_CONN_ID!r}) is unavailable: {str(err).strip()}"
        ) from err


def select_targets(conn: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Place and validate this run's targets (raises naming the bad row or Param).

    Returns ``targets`` (each with its ranked ``alternatives`` for failover),
    ``left_out`` (datasets the plan could not place, with the reason) and the plan's
    expected total.
    """
    processes_per_host(params)  # cross-field Param check, before anything else
    campaigns, regions = list(params["campaigns"]), list(params["regions"])
    known = {row["region_code"] for row in campaign_db.fetch_dicts(conn, "known_regions.sql", {})}
    if params["placement"] == "region_local":
        rows = campaign_db.fetch_dicts(
            conn, "select_targets.sql", {"campaign_keys": campaigns, "region_codes": regions}
        )
        alternatives: dict[int, list[dict[str, Any]]] = {}
        left_out: list[dict[str, Any]] = []
    else:
        plan = placement.fetch_placement(
            conn,
            instance_type=params["instance_type"],
            instance_count=params["instance_count"],
            estimated_hours=params["estimated_hours"],
            budget_usd=params["budget_usd"],
            allowed_purchase_options=params["purchase_options"],
            campaign_keys=campaigns,
            region_codes=regions,
        )
        rows = [_placement_row(t.chosen) for t in plan.placed if t.chosen]
        alternatives = {
            t.dataset_id: [_placement_row(a) for a in t.alternatives if a.fits] for t in plan.placed
        }
        left_out = [
            {"dataset_key": t.dataset_key, "campaign_key": t.campaign_key, "reason": t.left_out_reason,
             "explanation": placement.LEFT_OUT_REASONS.get(t.left_out_reason or "", "")}
            for t in plan.left_out
        ]
        for item in left_out:
            log.warning("Left out %s (%s): %s", item["dataset_key"], item["reason"], item["explanation"])
    requested = [c for c in campaigns if c not in {item["campaign_key"] for item in left_out}]
    targets = validate_rows(rows, requested_campaigns=requested, allowed_regions=regions, known_regions=known,
                            allow_empty=bool(left_out))
    out = []
    for target in targets:
        alts = alternatives.get(target.dataset_id, [])
        for rank, alt in enumerate(alts, start=1):
            check_row(f"alternative {rank} of {target.target_key} ({alt['region_code']!r})", alt, regions)
        out.append({**target.to_dict(), "alternatives": [Target.from_dict(a).to_dict() for a in alts]})
    log.info("Selected %d target(s): %s", len(out), ", ".join(
        f"{t['dataset_key']} -> {t['region_code']} {t['purchase_option']}" for t in out))
    planned = [t["planned_cost_usd"] for t in out if t["planned_cost_usd"] is not None]
    return {"targets": out, "left_out": left_out, "planned_total_usd": sum(planned) if planned else None}


def _placement_row(row: placement.PlacementRow) -> dict[str, Any]:
    """A placement candidate as a target row (JSON-safe numbers for XCom)."""

    def num(value: Any) -> float | None:
        return None if value is None else float(value)

    return {
        "region_code": row.region_code,
        "s3_uri": row.s3_uri,
        "campaign_key": row.campaign_key,
        "dataset_key": row.dataset_key,
        "dataset_id": row.dataset_id,
        "copy_id": row.copy_id,
        "output_bucket": row.output_bucket,
        "purchase_option": row.purchase_option,
        "placement_rank": row.rank,
        "price_per_instance_hour": num(row.price_per_instance_hour),
        "billing_usd_per_hour": num(row.billing_usd_per_hour),
        "planned_cost_usd": num(row.expected_cost_usd),
    }


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
    against the selected targets. Each job holds its target and request, a request per
    ranked failover alternative (built and validated now, so a failover never needs the
    database), the failover limit and the hyperparameter hash.
    """
    by_key = {t["dataset_key"]: t for t in targets}
    lines = array_file.parse(array_text)
    if sorted(line["target_key"] for line in lines) != sorted(by_key):
        raise ValueError("the array file's targets differ from the selected targets; re-run select_targets")
    hyperparameters = training_request.sagemaker_hyperparameters(
        training_hyperparameters(params), processes_per_host=processes_per_host(params)
    )
    digest = training_request.hyperparameters_sha256(hyperparameters)

    def request_for(target: Target) -> dict[str, Any]:
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
            spot_extra_wait_seconds=params["spot_extra_wait_hours"] * 3600,
        )
        training_request.validate_request(request)
        return request

    jobs = []
    for line in lines:
        data = by_key[line["target_key"]]
        target = Target.from_dict(data)
        jobs.append(
            {
                "target": target.to_dict(),
                "request": request_for(target),
                "failover": [
                    {"target": alt, "request": request_for(Target.from_dict(alt))}
                    for alt in data.get("alternatives", [])
                ],
                "max_failovers": params["max_failovers"],
                "hyperparameters_sha256": digest,
            }
        )
    log.info("Built %d request(s); hyperparameters sha256 %s", len(jobs), digest)
    return jobs


def training_operator_kwargs(job: dict[str, Any]) -> dict[str, Any]:
    """Per-job kwargs of the mapped training operator: the request, in its own region,
    and the ranked failover requests."""
    return {
        "config": job["request"],
        "region_name": job["target"]["region_code"],
        "failover": [c.to_dict() for c in collection.job_candidates(job)[1][1:]],
        "max_failovers": job["max_failovers"],
    }


def collect_job(
    *, job: dict[str, Any], moves: list[dict[str, Any]], settings: Settings, dag_id: str, run_id: str
) -> dict[str, Any]:
    """Collect one target's job and record it with its failover moves."""
    from regional_training import aws_io

    conn = campaign_db_connection()
    try:
        key = job["target"]["dataset_key"]
        for move in moves:
            campaign_db.execute(conn, "record_placement_move.sql",
                                {"dag_id": dag_id, "run_id": run_id, "target_key": key, **move})
        row = collection.collect(
            job=job,
            dag_id=dag_id,
            run_id=run_id,
            layout=RunLayout(settings.central_bucket, dag_id, run_id),
            describe=lambda region, name: aws_io.describe_training_job(name, region=region),
            copy=lambda src, dst: aws_io.copy_object(src, dst, dest_region=settings.central_region),
            upsert=lambda row: campaign_db.execute(conn, "upsert_training_run.sql", row),
        )
        return {**row, "moves": moves}
    finally:
        conn.close()


def summarize_run(
    *,
    rows: list[dict[str, Any]],
    settings: Settings,
    dag_id: str,
    run_id: str,
    dry_run: bool,
    planned: int,
    left_out: list[dict[str, Any]],
) -> dict[str, Any]:
    import json

    from regional_training import aws_io

    result = summary.summarize(rows, run_id=run_id, dry_run=dry_run, planned=planned, left_out=left_out)
    uri = RunLayout(settings.central_bucket, dag_id, run_id).summary
    aws_io.put_text(uri, json.dumps(result, indent=2, sort_keys=True), region=settings.central_region)
    for line in result["text"].splitlines():
        log.info("%s", line)
    return {**result, "summary_uri": uri}
