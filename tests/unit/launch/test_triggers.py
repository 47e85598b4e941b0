"""The trigger classes' module is light, and the old class paths still load (issue 33).

Airflow's triggerer imports a trigger's class inside its event loop; anything heavy the
module imports blocks every trigger's polls ("async thread was blocked").
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from airflow._shared.module_loading import import_string

from regional_training.launch import triggers

PLUGINS = Path(__file__).resolve().parents[3] / "plugins"

#: What importing the trigger module must not import: the operator stack, the provider's
#: hooks and triggers, boto3.
HEAVY = ("regional_training.operators", "regional_training.launch.batch_jobs", "regional_training.runtime.aws_hooks",
         "regional_training.launch.trigger_hooks", "airflow.providers.amazon.aws.operators.sagemaker",
         "airflow.providers.amazon.aws.operators.batch", "airflow.providers.amazon.aws.triggers.sagemaker",
         "airflow.providers.amazon.aws.hooks.base_aws", "boto3", "botocore")


def test_importing_the_triggers_imports_nothing_heavy() -> None:
    code = ("import json, sys; import regional_training.launch.triggers; "
            f"print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(PLUGINS), "PATH": "/usr/bin:/bin"})
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def sagemaker_trigger(**extra: Any) -> triggers.StoppingSageMakerTrigger:
    return triggers.StoppingSageMakerTrigger(job_name="mrt-a", job_type="Training", waiter_delay=5,
                                             waiter_max_attempts=7, region_name="eu-west-1", **extra)


def batch_trigger() -> triggers.BatchServiceJobTrigger:
    return triggers.BatchServiceJobTrigger(service_job_id="sj", job_name="j", region_name="eu-west-1",
                                           capacity_wait_seconds=5, poll_seconds=1)


@pytest.mark.parametrize(("old", "new"), [
    # Paths stored by earlier versions: the operator's and batch_jobs' re-exports, and
    # triggers' and batch_jobs' before the rooms (issue 28; aliases at the old paths).
    ("regional_training.operators.StoppingSageMakerTrigger",
     "regional_training.launch.triggers.StoppingSageMakerTrigger"),
    ("regional_training.batch_jobs.BatchServiceJobTrigger",
     "regional_training.launch.triggers.BatchServiceJobTrigger"),
    ("regional_training.triggers.StoppingSageMakerTrigger",
     "regional_training.launch.triggers.StoppingSageMakerTrigger"),
    ("regional_training.triggers.BatchServiceJobTrigger",
     "regional_training.launch.triggers.BatchServiceJobTrigger"),
])
def test_a_trigger_stored_under_the_old_path_loads_the_same_class(old: str, new: str) -> None:
    assert import_string(old) is import_string(new)


@pytest.mark.parametrize("make", [sagemaker_trigger, batch_trigger])
def test_triggers_serialize_under_the_light_module_and_round_trip(make: Any) -> None:
    trigger = make()
    path, kwargs = trigger.serialize()
    assert path == f"regional_training.launch.triggers.{type(trigger).__name__}"
    assert import_string(path)(**kwargs).serialize() == (path, kwargs)


def test_the_sagemaker_trigger_serializes_as_the_provider_trigger_did() -> None:
    """The same keyword arguments as the provider's ``SageMakerTrigger`` (what the class
    was a subclass of): a trigger stored by the old class inflates in the new one."""
    from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger

    for extra in ({}, {"botocore_config": {"retries": {"max_attempts": 3}}, "verify": False}):
        provider = SageMakerTrigger(job_name="mrt-a", job_type="Training", waiter_delay=5, waiter_max_attempts=7,
                                    region_name="eu-west-1", **extra)
        assert sagemaker_trigger(**extra).serialize()[1] == provider.serialize()[1]
        assert list(sagemaker_trigger(**extra).serialize()[1]) == list(provider.serialize()[1])
        assert sagemaker_trigger().waiter().serialize()[1] == sagemaker_trigger().serialize()[1]


def test_the_sagemaker_trigger_takes_the_providers_deprecated_names() -> None:
    trigger = triggers.StoppingSageMakerTrigger(job_name="x", job_type="Training", region_name="eu-west-1",
                                                poke_interval=1, max_attempts=9)
    assert trigger.serialize()[1]["waiter_delay"] == 1 and trigger.serialize()[1]["waiter_max_attempts"] == 9


def test_the_sagemaker_trigger_needs_a_region() -> None:
    with pytest.raises(ValueError, match="region_name"):
        triggers.StoppingSageMakerTrigger(job_name="x", job_type="Training")


def test_the_provider_parts_load_in_a_worker_thread() -> None:
    """The first run imports trigger_hooks off the event loop's thread."""
    import threading

    seen: list[str] = []
    real = triggers.importlib.import_module

    def recording(name: str) -> Any:
        seen.append(threading.current_thread().name)
        return real(name)

    async def load() -> Any:
        triggers._loaded = None
        return await triggers.load_trigger_hooks()

    original = triggers.importlib.import_module
    triggers.importlib.import_module = recording  # type: ignore[assignment]
    try:
        module = asyncio.run(load())
    finally:
        triggers.importlib.import_module = original  # type: ignore[assignment]
    assert module.__name__ == "regional_training.launch.trigger_hooks"
    assert seen and all(name != threading.main_thread().name for name in seen)


class _FakeClient:
    """An async client whose stop/terminate call records its arguments, or fails as AWS
    does for a job that already ended."""

    class exceptions:  # botocore's attribute name
        class ClientError(Exception):
            pass

    def __init__(self, calls: list[tuple[str, dict[str, Any]]], fail: bool) -> None:
        self.calls, self.fail = calls, fail

    async def __aenter__(self) -> _FakeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def __getattr__(self, method: str) -> Any:
        async def call(**request: Any) -> dict[str, Any]:
            self.calls.append((method, request))
            if self.fail:
                raise self.exceptions.ClientError("ValidationException: the job has already ended")
            return {}
        return call


@pytest.mark.parametrize("fail", [False, True])
@pytest.mark.parametrize(("make", "expected"), [
    (lambda: triggers.StoppingSageMakerTrigger(job_name="mrt-a-1", job_type="Training", region_name="eu-west-1"),
     ("stop_training_job", {"TrainingJobName": "mrt-a-1"})),
    (lambda: triggers.BatchServiceJobTrigger(service_job_id="sj-1", job_name="mrt-a", region_name="eu-west-1",
                                             capacity_wait_seconds=60, poll_seconds=1),
     ("terminate_service_job", {"jobId": "sj-1", "reason": "Airflow task killed"})),
])
def test_a_killed_deferred_task_stops_its_job_once_and_an_ended_job_is_no_error(
        make: Any, expected: tuple[str, dict[str, Any]], fail: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    class Hook:
        async def get_async_conn(self) -> _FakeClient:
            return _FakeClient(calls, fail)

    trigger = make()
    monkeypatch.setattr(trigger, "hook", lambda: Hook())
    monkeypatch.setattr(triggers, "_loaded", object())  # the provider's parts count as loaded
    asyncio.run(trigger.on_kill())  # a failing call (already ended) is logged, not raised
    assert calls == [expected]
