"""Run the DAG end to end, offline: the README's first command (``scripts/run_local.sh``) calls this.

Starts a throwaway PostgreSQL (schema + sample data), the local AWS emulator (regional
buckets seeded with sample data), migrates Airflow's metadata DB (SQLite), runs
``airflow dags test multi_region_training``, prints the run's summary, stops it all.

Training is real when the training venv is available (``--train-python``, else
``$MRT_TRAIN_PYTHON``, else ``scripts/setup_training_env.sh`` builds or reuses it): each
region's emulated SageMaker job runs ``images/training/train.py`` under Horovod on that
region's generated TFRecords. ``--fake-training`` uses the stand-in entry point instead
(no TensorFlow, seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1] / "plugins")]

from local_pg import temporary_postgres  # noqa: E402
from local_stack import (  # noqa: E402
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


def _train_python(explicit: str | None) -> str:
    if explicit:
        return explicit
    if os.environ.get("MRT_TRAIN_PYTHON"):
        return os.environ["MRT_TRAIN_PYTHON"]
    print("MRT_TRAIN_PYTHON is not set: scripts/setup_training_env.sh (cached: instant; first time a few minutes)",
          flush=True)
    out = subprocess.run([str(REPO / "scripts/setup_training_env.sh")], check=True, stdout=subprocess.PIPE, text=True)
    return out.stdout.strip().splitlines()[-1]


def _terminate_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every ``finally`` stops what it started."""

    def handler(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


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
    args = parser.parse_args(argv)
    _terminate_on_sigterm()

    import psycopg2

    from regional_training import campaign_db

    conf = {**LOCAL_RUN_CONF, **json.loads(args.conf)}
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
        returncode, summary = _run(args, conf, home, image_map, samples, mode, psycopg2, campaign_db)
        print("\n" + (summary or "no run summary was written"))
        print(f"(wall time {time.monotonic() - started:.0f}s; training: {mode})")
    except KeyboardInterrupt:
        print("interrupted: the local stack was stopped", file=sys.stderr)
        returncode = 130
    finally:
        if args.keep:
            print(f"Airflow home kept at {home} (emulator log: {home / 'local-aws.log'})")
        else:
            shutil.rmtree(home, ignore_errors=True)
    return returncode


def _run(
    args: argparse.Namespace, conf: dict[str, Any], home: Path, image_map: dict[str, Any], samples: SampleWriter,
    mode: str, psycopg2: Any, campaign_db: Any,
) -> tuple[int, str | None]:
    with temporary_postgres() as dsn:
        conn = psycopg2.connect(dsn)
        campaign_db.migrate(conn, seed=True)
        conn.close()
        print(f"campaign DB ready at {dsn}", flush=True)
        with local_aws(
            image_map, max_concurrent_jobs=args.max_concurrent_jobs,
            max_processes_per_job=args.max_processes_per_job, log_path=home / "local-aws.log",
        ) as endpoint:
            print(f"local AWS at {endpoint}; {mode}; seeding sample data", flush=True)
            copies = seed_aws(endpoint, dsn, samples)
            print(f"seeded {len(copies)} dataset copies", flush=True)
            env = {**os.environ, **airflow_env(dsn=dsn, endpoint=endpoint, airflow_home=home)}
            subprocess.run(["airflow", "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
            dag_test = subprocess.Popen(
                ["airflow", "dags", "test", "multi_region_training", "--conf", json.dumps(conf)], env=env
            )
            try:
                returncode = dag_test.wait()
            finally:
                if dag_test.poll() is None:
                    dag_test.terminate()
                    try:
                        dag_test.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        dag_test.kill()
            return returncode, _read_summary(endpoint)


def _read_summary(endpoint: str) -> str | None:
    s3 = aws_client("s3", endpoint, "us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=CENTRAL_BUCKET, Prefix="runs/").get("Contents", [])]
    summaries = sorted(k for k in keys if k.endswith("summary.json"))
    if not summaries:
        return None
    body = json.loads(s3.get_object(Bucket=CENTRAL_BUCKET, Key=summaries[-1])["Body"].read())
    return str(body["text"])


if __name__ == "__main__":
    sys.exit(main())
