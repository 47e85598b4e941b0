"""The DAG's parse against a bare DAG *and* against its own form without our code: prints
figures, asserts nothing.

Three DAG files, each parsed by ``DagBag`` in a fresh interpreter (the parse the goal of
1.15x is about, ``bench/dag_benchmarks.py``):

* **bare**: one ``SageMakerTrainingOperator``, no Params, no schedule
  (``dag_benchmarks.BARE_DAG``);
* **form**: what Airflow itself spends on this DAG's form, with none of the project's
  code: the DAG's own Params (values, descriptions and schemas as literals), its schedule
  (asset or 02:00 cron), its task ids and edges, every task a one-level ``BaseOperator``
  and the mapped one the provider's ``SageMakerTrainingOperator`` ``.partial().expand()``,
  generated from the parsed DAG (:func:`form_dag_source`);
* **ours**: ``dags/multi_region_training.py`` with this tree's package.

Two measures:

* CPU seconds of the parse (``time.process_time``, median of ``--repeats``, the three
  files rotating), which another process on the machine disturbs less than wall time;
* with ``--instructions``, the instructions the parse executes (valgrind's cachegrind:
  a fresh interpreter that imports ``DagBag`` and parses, less one that only imports it;
  ``PYTHONHASHSEED=0``): the same count on every run whatever else the machine does,
  about 30 s of valgrind per file.

    .venv/bin/python -m bench.parse_floor [--repeats 15] [--instructions]
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.dag_benchmarks import BARE_DAG, PARSE_TIMED, REPO, load_line

#: One parse in a fresh interpreter: its CPU seconds.
PARSE_CPU = PARSE_TIMED.format(clock="process_time")

#: The instruction count's two programs: ``-`` imports DagBag only.
PARSE_ONLY = """
import sys
from airflow.dag_processing.dagbag import DagBag
if sys.argv[1] != "-":
    bag = DagBag(dag_folder=sys.argv[1])
    assert not bag.import_errors, bag.import_errors
"""

FORM_HEAD = '''"""This DAG's form with none of the project's code (bench/parse_floor.py generated it)."""
from datetime import timedelta

from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTrainingOperator
from airflow.sdk import Asset, AssetOrTimeSchedule, BaseOperator, CronTriggerTimetable, Param, dag


class _Task(BaseOperator):
    def execute(self, context):
        return None


'''


def _env(pythonpath: str | None) -> dict[str, str]:
    env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PYTHONHASHSEED": "0"}
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def _parsed_dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    sys.path.insert(0, str(REPO / "plugins"))
    bag = DagBag(dag_folder=str(REPO / "dags" / "multi_region_training.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags["multi_region_training"]


def form_dag_source(dag: Any) -> str:
    """A DAG file of ``dag``'s form: its Params, schedule, task ids and edges, no project code.

    The schedule is written out (asset ``mrt_dataset_ready`` or 02:00 UTC): a DAG whose
    schedule is of another kind stops the bench rather than be measured against the wrong form.
    """
    schedule = type(dag.timetable).__name__
    if schedule != "AssetOrTimeSchedule":
        raise SystemExit(f"the DAG's schedule is a {schedule}: update bench/parse_floor.py's form")
    params = "\n".join(
        f"    {name!r}: Param({param.value!r}, description={param.description!r}, schema={dict(param.schema)!r}),"
        for name, param in ((name, dag.params.get_param(name)) for name in dag.params))
    lines = [FORM_HEAD, f"PARAMS = {{\n{params}\n}}\n\n",
             '@dag(dag_id="multi_region_training", catchup=False, is_paused_upon_creation=True, max_active_runs=1,\n'
             '     schedule=AssetOrTimeSchedule(\n'
             '         timetable=CronTriggerTimetable("0 2 * * *", timezone="UTC", run_immediately=timedelta(0)),\n'
             '         assets=Asset(name="mrt_dataset_ready", uri="x-mrt://campaign-db/datasets/ready")),\n'
             '     params=PARAMS, default_args={"owner": "ml-platform", "retries": 2})\n'
             "def form():\n"]
    names = {}
    for i, task in enumerate(dag.topological_sort()):
        names[task.task_id] = var = f"t{i}"
        upstream = [names[u] for u in sorted(task.upstream_task_ids)]
        if getattr(task, "is_mapped", False):
            source = upstream[-1] if upstream else "None"
            lines.append(f"    {var} = SageMakerTrainingOperator.partial(task_id={task.task_id!r}, deferrable=True)"
                         f".expand(config={source}.output)\n")
        else:
            lines.append(f"    {var} = _Task(task_id={task.task_id!r})\n")
        lines.extend(f"    {u} >> {var}\n" for u in upstream)
    lines.append("\n\nform()\n")
    return "".join(lines)


def _cpu_seconds(dag_file: Path, pythonpath: str | None) -> float:
    result = subprocess.run([sys.executable, "-c", PARSE_CPU, str(dag_file)], env=_env(pythonpath), check=True,
                            capture_output=True, text=True)
    return float(result.stdout.strip().splitlines()[-1])


def _instructions(dag_file: Path | str, pythonpath: str | None) -> int:
    result = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                             sys.executable, "-c", PARSE_ONLY, str(dag_file)], env=_env(pythonpath),
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"the parse of {dag_file} failed under valgrind:\n{result.stderr[-2000:]}")
    for line in result.stderr.splitlines():
        if "I   refs:" in line or "I refs:" in line:
            return int(line.split(":", 1)[1].strip().replace(",", ""))
    raise SystemExit("no instruction count in valgrind's output")


def _print_ratios(what: str, values: dict[str, float], unit: str, scale: float) -> None:
    print(f"{what}: " + ", ".join(f"{name} {values[name] * scale:.1f} {unit}" for name in ("bare", "form", "ours")))
    print(f"  ours / bare {values['ours'] / values['bare']:.3f}; form / bare {values['form'] / values['bare']:.3f}; "
          f"ours / form {values['ours'] / values['form']:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--instructions", action="store_true", help="also count instructions (valgrind)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        files = {"bare": Path(tmp) / "bare" / "bare_dag.py", "form": Path(tmp) / "form" / "form_dag.py"}
        for path in files.values():
            path.parent.mkdir()
        files["bare"].write_text(BARE_DAG)
        files["form"].write_text(form_dag_source(_parsed_dag()))
        # Ours from a copy of the tree, compiled like the others (a deployment's bytecode).
        ours = Path(tmp) / "ours"
        for folder in ("dags", "plugins"):
            shutil.copytree(REPO / folder, ours / folder, ignore=shutil.ignore_patterns("__pycache__"))
        files["ours"] = ours / "dags" / "multi_region_training.py"
        paths = {"bare": None, "form": None, "ours": str(ours / "plugins")}
        for path in (files["bare"].parent, files["form"].parent, ours / "dags", ours / "plugins"):
            compileall.compile_dir(str(path), quiet=1)
        cpu: dict[str, list[float]] = {name: [] for name in files}
        order = list(files)
        for i in range(args.repeats):
            for name in order[i % 3:] + order[:i % 3]:
                cpu[name].append(_cpu_seconds(files[name], paths[name]))
        _print_ratios(f"CPU seconds of a fresh-interpreter parse, median of {args.repeats}",
                      {name: statistics.median(values) for name, values in cpu.items()}, "ms", 1e3)
        if args.instructions:
            base = _instructions("-", None)
            _print_ratios("instructions of the parse (valgrind)",
                          {name: _instructions(files[name], paths[name]) - base for name in files}, "M", 1e-6)
    print(load_line(load_before))
    return 0


if __name__ == "__main__":
    sys.exit(main())
