"""The Airflow image users deploy (images/airflow/Dockerfile), checked inside the image.

``MRT_AIRFLOW_IMAGE`` names the image ``scripts/build_images.sh airflow`` built
(``scripts/test.sh`` sets it; docs/images.md says when CI builds it). Inside it, as the
image's own ``airflow`` user with its own Python and packages, the DAG folder must parse
with no import errors, the DAG must be the one this repository defines, and one run of
it with Airflow's own ``airflow dags test`` must pass against the emulator.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = REPO / "images" / "podman" / "containers.conf"
IMAGE = os.environ.get("MRT_AIRFLOW_IMAGE", "")

pytestmark = pytest.mark.skipif(
    not IMAGE or shutil.which("podman") is None,
    reason="no Airflow image: set MRT_AIRFLOW_IMAGE to `scripts/build_images.sh airflow | tail -n1` "
    "(scripts/test.sh does where that image is built; docs/images.md)",
)


def _podman_run(options: list[str], entrypoint: str, args: list[str], timeout: float
                ) -> subprocess.CompletedProcess[str]:
    """``podman run --rm`` of the image as its own user, with the project's podman settings
    (images/podman/containers.conf: runc, cgroupfs, lowered ulimits)."""
    # --entrypoint: the official image's entry point would run `airflow <args>`; naming
    # the program makes the command the same on the official image and the stand-in base.
    return subprocess.run(
        ["podman", "run", "--rm", *options, "--entrypoint", entrypoint, IMAGE, *args],
        capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)},
    )


def _python(script: str) -> dict[str, object]:
    """Run ``script`` with the image's own python, as its user; its stdout is one JSON."""
    run = _podman_run([], "python", ["-c", script], timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    result: dict[str, object] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def test_the_dag_folder_parses_inside_the_image_with_no_import_errors() -> None:
    # The dag-processor's own parse (DagBag over AIRFLOW_HOME's dags folder, as
    # `airflow dags list-import-errors --local` does, minus the metadata database
    # that command insists on being migrated).
    got = _python(
        "import json, os\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "bag = DagBag(os.path.join(os.environ['AIRFLOW_HOME'], 'dags'))\n"
        "print(json.dumps({'errors': bag.import_errors,"
        " 'dags': {i: d.fileloc for i, d in bag.dags.items()},"
        " 'tasks': len(bag.dags['multi_region_training'].tasks) if 'multi_region_training' in bag.dags else 0}))\n"
    )
    assert got["errors"] == {}, f"import errors inside the image: {got['errors']}"
    assert got["dags"] == {dag_id: f"/opt/airflow/dags/{dag_id}.py"
                           for dag_id in ("multi_region_training", "refresh_limits", "budget_guard")}
    assert isinstance(got["tasks"], int) and got["tasks"] > 0


def test_the_image_installs_the_pinned_set_as_the_airflow_user() -> None:
    # The official image's layout the Dockerfile relies on: user 50000, AIRFLOW_HOME, and
    # the project's pins (requirements.txt) installed, not the base image's own versions.
    script = (
        "import importlib.metadata as m, json, os;"
        "print(json.dumps({'uid': os.getuid(), 'home': os.environ['AIRFLOW_HOME'],"
        " 'versions': {d: m.version(d) for d in ('apache-airflow', 'apache-airflow-providers-amazon',"
        " 'apache-airflow-providers-postgres', 'psycopg2-binary', 'redis', 'matplotlib')}}))"
    )
    got = _python(script)
    assert got["uid"] == 50000 and got["home"] == "/opt/airflow"
    versions = got["versions"]
    assert isinstance(versions, dict)
    pins: dict[str, str] = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep and not line.startswith("#"):
            pins[name.split("[", 1)[0]] = version.strip()
    for dist, version in versions.items():
        assert version == pins[dist], f"{dist} {version} in the image, {pins[dist]} pinned"


# -- one run of the DAG inside the image: Airflow's own `airflow dags test` --------------

#: The one error line Airflow's ``dag.test`` itself causes, and only while it has the
#: defect below: it resumes a deferred task with ``next_kwargs = {"event": ...}``,
#: dropping the kwargs the task deferred with (the triggerer keeps them and adds the
#: event: airflow/models/trigger.py ``next_kwargs["event"] = event.payload``; fixed by
#: apache/airflow#69942, not in 3.3.2's Task SDK). The training operator then reads its
#: failover moves back from XCom (``_resumed``'s fallback for a deferral without them),
#: there are none on a clean run, and the Task SDK's client logs the absent XCom at
#: error level (airflow/sdk/api/client.py, "XCom not found") before returning None.
#: Allowed only while the image's Task SDK still drops the kwargs (checked inside it).
DAG_TEST_DROPPED_KWARGS = re.compile(r"\[error\s*\] XCom not found .*key='placement_moves' map_index=\d+ "
                                     r"not found for task 'train'")

#: Run inside the container: migrate a throwaway SQLite metadata DB, run the DAG once
#: with `airflow dags test`, then print (last line) what the metadata DB says of the run.
_DAGS_TEST_SCRIPT = """
airflow db migrate > /tmp/migrate.log 2>&1 || { cat /tmp/migrate.log; exit 90; }
airflow dags test multi_region_training -c "$MRT_RUN_CONF"
status=$?
python - <<'PY' || exit 91
import inspect, json, sqlite3
from airflow.sdk.definitions import dag as sdk_dag
db = sqlite3.connect("/tmp/mrt-airflow.db")
runs = db.execute("SELECT run_id, state FROM dag_run WHERE dag_id = 'multi_region_training'").fetchall()
tis = db.execute("SELECT task_id, map_index, state FROM task_instance WHERE dag_id = 'multi_region_training'"
                 " ORDER BY task_id, map_index").fetchall()
planned = db.execute("SELECT value FROM xcom WHERE dag_id = 'multi_region_training'"
                     " AND task_id = 'jobs_to_launch' AND key = 'return_value'").fetchall()
print(json.dumps({"runs": runs, "task_instances": tis, "planned": [json.loads(v) for (v,) in planned],
                  "drops_defer_kwargs": "if event else msg.next_kwargs" in inspect.getsource(sdk_dag._run_task)}))
PY
exit $status
"""


@pytest.fixture(scope="module")
def dags_test_run(campaign_dsn: str, aws_endpoint: str) -> dict[str, Any]:
    """One `airflow dags test multi_region_training` inside the image, as its ``airflow``
    user, against the session's campaign DB (PostgreSQL, seeded) and emulator (stand-in
    entry point), both on this machine's loopback (the container shares its network).

    Airflow's metadata DB is SQLite inside the container: `dags test` runs every task in
    its one process, one at a time, so SQLite's single writer is never contended, and the
    DB goes with the container (the in-process e2e tests use SQLite too; the services
    tests run the PostgreSQL metadata backend)."""
    from dev.local_stack import LOCAL_RUN_CONF, airflow_env

    env = airflow_env(dsn=campaign_dsn, endpoint=aws_endpoint, airflow_home=Path("/opt/airflow"))
    for host_path in ("AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__PLUGINS_FOLDER", "PYTHONPATH"):
        del env[host_path]  # the image's own: AIRFLOW_HOME=/opt/airflow, its dags/ and plugins/
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = "sqlite:////tmp/mrt-airflow.db"
    # Region-local placement: one target in each of the four regions.
    env["MRT_RUN_CONF"] = json.dumps({**LOCAL_RUN_CONF, "placement": "region_local"})
    options = ["--network", "host"]
    for key, value in sorted(env.items()):
        options += ["--env", f"{key}={value}"]
    started = time.monotonic()
    run = _podman_run(options, "bash", ["-c", _DAGS_TEST_SCRIPT], timeout=600)
    seconds = time.monotonic() - started
    output = run.stdout + run.stderr
    assert run.returncode not in (90, 91), output[-6000:]
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"airflow db migrate + dags test inside the image: {seconds:.1f} s")
    return {**result, "returncode": run.returncode, "output": output}


