"""The old module paths that deployments name still work after the rooms (issue 28).

Configuration names classes by dotted path (``[core] executor``, ``[celery]
celery_config_options``, ``[aws] session_factory``), the metadata database stores trigger
classpaths for deferred tasks and serialized DAGs' extra links, and job definitions
registered in AWS Batch, the image and the compose file run ``python -m``. Each old
path is an alias of the moved module (the same object), or runs its command.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
from airflow.sdk.module_loading import import_string

MOVED = {
    "regional_training.executors": "regional_training.runtime.executors",
    "regional_training.celery_config": "regional_training.runtime.celery_config",
    "regional_training.aws_sessions": "regional_training.runtime.aws_sessions",
    "regional_training.triggers": "regional_training.launch.triggers",
    "regional_training.batch_jobs": "regional_training.launch.batch_jobs",
    "regional_training.links": "regional_training.report.links",
    "regional_training.emit_ready": "regional_training.cli.emit_ready",
    "regional_training.batch_launcher": "regional_training.launch.batch_launcher",
    "regional_training.campaign_db": "regional_training.runtime.campaign_db",
}


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_the_old_path_is_the_moved_module(old: str, new: str) -> None:
    assert importlib.import_module(old) is importlib.import_module(new)


@pytest.mark.parametrize("classpath", [
    "regional_training.executors.PreloadedLocalExecutor",
    "regional_training.celery_config.CELERY_CONFIG",
    "regional_training.aws_sessions.SharedLoaderSessionFactory",
])
def test_configured_classpaths_resolve(classpath: str) -> None:
    module, _, name = classpath.rpartition(".")
    new = MOVED[module]
    assert import_string(classpath) is import_string(f"{new}.{name}")


@pytest.mark.parametrize("module", [
    "regional_training.emit_ready",
    "regional_training.batch_launcher",
    "regional_training.campaign_db",
])
def test_python_m_under_the_old_path_runs_the_command(module: str) -> None:
    old = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    new = subprocess.run([sys.executable, "-m", MOVED[module], "--help"], capture_output=True, text=True,
                         timeout=120)
    assert old.returncode == 0, old.stderr
    assert "usage:" in old.stdout
    assert old.stdout == new.stdout
