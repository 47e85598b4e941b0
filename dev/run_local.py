"""Run the DAG end to end, offline: the README's first command calls this.

Starts a throwaway PostgreSQL (schema + sample data), the local AWS emulator (regional
buckets seeded with sample data), migrates Airflow's metadata DB (SQLite), runs
``airflow dags test multi_region_training``, prints the run's summary, stops it all.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1] / "plugins")]

from local_pg import temporary_postgres  # noqa: E402
from local_stack import (  # noqa: E402
    CENTRAL_BUCKET,
    LOCAL_RUN_CONF,
    airflow_env,
    aws_client,
    fake_image_map,
    local_aws,
    seed_aws,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conf", default="{}", help="JSON Params overriding the local defaults")
    parser.add_argument("--keep", action="store_true", help="keep the Airflow home (logs) afterwards")
    args = parser.parse_args(argv)

    import psycopg2

    from regional_training import campaign_db

    conf = {**LOCAL_RUN_CONF, **json.loads(args.conf)}
    home = Path(tempfile.mkdtemp(prefix="mrt-airflow-home-"))
    with temporary_postgres() as dsn:
        conn = psycopg2.connect(dsn)
        campaign_db.migrate(conn, seed=True)
        conn.close()
        print(f"campaign DB ready at {dsn}", flush=True)
        with local_aws(fake_image_map(), log_path=home / "local-aws.log") as endpoint:
            copies = seed_aws(endpoint, dsn)
            print(f"local AWS at {endpoint}; seeded {len(copies)} dataset copies", flush=True)
            env = {**os.environ, **airflow_env(dsn=dsn, endpoint=endpoint, airflow_home=home)}
            subprocess.run(["airflow", "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
            result = subprocess.run(
                ["airflow", "dags", "test", "multi_region_training", "--conf", json.dumps(conf)], env=env
            )
            summary = _read_summary(endpoint)
    print("\n" + (summary or "no run summary was written"))
    if not args.keep:
        import shutil

        shutil.rmtree(home, ignore_errors=True)
    else:
        print(f"Airflow home kept at {home}")
    return result.returncode


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