@pytest.mark.integration
@pytest.mark.e2e
@pytest.mark.slow
def test_one_dags_test_run_inside_the_image_passes_against_the_emulator(
    dags_test_run: dict[str, Any], campaign_dsn: str, aws_endpoint: str
) -> None:
    from tests.e2e.helpers import ALL_REGIONS, jobs_of_run, rows_of_run

    output = dags_test_run["output"]
    assert dags_test_run["returncode"] == 0, output[-6000:]  # `dags test` exits 1 on a failed run
    [(run_id, state)] = dags_test_run["runs"]
    assert state == "success", output[-6000:]
    trains = [s for task_id, _index, s in dags_test_run["task_instances"] if task_id == "train"]
    assert trains == ["success"] * len(ALL_REGIONS), dags_test_run["task_instances"]

    # The plan (jobs_to_launch's targets): one per region. Every one recorded in
    # training_runs as completed, by one training job each in the emulator (a job name is
    # created once: one CreateTrainingJob per target, none retried or failed over).
    [planned] = dags_test_run["planned"]
    targets = {item["target_key"]: item["region"] for item in planned}
    assert sorted(targets.values()) == sorted(ALL_REGIONS)
    rows = rows_of_run(campaign_dsn, run_id, "target_key", "region_code", "status", "training_job_name")
    assert {r["target_key"]: r["region_code"] for r in rows} == targets
    assert all(r["status"] == "Completed" for r in rows), rows
    jobs = jobs_of_run(aws_endpoint, run_id)
    assert sorted(j["TrainingJobName"] for j in jobs) == sorted(r["training_job_name"] for r in rows)
    assert sorted(j["Region"] for j in jobs) == sorted(ALL_REGIONS)
    assert all(j["TrainingJobStatus"] == "Completed" for j in jobs)

    # A clean run logs no error-level line. What `dags test` prints holds every task's log
    # (each training task's own lines are there: the scan below reads the task logs).
    for job in jobs:
        assert f"Creating training job {job['TrainingJobName']} in {job['Region']}" in output
    from dev.airflow_services import ERROR_RECORD  # the services' scan: the same record forms

    errors = [line[:400] for line in output.splitlines() if ERROR_RECORD.search(line)]
    if dags_test_run["drops_defer_kwargs"]:
        errors = [line for line in errors if not DAG_TEST_DROPPED_KWARGS.search(line)]
    assert not errors, "\n".join(errors)
