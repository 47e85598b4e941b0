"""Benchmark (issue 31): GPU-hours and dollars saved by checkpoint carry-over on a simulated night.

The same night twice, same inputs: ``--targets`` ready campaigns, each with a copy in
us-west-2 and us-east-1, trained spot-only (``placement: cheapest``: us-west-2's spot
first, us-east-1's spot its failover) through the real DAG (``airflow dags test``) on the
emulator as a server with the real campaign database; once with the ``carry_checkpoints``
Param on, once off. Nothing else differs.

The emulator's lifecycles (dev/local_aws/lifecycles.py) play what AWS's spot machinery
does to a share of the jobs in us-west-2:

  interrupted  the spot capacity runs out while the job trains: ``max_wait_seconds``
               after creation the job ends ``Stopped`` / ``MaxWaitTimeExceeded`` and the
               target fails over to us-east-1 (``--interrupted`` targets)
  starved      spot capacity never comes (``spot_never_launched``): the job waits, then
               ends ``MaxWaitTimeExceeded`` having trained nothing (``--starved`` targets)
  the rest     train to the end in us-west-2

The stand-in entry point (no TensorFlow) does what the real one does with its
checkpoint directory: restores the newest checkpoint its ``checkpoint`` index names,
then trains ``--steps`` steps of ``--step-seconds`` each from there, saving a checkpoint
(``tf.train.CheckpointManager``'s file layout) after every step. The emulator syncs
``/opt/ml/checkpoints`` to ``CheckpointConfig.S3Uri`` and downloads it at start, as
SageMaker does.

Every figure is computed from what the run recorded, not from the wrapper's own
accounting:

  billed        each job the run's budget ledger reserved (V007): its
                ``BillableTimeInSeconds`` (DescribeTrainingJob) x instances x the
                ledger's ``billing_usd_per_hour`` (the rate SageMaker bills managed spot
                at); GPU-hours = billable seconds x instances x GPUs per instance / 3600
  steps redone  per failover (``checkpoint_carries``, V008): the newest step of the
                earlier job's checkpoint (its ``checkpoint`` index in S3, at the row's
                ``source_uri``) minus the step the new job resumed from
                (``resumed_step``; 0 when nothing was carried)

The night is seconds long, not hours: the dollars are tiny; the saving's share is the
figure to compare. Timing on a loaded machine moves where an interruption falls (how
many steps the earlier job had done), so the two nights' steps done before the move are
printed too.

    .venv/bin/python -m bench.carry_savings [--targets 8] [--interrupted 3] [--starved 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
A, B = "us-west-2", "us-east-1"
INSTANCE_TYPE = "ml.g5.12xlarge"
#: GPUs per instance of INSTANCE_TYPE (4 NVIDIA A10G: AWS, "Amazon EC2 G5 instances").
GPUS_PER_INSTANCE = 4

#: The stand-in entry point, wrapped to checkpoint like images/training/resnet_hvd does
#: (as in tests/e2e/test_spend_checkpoint_carry.py): resume, one checkpoint per step.
WRAPPER = '''
import os, pathlib, re, runpy, sys, time
ckpt = pathlib.Path(os.environ["SM_CHECKPOINT_DIR"])
ckpt.mkdir(parents=True, exist_ok=True)
index = ckpt / "checkpoint"
match = index.is_file() and re.search(r'^model_checkpoint_path: "ckpt-(\\d+)"', index.read_text(), re.M)
start = int(match.group(1)) if match else 0
print(f"resumed from checkpoint ckpt-{start} at step {start}" if match
      else f"no checkpoint found in {ckpt}: starting at step 0", flush=True)
for step in range(start + 1, STEPS + 1):
    time.sleep(STEP_SECONDS)
    (ckpt / f"ckpt-{step}.index").write_bytes(b"i" * 100)
    (ckpt / f"ckpt-{step}.data-00000-of-00001").write_bytes(b"d" * 10000)
    index.write_text(f'model_checkpoint_path: "ckpt-{step}"\\n')
    print(f"step {step}", flush=True)
os.environ["MRT_FAKE_TRAINING_SECONDS"] = "0"
sys.argv = [FAKE, *sys.argv[1:]]
runpy.run_path(FAKE, run_name="__main__")
'''


@dataclass(frozen=True)
class Night:
    carry: bool
    jobs: list[dict[str, Any]]
    moves: list[dict[str, Any]]
    targets: int
    completed: int
    wall_seconds: float

    @property
    def billable_seconds(self) -> int:
        return sum(j["billable_seconds"] * j["instance_count"] for j in self.jobs)

    @property
    def gpu_hours(self) -> float:
        return self.billable_seconds * GPUS_PER_INSTANCE / 3600

    @property
    def dollars(self) -> float:
        return sum(j["billable_seconds"] * j["instance_count"] * j["billing_usd_per_hour"] / 3600 for j in self.jobs)

    @property
    def steps_before_move(self) -> int:
        return sum(m["source_step"] for m in self.moves)

    @property
    def steps_redone(self) -> int:
        return sum(m["source_step"] - (m["resumed_step"] or 0) for m in self.moves)


def prepare_campaigns(dsn: str, targets: int) -> list[str]:
    """``targets`` ready campaigns (the sample four plus generated ones), each dataset with
    an available copy in A and in B; returns the dataset keys in priority order."""
    import psycopg2

    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM campaigns WHERE status = 'ready'")
        for i in range(cur.fetchone()[0], targets):
            key = f"carry-{i:02d}"
            cur.execute("INSERT INTO campaigns (campaign_key, recorded_region, recorded_from, recorded_to, status)"
                        " VALUES (%s, %s, '2026-01-01', '2026-01-02', 'ready') RETURNING campaign_id", (key, A))
            cur.execute("INSERT INTO datasets (campaign_id, dataset_key, label_schema, record_count, size_bytes)"
                        " VALUES (%s, %s, 'imagenet-tfrecord-v1', 1000, 1000000)", (cur.fetchone()[0], f"{key}-v1"))
        cur.execute(
            "INSERT INTO dataset_copies (dataset_id, region_code, s3_uri)"
            " SELECT d.dataset_id, r.code, format('s3://mrt-campaign-data-%%s/datasets/%%s/%%s/', r.code,"
            "        c.campaign_key, d.dataset_key)"
            "   FROM datasets d JOIN campaigns c USING (campaign_id)"
            "  CROSS JOIN (VALUES (%s), (%s)) AS r (code)"
            "  WHERE c.status = 'ready'"
            " ON CONFLICT (dataset_id, region_code) DO NOTHING", (A, B))
        cur.execute("SELECT d.dataset_key FROM datasets d JOIN campaigns c USING (campaign_id)"
                    " WHERE c.status = 'ready' ORDER BY d.dataset_id")
        keys = [r[0] for r in cur.fetchall()]
    conn.close()
    return keys


def lifecycles(dataset_keys: list[str], *, interrupted: int, starved: int, interrupt_after: float) -> dict[str, Any]:
    """The night's spot events in A, by job-name pattern (``mrt-<region>-<dataset>-<digest>``)."""
    jobs: dict[str, Any] = {}
    for key in dataset_keys[:interrupted]:
        jobs[f"mrt-{A}-{key}-*"] = {"max_wait_seconds": interrupt_after}
    for key in dataset_keys[interrupted:interrupted + starved]:
        jobs[f"mrt-{A}-{key}-*"] = {"spot_never_launched": True, "max_wait_seconds": interrupt_after}
    return {"jobs": jobs}


