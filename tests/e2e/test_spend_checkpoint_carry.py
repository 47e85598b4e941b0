"""Checkpoint carry-over (issue 31) through the real DAG (``dag.test``), the emulator as a
server and the campaign database.

Boston, spot only: the plan puts it on us-west-2 spot (2.13 USD/h, the cheapest) with
us-east-1 spot as its failover. The emulator's us-west-2 spot capacity runs out while
the job trains (``max_wait_seconds``: ``Stopped`` / ``MaxWaitTimeExceeded``), so the
target moves to us-east-1. The training task copies us-west-2's checkpoints to
us-east-1's prefix before it creates the job there; the emulator downloads that prefix
into the new job's ``/opt/ml/checkpoints`` at start, as SageMaker does.

The entry point is the emulator's stand-in (no TensorFlow), wrapped (:data:`WRAPPER`) to
do what the real one does with its checkpoint directory: restore the newest checkpoint
its ``checkpoint`` index names and log the step it resumes from, then save one
checkpoint per step in ``tf.train.CheckpointManager``'s file layout. So the log line
``resumed from checkpoint ckpt-3 at step 3`` in us-east-1's job shows the files made the
whole trip: us-west-2's job directory, its bucket, the server-side copy, us-east-1's
bucket, the new job's directory.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from helpers import jobs_of_run, run_dag

from dev.local_stack import LOCAL_RUN_CONF, REPO, TRAINING_REPOSITORY, aws_client, local_aws, seed_aws

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

A, B = "us-west-2", "us-east-1"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
#: us-west-2's spot capacity lasts 15 s from the job's creation: time for the wrapper's
#: three checkpoints even on a loaded machine, and the job then trains on until stopped.
LIFECYCLES = {"regions": {A: {"max_wait_seconds": 15}}}
STEPS_PER_LAUNCH = 3
WRAPPER = '''
import os, pathlib, re, runpy, sys, time
ckpt = pathlib.Path(os.environ["SM_CHECKPOINT_DIR"])
ckpt.mkdir(parents=True, exist_ok=True)
index = ckpt / "checkpoint"
match = index.is_file() and re.search(r'^model_checkpoint_path: "ckpt-(\\d+)"', index.read_text(), re.M)
start = int(match.group(1)) if match else 0
print(f"resumed from checkpoint ckpt-{start} at step {start}" if match
      else f"no checkpoint found in {ckpt}: starting at step 0", flush=True)
for step in range(start + 1, start + 1 + STEPS):
    (ckpt / f"ckpt-{step}.index").write_bytes(b"i" * 100)
    (ckpt / f"ckpt-{step}.data-00000-of-00001").write_bytes(b"d" * 1000)
    index.write_text(f'model_checkpoint_path: "ckpt-{step}"\\n')
# us-west-2's job trains until its spot wait runs out; the others finish quickly.
os.environ["MRT_FAKE_TRAINING_SECONDS"] = "300" if "-us-west-2-" in os.environ["TRAINING_JOB_NAME"] else "2"
sys.argv = [FAKE, *sys.argv[1:]]
runpy.run_path(FAKE, run_name="__main__")
'''


@pytest.fixture(scope="module")
def spot_runs_out_in_a(campaign_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("carry")
    wrapper = work / "checkpointing_entry_point.py"
    fake = REPO / "dev/local_aws/fake_entry_point.py"
    wrapper.write_text(f"STEPS = {STEPS_PER_LAUNCH}\nFAKE = {str(fake)!r}\n{WRAPPER}")
    images = {TRAINING_REPOSITORY: {"command": [sys.executable, str(wrapper)]}}
    with local_aws(images, lifecycles=LIFECYCLES, log_path=work / "local-aws.log") as endpoint:
        seed_aws(endpoint, campaign_dsn)
        yield endpoint


@pytest.fixture()
def stack(spot_runs_out_in_a: str, campaign_dsn: str, airflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    from dev.local_stack import in_process_env

    for key, value in in_process_env(dsn=campaign_dsn, endpoint=spot_runs_out_in_a, airflow_home=airflow_db).items():
        monkeypatch.setenv(key, value)
    return spot_runs_out_in_a


def job_log(endpoint: str, region: str, job_name: str) -> str:
    """The job's log as SageMaker publishes it (CloudWatch Logs, ``<job>/algo-1-<epoch>``)."""
    logs = aws_client("logs", endpoint, region)
    streams = logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{job_name}/")["logStreams"]
    return "\n".join(e["message"] for s in streams for e in logs.get_log_events(
        logGroupName=LOG_GROUP, logStreamName=s["logStreamName"], startFromHead=True)["events"])


def carries(dsn: str, run_id: str) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT job_name, from_job_name, from_region, to_region, outcome, objects, bytes_copied,"
                        " resumed_step FROM checkpoint_carries WHERE run_id = %s", (run_id,))
            return cur.fetchall()
    finally:
        conn.close()


def failover_run(endpoint: str, carry: bool) -> tuple[Any, dict[str, dict[str, Any]]]:
    conf = {**LOCAL_RUN_CONF, "placement": "cheapest", "campaigns": ["boston-winter-2026"],
            "purchase_options": ["spot"], "carry_checkpoints": carry}
    dag_run, states = run_dag(conf)
    assert str(dag_run.state) == "success" and states["train"] == ["success"], states
    return dag_run, {j["Region"]: j for j in jobs_of_run(endpoint, dag_run.run_id)}


@pytest.mark.parametrize("carry", [True, False], ids=["carried", "param-off"])
def test_a_spot_target_failing_over_resumes_from_its_checkpoint_in_the_new_region(
        stack: str, campaign_dsn: str, carry: bool) -> None:
    dag_run, jobs = failover_run(stack, carry)
    assert sorted(jobs) == [B, A]
    first, second = jobs[A], jobs[B]
    assert (first["TrainingJobStatus"], first["SecondaryStatus"]) == ("Stopped", "MaxWaitTimeExceeded")
    assert second["TrainingJobStatus"] == "Completed"
    assert "no checkpoint found" in job_log(stack, A, first["TrainingJobName"])
    log = job_log(stack, B, second["TrainingJobName"])
    rows = carries(campaign_dsn, dag_run.run_id)
    if carry:
        # three checkpoints (index + data each) and the index file; the newest is step 3
        size = STEPS_PER_LAUNCH * (100 + 1000) + len('model_checkpoint_path: "ckpt-3"\n')
        assert rows == [(second["TrainingJobName"], first["TrainingJobName"], A, B, "copied",
                         2 * STEPS_PER_LAUNCH + 1, size, STEPS_PER_LAUNCH)]
        assert f"resumed from checkpoint ckpt-{STEPS_PER_LAUNCH} at step {STEPS_PER_LAUNCH}" in log, log
    else:
        assert rows == [(second["TrainingJobName"], first["TrainingJobName"], A, B, "off", 0, 0, None)]
        assert "starting at step 0" in log, log
