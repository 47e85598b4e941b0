"""Trigger -> end and per-target overhead of one run on Airflow's real services (issue 12).

For each ``--targets N``: a fresh offline stack (campaign DB with the sample data plus
N - 4 bench campaigns from ``bench/sql/scale_targets.sql``, the emulator running the
stand-in entry point for ``--job-seconds``, and the services of
``dev/airflow_services.py``: PostgreSQL metadata DB, api-server, scheduler with
LocalExecutor, dag-processor, triggerer), one run triggered through the REST API,
followed to its end. Prints per N:

* wall: trigger (the POST) -> the run's end_date;
* longest job: the longest TrainingEndTime - TrainingStartTime of the run's jobs;
* overhead per target: (wall - longest job) / N;
* most jobs in flight at once (from the jobs' start/end times);
* collection lag: per target, its job's end -> its training task's end (the task
  collects and records its own job when resumed), median and largest; and the tail
  after the last job ended (last job end -> run end), as a share of wall;
* CPU seconds by process title, and the CPU time of a fixed reference workload before
  the services start and after they stop: the same code on this shared machine has run
  from 0.40 s to 0.63 s of CPU for the same work an hour apart, so runs compare only
  with the reference beside them.

    .venv/bin/python -m bench.services_scale --targets 4 --targets 128

``--executor celery`` (root) runs the same on Airflow's distributed engine, as
``scripts/run_local.sh --executor celery`` does: Redis, two schedulers, two triggerers
and two Celery workers of 4 slots each, each worker on a simulated host (a network
namespace, dev/sim_hosts.py) that reaches the databases, the broker and the emulator
only through its interface:

    .venv/bin/python -m bench.services_scale --executor celery --targets 128 --job-seconds 30
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from dev.airflow_services import DAG_ID, LogFindings, airflow_services, follow_run, is_training_task
from dev.local_pg import temporary_postgres
from dev.local_stack import LOCAL_RUN_CONF, aws_client, fake_image_map, local_aws, seed_aws
from dev.processes import all_pids, cpu_seconds_by_command, machine_cpu_seconds, unwind_on_sigterm
from dev.sim_hosts import SimulatedHosts, simulated_hosts

REPO = Path(__file__).resolve().parents[1]
SCALE_SQL = REPO / "bench" / "sql" / "scale_targets.sql"
#: Airflow's floor (bench/floor_dags/mrt_airflow_floor.py): our DAG's shape, no work.
FLOOR_DAGS = REPO / "bench" / "floor_dags"
FLOOR_DAG_IDS = ("mrt_airflow_floor", "mrt_airflow_floor_trigger_start", "mrt_airflow_floor_no_worker",
                 "mrt_airflow_floor_one_task")
SAMPLE_TARGETS = 4


def _ts(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _seed_campaigns(dsn: str, targets: int, conf: dict[str, Any]) -> None:
    import psycopg2

    from regional_training.runtime import campaign_db

    conn = psycopg2.connect(dsn)
    try:
        campaign_db.migrate(conn, seed=True)
        with conn.cursor() as cur:
            cur.execute(SCALE_SQL.read_text(), {
                "extra": max(0, targets - SAMPLE_TARGETS),
                "quota": targets * int(conf.get("instance_count", 1)),
                "instance_type": conf["instance_type"],
            })
        conn.commit()
    finally:
        conn.close()


def _jobs(endpoint: str, run_id: str) -> list[dict[str, Any]]:
    jobs = []
    for region in ("eu-central-1", "eu-west-1", "us-east-1", "us-west-2"):
        sm = aws_client("sagemaker", endpoint, region)
        for page in sm.get_paginator("list_training_jobs").paginate():
            for summary in page["TrainingJobSummaries"]:
                job = sm.describe_training_job(TrainingJobName=summary["TrainingJobName"])
                tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=job["TrainingJobArn"])["Tags"]}
                if tags.get("dag_run") == run_id:
                    jobs.append({**job, "TagMap": tags})
    return jobs


def _collection_lags(jobs: list[dict[str, Any]], task_instances: list[dict[str, Any]]) -> list[float]:
    """Per target: its last job's end -> its training task's end (when the row is
    recorded). A task is named "<region> <target>" (the DAG's map_index_template)."""
    job_end: dict[str, float] = {}
    for job in jobs:
        if job.get("TrainingEndTime"):
            key = job["TagMap"].get("target", "")
            job_end[key] = max(job_end.get(key, 0.0), _ts(job["TrainingEndTime"]))
    return [_ts(ti["end_date"]) - job_end[target] for ti in task_instances
            if is_training_task(ti["task_id"]) and ti.get("end_date")
            and (target := str(ti.get("rendered_map_index") or "").split(" ")[-1]) in job_end]


def _max_in_flight(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    current = peak = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def reference_seconds() -> float:
    """CPU seconds of a fixed pure-Python workload (median of 3): how fast the machine is now."""
    times = []
    for _ in range(3):
        started = time.process_time()
        digest = b""
        for i in range(200_000):
            digest = hashlib.sha256(digest + i.to_bytes(4, "little")).digest()
        json.loads(json.dumps([{"i": i, "s": str(i)} for i in range(100_000)]))
        times.append(time.process_time() - started)
    return statistics.median(times)


def _floor_env(job_seconds: float) -> dict[str, str]:
    """The services' settings for a floor DAG: its folder, its trigger importable, the sleep."""
    path = os.pathsep.join(p for p in (str(FLOOR_DAGS), os.environ.get("PYTHONPATH", "")) if p)
    return {"AIRFLOW__CORE__DAGS_FOLDER": str(FLOOR_DAGS), "PYTHONPATH": path,
            "MRT_FLOOR_JOB_SECONDS": str(job_seconds)}


@contextlib.contextmanager
def _hosts(executor: str) -> Any:
    """``--executor celery``: the workers' simulated hosts; otherwise none."""
    if executor != "celery":
        yield None
        return
    with simulated_hosts(2) as hosts:
        yield hosts


def measure(targets: int, args: argparse.Namespace) -> dict[str, Any]:
    floor = args.dag != DAG_ID
    conf = {"targets": targets} if floor else {**LOCAL_RUN_CONF, **json.loads(args.conf)}
    reference_before = reference_seconds()
    home = Path(tempfile.mkdtemp(prefix=f"mrt-bench-services-{targets}-"))
    hosts: SimulatedHosts | None
    with _hosts(args.executor) as hosts, temporary_postgres(host=hosts.address if hosts else "127.0.0.1") as dsn:
        if not floor:
            _seed_campaigns(dsn, targets, conf)
        with local_aws(fake_image_map(seconds=args.job_seconds),
                       max_concurrent_jobs=args.max_concurrent_jobs or targets,
                       log_path=home / "local-aws.log", host=hosts.address if hosts else "127.0.0.1") as endpoint:
            if not floor:
                copies = seed_aws(endpoint, dsn)
                print(f"[{targets}] seeded {len(copies)} copies", flush=True)
            print(f"[{targets}] starting the services ({args.dag})", flush=True)
            started = time.monotonic()
            extra_env = _floor_env(args.job_seconds) if floor else {}
            if args.executor not in ("", "local", "celery"):
                extra_env["AIRFLOW__CORE__EXECUTOR"] = args.executor
            with airflow_services(campaign_dsn=dsn, endpoint=endpoint, home=home, parallelism=args.parallelism,
                                  dag_id=args.dag, extra_env=extra_env, hosts=hosts) as stack:
                print(f"[{targets}] services up in {time.monotonic() - started:.0f}s", flush=True)
                stack.api.unpause(args.dag)  # clears a schedule already due, if any (issue 12, item 3)
                cpu_before = cpu_seconds_by_command(all_pids())
                machine_before = machine_cpu_seconds()
                triggered = time.time()
                run_id = stack.api.trigger(conf, args.dag)
                followed = follow_run(
                    stack.api, run_id, timeout=args.timeout, poll=2.0, dag_id=args.dag,
                    on_change=lambda p: print(f"[{targets}] {time.time() - triggered:6.0f}s {p.line()}", flush=True),
                )
                machine_cpu = machine_cpu_seconds() - machine_before
                cpu_after = cpu_seconds_by_command(all_pids())
                jobs = [] if floor else _jobs(endpoint, run_id)
                time.sleep(3)  # the last tries' supervisors and the triggerers finish their lines
                # Every service's whole log (this stack ran only this run): issue 33's "clean logs".
                logs = LogFindings.of({service: stack.log_path(service).read_text(errors="replace").splitlines()
                                       for service in stack.services() if stack.log_path(service).exists()})
    reference_after = reference_seconds()
    run = followed.run
    wall = _ts(run["end_date"]) - triggered
    if floor:  # no jobs: a training task's "job" is its deferral, which ends the task
        spans = [(_ts(ti["end_date"]) - args.job_seconds, _ts(ti["end_date"])) for ti in followed.task_instances
                 if is_training_task(ti["task_id"]) and ti.get("end_date")]
    else:
        spans = [(_ts(j["TrainingStartTime"]), _ts(j["TrainingEndTime"])) for j in jobs if j.get("TrainingEndTime")]
    longest = max((e - s for s, e in spans), default=0.0)
    lags = _collection_lags(jobs, followed.task_instances)
    last_job_end = max((e for _, e in spans), default=triggered)
    trained = sum(1 for ti in followed.task_instances if is_training_task(ti["task_id"]) and ti["state"] == "success")
    return {
        "targets": targets, "state": run["state"], "trained": trained, "jobs": len(jobs), "wall_s": wall,
        "longest_job_s": longest, "overhead_per_target_s": (wall - longest) / targets,
        "max_jobs_in_flight": _max_in_flight(spans),
        "collection_lag_s": (statistics.median(lags), max(lags)) if lags else None,
        "tail_after_last_job_s": _ts(run["end_date"]) - last_job_end, "home": str(home),
        "machine_cpu_s": machine_cpu, "reference_s": (reference_before, reference_after),
        "cpu_s": {name: used - cpu_before.get(name, 0.0) for name, used in cpu_after.items()},
        "logs": logs,
    }


def _lag_text(lag: tuple[float, float] | None) -> str:
    return "n/a (no jobs)" if lag is None else f"{lag[0]:.1f}, {lag[1]:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, action="append", help="targets per run (repeat; default: 4)")
    parser.add_argument("--job-seconds", type=float, default=20, help="stand-in job length (default: %(default)s)")
    parser.add_argument("--parallelism", type=int, default=8, help="LocalExecutor slots (default: %(default)s)")
    parser.add_argument("--max-concurrent-jobs", type=int, default=0,
                        help="jobs the emulator runs at once (default: all of them)")
    parser.add_argument("--conf", default="{}", help="JSON Params overriding the local defaults")
    parser.add_argument("--timeout", type=float, default=7200, help="seconds to wait for each run")
    parser.add_argument("--executor", default="",
                        help="celery: the Celery stack (two schedulers, two triggerers, two workers on simulated "
                             "hosts; root); local or empty: the local stack's LocalExecutor; otherwise a [core] "
                             "executor class for the LocalExecutor stack")
    parser.add_argument("--dag", default=DAG_ID, choices=(DAG_ID, *FLOOR_DAG_IDS),
                        help="the DAG to run: ours (default), or one of Airflow's floors with the same shape and "
                             "no work (bench/floor_dags)")
    unwind_on_sigterm()
    args = parser.parse_args(argv)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    results = []
    for targets in args.targets or [4]:
        if targets < SAMPLE_TARGETS:
            parser.error(f"--targets must be at least {SAMPLE_TARGETS} (the sample data's targets)")
        results.append(measure(targets, args))
    print(f"\n{'targets':>7} {'state':>8} {'trained':>7} {'wall s':>8} {'longest job s':>13} "
          f"{'overhead/target s':>17} {'max in flight':>13} {'collection lag s (median, max)':>30} "
          f"{'tail after last job':>19}")
    for r in results:
        wall = r["wall_s"]
        print(f"{r['targets']:>7} {r['state']:>8} {r['trained']:>7} {wall:>8.1f} {r['longest_job_s']:>13.1f} "
              f"{r['overhead_per_target_s']:>17.2f} {r['max_jobs_in_flight']:>13} "
              f"{_lag_text(r['collection_lag_s']):>30} "
              f"{r['tail_after_last_job_s']:>11.1f} ({r['tail_after_last_job_s'] / wall:>3.0%})")
    engine = ("Celery: 2 schedulers, 2 triggerers, 2 workers x 4 slots" if args.executor == "celery"
              else f"LocalExecutor parallelism {args.parallelism}")
    print(f"({args.dag}; job length {args.job_seconds:g}s, stand-in entry point; {engine}; {os.cpu_count()} CPUs)")
    for r in results:
        # Where the CPU went during the run (trigger -> end): every process on the machine
        # by title; a process's reaped children count with it (a LocalExecutor worker holds
        # its task processes, the postmaster its backends, the emulator its jobs).
        print(f"\n[{r['targets']}] CPU seconds, trigger -> end: machine {r['machine_cpu_s']:.0f} "
              f"({r['machine_cpu_s'] / r['targets']:.2f} per target)")
        attributed = 0.0
        for name, used in sorted(r["cpu_s"].items(), key=lambda item: -item[1]):
            if used >= 0.5:
                print(f"  {used:8.1f}  {name}")
            attributed += used
        print(f"  {r['machine_cpu_s'] - attributed:8.1f}  not attributed (processes that ended unreaped, kernel)")
        before, after = r["reference_s"]
        print(f"  reference workload: {before:.2f} s of CPU before the run, {after:.2f} s after")
        print(f"  service logs: {r['logs'].line()}")
    return 0 if all(r["state"] == "success" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
