"""Run the DAG end to end, offline: the README's first command (``scripts/run_local.sh``) calls this.

Starts a throwaway PostgreSQL for the campaign DB (schema + sample data) and the local
AWS emulator (regional buckets seeded with sample data), then Airflow as it runs in a
deployment (``dev/airflow_services.py``): a PostgreSQL metadata DB, ``airflow
api-server``, ``scheduler`` (LocalExecutor), ``dag-processor`` and ``triggerer``, and the
log server they share (``dev/log_server.py``), all on 127.0.0.1. It
triggers a run through the REST API as the UI's trigger form does, unpauses the DAG,
shows per region how many targets are trained / running / waiting, prints the run's
summary and stops everything it started (also on Ctrl-C).

``--executor celery`` runs Airflow's distributed engine instead of the LocalExecutor
(``dev/airflow_services.py``, docs/services.md): Redis as the broker, two schedulers,
two triggerers and two Celery workers, each worker on a simulated host (a network
namespace, ``dev/sim_hosts.py``; needs root), removed again on exit.

``--serve`` keeps the stack up afterwards and prints the UI's URL and login (Ctrl-C
stops it). ``--dags-test`` runs ``airflow dags test`` in one process instead (SQLite,
mapped tasks one after another; no scheduler, triggerer or REST API).

Training is real when the training venv is available (``--train-python``, else
``$MRT_TRAIN_PYTHON``, else ``scripts/setup_training_env.sh`` builds or reuses it): each
region's emulated SageMaker job runs ``images/training/train.py`` under Horovod on that
region's generated TFRecords. ``--fake-training`` uses the stand-in entry point instead
(no TensorFlow, seconds).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dev.airflow_services import DAG_ID, AirflowStack, airflow_services, follow_run
from dev.local_pg import temporary_postgres
from dev.local_stack import (
    CENTRAL_BUCKET,
    LOCAL_RUN_CONF,
    REPO,
    SampleWriter,
    airflow_env,
    aws_client,
    fake_image_map,
    local_aws,
    placeholder_samples,
    real_image_map,
    seed_aws,
    tfrecord_samples,
)
from dev.processes import stop_group, unwind_on_sigterm
from dev.sim_hosts import HostsError, SimulatedHosts, simulated_hosts
from regional_training.plan.training_request import run_key


def _train_python(explicit: str | None) -> str:
    if explicit:
        return explicit
    if os.environ.get("MRT_TRAIN_PYTHON"):
        return os.environ["MRT_TRAIN_PYTHON"]
    print("MRT_TRAIN_PYTHON is not set: scripts/setup_training_env.sh (cached: instant; first time a few minutes)",
          flush=True)
    out = subprocess.run([str(REPO / "scripts/setup_training_env.sh")], check=True, stdout=subprocess.PIPE, text=True)
    return out.stdout.strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conf", default="{}", help="JSON Params overriding the local defaults")
    parser.add_argument("--keep", action="store_true", help="keep the Airflow home (logs) afterwards")
    parser.add_argument("--fake-training", action="store_true",
                        help="the stand-in entry point instead of real training (no TensorFlow)")
    parser.add_argument("--train-python", help="the training venv's python (default: $MRT_TRAIN_PYTHON)")
    parser.add_argument("--max-concurrent-jobs", type=int, default=2,
                        help="training jobs the emulator runs at once (default: %(default)s)")
    parser.add_argument("--max-processes-per-job", type=int, default=2,
                        help="cap on Horovod processes per job (default: %(default)s)")
    mode_group = parser.add_mutually_exclusive_group()
    mode_group.add_argument("--serve", action="store_true",
                            help="keep the services up after the run; print the UI's URL and login")
    mode_group.add_argument("--dags-test", action="store_true",
                            help="`airflow dags test` in one process instead of the services")
    parser.add_argument("--no-run", action="store_true",
                        help="with --serve: trigger nothing, just serve the stack (use the trigger form)")
    parser.add_argument("--executor", choices=("local", "celery"), default="local",
                        help="local: LocalExecutor (default); celery: Redis broker, two schedulers, two triggerers, "
                             "two Celery workers on simulated hosts (network namespaces; needs root)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the run (default: 3600)")
    args = parser.parse_args(argv)
    if args.no_run and not args.serve:
        parser.error("--no-run needs --serve")
    if args.executor == "celery" and args.dags_test:
        parser.error("--dags-test runs no executor: leave out --executor celery")
    unwind_on_sigterm()

    conf = {**LOCAL_RUN_CONF, **json.loads(args.conf)}
    samples: SampleWriter
    if args.fake_training:
        image_map, samples, mode = fake_image_map(), placeholder_samples, "stand-in entry point (--fake-training)"
    else:
        train_python = _train_python(args.train_python)
        image_map = real_image_map(train_python)
        samples = tfrecord_samples(
            train_python, num_classes=int(conf.get("num_classes", 4)), image_size=int(conf.get("image_size", 32))
        )
        mode = f"real training with {train_python}"
    home = Path(tempfile.mkdtemp(prefix="mrt-airflow-home-"))
    started = time.monotonic()
    returncode = 1
    try:
        with _hosts(args) as hosts, _offline_stack(args, home, image_map, samples, mode, hosts) as (dsn, endpoint):
            if args.dags_test:
                returncode = _dags_test(conf, dsn, endpoint, home)
                summary = _read_summary(endpoint)
            else:
                returncode, summary = _services_run(args, conf, dsn, endpoint, home, started, hosts)
            if not args.serve:
                print("\n" + (summary or "no run summary was written"))
            print(f"(wall time {time.monotonic() - started:.0f}s; training: {mode})")
    except KeyboardInterrupt:
        print("interrupted: the local stack was stopped", file=sys.stderr)
        returncode = 130
    except HostsError as err:
        print(f"--executor celery: {err}", file=sys.stderr)
        returncode = 2
    finally:
        if args.keep:
            print(f"Airflow home kept at {home} (service logs in {home / 'services'}, "
                  f"emulator log: {home / 'local-aws.log'})")
        else:
            shutil.rmtree(home, ignore_errors=True)
    return returncode


@contextlib.contextmanager
def _hosts(args: argparse.Namespace) -> Iterator[SimulatedHosts | None]:
    """With ``--executor celery``, the Celery workers' simulated hosts (removed on exit)."""
    if args.executor != "celery":
        yield None
        return
    with simulated_hosts(2) as hosts:
        print("simulated hosts: " + ", ".join(f"{h.hostname} {h.address} (netns {h.namespace})" for h in hosts.hosts)
              + f"; the stack listens on {hosts.address} ({hosts.bridge})", flush=True)
        yield hosts


