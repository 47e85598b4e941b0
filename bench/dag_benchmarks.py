"""Benchmarks of the DAG package (issue 2): prints figures, asserts nothing.

1. Parse time of ``dags/multi_region_training.py`` as a ratio to a bare DAG holding one
   ``SageMakerTrainingOperator`` (each parse in a fresh interpreter, so imports count;
   median of ``--repeats``, the two files alternating). Goal: at most 1.15.
2. Local end-to-end wall time (``airflow dags test`` on the offline stack, stand-in
   entry point) for 4 and 64 targets.

    .venv/bin/python -m bench.dag_benchmarks [--repeats 7] [--targets 4,64] [--skip-e2e] [--breakdown]

(``dev/`` holds the local stack the end-to-end part starts; the parses import the package
from this tree's ``plugins/``, whatever checkout the shared venv's editable install names.)
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BARE_DAG = '''
import pendulum
from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTrainingOperator
from airflow.sdk import dag


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def bare():
    SageMakerTrainingOperator(task_id="train", config={"TrainingJobName": "x"}, deferrable=True)


bare()
'''

#: One parse in a fresh interpreter, timed by ``time.<clock>`` (wall time here;
#: bench/parse_floor.py times CPU).
PARSE_TIMED = """
import sys, time
from airflow.dag_processing.dagbag import DagBag
start = time.{clock}()
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
print(time.{clock}() - start)
"""
PARSE = PARSE_TIMED.format(clock="perf_counter")


def load_line(load_before: tuple[float, float, float]) -> str:
    """The machine's load averages at a benchmark's start and now (docs/benchmarks.md: the
    load decides how far a timing can be trusted)."""
    return "load average (1, 5, 15 min) at start {:.1f} {:.1f} {:.1f}, at end {:.1f} {:.1f} {:.1f}".format(
        *load_before, *os.getloadavg())


#: The dag-processor's way: its manager pre-imports the ``airflow.*`` modules a DAG file
#: names (``[dag_processor] parsing_pre_import_modules``, on by default), then each parse
#: runs in a forked child. This times the child's parse only, median of ``repeats`` forks.
FORKED_PARSE = """
import os, statistics, sys, time, importlib
from airflow.dag_processing.dagbag import DagBag
from airflow.utils.file import iter_airflow_imports
for module in iter_airflow_imports(sys.argv[1]):
    importlib.import_module(module)
times = []
for _ in range(int(sys.argv[2])):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        start = time.perf_counter()
        bag = DagBag(dag_folder=sys.argv[1])
        ok = not bag.import_errors
        os.write(write, f"{time.perf_counter() - start if ok else -1}".encode())
        os._exit(0)
    os.close(write)
    value = float(os.read(read, 64).decode())
    os.waitpid(pid, 0)
    assert value >= 0, "import errors"
    times.append(value)
print(statistics.median(times))
"""


#: Where the parse's time goes, in one fresh interpreter: the imports the bare DAG also
#: needs, the ``airflow.*`` modules only ours names (TaskFlow, the Batch operator,
#: timetables), our package, then building the DAG (module run + DAG objects), with the
#: number of ``get_merged_defaults`` calls (one per operator class level: each deep-copies
#: the DAG's Params), what those copies cost and what validating the Params costs.
BREAKDOWN = """
import copy, importlib, json, sys, time
from airflow.utils.file import iter_airflow_imports
clock = time.perf_counter
out = {}
t = clock()
from airflow.dag_processing.dagbag import DagBag
out["Airflow itself (before the timed parse; not in the ratio)"] = clock() - t
t = clock()
import airflow.sdk
import airflow.providers.amazon.aws.operators.sagemaker
out["imports the bare DAG also needs"] = clock() - t
t = clock()
for module in iter_airflow_imports(sys.argv[1]):
    importlib.import_module(module)
out["airflow.* modules only ours names"] = clock() - t
t = clock()
for module in sys.argv[2].split(","):
    importlib.import_module(module)
