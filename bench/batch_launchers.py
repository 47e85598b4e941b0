"""The three launchers side by side (issue 16): prints figures, asserts nothing.

For each ``launcher`` (airflow, batch_array, batch_service) one ``airflow dags test`` run
of the same conf on the offline stack (stand-in entry point, region-local placement,
4 regions), on one throwaway Postgres and one emulator:

* wall time of the run;
* seconds from the run's start until its first and its last training job was created;
* Airflow task instances that ran (what the scheduler/executor had to handle).

    .venv/bin/python -m bench.batch_launchers [--launchers airflow,batch_array]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REGIONS = ("eu-central-1", "eu-west-1", "us-east-1", "us-west-2")


def creation_offsets(endpoint: str, since: float) -> list[float]:
    """Seconds after ``since`` at which this emulator's training jobs created after it were created."""
    from dev.local_stack import aws_client

    offsets = []
    for region in REGIONS:
        for job in aws_client("sagemaker", endpoint, region).list_training_jobs(MaxResults=100)[
                "TrainingJobSummaries"]:
            created = job["CreationTime"]
            created = created if created.tzinfo else created.replace(tzinfo=UTC)
            if created.timestamp() >= since:
                offsets.append(created.timestamp() - since)
    return sorted(offsets)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--launchers", default="airflow,batch_array,batch_service")
    args = parser.parse_args()
    import psycopg2

    from dev.local_pg import temporary_postgres
    from dev.local_stack import LOCAL_RUN_CONF, airflow_env, fake_image_map, local_aws, seed_aws
    from regional_training.runtime import campaign_db

    with tempfile.TemporaryDirectory() as tmp, temporary_postgres() as dsn:
        conn = psycopg2.connect(dsn)
        campaign_db.migrate(conn, seed=True)
        conn.close()
        home = Path(tmp)
        with local_aws(fake_image_map(), max_concurrent_jobs=4, log_path=home / "aws.log") as endpoint:
            seed_aws(endpoint, dsn)
            env = {**os.environ, **airflow_env(dsn=dsn, endpoint=endpoint, airflow_home=home),
                   "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
            subprocess.run(["airflow", "db", "migrate"], env=env, check=True, capture_output=True)
            for launcher in args.launchers.split(","):
                conf = {**LOCAL_RUN_CONF, "placement": "region_local", "launcher": launcher}
                start = time.time()
                result = subprocess.run(
                    ["airflow", "dags", "test", "multi_region_training", "--conf", json.dumps(conf)],
                    env=env, capture_output=True, text=True)
                elapsed = time.time() - start
                offsets = creation_offsets(endpoint, start)
                tasks = result.stdout.count("[DAG TEST] end task")
                ok = "state=success" in result.stdout or result.returncode == 0
                first = f"{offsets[0]:.0f}" if offsets else "-"
                last = f"{offsets[-1]:.0f}" if offsets else "-"
                print(f"launcher={launcher}: {elapsed:.0f} s wall, {len(offsets)} jobs created "
                      f"(first at {first} s, last at {last} s), {tasks} task runs, "
                      f"{'ok' if ok else 'FAILED (rc ' + str(result.returncode) + ')'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
