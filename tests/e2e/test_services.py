"""The DAG on Airflow's real services, as users run it (issue 12).

One stack for the whole module (``services``): a PostgreSQL metadata DB, ``airflow
api-server``, ``scheduler`` (LocalExecutor), ``dag-processor`` and ``triggerer``
(``dev/airflow_services.py``, what ``scripts/run_local.sh`` runs), the campaign DB and
the emulator with the stand-in entry point (jobs of :data:`JOB_SECONDS`). Runs are
triggered through ``POST /api/v2/dags/.../dagRuns`` with a JWT, as the trigger form does.

One run (``restarted_run``) serves several assertions: the triggerer and then the
scheduler are restarted while its training jobs are in flight; afterwards every target
was trained by exactly one job, every training task passed through ``deferred`` on its
first try, and jobs of several regions overlapped in time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import jobs_of_run, rows_of_run

from dev.airflow_services import (
    AirflowStack,
    FollowedRun,
    LogFindings,
    airflow_services,
    follow_run,
    is_training_task,
)
from dev.local_stack import LOCAL_RUN_CONF, aws_client, fake_image_map, local_aws, seed_aws
from dev.processes import descendants, is_loopback, listening_sockets
from regional_training.launch.batch_jobs import LAUNCH_TASK_ID

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

#: The package's DAG folder plus tests/e2e/dags (a downstream DAG scheduled on the model
#: asset), each a DAG bundle of its own: nothing test-only is deployed with dags/.
TEST_BUNDLES = "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"
BUNDLES = [
    {"name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {}},
    {"name": "mrt-test-dags", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
     "kwargs": {"path": str(Path(__file__).resolve().parent / "dags")}},
]

#: Long enough that both restarts happen while jobs run; short enough for CI.
JOB_SECONDS = 40
REGIONS = ("eu-central-1", "eu-west-1", "us-east-1", "us-west-2")


@pytest.fixture(scope="module")
def services_endpoint(campaign_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An emulator of its own: jobs of JOB_SECONDS, all targets' jobs at once."""
    logs = tmp_path_factory.mktemp("services-aws")
    with local_aws(fake_image_map(seconds=JOB_SECONDS), max_concurrent_jobs=8,
                   log_path=logs / "local-aws.log") as endpoint:
        seed_aws(endpoint, campaign_dsn)
        yield endpoint


@pytest.fixture(scope="module")
def services(
    campaign_dsn: str, services_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowStack]:
    """The four Airflow services on a PostgreSQL metadata DB, shared by this module."""
    home = tmp_path_factory.mktemp("services-home")
    started = time.monotonic()
    with airflow_services(campaign_dsn=campaign_dsn, endpoint=services_endpoint, home=Path(home),
                          extra_env={TEST_BUNDLES: json.dumps(BUNDLES)}) as stack:
        # Shown with -s: the fixture's start-up time (migrate, four services, DAG parsed).
        print(f"\nAirflow services up in {time.monotonic() - started:.1f}s at {stack.base_url}")
        yield stack


@pytest.fixture(scope="module")
def unpaused(services: AirflowStack) -> list[str]:
    """Unpause the DAG before anything was triggered; the runs that created at once.

    Those (none, once the schedule starts at the next 02:00) are marked failed, so no
    production-default run blocks this module's runs (``max_active_runs=1``).
    """
    api = services.api
    assert api.dag_runs() == [], "a run exists before anything was triggered or unpaused"
    api.set_paused(False)
    # Several scheduler loops (1 s each by default).
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not api.dag_runs():
        time.sleep(1)
    created = [run["dag_run_id"] for run in api.dag_runs()]
    for run_id in created:
        api.set_run_state(run_id, "failed")
    return created


def test_unpausing_creates_no_run_before_the_next_0200(services: AirflowStack, unpaused: list[str]) -> None:
    """Unpausing at any time of day starts nothing until the next 02:00 UTC (issue 12, item 3)."""
    assert unpaused == [], f"unpausing created {unpaused} at once"
    dag = services.api.call("GET", "/api/v2/dags/multi_region_training")
    now = datetime.now(UTC)
    next_0200 = (now + timedelta(days=1 if now.hour >= 2 else 0)).replace(hour=2, minute=0, second=0, microsecond=0)
    run_after = datetime.fromisoformat(dag["next_dagrun_run_after"].replace("Z", "+00:00"))
    assert run_after == next_0200, dag["next_dagrun_run_after"]