out["our package (regional_training)"] = clock() - t
import airflow.sdk.bases.operator as operator_module
calls = [0]
merged = operator_module.get_merged_defaults
def counting(*args, **kwargs):
    calls[0] += 1
    return merged(*args, **kwargs)
operator_module.get_merged_defaults = counting
t = clock()
bag = DagBag(dag_folder=sys.argv[1])
out["DAG build (module run + DAG objects)"] = clock() - t
assert not bag.import_errors, bag.import_errors
dag = next(iter(bag.dags.values()))
t = clock()
for _ in range(calls[0]):
    copy.deepcopy(dag.params)
out[f"  of which: {calls[0]} deep copies of the {len(dag.params)} Params"] = clock() - t
t = clock()
dag.params.validate()
out["  of which: validating the Params once"] = clock() - t
import jsonschema
params = [dag.params.get_param(name) for name in dag.params]
t = clock()
for param in params:
    jsonschema.validate(param.value, {k: v for k, v in param.schema.items() if k != "$schema"},
                        format_checker=jsonschema.FormatChecker())
out["  (the same validation under jsonschema's default draft, 2020-12)"] = clock() - t
print(json.dumps(out))
"""

#: The package modules the DAG file imports (the rest come through them).
OUR_MODULES = ("regional_training.run.assets,regional_training.runtime.aws_io,regional_training.launch.batch_jobs,"
               "regional_training.operators,regional_training.plan.params,regional_training.runtime.strict_params,"
               "regional_training.runtime.taskflow,regional_training.tasks")


def _parse_env() -> dict[str, str]:
    """The parses' environment: no example DAGs, and this tree's package first on the path.

    The package is installed editable (scripts/bootstrap.sh), but the venv is shared, and
    a bootstrap run from another checkout (a clean-clone CI) points its ``.pth`` there:
    the parse then imports that tree, or fails. Naming ``plugins/`` measures this tree;
    the bare DAG's parse does not look at it.
    """
    path = os.pathsep.join(p for p in (str(REPO / "plugins"), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PYTHONPATH": path}


def breakdown(dag_file: Path, repeats: int) -> dict[str, float]:
    """Median seconds per component of a fresh-interpreter parse (see BREAKDOWN)."""
    env = _parse_env()
    runs = []
    for _ in range(repeats):
        result = subprocess.run([sys.executable, "-c", BREAKDOWN, str(dag_file), OUR_MODULES], env=env, check=True,
                                capture_output=True, text=True)
        runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def forked_parse_seconds(dag_file: Path, repeats: int) -> float:
    env = _parse_env()
    result = subprocess.run([sys.executable, "-c", FORKED_PARSE, str(dag_file), str(repeats)], env=env, check=True,
                            capture_output=True, text=True)
    return float(result.stdout.strip().splitlines()[-1])


def _parse_once(dag_file: Path) -> float:
    env = _parse_env()
    result = subprocess.run([sys.executable, "-c", PARSE, str(dag_file)], env=env, check=True,
                            capture_output=True, text=True)
    return float(result.stdout.strip().splitlines()[-1])


def parse_seconds(dag_file: Path, bare_file: Path, repeats: int) -> tuple[float, float]:
    """Medians of ``repeats`` parses of each file, alternating, so a busy machine slows
    both alike."""
    ours, bare = [], []
    for _ in range(repeats):
        ours.append(_parse_once(dag_file))
        bare.append(_parse_once(bare_file))
    return statistics.median(ours), statistics.median(bare)


def add_campaigns(dsn: str, total_targets: int) -> None:
    """Top the sample data up to ``total_targets`` ready campaigns, spread over the regions."""
    import psycopg2

    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM campaigns WHERE status = 'ready'")
        have = cur.fetchone()[0]
        regions = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1"]
        for i in range(have, total_targets):
            region, key = regions[i % 4], f"bench-{i:03d}"
            cur.execute(
                "INSERT INTO campaigns (campaign_key, recorded_region, recorded_from, recorded_to, status)"
                " VALUES (%s, %s, '2026-01-01', '2026-01-02', 'ready') RETURNING campaign_id",
                (key, region),
            )
            campaign_id = cur.fetchone()[0]
            cur.execute(
                "INSERT INTO datasets (campaign_id, dataset_key, label_schema, record_count, size_bytes)"
                " VALUES (%s, %s, 'imagenet-tfrecord-v1', 1000, 1000000) RETURNING dataset_id",
                (campaign_id, f"{key}-v1"),
            )
            dataset_id = cur.fetchone()[0]
            cur.execute(
                "INSERT INTO dataset_copies (dataset_id, region_code, s3_uri) VALUES (%s, %s, %s)",
                (dataset_id, region, f"s3://mrt-campaign-data-{region}/datasets/{key}/{key}-v1/"),
            )
    conn.close()


def e2e_seconds(targets: int) -> tuple[float, int]:
    import psycopg2

    from dev.local_pg import temporary_postgres
    from dev.local_stack import LOCAL_RUN_CONF, airflow_env, fake_image_map, local_aws, seed_aws
    from regional_training.runtime import campaign_db

    home = Path(tempfile.mkdtemp(prefix="mrt-bench-"))
    with temporary_postgres() as dsn:
        conn = psycopg2.connect(dsn)
        campaign_db.migrate(conn, seed=True)
        conn.close()
        add_campaigns(dsn, targets)
        with local_aws(fake_image_map(), max_concurrent_jobs=4, log_path=home / "aws.log") as endpoint:
            seed_aws(endpoint, dsn)
            env = {**os.environ, **airflow_env(dsn=dsn, endpoint=endpoint, airflow_home=home),
                   "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
            subprocess.run(["airflow", "db", "migrate"], env=env, check=True, capture_output=True)
            conf = {**LOCAL_RUN_CONF, "placement": "region_local"}
            start = time.perf_counter()
            result = subprocess.run(["airflow", "dags", "test", "multi_region_training", "--conf", json.dumps(conf)],
                                    env=env, capture_output=True, text=True)
            elapsed = time.perf_counter() - start
            completed = result.stdout.count("[DAG TEST] end task task_id=collect")
    return elapsed, completed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--targets", default="4,64")
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--breakdown", action="store_true", help="also print where the parse's time goes")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare_dag.py"
        bare.write_text(BARE_DAG)
        # Both files and the package from bytecode, as a deployment parses them (the
        # Airflow image compiles at build time, scripts/bootstrap.sh locally; the venv's
        # Airflow and provider modules, which the bare DAG's time is made of, are compiled).
        compileall.compile_file(str(bare), quiet=1)
        compileall.compile_dir(str(REPO / "dags"), quiet=1)
        compileall.compile_dir(str(REPO / "plugins"), quiet=1)
        ours, base = parse_seconds(REPO / "dags" / "multi_region_training.py", bare, args.repeats)
        forked_ours = forked_parse_seconds(REPO / "dags" / "multi_region_training.py", args.repeats)
        forked_base = forked_parse_seconds(bare, args.repeats)
    print(f"parse as the dag-processor does (airflow imports pre-imported, parse in a fork): "
          f"multi_region_training {forked_ours * 1000:.0f} ms, bare SageMaker DAG {forked_base * 1000:.0f} ms, "
          f"ratio {forked_ours / forked_base:.2f} (median of {args.repeats})")
    print(f"parse: multi_region_training {ours * 1000:.0f} ms, bare SageMaker DAG {base * 1000:.0f} ms, "
          f"ratio {ours / base:.2f} (median of {args.repeats}, fresh interpreter each)")
    if args.breakdown:
        print(f"where a fresh-interpreter parse of multi_region_training goes (median of {args.repeats}):")
        for what, seconds in breakdown(REPO / "dags" / "multi_region_training.py", args.repeats).items():
            print(f"  {what:<58} {seconds * 1000:7.1f} ms")
    print("load average (1, 5, 15 min): {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    if not args.skip_e2e:
        for n in (int(x) for x in args.targets.split(",")):
            seconds, collected = e2e_seconds(n)
            print(f"end to end, {n} targets: {seconds:.0f} s wall ({collected} collect tasks ran)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
