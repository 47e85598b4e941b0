"""Asset events under ``dag.test()`` (Airflow's asset manager writes them to the metadata
DB), emitted as the DAG emits them: each mapped training task names the model asset
itself and sets its one event's metadata; a task that records several rows (reused ones,
or a failed one) adds one ``mrt_trained_model`` event per model through the alias, and
none for a failed target. The run-summary event carries the verdict's counts and cost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from regional_training.run.assets import MODEL, RUN_SUMMARY

pytestmark = pytest.mark.integration

HASH = "a" * 64


def _row(region: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "dag_id": "mrt_asset_events_test", "run_id": "set-per-run", "target_key": f"{region}-data",
        "dataset_id": 7, "region_code": region, "status": status,
        "model_artifact_uri": f"s3://mrt-central-artifacts/runs/x/artifacts/{region}-data/model.tar.gz"
        if status != "Failed" else None,
        "training_job_name": f"job-{region}", "training_job_arn": f"arn:aws:sagemaker:{region}:123456789012:"
        f"training-job/job-{region}", "hyperparameters_sha256": HASH, "instance_type": "ml.g5.12xlarge",
        "instance_count": 1, "metrics": {"train:accuracy": 0.9}, "planned_cost_usd": 2.5,
        "actual_cost_usd": 0.0 if status == "Reused" else 2.0, **extra,
    }


ROWS = [_row("us-east-1", "Completed"), _row("eu-west-1", "Failed"),
        _row("us-west-2", "Reused", reused_from_run_id="scheduled__2026-11-27T02:00:00+00:00")]


DAG_SOURCE = '''
"""Test-only producer: mapped collectors and a summary emitting the package's assets."""
from typing import Any

import pendulum
from airflow.sdk import dag, task

from regional_training.run.assets import MODEL, MODEL_ALIAS, RUN_SUMMARY, emit_model_event, summary_event_extra


@dag(dag_id="mrt_asset_events_test", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
     catchup=False)
def producer():
    # As the DAG's train: one task per completed target, its own outlet the model.
    @task(outlets=[MODEL], map_index_template="{{ row.region_code }}")
    def collect(row, **context):
        return emit_model_event(context["outlet_events"], {**row, "run_id": context["run_id"]},
                                campaign_key="c-2026", outlets=[MODEL])

    # As jobs_to_launch and summarize: several rows, an event per model through the alias.
    @task(outlets=[MODEL_ALIAS])
    def record(rows, **context):
        return [emit_model_event(context["outlet_events"], {**row, "run_id": context["run_id"]},
                                 campaign_key="c-2026") for row in rows]

    @task(outlets=[RUN_SUMMARY])
    def summarize(rows, **context):
        verdict = {"ok": False, "headline": "2 of 3 planned target(s) completed and recorded",
                   "nothing_to_do": None, "targets": [{}, {}, {}]}
        context["outlet_events"][RUN_SUMMARY].extra = summary_event_extra(
            dag_id="mrt_asset_events_test", run_id=context["run_id"], verdict=verdict, rows=rows,
            summary_uri="s3://mrt-central-artifacts/runs/x/summary.json",
            report_uri="s3://mrt-central-artifacts/runs/x/report.html")

    collect.expand(row=ROWS[:1]) >> record(ROWS[1:]) >> summarize(ROWS)


producer()
'''


def _dag(folder: Path) -> Any:
    """The producer parsed from its file and written to the metadata DB (as the
    dag-processor would), so ``dag.test()`` finds its serialized version."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    path = folder / "mrt_asset_events_test.py"
    path.write_text(f"ROWS = {ROWS!r}\n" + DAG_SOURCE)
    bag = DagBag(dag_folder=str(path))
    assert bag.import_errors == {}
    DagBundlesManager().sync_bundles_to_db()  # the bundle row the DAG's row refers to
    sync_bag_to_db(bag, "dags-folder", None)
    return bag.dags["mrt_asset_events_test"]


def test_each_model_gets_one_event_from_its_task_or_through_the_alias(airflow_db: Path, tmp_path: Path) -> None:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    run = _dag(tmp_path).test()
    assert str(run.state) == "success"
    with create_session() as session:
        events = session.execute(
            select(AssetModel.name, AssetEvent.extra, AssetEvent.source_map_index)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetEvent.source_run_id == run.run_id)
        ).all()
    models = sorted((e for e in events if e.name == MODEL.name), key=lambda e: e.extra["region"])
    assert [(e.source_map_index, e.extra["region"], e.extra["status"]) for e in models] == [
        (0, "us-east-1", "Completed"), (-1, "us-west-2", "Reused")]
    first = models[0].extra
    assert first == {
        "dag_id": "mrt_asset_events_test", "run_id": run.run_id, "target_key": "us-east-1-data",
        "dataset_key": "us-east-1-data", "dataset_id": 7, "region": "us-east-1", "status": "Completed",
        "artifact_uri": "s3://mrt-central-artifacts/runs/x/artifacts/us-east-1-data/model.tar.gz",
        "training_job_name": "job-us-east-1",
        "training_job_arn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/job-us-east-1",
        "hyperparameters_sha256": HASH, "instance_type": "ml.g5.12xlarge", "instance_count": 1,
        "final_metrics": {"train:accuracy": 0.9}, "planned_cost_usd": 2.5, "actual_cost_usd": 2.0,
        "campaign_key": "c-2026",
    }
    assert models[1].extra["reused_from_run_id"] == "scheduled__2026-11-27T02:00:00+00:00"
    (summary,) = [e for e in events if e.name == RUN_SUMMARY.name]
    assert summary.extra["targets_by_status"] == {"Completed": 1, "Failed": 1, "Reused": 1}
    assert (summary.extra["planned_cost_usd"], summary.extra["actual_cost_usd"]) == (7.5, 4.0)
    assert summary.extra["ok"] is False
