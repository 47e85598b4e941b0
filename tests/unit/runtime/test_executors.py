"""executors: the LocalExecutor whose workers start with a try's imports and models loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from unittest import mock

from airflow.executors.local_executor import LocalExecutor

from regional_training.runtime import executors

PLUGINS = Path(__file__).resolve().parents[3] / "plugins"

PRELOAD_THEN_FORK = """
    import json, os, sys
    from regional_training import executors
    failed = executors.preload()
    preloaded = sorted(m for m in executors.PRELOAD_MODULES if m in sys.modules)
    read, write = os.pipe()
    if os.fork() == 0:  # as a worker's task process: what is left to load from disk?
        import botocore.loaders
        from regional_training.runtime.aws_sessions import shared_boto3_session
        def no_disk(*args, **kwargs):
            raise AssertionError("botocore read a model file")
        botocore.loaders.JSONFileLoader.load_file = no_disk
        try:
            session = shared_boto3_session(region_name="eu-west-1", aws_access_key_id="k", aws_secret_access_key="s")
            for service, op in (("sagemaker", "list_training_jobs"), ("s3", "list_objects_v2")):
                session.client(service).get_paginator(op)
            child = "ok"
        except AssertionError as err:
            child = str(err)
        # The plugins folder: loaded by the preload, not again by the try.
        from airflow.sdk import plugins_manager
        misses = plugins_manager._get_plugins.cache_info().misses
        names = sorted(p.name for p in plugins_manager._get_plugins()[0])
        if plugins_manager._get_plugins.cache_info().misses != misses or "campaign_view" not in names:
            child = f"plugins loaded again in the child: {names}"
        os.write(write, child.encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 200).decode()
    os.wait()
    print(json.dumps({"failed": failed, "preloaded": preloaded, "child": child}))
"""


def test_preload_imports_the_modules_and_loads_the_models_once() -> None:
    """In a fresh interpreter, as the scheduler starts: after :func:`preload`, a forked
    child makes SageMaker and S3 clients and paginators without reading a model file, and
    finds the plugins folder's plugins loaded."""
    env = {**os.environ, "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS)}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(PRELOAD_THEN_FORK)], capture_output=True,
                            text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["failed"] == []
    assert out["preloaded"] == sorted(executors.PRELOAD_MODULES)
    assert out["child"] == "ok"


def test_a_module_that_fails_is_left_to_the_try(caplog) -> None:
    with mock.patch.object(executors, "PRELOAD_MODULES", ("regional_training.no_such_module",)):
        assert executors.preload() == ["regional_training.no_such_module"]
    assert "Not preloaded: regional_training.no_such_module" in caplog.text


def test_the_executor_preloads_before_it_forks_its_workers() -> None:
    calls: list[str] = []
    with mock.patch.object(executors, "preload", side_effect=lambda: calls.append("preload")), \
            mock.patch.object(LocalExecutor, "start", autospec=True, side_effect=lambda self: calls.append("start")):
        executors.PreloadedLocalExecutor(parallelism=2).start()
    assert calls == ["preload", "start"]
    assert issubclass(executors.PreloadedLocalExecutor, LocalExecutor)


def test_the_preload_covers_every_module_the_dag_file_imports() -> None:
    """PRELOAD_MODULES repeats the DAG file's provider and package imports: keep them in
    step, or a try imports what the preload missed afresh."""
    import ast
    from pathlib import Path

    dag_file = Path(__file__).resolve().parents[3] / "dags" / "multi_region_training.py"
    named = set()
    for node in ast.walk(ast.parse(dag_file.read_text())):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            named.add(node.module)
            if node.module == "regional_training":  # from regional_training import assets, tasks
                named.update(f"regional_training.{alias.name}" for alias in node.names)
    ours = {m for m in named if m.startswith(("airflow.providers.", "regional_training."))}
    assert ours and sorted(ours - set(executors.PRELOAD_MODULES)) == []