@contextlib.contextmanager
def _offline_stack(
    args: argparse.Namespace, home: Path, image_map: dict[str, Any], samples: SampleWriter, mode: str,
    hosts: SimulatedHosts | None = None,
) -> Iterator[tuple[str, str]]:
    """The campaign DB (migrated, sample data) and the emulator (buckets seeded), both
    listening on the simulated hosts' bridge address too when there are hosts."""
    import psycopg2

    from regional_training.runtime import campaign_db

    host = hosts.address if hosts else "127.0.0.1"
    with temporary_postgres(host=host) as dsn:
        conn = psycopg2.connect(dsn)
        campaign_db.migrate(conn, seed=True)
        conn.close()
        print(f"campaign DB ready at {dsn}", flush=True)
        with local_aws(
            image_map, max_concurrent_jobs=args.max_concurrent_jobs,
            max_processes_per_job=args.max_processes_per_job, log_path=home / "local-aws.log", host=host,
        ) as endpoint:
            print(f"local AWS at {endpoint}; {mode}; seeding sample data", flush=True)
            copies = seed_aws(endpoint, dsn, samples)
            print(f"seeded {len(copies)} dataset copies", flush=True)
            yield dsn, endpoint


def _services_run(
    args: argparse.Namespace, conf: dict[str, Any], dsn: str, endpoint: str, home: Path, started: float,
    hosts: SimulatedHosts | None = None,
) -> tuple[int, str | None]:
    """Trigger through the REST API on the real services; follow; the summary."""
    with airflow_services(campaign_dsn=dsn, endpoint=endpoint, home=home, hosts=hosts,
                          progress=lambda msg: print(msg, flush=True)) as stack:
        print(f"Airflow is up at {stack.base_url} ({time.monotonic() - started:.0f}s)", flush=True)
        if args.no_run:
            _serve(stack)
            return 0, None
        run_id, superseded = stack.api.unpause_then_trigger(conf)
        for other in superseded:
            print(f"unpausing created {other} at once (a schedule already due): marked failed", flush=True)
        print(f"DAG unpaused; triggered {run_id} through POST /api/v2/dags/{DAG_ID}/dagRuns", flush=True)
        followed = follow_run(
            stack.api, run_id, timeout=args.timeout,
            on_change=lambda p: print(f"[{time.monotonic() - started:5.0f}s] {p.line()}", flush=True),
        )
        state = followed.run["state"]
        failed = sorted({ti["task_id"] for ti in followed.task_instances if ti.get("state") == "failed"})
        print(f"run {run_id}: {state}" + (f" (failed tasks: {', '.join(failed)})" if failed else ""), flush=True)
        summary = _read_summary(endpoint, run_key(DAG_ID, run_id))
        if args.serve:
            print("\n" + (summary or "no run summary was written"), flush=True)
            _serve(stack)
            summary = None
        # A failed task in a "successful" run is still a failure of the local run.
        return (0 if state == "success" and not failed else 1), summary


