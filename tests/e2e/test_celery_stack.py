"""The DAG on Airflow's distributed engine, with components killed mid-run (issue 32).

One Celery stack for the module (``dev/airflow_services.py`` with simulated hosts, what
``scripts/run_local.sh --executor celery`` runs): Redis, two schedulers, two
triggerers, the dag-processor, the api-server, and two Celery workers, each in a network
namespace of its own that reaches the broker, the databases and the emulator only
through its interface (``dev/sim_hosts.py``; root). The emulator runs the stand-in entry
point (dev/local_aws/fake_entry_point.py) for the DAG and for the test DAG
``mrt_launch_window`` (tests/e2e/dags), whose task waits between ``CreateTrainingJob``
and its deferral: the executor does not change what a job runs, and real training on
Celery is what ``scripts/run_local.sh --executor celery`` runs (docs/services.md).

* ``fault_run``: the sample data's 4 targets (3 regions), all 4 jobs running at once and
  long enough (JOB_SECONDS) to outlast the faults: as soon as every target's job is in
  progress, one scheduler and one triggerer are killed with SIGKILL, Redis is restarted
  and every component is restarted one after another (SIGTERM, wait, start), each fault
  injected with jobs in flight. Every target is trained by one job, none is stopped,
  each has its ``training_runs`` row, and both workers ran tasks.
* The launch window: a worker stopped with SIGTERM while its task is between create and
  deferral leaves the job running (Airflow forwards the SIGTERM to the task, whose
  ``on_kill`` used to stop the job just created); one killed with SIGKILL there loses
  nothing (the retry reattaches); a user marking the task failed there still stops it.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from helpers import ALL_REGIONS, jobs_of_run, rows_of_run

from dev.airflow_services import AirflowStack, FollowedRun, airflow_services, follow_run, is_training_task
from dev.local_pg import temporary_postgres
from dev.local_stack import (
    CENTRAL_BUCKET,
    LOCAL_RUN_CONF,
    TRAINING_REPOSITORY,
    aws_client,
    fake_image_map,
    local_aws,
    placeholder_samples,
    seed_aws,
    wait_for_job_status,
)
from dev.processes import descendants, is_loopback, listening_sockets
from dev.sim_hosts import SimulatedHosts, simulated_hosts
from regional_training.launch.batch_jobs import LAUNCH_TASK_ID

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

#: The stand-in's image repository (the window DAG's jobs); the DAG's is TRAINING_REPOSITORY.
STAND_IN = "multi-region-training/stand-in"
WINDOW_DAG = "mrt_launch_window"
WINDOW_DATA = f"s3://{CENTRAL_BUCKET}/window-data/"
WORKERS = ("mrt-worker-1", "mrt-worker-2")
#: A task whose worker died is failed by the scheduler this long after its last
#: heartbeat (default 300 s); the retry then reattaches to its job. Six of a running
#: task's heartbeats (``[workers] min_heartbeat_interval``, 5 s): the two window cases
#: each wait it out, so it is most of their time.
HEARTBEAT_TIMEOUT = 30
#: The DAG's stand-in jobs' length: long enough that every fault below starts while all
#: four run (the faults, from the first kill to the last restart, took 64-90 s on this
#: loaded 2-core machine; each fault's start is asserted to meet jobs in progress),
#: short enough that the run costs about one job's time.
JOB_SECONDS = 120
BUNDLES = [
    {"name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {}},
    {"name": "mrt-test-dags", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
     "kwargs": {"path": str(Path(__file__).resolve().parent / "dags")}},
]


@pytest.fixture(scope="module")
def hosts() -> Iterator[SimulatedHosts]:
    with simulated_hosts(2) as made:
        yield made


@pytest.fixture(scope="module")
def celery_dsn(hosts: SimulatedHosts) -> Iterator[str]:
    """The campaign DB, reachable from the workers' hosts (the session's is on loopback)."""
    from regional_training.runtime import campaign_db

    with temporary_postgres(host=hosts.address) as dsn:
        conn = psycopg2.connect(dsn)
        campaign_db.migrate(conn, seed=True)
        conn.close()
        yield dsn


@pytest.fixture(scope="module")
def celery_endpoint(hosts: SimulatedHosts, celery_dsn: str, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[str]:
    """The stand-in for both DAGs (the window DAG's jobs take its ``job_seconds``); room
    for the four targets' jobs and a window job at once, so the faults overlap all four."""
    logs = tmp_path_factory.mktemp("celery-aws")
    images = {**fake_image_map(seconds=JOB_SECONDS), STAND_IN: fake_image_map()[TRAINING_REPOSITORY]}
    with local_aws(images, max_concurrent_jobs=6, max_processes_per_job=2, stop_grace_seconds=5,
                   log_path=logs / "local-aws.log", host=hosts.address) as endpoint:
        seed_aws(endpoint, celery_dsn)
        s3 = aws_client("s3", endpoint, "us-east-1")
        shards = tmp_path_factory.mktemp("window-data")
        placeholder_samples("us-east-1", "window", shards)
        for path in sorted(shards.iterdir()):
            s3.upload_file(str(path), CENTRAL_BUCKET, "window-data/" + path.name)
        yield endpoint


@pytest.fixture(scope="module")
def celery(hosts: SimulatedHosts, celery_dsn: str, celery_endpoint: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    home = tmp_path_factory.mktemp("celery-home")
    started = time.monotonic()
    with airflow_services(
        campaign_dsn=celery_dsn, endpoint=celery_endpoint, home=Path(home), hosts=hosts,
        extra_env={"AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(BUNDLES),
                   "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT)},
    ) as stack:
        print(f"\nCelery stack up in {time.monotonic() - started:.1f}s at {stack.base_url}")
        stack.api.set_paused(False)
        stack.wait_for_dag(WINDOW_DAG)
        stack.api.set_paused(False, WINDOW_DAG)
        yield stack


# -- the DAG, four targets, faults while their jobs are in flight -----------------------


def _in_progress(endpoint: str, run_id: str) -> int:
    return sum(job["TrainingJobStatus"] == "InProgress" for job in jobs_of_run(endpoint, run_id, ALL_REGIONS))


#: A triggerer heartbeats every 5 s (``[triggerer] job_heartbeat_sec``): one silent this
#: long is dead, as far as this test is concerned.
SILENT_SECONDS = 15


def _triggers_on_silent_triggerers(stack: AirflowStack) -> int:
    """Triggers not held by a live triggerer: unassigned, or on one silent for SILENT_SECONDS."""
    dsn = stack.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("+psycopg2", "")
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM trigger t LEFT JOIN job j ON j.id = t.triggerer_id"
                    " WHERE j.id IS NULL OR j.latest_heartbeat < now() - make_interval(secs => %s)",
                    (SILENT_SECONDS,))
        return int(cur.fetchone()[0])


def _take_over_seconds(stack: AirflowStack, killed_at: float, timeout: float = 180) -> float | None:
    """Seconds from the kill until every trigger is on a live triggerer again; None when
    none was left behind (the killed triggerer held no trigger by then)."""
    stranded = False
    while True:
        waiting = _triggers_on_silent_triggerers(stack)
        stranded = stranded or waiting > 0
        elapsed = time.monotonic() - killed_at
        if not waiting and (stranded or elapsed > SILENT_SECONDS + 10):
            return elapsed if stranded else None
        if elapsed > timeout:
            raise AssertionError(f"{waiting} triggers still on no live triggerer after {timeout:.0f}s")
        time.sleep(1)


@pytest.fixture(scope="module")
def fault_run(celery: AirflowStack, celery_endpoint: str) -> dict[str, Any]:
    api = celery.api
    run_id = api.trigger({**LOCAL_RUN_CONF, "regions": list(ALL_REGIONS)})
    faults: list[dict[str, Any]] = []

    def fault(name: str, action: Any) -> None:
        faults.append({"fault": name, "jobs_in_progress": _in_progress(celery_endpoint, run_id)})
        faults[-1].update(action() or {})

    def kill_scheduler_and_triggerer() -> dict[str, Any]:
        celery.stop("scheduler-1", crash=True)
        celery.stop("triggerer-1", crash=True)
        took = _take_over_seconds(celery, time.monotonic())
        celery.start("scheduler-1")
        celery.start("triggerer-1")
        return {"triggers_taken_over_s": took}

    def restart_redis() -> None:
        celery.restart("redis", wait=False)

    def rolling_restart() -> None:
        for service in ("scheduler-1", "scheduler-2", "triggerer-1", "triggerer-2", "worker-1", "worker-2",
                        "dag-processor", "api-server"):
            celery.restart(service, wait=True)

    def when_deferred(followed: FollowedRun) -> bool:
        # As soon as every target's job runs and every task waits on its job (deferred,
        # its trigger on a triggerer): each fault then meets all four jobs in flight.
        train = [ti for ti in followed.task_instances if is_training_task(ti["task_id"]) and ti["map_index"] >= 0]
        if (not train or not all(ti["state"] == "deferred" for ti in train)
                or _in_progress(celery_endpoint, run_id) < len(train)):
            return False
        started = time.monotonic()
        fault("kill -9 scheduler-1 and triggerer-1", kill_scheduler_and_triggerer)
        fault("redis restart", restart_redis)
        fault("rolling restart", rolling_restart)
        faults.append({"fault": None, "jobs_in_progress": _in_progress(celery_endpoint, run_id),
                       "faults_took_s": round(time.monotonic() - started, 1)})
        return True

    followed = follow_run(api, run_id, timeout=900, while_running=when_deferred)
    return {"run_id": run_id, "followed": followed, "faults": faults}


def test_faults_mid_run_lose_nothing_and_stop_no_job(fault_run: dict[str, Any], celery_endpoint: str,
                                                     celery_dsn: str) -> None:
    followed: FollowedRun = fault_run["followed"]
    faults = fault_run["faults"]
    print(f"\nfaults: {faults}")
    assert [f["fault"] for f in faults] == ["kill -9 scheduler-1 and triggerer-1", "redis restart",
                                            "rolling restart", None], "the run ended before the faults"
    # Each fault was injected while jobs were in flight (all four at the first).
    assert faults[0]["jobs_in_progress"] >= 4, faults
    assert all(f["jobs_in_progress"] > 0 for f in faults[:3]), faults
    states = {(ti["task_id"], ti["map_index"]): ti["state"] for ti in followed.task_instances
              if ti["state"] != "removed"}
    assert states.pop((LAUNCH_TASK_ID, -1), "skipped") == "skipped"
    assert followed.run["state"] == "success", states
    assert set(states.values()) == {"success"}, states
    train = [ti for ti in followed.task_instances if is_training_task(ti["task_id"]) and ti["map_index"] >= 0]
    jobs = jobs_of_run(celery_endpoint, fault_run["run_id"], ALL_REGIONS)
    # One CreateTrainingJob per target and attempt: the emulator holds each job it
    # created under its deterministic name, and a second create of it would be refused.
    per_target = Counter(job["TagMap"]["target"] for job in jobs)
    assert len(per_target) == len(train) >= 4 and set(per_target.values()) == {1}, per_target
    # The sample data's four targets are in three regions (us-west-2 holds two).
    assert len({job["Region"] for job in jobs}) >= 3, [(j["Region"], j["TrainingJobName"]) for j in jobs]
    # No StopTrainingJob: every job ran to completion.
    assert {job["TrainingJobStatus"] for job in jobs} == {"Completed"}, [
        (j["TrainingJobName"], j["TrainingJobStatus"], j.get("FailureReason")) for j in jobs]
    rows = rows_of_run(celery_dsn, fault_run["run_id"], "target_key", "status")
    assert sorted(r["target_key"] for r in rows) == sorted(per_target)
    assert {r["status"] for r in rows} == {"Completed"}


def test_tasks_ran_on_both_simulated_hosts(fault_run: dict[str, Any]) -> None:
    followed: FollowedRun = fault_run["followed"]
    hostnames = Counter(ti["hostname"] for ti in followed.task_instances if ti["state"] == "success")
    assert set(hostnames) == set(WORKERS), hostnames


def test_every_worker_start_preloaded_the_tries_modules(fault_run: dict[str, Any], celery: AirflowStack) -> None:
    """Each worker, at each start (the rolling restart's too), preloaded what the tries
    import before its pool forked (regional_training.runtime.celery_config), and none failed."""
    for worker in (s for s in celery.services() if s.startswith("worker-")):
        lines = [line for line in celery.log_path(worker).read_text(errors="replace").splitlines()
                 if "Preloaded the tries' modules in the Celery worker" in line]
        assert len(lines) >= 2, (worker, lines)  # first start + the rolling restart
        assert not [line for line in lines if "not preloaded" in line], lines


def test_every_listener_of_the_stack_is_on_its_own_address(fault_run: dict[str, Any], celery: AirflowStack,
                                                            hosts: SimulatedHosts) -> None:
    """Nothing the Celery stack starts here listens on every interface: the schedulers and
    the triggerers serve no logs themselves (Airflow binds its log servers to all of them),
    one log server on the stack's address serves the triggers' logs. (The workers, each
    in its own namespace, serve none: their logs are read from the shared home.)"""
    listeners = listening_sockets(descendants(os.getpid()))
    assert any(port == int(celery.env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"]) for _, _, port in listeners)
    exposed = [entry for entry in listeners if entry[1] != hosts.address and not is_loopback(entry[1])]
    assert not exposed, f"listening beyond the stack's address {hosts.address} (pid, address, port): {exposed}"


def test_the_skipped_array_launch_reads_no_missing_xcom(fault_run: dict[str, Any], celery: AirflowStack) -> None:
    """launch_batch_array, skipped under launcher=airflow, used to look up the Batch
    operator's four link XComs it never pushed: an error line each ("XCom not found")."""
    lines = [line for worker in ("worker-1", "worker-2") for line in
             celery.log_path(worker).read_text(errors="replace").splitlines() if "XCom not found" in line]
    assert lines == [], lines


# -- the launch window: between CreateTrainingJob and the deferral -----------------------


def _window_run(celery: AirflowStack, name: str, *, window: int = 45, job_seconds: int = 20) -> str:
    return celery.api.trigger({"job_name": name, "window_seconds": window, "job_seconds": job_seconds,
                               "data_uri": WINDOW_DATA, "image_repository": STAND_IN}, WINDOW_DAG)


def _in_window(celery: AirflowStack, endpoint: str, run_id: str, name: str, timeout: float = 300) -> dict[str, Any]:
    """The window task once its job exists and it still runs (in the window)."""
    sm = aws_client("sagemaker", endpoint, "us-east-1")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (ti,) = [t for t in celery.api.task_instances(run_id, WINDOW_DAG) if t["task_id"] == "train"]
        if ti["state"] == "running" and name in {j["TrainingJobName"] for j in
                                                 sm.list_training_jobs(MaxResults=100)["TrainingJobSummaries"]}:
            return ti
        time.sleep(1)
    raise AssertionError(f"{name}: the task never was between create and deferral")


def _worker_of(ti: dict[str, Any]) -> str:
    return f"worker-{WORKERS.index(ti['hostname']) + 1}"


def _job(endpoint: str, name: str) -> dict[str, Any]:
    return aws_client("sagemaker", endpoint, "us-east-1").describe_training_job(TrainingJobName=name)


def _jobs_named(endpoint: str, stem: str) -> list[str]:
    sm = aws_client("sagemaker", endpoint, "us-east-1")
    return [j["TrainingJobName"] for j in sm.list_training_jobs(MaxResults=100)["TrainingJobSummaries"]
            if j["TrainingJobName"].startswith(stem)]


def test_a_worker_stopped_in_the_launch_window_leaves_its_job_running(celery: AirflowStack,
                                                                     celery_endpoint: str) -> None:
    name = f"window-term-{int(time.time())}"
    run_id = _window_run(celery, name)
    ti = _in_window(celery, celery_endpoint, run_id, name)
    worker = _worker_of(ti)
    # A rolling restart's step: SIGTERM to the worker's process group (the task gets it
    # too, and the supervisor forwards its own), up to 30 s for it to stop, then start.
    celery.restart(worker, wait=True)
    followed = follow_run(celery.api, run_id, timeout=600, dag_id=WINDOW_DAG)
    assert followed.run["state"] == "success", followed.task_instances
    job = _job(celery_endpoint, name)
    assert job["TrainingJobStatus"] == "Completed", (job["TrainingJobStatus"], job.get("FailureReason"))
    assert _jobs_named(celery_endpoint, name) == [name]
    log = "\n".join(celery.api.task_log(run_id, "train", try_number=n, dag_id=WINDOW_DAG)
                    for n in range(1, followed.task_instances[0]["try_number"] + 1))
    assert "left running" in log and "stopping training job" not in log, log[-3000:]


def test_a_worker_killed_in_the_launch_window_loses_nothing(celery: AirflowStack, celery_endpoint: str) -> None:
    name = f"window-kill-{int(time.time())}"
    run_id = _window_run(celery, name)
    ti = _in_window(celery, celery_endpoint, run_id, name)
    celery.stop(_worker_of(ti), crash=True)
    celery.start(_worker_of(ti))
    followed = follow_run(celery.api, run_id, timeout=600, dag_id=WINDOW_DAG)
    assert followed.run["state"] == "success", followed.task_instances
    (train,) = followed.task_instances
    # The killed try failed on its heartbeat; the retry reattached to the job.
    assert train["try_number"] == 2, train
    assert _jobs_named(celery_endpoint, name) == [name]
    assert _job(celery_endpoint, name)["TrainingJobStatus"] == "Completed"


def test_a_user_marking_the_task_failed_in_the_window_still_stops_the_job(celery: AirflowStack,
                                                                         celery_endpoint: str) -> None:
    name = f"window-user-{int(time.time())}"
    run_id = _window_run(celery, name, job_seconds=120)
    _in_window(celery, celery_endpoint, run_id, name)
    celery.api.call("PATCH", f"/api/v2/dags/{WINDOW_DAG}/dagRuns/{urllib.parse.quote(run_id, safe='')}"
                             "/taskInstances/train",
                    {"new_state": "failed"})
    sm = aws_client("sagemaker", celery_endpoint, "us-east-1")
    assert wait_for_job_status(sm, name, {"Stopped", "Completed", "Failed"}, timeout=120)["TrainingJobStatus"] \
        == "Stopped"