def newest_step(s3: Any, uri: str) -> int:
    from regional_training.record.checkpoint_carry import INDEX_FILE
    from regional_training.record.checkpoint_carry import newest_step as parse
    from regional_training.runtime.aws_io import split_s3_uri

    bucket, prefix = split_s3_uri(uri)
    try:
        body = s3.get_object(Bucket=bucket, Key=f"{prefix}{INDEX_FILE}")["Body"].read()
    except s3.exceptions.NoSuchKey:
        return 0
    return parse(body.decode()) or 0


def recorded(dsn: str, endpoint: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int, int]:
    """(jobs with billing, failovers with steps, targets, completed) from the run's rows."""
    import psycopg2

    from dev.local_stack import aws_client

    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT job_name, region_code, purchase_option, instance_count, billing_usd_per_hour,"
                    " actual_cost_usd FROM budget_ledger ORDER BY reserved_at, job_name")
        ledger = [dict(zip([c.name for c in cur.description], r, strict=True)) for r in cur.fetchall()]
        cur.execute("SELECT target_key, job_name, from_job_name, from_region, to_region, outcome, source_uri,"
                    " resumed_step, objects, bytes_copied, seconds FROM checkpoint_carries ORDER BY job_name")
        carries = [dict(zip([c.name for c in cur.description], r, strict=True)) for r in cur.fetchall()]
        cur.execute("SELECT count(*), count(*) FILTER (WHERE status = 'Completed') FROM training_runs")
        targets, completed = cur.fetchone()
    conn.close()
    jobs = []
    for row in ledger:
        sm = aws_client("sagemaker", endpoint, row["region_code"])
        try:
            job = sm.describe_training_job(TrainingJobName=row["job_name"])
        except sm.exceptions.ClientError:  # reserved, never created (a create refused)
            continue
        jobs.append({**row, "billing_usd_per_hour": float(row["billing_usd_per_hour"]),
                     "billable_seconds": int(job.get("BillableTimeInSeconds") or 0),
                     "status": job["TrainingJobStatus"], "secondary": job.get("SecondaryStatus")})
    moves = [{**c, "source_step": newest_step(aws_client("s3", endpoint, c["from_region"]), c["source_uri"])}
             for c in carries]
    return jobs, moves, targets, completed


