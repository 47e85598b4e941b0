"""``bench/parse_floor.py`` measures the DAG's parse against its own form without the
project's code; that form must stay the DAG's: the same Params, schedule, task ids, edges
and mapped task, and nothing of ``regional_training``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.dag_processing.dagbag import DagBag

from bench.parse_floor import form_dag_source

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "multi_region_training.py"


def _shape(dag: Any) -> dict[str, Any]:
    return {
        "params": {name: (p.value, p.description, dict(p.schema))
                   for name, p in ((name, dag.params.get_param(name)) for name in dag.params)},
        "edges": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
        "mapped": sorted(t.task_id for t in dag.tasks if getattr(t, "is_mapped", False)),
        "schedule": (type(dag.timetable).__name__, repr(dag.timetable.timetable),
                     dag.timetable.asset_condition.name, dag.timetable.asset_condition.uri),
    }


def test_the_benchmarks_form_is_the_dags_form_without_our_code(tmp_path: Path) -> None:
    dag = DagBag(dag_folder=str(DAG_FILE)).dags["multi_region_training"]
    source = form_dag_source(dag)
    assert "regional_training" not in source
    form_file = tmp_path / "form_dag.py"
    form_file.write_text(source)
    bag = DagBag(dag_folder=str(form_file))
    assert bag.import_errors == {}
    form = bag.dags["multi_region_training"]
    assert _shape(form) == _shape(dag)
    assert len(dag.params) >= 30 and _shape(dag)["mapped"] == ["train"]