@pytest.fixture(scope="module")
def restarted_run(services: AirflowStack, services_endpoint: str, unpaused: list[str]) -> dict[str, Any]:
    """A run triggered via REST; the triggerer, then the scheduler restarted mid-run."""
    api = services.api
    run_id = api.trigger(dict(LOCAL_RUN_CONF))
    restarts: list[dict[str, Any]] = []

    def restart_when_deferred(followed: FollowedRun) -> bool:
        train = [ti for ti in followed.task_instances if is_training_task(ti["task_id"]) and ti["map_index"] >= 0]
        if not train or any(ti["state"] != "deferred" for ti in train):
            return False
        # One after the other, without waiting in between: on a loaded 2-core machine a
        # service takes tens of seconds to start, longer than the jobs would last.
        for service in ("triggerer", "scheduler"):
            in_progress = _jobs_in_progress(services_endpoint, run_id)
            services.restart(service, wait=False)
            restarts.append({"service": service, "jobs_in_progress": in_progress})
        services.wait_healthy(timeout=240)
        return True

    followed = follow_run(api, run_id, timeout=900, while_running=restart_when_deferred)
    return {"run_id": run_id, "followed": followed, "restarts": restarts}


def _jobs_in_progress(endpoint: str, run_id: str) -> int:
    return sum(job["TrainingJobStatus"] == "InProgress" for job in jobs_of_run(endpoint, run_id, REGIONS))


def _why(services: AirflowStack, run_id: str, tis: list[dict[str, Any]]) -> str:
    """What a failure message needs: each task's state and log tail, and the API server's
    error lines (a task can fail there, when its state update does)."""
    parts = []
    for ti in tis:
        log = services.api.task_log(run_id, ti["task_id"], ti["map_index"], ti["try_number"])
        parts.append(f"{ti['task_id']}[{ti['map_index']}] {ti['state']} (try {ti['try_number']}):\n"
                     + "\n".join(log.splitlines()[-25:]))
    errors = [line for line in services.log_path("api-server").read_text(errors="replace").splitlines()
              if "error" in line.lower()]
    return "\n\n".join(parts) + "\n\napi-server error lines:\n" + "\n".join(errors[-30:])


def test_restarts_mid_run_lose_nothing(restarted_run: dict[str, Any], services_endpoint: str,
                                       services: AirflowStack) -> None:
    followed: FollowedRun = restarted_run["followed"]
    restarts = restarted_run["restarts"]
    assert [r["service"] for r in restarts] == ["triggerer", "scheduler"], "the run ended before the restarts"
    assert all(r["jobs_in_progress"] > 0 for r in restarts), restarts
    # Every task instance, each mapped one on its own ("removed": a task the DAG no longer
    # has, when its file changed during the run; the Batch array launch is skipped unless
    # launcher=batch_array).
    states = {(ti["task_id"], ti["map_index"]): ti["state"] for ti in followed.task_instances
              if ti["state"] != "removed"}
    assert states.pop((LAUNCH_TASK_ID, -1), "skipped") == "skipped"
    failed = [ti for ti in followed.task_instances if (ti["task_id"], ti["map_index"]) in states
              and ti["state"] != "success"]
    assert not failed, _why(services, restarted_run["run_id"], failed)
    assert followed.run["state"] == "success", states
    train = [ti for ti in followed.task_instances if is_training_task(ti["task_id"]) and ti["map_index"] >= 0]
    # Nothing was retried: the restarted triggerer resumed the same deferred tries.
    assert [ti["try_number"] for ti in train] == [1] * len(train)
    jobs = jobs_of_run(services_endpoint, restarted_run["run_id"], REGIONS)
    per_target = Counter(job["TagMap"]["target"] for job in jobs)
    assert len(per_target) == len(train) >= 4
    assert set(per_target.values()) == {1}, per_target
    assert {job["TrainingJobStatus"] for job in jobs} == {"Completed"}


