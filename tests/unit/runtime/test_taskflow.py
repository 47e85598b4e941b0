"""regional_training.runtime.taskflow: @task as Airflow's makes it, without PythonOperator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pendulum
import pytest
from airflow.sdk import DAG, Asset

from regional_training.runtime.taskflow import TaskBodyOperator, task

DAG_FILE = Path(__file__).resolve().parents[3] / "dags" / "multi_region_training.py"


def _dag() -> DAG:
    return DAG("taskflow_test", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"))


def test_a_body_gets_its_arguments_and_the_context_keys_it_names() -> None:
    seen: dict[str, Any] = {}

    with _dag():
        @task(retries=3)
        def body(rows: list[int], label: str, run_id: str | None = None) -> dict[str, Any]:
            seen.update(rows=rows, label=label, run_id=run_id)
            return {"n": len(rows)}

        op = body([1, 2], label="x").operator

    assert isinstance(op, TaskBodyOperator)
    assert (op.task_type, op.custom_operator_name, op.retries) == ("TaskBodyOperator", "@task", 3)
    with mock.patch.object(TaskBodyOperator, "log", new_callable=mock.PropertyMock) as log:
        assert op.execute({"run_id": "r1", "ti": object()}) == {"n": 2}
    assert seen == {"rows": [1, 2], "label": "x", "run_id": "r1"}
    # As PythonOperator: the return value is in the task's log.
    log.return_value.info.assert_called_once_with("Done. Returned value was: %s", {"n": 2})


def test_multiple_outputs_and_xcom_inputs_wire_as_with_airflows_task() -> None:
    with _dag() as dag:
        @task(multiple_outputs=True)
        def first() -> dict[str, Any]:
            return {"a": 1}

        @task
        def second(a: int) -> int:
            return a

        out = first()
        second(out["a"])

    assert dag.get_task("first").multiple_outputs is True
    assert dag.get_task("second").upstream_task_ids == {"first"}


def test_an_asset_argument_becomes_an_inlet_and_a_returned_asset_an_outlet() -> None:
    asset = Asset(name="a", uri="x-test://a")

    with _dag():
        @task
        def body(source: Asset) -> Asset:
            return source

        op = body(asset).operator

    assert op.execute({}) == asset
    assert op.inlets == [asset] and op.outlets == [asset]


def test_a_context_key_with_a_default_is_refused_at_parse() -> None:
    with _dag(), pytest.raises(ValueError, match="run_id"):
        @task
        def body(run_id: str = "x") -> None:
            return None

        body()


def test_parsing_the_dag_imports_neither_python_operator_nor_the_run_time_modules() -> None:
    """What the parse must not import (the parse-time budget of issue 13): PythonOperator's
    module, and the resolution and retry rules the operator imports when a try runs."""
    unwanted = ("airflow.providers.standard.operators.python", "regional_training.launch.attempts",
                "regional_training.launch.retry_policy", "regional_training.plan.targets",
                "regional_training.runtime.settings")
    code = (
        "import sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(DAG_FILE)!r})\n"
        "assert not bag.import_errors, bag.import_errors\n"
        f"print('imported:', ','.join(m for m in {unwanted!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imported = [line for line in result.stdout.splitlines() if line.startswith("imported:")]
    assert imported == ["imported: "], result.stdout
