"""``python -m regional_training.emit_ready`` against a real ``airflow api-server``: the
event exists with its ``extra``, is queued for a DAG scheduled on the asset, and reads
back through the run context's accessor as exactly that dataset; bad input is refused
before anything is posted.

The api-server runs on a home of its own (its own SQLite metadata DB and a DAG folder
with one small DAG scheduled on ``mrt_dataset_ready``), so the session's shared home,
whose DAG folder is the package's, is untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from processes import api_server
from regional_training.assets import DATASET_READY, ReadyDataset, dataset_selection

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONSUMER = "mrt_ready_consumer"
CONSUMER_DAG = textwrap.dedent(f'''
    """Test-only DAG scheduled on the dataset-ready asset."""
    import pendulum
    from airflow.sdk import dag, task

    from regional_training.assets import DATASET_READY


    @dag(dag_id="{CONSUMER}", schedule=[DATASET_READY], start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
         catchup=False, tags=["test"])
    def consumer():
        @task
        def noop():
            return None

        noop()


    consumer()
''')


def _http(method: str, url: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, method=method, data=data, headers=headers)  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback only
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, airflow_db: Path) -> Iterator[tuple[str, str]]:
    """(base URL, bearer token) of a real api-server whose DAG folder holds the consumer."""
    home = tmp_path_factory.mktemp("emit-ready-airflow")
    # A copy of the session's migrated metadata DB: no second `airflow db migrate`.
    shutil.copy(airflow_db / "airflow.db", home / "airflow.db")
    dags = home / "dags"
    dags.mkdir()
    (dags / "consumer.py").write_text(CONSUMER_DAG)
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
           "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-m", "airflow", "dags", "reserialize"], env=env, check=True,
                   capture_output=True)
    with api_server(env, home / "api-server.log") as base:
        status, token = _http("GET", f"{base}/auth/token")
        assert status in (200, 201), token
        # Events are queued only for unpaused DAGs scheduled on the asset.
        status, body = _http("PATCH", f"{base}/api/v2/dags/{CONSUMER}", token["access_token"], {"is_paused": False})
        assert status == 200, body
        yield base, token["access_token"]


def _emit(base: str, token: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("MRT_AIRFLOW_API_TOKEN", None)
    if token is not None:
        env["MRT_AIRFLOW_API_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "regional_training.emit_ready", "--api-url", base, *args],
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def _events(base: str, token: str, asset_id: int) -> list[dict[str, Any]]:
    status, body = _http("GET", f"{base}/api/v2/assets/events?asset_id={asset_id}&limit=100", token)
    assert status == 200, body
    return list(body["asset_events"])


def test_the_event_exists_is_queued_for_the_scheduled_dag_and_names_the_dataset(api: tuple[str, str]) -> None:
    base, token = api
    done = _emit(base, token, "--campaign", "dublin-urban-2026", "--dataset", "dublin-urban-2026-v1")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    events = _events(base, token, printed["asset_id"])
    event = next(e for e in events if e["id"] == printed["id"])
    assert event["uri"] == DATASET_READY.uri and event["name"] == DATASET_READY.name
    assert event["extra"] == {"campaign_key": "dublin-urban-2026", "dataset_key": "dublin-urban-2026-v1",
                              "from_rest_api": True}
    status, queued = _http("GET", f"{base}/api/v2/assets/{printed['asset_id']}/queuedEvents", token)
    assert status == 200, queued
    assert CONSUMER in {q["dag_id"] for q in queued["queued_events"]}

    # A second dataset before the run starts: the run trains both, each once.
    done = _emit(base, token, "--campaign", "boston-winter-2026", "--dataset", "boston-winter-2026-v1")
    assert done.returncode == 0, done.stderr
    again = _emit(base, token, "--campaign", "dublin-urban-2026", "--dataset", "dublin-urban-2026-v1")
    assert again.returncode == 0, again.stderr
    selection = dataset_selection({"triggering_asset_events": _accessor(_events(base, token, printed["asset_id"]))})
    assert selection == [ReadyDataset("boston-winter-2026", "boston-winter-2026-v1"),
                         ReadyDataset("dublin-urban-2026", "dublin-urban-2026-v1")]


def _accessor(events: list[dict[str, Any]]) -> Any:
    """What a task's ``context["triggering_asset_events"]`` holds for these events."""
    from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
    from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

    return TriggeringAssetEventsAccessor.build(
        AssetEventDagRunReferenceResult(
            asset={"name": e["name"], "uri": e["uri"], "extra": {}},  # type: ignore[arg-type] # pydantic coerces
            extra=e["extra"],
            source_task_id=e["source_task_id"], source_dag_id=e["source_dag_id"], source_run_id=e["source_run_id"],
            source_map_index=e["source_map_index"], source_aliases=[], timestamp=e["timestamp"],
        )
        for e in events
    )


def test_bad_input_is_refused_before_anything_is_posted(api: tuple[str, str]) -> None:
    base, token = api
    status, assets = _http("GET", f"{base}/api/v2/assets?name_pattern={DATASET_READY.name}", token)
    assert status == 200, assets
    asset_id = assets["assets"][0]["id"]
    before = len(_events(base, token, asset_id))
    bad = _emit(base, token, "--campaign", "Dublin Urban", "--dataset", "dublin-urban-2026-v1")
    assert bad.returncode == 1
    assert "extra['campaign_key'] = 'Dublin Urban' is not a key" in bad.stderr
    no_token = _emit(base, None, "--campaign", "dublin-urban-2026", "--dataset", "dublin-urban-2026-v1")
    assert no_token.returncode == 2 and "MRT_AIRFLOW_API_TOKEN" in no_token.stderr
    refused = _emit(base, "not-a-token", "--campaign", "dublin-urban-2026", "--dataset", "dublin-urban-2026-v1")
    assert refused.returncode == 1 and "HTTP 403" in refused.stderr and "Invalid JWT token" in refused.stderr
    assert len(_events(base, token, asset_id)) == before