def _serve(stack: AirflowStack) -> None:
    """Keep the stack up until Ctrl-C (or SIGTERM)."""
    print(f"\nAirflow UI: {stack.base_url}  login: {stack.username} / {stack.password}\n"
          f"(password generated for this stack only; Ctrl-C stops everything)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)
    print("stopping the stack", flush=True)


def _dags_test(conf: dict[str, Any], dsn: str, endpoint: str, home: Path) -> int:
    """``airflow dags test`` in one process (SQLite metadata DB), as before the services."""
    env = {**os.environ, **airflow_env(dsn=dsn, endpoint=endpoint, airflow_home=home)}
    subprocess.run(["airflow", "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    dag_test = subprocess.Popen(
        ["airflow", "dags", "test", DAG_ID, "--conf", json.dumps(conf)], env=env, start_new_session=True
    )
    try:
        return dag_test.wait()
    finally:
        stop_group(dag_test)


def _read_summary(endpoint: str, key: str | None = None) -> str | None:
    """The newest ``summary.json`` in the central bucket (under ``key``, when given)."""
    s3 = aws_client("s3", endpoint, "us-east-1")
    objects = s3.list_objects_v2(Bucket=CENTRAL_BUCKET, Prefix="runs/").get("Contents", [])
    summaries = sorted((o for o in objects if o["Key"].endswith("summary.json")), key=lambda o: o["LastModified"])
    if key is not None:
        summaries = [o for o in summaries if key in o["Key"]]
    if not summaries:
        return None
    summary_key = summaries[-1]["Key"]
    body = json.loads(s3.get_object(Bucket=CENTRAL_BUCKET, Key=summary_key)["Body"].read())
    return str(body["text"]) + _save_report(s3, summary_key)


def _save_report(s3: Any, summary_key: str) -> str:
    """Copy the run's report.html out of the emulated central bucket (which goes away
    with the stack) to .local/reports/; the line that says where it is."""
    report_key = summary_key.rsplit("/", 1)[0] + "/report.html"
    try:
        page = s3.get_object(Bucket=CENTRAL_BUCKET, Key=report_key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return "\nno run report was written"
    path = REPO / ".local" / "reports" / (report_key.removeprefix("runs/").replace("/", "_"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(page)
    return f"\nreport: {path.as_uri()} (s3://{CENTRAL_BUCKET}/{report_key})"


if __name__ == "__main__":
    sys.exit(main())