def test_training_tasks_pass_through_deferred(restarted_run: dict[str, Any]) -> None:
    followed: FollowedRun = restarted_run["followed"]
    train = {key: states for key, states in followed.seen.items() if is_training_task(key[0]) and key[1] >= 0}
    assert len(train) >= 4
    for key, states in train.items():
        assert "deferred" in states, (key, states)
        assert states[-1] == "success", (key, states)


def test_jobs_of_several_regions_overlap(restarted_run: dict[str, Any], services_endpoint: str) -> None:
    jobs = jobs_of_run(services_endpoint, restarted_run["run_id"], REGIONS)
    spans = [(job["Region"], job["TrainingStartTime"], job["TrainingEndTime"]) for job in jobs]
    overlapping = {
        frozenset((a[0], b[0]))
        for a in spans for b in spans
        if a[0] != b[0] and max(a[1], b[1]) < min(a[2], b[2])
    }
    assert len({region for pair in overlapping for region in pair}) >= 3, spans
    # And the job logs are the emulator's, as CloudWatch would hold them.
    logs = aws_client("logs", services_endpoint, spans[0][0])
    assert logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs")["logStreams"]


# -- issue 15: an asset event for one dataset starts a run that trains exactly it --------

#: The dataset the labelling side says is ready (seeded campaign DB).
READY = ("boston-winter-2026", "boston-winter-2026-v1")
CONSUMER = "mrt_model_consumer"  # tests/e2e/dags/mrt_model_consumer.py


def _wait(what: str, found: Any, timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := found()):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout:.0f}s")
        time.sleep(2)
    return value


