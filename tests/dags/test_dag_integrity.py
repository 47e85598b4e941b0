"""Every DAG file imports cleanly, offline, with the tags and retries we require."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(DAGS_DIR.glob("*.py"))
REQUIRED_TAGS = {"training", "sagemaker"}


def test_there_are_dag_files() -> None:
    assert DAG_FILES, f"no DAG files found in {DAGS_DIR}"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: str(p.relative_to(DAGS_DIR.parent)))
def test_dag_file_imports_offline_with_tags_and_retries(dag_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Parsing must do no I/O: any network connection (database, AWS) fails the import,
    # and neither connections nor Variables are available.
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"DAG file {dag_file.name} opened a network connection at import time")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.delenv("AIRFLOW_CONN_CAMPAIGN_DB", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_AWS_DEFAULT", raising=False)
    bag = DagBag(dag_folder=str(dag_file))
    assert bag.import_errors == {}
    assert bag.dags, f"{dag_file.name} defines no DAG"
    for dag in bag.dags.values():
        assert set(dag.tags) >= REQUIRED_TAGS, f"{dag.dag_id} lacks tags {REQUIRED_TAGS - set(dag.tags)}"
        assert dag.schedule is not None or dag.timetable is not None
        assert not dag.catchup
        for task in dag.tasks:
            if task.task_id != "check_regions":  # the watcher must fail at once, not retry
                assert task.retries >= 2, f"{dag.dag_id}.{task.task_id} has retries={task.retries}"
        assert dag.doc_md


def test_training_dag_shape() -> None:
    dag = DagBag(dag_folder=str(DAGS_DIR / "multi_region_training.py")).dags[
        "multi_region_training"
    ]
    assert set(dag.task_ids) == {
        "select_targets", "render_array_file", "build_requests", "jobs_to_launch", "launch_batch_array", "train",
        "record_late", "summarize", "check_regions",
    }
    train = dag.get_task("train")
    assert train.partial_kwargs["deferrable"] is True
    # One task per target, which collects its own job when resumed: nothing downstream
    # waits per target (the scheduler re-evaluates every waiting task instance each loop).
    assert train.downstream_task_ids == {"record_late", "check_regions"}
    # Late recording is its own step, before the summary, which only reads (issue 28).
    assert dag.get_task("record_late").downstream_task_ids == {"summarize", "check_regions"}
    assert dag.get_task("summarize").upstream_task_ids >= {"record_late"}
    assert "train" not in dag.get_task("summarize").upstream_task_ids
    from regional_training.run import assets

    assert dag.get_task("record_late").outlets == [assets.MODEL_ALIAS]
    assert assets.MODEL_ALIAS not in dag.get_task("summarize").outlets
    # Its model event is its own outlet, named statically (parsing creates the asset). No
    # mapped task emits through an alias: Airflow links an alias to its asset at the first
    # event through it, and concurrent first events failed one task on the link's key.
    from airflow.sdk import AssetAlias

    from regional_training.run import assets

    assert train.outlets == [assets.MODEL]
    mapped = [t for t in dag.tasks if getattr(t, "expand_input", None) is not None]
    assert mapped and not [t.task_id for t in mapped if any(isinstance(o, AssetAlias) for o in t.outlets)]
    # Deferred training tasks are not capped; launches are bounded by a pool instead.
    assert train.max_active_tis_per_dagrun is None and train.pool
    assert "{{" in train.map_index_template and "target_key" in train.map_index_template
    assert dag.get_task("summarize").trigger_rule == "all_done"
    assert dag.get_task("record_late").trigger_rule == "all_done"
    assert dag.get_task("check_regions").trigger_rule == "all_done"
    from airflow.serialization.serialized_objects import DagSerialization

    scheduled = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    # A dict-returning task pushes one XCom per key only where the DAG reads keys
    # (selection["targets"]).
    outputs = {t.task_id: t.multiple_outputs for t in scheduled.tasks if hasattr(t, "multiple_outputs")}
    assert outputs["select_targets"] is True
    assert outputs["summarize"] is False
    params = dag.params
    for name in ("campaigns", "regions", "instance_type", "instance_count", "epochs", "batch_size",
                 "learning_rate", "dry_run"):
        assert params.get_param(name).schema.get("title"), f"Param {name} has no title"
    # A Param whose help says "Empty: ..." must not be a required field of the form.
    for name in params:
        schema = params.get_param(name).schema
        if "Empty:" in schema.get("description", ""):
            assert "null" in schema["type"], f"Param {name} says 'Empty' but the form would require it"


def test_training_dag_schedule_creates_no_run_for_a_past_time() -> None:
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

    from regional_training.run import assets

    dag = DagBag(dag_folder=str(DAGS_DIR / "multi_region_training.py")).dags["multi_region_training"]
    # Nightly or when a dataset becomes ready (issue 15).
    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    assert dag.timetable.asset_condition == assets.DATASET_READY
    timetable = dag.timetable.timetable
    assert isinstance(timetable, CronTriggerTimetable)
    assert timetable.run_immediately == timedelta(0)  # not False: see the DAG's comment
    assert timetable.expression == "0 2 * * *" and str(timetable.timezone) == "UTC"
    assert dag.is_paused_upon_creation is True
    assert dag.description


@pytest.mark.parametrize("now", ["2026-11-29T02:00:01", "2026-11-29T02:30:00", "2026-11-29T04:23:00",
                                 "2026-11-29T15:00:00", "2026-11-29T01:59:59"])
def test_unpausing_at_any_time_schedules_the_next_0200(now: str) -> None:
    """The scheduler's own timetable (deserialized) and its catchup-off restriction, as on
    unpausing a DAG that never ran: the first run is the next 02:00, never a past one."""
    from unittest import mock

    import airflow.timetables.trigger
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.timetables.base import TimeRestriction

    dag = DagBag(dag_folder=str(DAGS_DIR / "multi_region_training.py")).dags["multi_region_training"]
    timetable = DagSerialization.from_dict(DagSerialization.to_dict(dag)).timetable
    at = datetime.fromisoformat(now).replace(tzinfo=UTC)
    # The clock the timetable reads (its module's utcnow): no time-travel package needed.
    with mock.patch.object(airflow.timetables.trigger, "utcnow", return_value=at):
        info = timetable.next_dagrun_info(last_automated_data_interval=None,
                                          restriction=TimeRestriction(earliest=None, latest=None, catchup=False))
    next_0200 = (at + timedelta(days=1 if at.hour >= 2 else 0)).replace(hour=2, minute=0, second=0)
    assert info is not None and info.run_after == next_0200