def night(carry: bool, args: argparse.Namespace, work: Path) -> Night:
    import psycopg2

    from dev.local_pg import temporary_postgres
    from dev.local_stack import LOCAL_RUN_CONF, TRAINING_REPOSITORY, airflow_env, local_aws, seed_aws
    from regional_training.runtime import campaign_db

    home = work / ("carry" if carry else "no-carry")
    home.mkdir()
    wrapper = home / "checkpointing_entry_point.py"
    wrapper.write_text(f"STEPS = {args.steps}\nSTEP_SECONDS = {args.step_seconds}\n"
                       f"FAKE = {str(REPO / 'dev/local_aws/fake_entry_point.py')!r}\n{WRAPPER}")
    images = {TRAINING_REPOSITORY: {"command": [sys.executable, str(wrapper)]}}
    with temporary_postgres() as dsn:
        conn = psycopg2.connect(dsn)
        campaign_db.migrate(conn, seed=True)
        conn.close()
        keys = prepare_campaigns(dsn, args.targets)
        plan = lifecycles(keys, interrupted=args.interrupted, starved=args.starved,
                          interrupt_after=args.interrupt_after)
        with local_aws(images, lifecycles=plan, max_concurrent_jobs=4, log_path=home / "aws.log") as endpoint:
            seed_aws(endpoint, dsn)
            env = {**os.environ, **airflow_env(dsn=dsn, endpoint=endpoint, airflow_home=home),
                   "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
            subprocess.run(["airflow", "db", "migrate"], env=env, check=True, capture_output=True)
            conf = {**LOCAL_RUN_CONF, "placement": "cheapest", "purchase_options": ["spot"],
                    "carry_checkpoints": carry}
            started = time.perf_counter()
            result = subprocess.run(["airflow", "dags", "test", "multi_region_training", "--conf", json.dumps(conf)],
                                    env=env, capture_output=True, text=True)
            wall = time.perf_counter() - started
            (home / "dags-test.log").write_text(result.stdout + result.stderr)
            jobs, moves, targets, completed = recorded(dsn, endpoint)
    return Night(carry, jobs, moves, targets, completed, wall)


def report(on: Night, off: Night) -> str:
    lines = [f"{'':<22}{'with carry-over':>18}{'without':>14}{'saved':>14}"]

    def row(label: str, a: float, b: float, fmt: str) -> None:
        share = f" ({(b - a) / b:.0%})" if b else ""
        lines.append(f"{label:<22}{a:>18{fmt}}{b:>14{fmt}}{b - a:>14{fmt}}{share}")

    row("billable seconds", on.billable_seconds, off.billable_seconds, ",.0f")
    row("GPU-hours billed", on.gpu_hours, off.gpu_hours, ".4f")
    row("dollars", on.dollars, off.dollars, ".4f")
    row("steps redone", on.steps_redone, off.steps_redone, ".0f")
    lines.append(f"{'steps done before move':<22}{on.steps_before_move:>18}{off.steps_before_move:>14}")
    lines.append(f"{'jobs / failovers':<22}{f'{len(on.jobs)} / {len(on.moves)}':>18}"
                 f"{f'{len(off.jobs)} / {len(off.moves)}':>14}")
    lines.append(f"{'targets completed':<22}{f'{on.completed} of {on.targets}':>18}"
                 f"{f'{off.completed} of {off.targets}':>14}")
    lines.append(f"{'wall seconds':<22}{on.wall_seconds:>18.1f}{off.wall_seconds:>14.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=8)
    parser.add_argument("--interrupted", type=int, default=3, help="targets whose spot capacity runs out in A")
    parser.add_argument("--starved", type=int, default=1, help="targets whose spot capacity never comes in A")
    parser.add_argument("--steps", type=int, default=40, help="steps a target trains in all")
    parser.add_argument("--step-seconds", type=float, default=0.5)
    parser.add_argument("--interrupt-after", type=float, default=8.0,
                        help="seconds from a job's creation to its MaxWaitTimeExceeded in A")
    args = parser.parse_args(argv)
    if args.interrupted + args.starved > args.targets:
        parser.error("--interrupted + --starved must not exceed --targets")
    work = Path(tempfile.mkdtemp(prefix="mrt-carry-bench-"))
    load = os.getloadavg()[0]
    nights = {carry: night(carry, args, work) for carry in (True, False)}
    print(f"{args.targets} targets, {args.interrupted} interrupted and {args.starved} starved in {A} spot,"
          f" {args.steps} steps x {args.step_seconds} s; load {load:.1f} -> {os.getloadavg()[0]:.1f}; logs in {work}")
    for carry, n in nights.items():
        for m in n.moves:
            print(f"  {'carry' if carry else 'off  '} {m['target_key']}: {m['outcome']}, {m['from_region']} ->"
                  f" {m['to_region']}, earlier job's newest step {m['source_step']}, resumed at"
                  f" {m['resumed_step'] or 0}, {m['objects']} objects, {m['bytes_copied']} bytes, {m['seconds']} s")
    print(report(nights[True], nights[False]))
    incomplete = [n for n in nights.values() if n.completed != args.targets]
    for n in incomplete:  # a night that failed is no baseline: say so, fail the bench
        print(f"NIGHT {'with' if n.carry else 'without'} carry-over completed {n.completed} of {args.targets}"
              f" targets: figures not comparable (see {work}/*/dags-test.log)", file=sys.stderr)
    return 1 if incomplete else 0


if __name__ == "__main__":
    sys.exit(main())
