"""regional_training.runtime.celery_config: the provider's Celery configuration, and the tries'
preload in each worker's main process before its pool forks (issue 32)."""

from __future__ import annotations

import gc
from typing import Any

import pytest


def test_the_config_is_the_providers_own() -> None:
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

    from regional_training.runtime.celery_config import CELERY_CONFIG

    assert CELERY_CONFIG == DEFAULT_CELERY_CONFIG and CELERY_CONFIG is not DEFAULT_CELERY_CONFIG


def test_worker_init_preloads_then_freezes(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from celery.signals import worker_init

    from regional_training.runtime import celery_config, executors

    calls: list[str] = []
    def preload() -> list[str]:
        calls.append("preload")
        return ["botocore models"]

    monkeypatch.setattr(executors, "preload", preload)
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    caplog.set_level("INFO", logger=celery_config.__name__)
    # What Celery's worker sends in its main process before the pool starts.
    worker_init.send(sender=None)
    assert calls == ["preload", "freeze"]
    assert "Preloaded the tries' modules in the Celery worker (not preloaded: botocore models)" in caplog.text


def test_the_local_celery_stack_and_compose_name_it(tmp_path: Any) -> None:
    import yaml

    from dev.airflow_services import services_env
    from dev.local_stack import REPO

    def env(broker_url: str | None) -> dict[str, str]:
        return services_env(campaign_dsn="postgresql://x@127.0.0.1/c", endpoint="http://127.0.0.1:1", home=tmp_path,
                            metadata_dsn="postgresql://x@127.0.0.1/m", port=2, password_file=tmp_path / "p",
                            parallelism=8, broker_url=broker_url)

    name = "regional_training.runtime.celery_config.CELERY_CONFIG"
    assert env("redis://127.0.0.1:3/0")["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] == name
    assert "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS" not in env(None)  # the LocalExecutor stack: nothing of Celery
    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    assert compose["x-airflow-common"]["environment"]["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] == name
