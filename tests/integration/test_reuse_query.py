"""find_reusable.sql on the real PostgreSQL server: identical inputs within the window
hit, anything else (a changed input, outside the window, a re-synced copy, a Reused row
as the source, the asking run itself) does not; a Reused row is recorded with its pointer."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import pytest

from regional_training.plan import reuse, scan
from regional_training.plan.reuse import ReuseKey
from regional_training.runtime import campaign_db

pytestmark = pytest.mark.integration

DAG_ID = "reuse_query_test"
ENDED = datetime(2026, 11, 27, 2, 40, tzinfo=UTC)
AS_OF = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)  # the next night's logical date


@pytest.fixture()
def conn(campaign_dsn: str) -> Iterator[Any]:
    connection = psycopg2.connect(campaign_dsn)
    yield connection
    connection.rollback()
    with connection.cursor() as cur:  # this test's rows only (the DB is shared by the session)
        cur.execute("DELETE FROM training_runs WHERE dag_id = %s AND reused_from_run_id IS NOT NULL", (DAG_ID,))
        cur.execute("DELETE FROM training_runs WHERE dag_id = %s", (DAG_ID,))
        cur.execute("UPDATE dataset_copies SET synced_at = timestamptz '2026-09-01' WHERE synced_at <> "
                    "timestamptz '2026-09-01'")
    connection.commit()
    connection.close()


def _copy(conn: Any) -> dict[str, Any]:
    with conn.cursor() as cur:
        cur.execute("SELECT d.dataset_id, c.copy_id, c.region_code, d.dataset_key FROM dataset_copies c "
                    "JOIN datasets d USING (dataset_id) WHERE d.dataset_key = 'dublin-urban-2026-v1' "
                    "AND c.region_code = 'eu-west-1'")
        dataset_id, copy_id, region, dataset_key = cur.fetchone()
    conn.commit()
    return {"dataset_id": dataset_id, "copy_id": copy_id, "region_code": region, "dataset_key": dataset_key}


def _key(conn: Any, copy: dict[str, Any]) -> ReuseKey:
    version = reuse.dataset_version(conn, copy["copy_id"])
    assert version == "2026-09-01T00:00:00.000000Z"
    return ReuseKey(dataset_id=copy["dataset_id"], copy_id=copy["copy_id"], dataset_version=version,
                    hyperparameters_sha256="a" * 64, training_image="mrt/resnet50:1.0",
                    instance_type="ml.p4d.24xlarge", instance_count=2)


def _record(conn: Any, key: ReuseKey, copy: dict[str, Any], run_id: str, *, status: str = "Completed",
            ended: datetime = ENDED) -> None:
    """A completed row the way the collector writes it: with its inputs."""
    row = {
        "dag_id": DAG_ID, "run_id": run_id, "target_key": copy["dataset_key"], "region_code": copy["region_code"],
        "dataset_id": key.dataset_id, "copy_id": key.copy_id, "training_job_name": f"job-{run_id}",
        "training_job_arn": f"arn:aws:sagemaker:eu-west-1:123456789012:training-job/job-{run_id}",
        "attempt": 1, "status": status, "failure_reason": None if status == "Completed" else "AlgorithmError",
        "hyperparameters_sha256": key.hyperparameters_sha256, "instance_type": key.instance_type,
        "instance_count": key.instance_count, "training_start_time": ended - timedelta(minutes=30),
        "training_end_time": ended, "billable_seconds": 1800, "metrics": json.dumps({"train:accuracy": 0.91}),
        "source_artifact_uri": "s3://mrt-output-eu-west-1/training-jobs/x/output/model.tar.gz",
        "model_artifact_uri": f"s3://mrt-central-artifacts/runs/{run_id}/artifacts/m/model.tar.gz",
        "purchase_option": "on_demand", "placement_rank": 1, "price_per_instance_hour": 10.0,
        "billing_usd_per_hour": 10.0, "planned_cost_usd": 12.0, "actual_cost_usd": 10.0,
    }
    assert campaign_db.execute(conn, "upsert_training_run.sql",
                               {**row, **reuse.trained_fields(key), **scan.NO_POINT}) == 1


def _find(conn: Any, key: ReuseKey, window: str | None = "P2D", as_of: datetime = AS_OF,
          run_id: str = "tonight") -> dict[str, Any] | None:
    return reuse.find_reusable(conn, key, window=reuse.parse_window(window), as_of=as_of, dag_id=DAG_ID,
                               run_id=run_id)


def test_identical_inputs_within_the_window_hit_the_newest_completed_job(conn: Any) -> None:
    copy = _copy(conn)
    key = _key(conn, copy)
    _record(conn, key, copy, "older", ended=ENDED - timedelta(hours=20))
    _record(conn, key, copy, "newer")
    _record(conn, key, copy, "newest-failed", status="Failed", ended=ENDED + timedelta(hours=1))
    hit = _find(conn, key)
    assert hit is not None
    assert (hit["run_id"], hit["training_job_name"]) == ("newer", "job-newer")
    assert hit["model_artifact_uri"].endswith("/runs/newer/artifacts/m/model.tar.gz")
    assert hit["reuse_key"] == key.digest()


def test_the_window_bounds_are_inclusive_and_exact(conn: Any) -> None:
    copy = _copy(conn)
    key = _key(conn, copy)
    _record(conn, key, copy, "newer")
    age = AS_OF - ENDED  # 23 h 20 min
    assert _find(conn, key, window="PT23H20M") is not None
    assert _find(conn, key, window="PT23H19M59S") is None
    assert _find(conn, key, window=None) is None  # off: never reuses
    assert _find(conn, key, as_of=ENDED - timedelta(seconds=1), window="P7D") is None  # ended after as_of
    assert age == timedelta(hours=23, minutes=20)


@pytest.mark.parametrize(("field", "value"), [
    ("hyperparameters_sha256", "b" * 64),
    ("training_image", "mrt/resnet50:1.1"),
    ("training_image", "mrt/resnet50@sha256:" + "c" * 64),
    ("dataset_version", "2026-09-02T00:00:00.000000Z"),
    ("instance_type", "ml.g5.48xlarge"),
    ("instance_count", 3),
])
def test_a_changed_input_never_hits(conn: Any, field: str, value: Any) -> None:
    copy = _copy(conn)
    key = _key(conn, copy)
    _record(conn, key, copy, "newer")
    assert _find(conn, dataclasses.replace(key, **{field: value})) is None
    assert _find(conn, key) is not None


def test_a_resynced_copy_is_new_data(conn: Any) -> None:
    copy = _copy(conn)
    key = _key(conn, copy)
    _record(conn, key, copy, "newer")
    with conn.cursor() as cur:
        cur.execute("UPDATE dataset_copies SET synced_at = timestamptz '2026-11-27 12:00Z' WHERE copy_id = %s",
                    (copy["copy_id"],))
    conn.commit()
    assert _find(conn, key) is None  # the old key's version no longer matches the copy
    version = reuse.dataset_version(conn, copy["copy_id"])
    assert version is not None
    fresh = dataclasses.replace(key, dataset_version=version)
    assert fresh.dataset_version == "2026-11-27T12:00:00.000000Z"
    assert _find(conn, fresh) is None  # nothing trained on the new version yet


def test_the_asking_run_and_reused_rows_are_never_a_source(conn: Any) -> None:
    copy = _copy(conn)
    key = _key(conn, copy)
    _record(conn, key, copy, "newer")
    assert _find(conn, key, run_id="newer") is None  # a cleared target never reuses its own try
    source = _find(conn, key)
    assert source is not None
    target = {**copy, "purchase_option": "on_demand", "placement_rank": 1, "price_per_instance_hour": 10.0,
              "billing_usd_per_hour": 10.0, "planned_cost_usd": 12.0}
    row = reuse.reused_row(source, key, target=target, dag_id=DAG_ID, run_id="tonight",
                           model_artifact_uri="s3://mrt-central-artifacts/runs/tonight/artifacts/m/model.tar.gz")
    assert reuse.record_reused(conn, row) == 1
    assert reuse.record_reused(conn, row) == 1  # idempotent: replaces its row
    with conn.cursor() as cur:
        cur.execute("SELECT status, actual_cost_usd, planned_cost_usd, billable_seconds, reused_from_run_id, "
                    "source_artifact_uri, training_job_arn FROM training_runs WHERE dag_id = %s AND run_id = %s",
                    (DAG_ID, "tonight"))
        rows = cur.fetchall()
    conn.commit()
    assert len(rows) == 1
    status, actual, planned, billable, pointer, source_uri, arn = rows[0]
    assert (status, float(actual), float(planned), billable, pointer) == ("Reused", 0.0, 12.0, 0, "newer")
    assert source_uri == source["model_artifact_uri"] and arn == source["training_job_arn"]
    # The next night finds the job that trained ("newer"), never the Reused row.
    hit = _find(conn, key, run_id="tomorrow", as_of=AS_OF + timedelta(hours=1))
    assert hit is not None and hit["run_id"] == "newer"


def test_a_reused_status_needs_its_pointer(conn: Any) -> None:
    copy = _copy(conn)
    key = _key(conn, copy)
    with pytest.raises(psycopg2.errors.CheckViolation, match="training_runs_reused_pointer_check"):
        _record(conn, key, copy, "no-pointer", status="Reused")
