"""``python -m regional_training.cli.emit_ready`` against a real ``airflow api-server``: the
event exists with its ``extra``, is queued for a DAG scheduled on the asset, and reads
back through the run context's accessor as exactly that dataset; bad input is refused
before anything is posted.

The api-server is the session's shared one (tests/conftest.py, ``api_server``), which
serves, besides the package's DAG folder, a bundle of test-only DAGs holding one small DAG
scheduled on ``mrt_dataset_ready`` (tests/fixtures/api_dags/mrt_ready_consumer.py). It is
unpaused for this module only (events are queued only for unpaused DAGs) and paused again
after it, so the events posted here queue runs for nothing else.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from api_server_support import TEST_BUNDLE, ApiServer

from regional_training.run.assets import DATASET_READY, ReadyDataset, dataset_selection

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: tests/fixtures/api_dags/mrt_ready_consumer.py, served by the shared api-server.
CONSUMER = "mrt_ready_consumer"


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
def api(api_server: ApiServer) -> Iterator[tuple[str, str]]:
    """(base URL, an admin's bearer token) of the session's api-server, the consumer DAG
    current in its metadata DB and unpaused while this module runs."""
    # Again here: another test's process may have synced the DAG bundles with its own,
    # narrower configuration (the package's folder only) since the server started. Only
    # the test bundle is parsed (the package's DAG is not this module's business).
    api_server.reserialize(TEST_BUNDLE)
    base, token = api_server.base, api_server.token()
    status, body = _http("PATCH", f"{base}/api/v2/dags/{CONSUMER}", token, {"is_paused": False})
    assert status == 200, body
    yield base, token
    status, body = _http("PATCH", f"{base}/api/v2/dags/{CONSUMER}", token, {"is_paused": True})
    assert status == 200, body


def _emit(base: str, token: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("MRT_AIRFLOW_API_TOKEN", None)
    if token is not None:
        env["MRT_AIRFLOW_API_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "regional_training.cli.emit_ready", "--api-url", base, *args],
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
