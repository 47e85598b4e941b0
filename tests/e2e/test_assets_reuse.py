"""Cached identical work on the real DAG (``dag.test()``, real Postgres, the emulator with
the stand-in entry point: this is about wiring, not training).

Two runs with the same conf and ``reuse_completed_within`` set: the second creates no
training job (the emulator holds none tagged with its run), records ``Reused`` for every
target with a pointer to the first run, costs 0, copies the first run's models to its
own place, emits a model event per target and is green. Changing one hyperparameter
trains every target again.
"""

from __future__ import annotations

import json
from typing import Any

import helpers
import pytest
from helpers import jobs_of_run, rows_of_run

from dev.local_stack import LOCAL_RUN_CONF, aws_client

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

REGIONS = ("eu-west-1", "us-east-1")
#: A learning rate no other test uses: the first run can reuse nothing recorded before.
#: Placed at the cheapest on-demand copy: the planned cost is known, so the saving shows.
CONF: dict[str, Any] = {**LOCAL_RUN_CONF, "regions": list(REGIONS), "purchase_options": ["on_demand"],
                        "learning_rate": 0.4321, "reuse_completed_within": "P1D"}
COLUMNS = ("target_key", "region_code", "status", "training_job_name", "actual_cost_usd", "planned_cost_usd",
           "billable_seconds", "reused_from_run_id", "reuse_key", "model_artifact_uri", "source_artifact_uri")


def _model_events(run_id: str) -> list[dict[str, Any]]:
    """The ``mrt_trained_model`` events the run emitted (Airflow's metadata DB)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from regional_training.run.assets import MODEL

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent.extra).join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetEvent.source_run_id == run_id, AssetModel.name == MODEL.name)
        ).all()
    return sorted((dict(r.extra) for r in rows), key=lambda e: e["region"])


def _object_exists(endpoint: str, uri: str) -> bool:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    s3 = aws_client("s3", endpoint, "eu-west-1")
    return bool(s3.list_objects_v2(Bucket=bucket, Prefix=key)["KeyCount"])


def test_a_second_identical_run_trains_nothing_and_a_changed_hyperparameter_retrains(
    offline_stack: str, campaign_dsn: str
) -> None:
    first, states = helpers.run_dag(CONF)
    assert str(first.state) == "success", states
    trained = rows_of_run(campaign_dsn, first.run_id, *COLUMNS)
    targets = len(trained)
    assert targets >= 2 and [r["status"] for r in trained] == ["Completed"] * targets
    assert all(r["reuse_key"] for r in trained), "a trained row must record its reuse inputs"
    assert len(jobs_of_run(offline_stack, first.run_id, REGIONS)) == targets

    second, states = helpers.run_dag(CONF)
    assert str(second.state) == "success", states
    # No CreateTrainingJob: the emulator holds no job of this run, no train task ran.
    assert jobs_of_run(offline_stack, second.run_id) == []
    assert "train" not in states or set(states["train"]) <= {"skipped", "removed"}, states
    reused = rows_of_run(campaign_dsn, second.run_id, *COLUMNS)
    by_target = {r["target_key"]: r for r in trained}
    assert [r["status"] for r in reused] == ["Reused"] * targets
    for row in reused:
        source = by_target[row["target_key"]]
        assert row["reused_from_run_id"] == first.run_id
        assert row["training_job_name"] == source["training_job_name"]
        assert (float(row["actual_cost_usd"]), row["billable_seconds"]) == (0.0, 0)
        assert row["planned_cost_usd"] is not None and float(row["planned_cost_usd"]) > 0  # the saving shows
        assert row["source_artifact_uri"] == source["model_artifact_uri"]
        assert row["model_artifact_uri"] != source["model_artifact_uri"]  # this run's own place
        assert _object_exists(offline_stack, row["model_artifact_uri"]), "the model was not copied to this run"
    # The run summary says so; the model events carry the reuse.
    summary = _summary(offline_stack, second.run_id)
    assert summary["verdict"]["ok"] is True
    assert "reused from an identical earlier job" in summary["verdict"]["headline"]
    assert summary["actual_cost_usd"] == 0.0 and summary["reused"] == targets
    assert summary["planned_cost_usd"] == pytest.approx(sum(float(r["planned_cost_usd"]) for r in reused))
    events = _model_events(second.run_id)
    assert [(e["region"], e["status"], e["reused_from_run_id"], e["actual_cost_usd"]) for e in events] == [
        (r["region_code"], "Reused", first.run_id, 0.0) for r in reused]

    changed, states = helpers.run_dag({**CONF, "learning_rate": 0.4322})
    assert str(changed.state) == "success", states
    assert [r["status"] for r in rows_of_run(campaign_dsn, changed.run_id, *COLUMNS)] == ["Completed"] * targets
    assert len(jobs_of_run(offline_stack, changed.run_id, REGIONS)) == targets


def _summary(endpoint: str, run_id: str) -> dict[str, Any]:
    """The run's summary.json, as summarize stored it in the central bucket."""
    from regional_training.run.run_layout import RunLayout
    from regional_training.runtime.settings import load_settings

    uri = RunLayout(load_settings().central_bucket, "multi_region_training", run_id).summary
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    body = aws_client("s3", endpoint, load_settings().central_region).get_object(Bucket=bucket, Key=key)["Body"]
    return json.loads(body.read())