@pytest.fixture(scope="module")
def ready_run(services: AirflowStack, unpaused: list[str], restarted_run: dict[str, Any]) -> dict[str, Any]:
    """``python -m regional_training.cli.emit_ready`` for one dataset through the REST API; the
    asset-triggered training run the scheduler starts, and the downstream DAG's run.

    After ``restarted_run`` (``max_active_runs=1``); the consumer is unpaused only now, so
    only this run's model events trigger it.
    """
    api = services.api
    services.wait_for_dag(CONSUMER)
    api.set_paused(False, CONSUMER)
    before = {run["dag_run_id"] for run in api.dag_runs()}
    env = {**services.env, "MRT_AIRFLOW_API_TOKEN": api.token(), "PYTHONPATH": ":".join(sys.path)}
    emitted = subprocess.run(
        [sys.executable, "-m", "regional_training.cli.emit_ready", "--api-url", services.base_url,
         "--campaign", READY[0], "--dataset", READY[1]],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert emitted.returncode == 0, emitted.stderr
    run = _wait("asset-triggered run", lambda: [r for r in api.dag_runs() if r["dag_run_id"] not in before])[0]
    followed = follow_run(api, run["dag_run_id"], timeout=900)

    def received() -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(consumer run, model event extra) for each event of *this* training run that a
        finished consumer run received (earlier runs' events may reach it too)."""
        out = []
        for consumer in api.dag_runs(CONSUMER):
            if consumer["state"] not in ("success", "failed"):
                continue
            path = (f"/api/v2/dags/{CONSUMER}/dagRuns/{urllib.parse.quote(consumer['dag_run_id'], safe='')}"
                    "/taskInstances/models/xcomEntries/return_value")
            status, body = api.request("GET", path)
            extras = body["value"] if status == 200 else []
            out += [(consumer, e) for e in extras if e["run_id"] == run["dag_run_id"]]
        return out

    return {"run": followed.run, "received": _wait("downstream run with this run's model event", received)}


def test_an_asset_event_for_one_dataset_trains_exactly_that_dataset(
    ready_run: dict[str, Any], services_endpoint: str, campaign_dsn: str
) -> None:
    run = ready_run["run"]
    assert (run["run_type"], run["state"]) == ("asset_triggered", "success"), run
    jobs = jobs_of_run(services_endpoint, run["dag_run_id"], REGIONS)
    assert len(jobs) == 1, [j["TrainingJobName"] for j in jobs]
    rows = rows_of_run(campaign_dsn, run["dag_run_id"], "target_key", "status")
    assert rows == [{"target_key": READY[1], "status": "Completed"}]


def test_a_downstream_dag_scheduled_on_the_model_asset_runs_with_its_metadata(
    ready_run: dict[str, Any], services_endpoint: str
) -> None:
    ((consumer, extra),) = ready_run["received"]  # one event: one model
    assert (consumer["run_type"], consumer["state"]) == ("asset_triggered", "success"), consumer
    run_id = ready_run["run"]["dag_run_id"]
    (job,) = jobs_of_run(services_endpoint, run_id, REGIONS)
    assert {k: extra[k] for k in ("dag_id", "run_id", "dataset_key", "campaign_key", "region", "status",
                                  "training_job_name", "training_job_arn")} == {
        "dag_id": "multi_region_training", "run_id": run_id, "dataset_key": READY[1], "campaign_key": READY[0],
        "region": job["Region"], "status": "Completed", "training_job_name": job["TrainingJobName"],
        "training_job_arn": job["TrainingJobArn"]}
    assert extra["artifact_uri"].startswith("s3://mrt-central-artifacts/runs/") and \
        extra["artifact_uri"].endswith(f"/artifacts/{READY[1]}/model.tar.gz")
    assert len(extra["hyperparameters_sha256"]) == 64
    assert extra["final_metrics"] == {m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList", [])}
    assert extra["instance_type"] == job["ResourceConfig"]["InstanceType"]
    assert extra["planned_cost_usd"] is not None and extra["actual_cost_usd"] is not None


# -- issue 33, item 5: a clean run logs no error, and nothing listens beyond 127.0.0.1 ----


@pytest.fixture(scope="module")
def clean_run(services: AirflowStack, ready_run: dict[str, Any]) -> dict[str, Any]:
    """A run with nothing done to it (after the module's other runs: ``max_active_runs=1``):
    what each service logged during it, and every TCP listener of this test session's
    processes (databases, emulator, services, their workers and tries) while its jobs ran."""
    offsets = {s: services.log_path(s).stat().st_size for s in services.services()}
    run_id = services.api.trigger(dict(LOCAL_RUN_CONF))
    listeners: list[tuple[int, str, int]] = []

    def sample_when_deferred(followed: FollowedRun) -> bool:
        train = [ti for ti in followed.task_instances if is_training_task(ti["task_id"]) and ti["map_index"] >= 0]
        if not train or any(ti["state"] != "deferred" for ti in train):
            return False
        listeners.extend(listening_sockets(descendants(os.getpid())))
        return True

    followed = follow_run(services.api, run_id, timeout=900, while_running=sample_when_deferred)
    time.sleep(3)  # the last tries' supervisors and the triggerer finish their lines
    logged = {}
    for service, offset in offsets.items():
        with services.log_path(service).open("rb") as log:
            log.seek(offset)
            logged[service] = log.read().decode(errors="replace").splitlines()
    return {"run": followed.run, "logged": logged, "listeners": listeners}


def test_a_clean_run_logs_no_error_in_any_service(clean_run: dict[str, Any]) -> None:
    assert clean_run["run"]["state"] == "success", clean_run["run"]
    logged = clean_run["logged"]
    assert {"log-server", "api-server", "scheduler", "dag-processor", "triggerer"} <= set(logged)
    findings = LogFindings.of(logged)
    assert not any(findings.errors.values()), json.dumps(findings.errors, indent=1)
    # Credentials resolved from the environment are not news at INFO (local_stack.airflow_env).
    assert findings.credential_lines == 0, findings.line()


def test_every_listener_of_the_stack_is_on_loopback(clean_run: dict[str, Any], services: AirflowStack) -> None:
    listeners = clean_run["listeners"]
    ports = {port for _pid, _address, port in listeners}
    # The sample saw the stack: the API server and the one log server (dev/log_server.py),
    # whose port both of Airflow's log-server settings name.
    assert int(services.env["AIRFLOW__API__PORT"]) in ports, listeners
    assert int(services.env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"]) in ports, listeners
    assert services.env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] == \
        services.env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"]
    exposed = [entry for entry in listeners if not is_loopback(entry[1])]
    assert not exposed, f"listening beyond loopback (pid, address, port): {exposed}"
