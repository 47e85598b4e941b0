"""Issue 33 on Airflow's real services (api-server, scheduler, dag-processor, triggerer):
the campaign DB's PostgreSQL server is stopped while a run's four jobs train, so each
training task fails after its retries when its job ends and the watcher fails the run.
``summarize`` (which reads the recorded rows) fails too. The server is started again; the
failed task instances are cleared through the REST API, as the UI's "clear" does. The
run ends green, ``summary.json`` and ``report.html`` in the central bucket say 4 of 4, and
no target got a second job.

``test_report_after_clear.py`` is the same story with ``dag.test()`` and a DB refusing
rows; here the server really goes away (sessions cut, connections refused) and the tries
run in the scheduler's workers and the triggerer. The stack has a campaign DB and an
emulator of its own: stopping the session's DB would cut other fixtures' connections.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from botocore.exceptions import ClientError
from helpers import ALL_REGIONS, jobs_of_run, rows_of_run

from dev.airflow_services import AirflowStack, FollowedRun, airflow_services, follow_run, is_training_task
from dev.local_pg import stop_postgres, temporary_postgres
from dev.local_stack import (
    CENTRAL_BUCKET,
    CENTRAL_REGION,
    LOCAL_RUN_CONF,
    aws_client,
    fake_image_map,
    local_aws,
    seed_aws,
)
from regional_training.run.run_layout import RunLayout

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

#: Long enough that the DB is stopped while every job still runs (the four training
#: tasks deferred, seen by polling on a loaded 2-core machine); short enough for CI.
JOB_SECONDS = 60
DAG_ID = "multi_region_training"
#: The DAG's default_args: a training task has 1 + 2 tries before it fails.
TRIES = 3


@pytest.fixture(scope="module")
def own_campaign_dsn() -> Iterator[str]:
    from regional_training.runtime import campaign_db

    with temporary_postgres() as dsn:
        conn = psycopg2.connect(dsn)
        campaign_db.migrate(conn, seed=True)
        conn.close()
        yield dsn


@pytest.fixture(scope="module")
def endpoint(own_campaign_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logs = tmp_path_factory.mktemp("db-down-aws")
    with local_aws(fake_image_map(seconds=JOB_SECONDS), max_concurrent_jobs=8,
                   log_path=logs / "local-aws.log") as url:
        seed_aws(url, own_campaign_dsn)
        yield url


@pytest.fixture(scope="module")
def services(own_campaign_dsn: str, endpoint: str, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[AirflowStack]:
    # A directory of its own: stop_all finds the stack's processes by it.
    home = Path(tmp_path_factory.mktemp("db-down-home"))
    with airflow_services(campaign_dsn=own_campaign_dsn, endpoint=endpoint, home=home) as stack:
        stack.api.unpause()
        yield stack


def _central_files(endpoint: str, run_id: str) -> tuple[dict[str, Any], str]:
    layout = RunLayout(CENTRAL_BUCKET, DAG_ID, run_id)
    s3 = aws_client("s3", endpoint, CENTRAL_REGION)

    def text(uri: str) -> str:
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        return str(s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode())

    return json.loads(text(layout.summary)), text(layout.report)


def _why(stack: AirflowStack, run_id: str, tis: list[dict[str, Any]]) -> str:
    """Each task's state and the tail of its last try's log, for a failure message."""
    parts = []
    for ti in tis:
        log = stack.api.task_log(run_id, ti["task_id"], ti["map_index"], max(1, ti["try_number"]))
        parts.append(f"{ti['task_id']}[{ti['map_index']}] {ti['state']} (try {ti['try_number']}):\n"
                     + "\n".join(log.splitlines()[-20:]))
    return "\n\n".join(parts)


def _training(followed: FollowedRun) -> list[dict[str, Any]]:
    return [ti for ti in followed.task_instances if is_training_task(ti["task_id"]) and ti["map_index"] >= 0]


@pytest.fixture(scope="module")
def recovered(services: AirflowStack, endpoint: str, own_campaign_dsn: str) -> dict[str, Any]:
    """The run: DB stopped once every training task is deferred, started again once the
    run failed, the failed tasks cleared through the REST API, the run followed to its end.

    Not started earlier: with the DB back before ``record_late`` runs, it records the four
    ended jobs itself (every launched target still without a row) and the run is green
    without a clear.
    """
    api = services.api
    run_id = api.trigger({**LOCAL_RUN_CONF, "placement": "region_local"})
    restart: list[Callable[[], None]] = []
    in_progress: list[int] = []

    def stop_db_when_deferred(followed: FollowedRun) -> bool:
        train = _training(followed)
        if len(train) < 4 or any(ti["state"] != "deferred" for ti in train):
            return False
        in_progress.append(sum(j["TrainingJobStatus"] == "InProgress" for j in jobs_of_run(endpoint, run_id)))
        restart.append(stop_postgres(own_campaign_dsn))
        return True

    try:
        failed = follow_run(api, run_id, timeout=900, while_running=stop_db_when_deferred)
        jobs_before = jobs_of_run(endpoint, run_id)
    finally:
        for start in restart:  # whatever happened: the DB up again
            start()
    summary_before: dict[str, Any] | None
    try:
        summary_before = _central_files(endpoint, run_id)[0]
    except ClientError:  # summarize could not write it with the DB down
        summary_before = None

    cleared = api.call("POST", f"/api/v2/dags/{DAG_ID}/clearTaskInstances",
                       {"dag_run_id": run_id, "dry_run": False, "only_failed": True, "reset_dag_runs": True})
    after = follow_run(api, run_id, timeout=600)
    return {"run_id": run_id, "failed": failed, "stopped": bool(in_progress),
            "in_progress": in_progress, "jobs_before": jobs_before, "summary_before": summary_before,
            "cleared": [(ti["task_id"], ti["map_index"]) for ti in cleared["task_instances"]], "after": after}


def test_training_tasks_fail_after_their_retries_while_the_db_is_down(
    recovered: dict[str, Any], services: AirflowStack
) -> None:
    assert recovered["stopped"], "the run ended before its four training tasks were deferred"
    assert recovered["in_progress"][0] > 0, "every job had ended before the DB was stopped"
    failed: FollowedRun = recovered["failed"]
    assert failed.run["state"] == "failed", failed.run
    train = _training(failed)
    assert len(train) == 4
    assert [(ti["state"], ti["try_number"]) for ti in train] == [("failed", TRIES)] * 4, \
        _why(services, recovered["run_id"], train)
    watcher = [ti for ti in failed.task_instances if ti["task_id"] == "check_regions"]
    assert [ti["state"] for ti in watcher] == ["failed"]
    # Each target's one job ran to its end while its task could not record it.
    jobs = recovered["jobs_before"]
    assert sorted(j["Region"] for j in jobs) == sorted(ALL_REGIONS)
    assert {j["TrainingJobStatus"] for j in jobs} == {"Completed"}
    # What the person clears: the failed task instances, every training task among them.
    assert sorted(m for t, m in recovered["cleared"] if is_training_task(t)) == [0, 1, 2, 3], recovered["cleared"]
    assert ("check_regions", -1) in recovered["cleared"], recovered["cleared"]


def test_after_the_clear_the_run_is_green_and_the_report_says_4_of_4(
    recovered: dict[str, Any], services: AirflowStack, endpoint: str, own_campaign_dsn: str
) -> None:
    run_id = recovered["run_id"]
    after: FollowedRun = recovered["after"]
    not_green = [ti for ti in after.task_instances if ti["state"] not in ("success", "skipped", "removed")]
    assert after.run["state"] == "success" and not not_green, _why(services, run_id, not_green)
    summary, report = _central_files(endpoint, run_id)
    assert (summary["completed"], summary["targets"]) == (4, 4), summary
    assert summary["verdict"]["ok"], summary["verdict"]
    assert "4 of 4 target(s) completed" in report and "0 of 4" not in report
    rows = rows_of_run(own_campaign_dsn, run_id, "status", "training_job_name")
    assert [r["status"] for r in rows] == ["Completed"] * 4
    # No second job for any target: the cleared tasks collected the jobs that had ended.
    jobs = jobs_of_run(endpoint, run_id)
    assert sorted(j["TrainingJobName"] for j in jobs) == sorted(j["TrainingJobName"] for j in recovered["jobs_before"])
    per_target = Counter(j["TagMap"]["target"] for j in jobs)
    assert len(per_target) == 4 and set(per_target.values()) == {1}, per_target
    assert sorted(r["training_job_name"] for r in rows) == sorted(j["TrainingJobName"] for j in jobs)
    before = recovered["summary_before"]
    # Shown with -s: what the failed run had written, and what the clear took.
    print(f"\nbefore the clear: {before and before.get('completed')} completed; cleared {recovered['cleared']}")
