"""Checkpoint carry-over (issue 31) on the emulator and the real PostgreSQL server.

A managed-spot target runs in us-west-2 (region A) until its MaxWaitTimeInSeconds runs
out (the emulator's lifecycle: ``Stopped`` / ``MaxWaitTimeExceeded``), and
:func:`regional_training.launch.attempts.resolve` moves it to us-east-1 (region B). Before B's
job is created, :func:`regional_training.record.checkpoint_carry.carry_for` (the operator's one
call) copies A's checkpoint prefix to B's, server-side, and records the move in
``checkpoint_carries``; B's job is then created and SageMaker (the emulator) downloads
its ``CheckpointConfig.S3Uri`` when it starts.

The emulator's stand-in entry point writes no checkpoints, so A's prefix gets the files
the real entry point's ``tf.train.CheckpointManager`` leaves (``ckpt-<step>.index``,
``ckpt-<step>.data-00000-of-00001`` and the ``checkpoint`` index naming the newest) while
A's job runs, as SageMaker's checkpoint sync would upload them. Whether the real entry
point resumes from such a prefix is the image's own test (images/training).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from run_stub import DAG_ID, RunStub

from dev.local_aws.fake_entry_point import SHARD_MAGIC
from dev.local_stack import TRAINING_REPOSITORY, aws_client, fake_image_map, local_aws, wait_for_job_end
from regional_training.launch.attempts import Candidate, resolve
from regional_training.record import checkpoint_carry

pytestmark = pytest.mark.integration

A, B = "us-west-2", "us-east-1"
#: Region A's spot capacity runs out while the job trains: its wait ends it.
LIFECYCLES = {"regions": {A: {"max_wait_seconds": 3}}}
CHECKPOINT = {
    "checkpoint": b'model_checkpoint_path: "ckpt-24"\nall_model_checkpoint_paths: "ckpt-16"\n'
                  b'all_model_checkpoint_paths: "ckpt-24"\n',
    "ckpt-16.index": b"i" * 300, "ckpt-16.data-00000-of-00001": b"d" * 5000,
    "ckpt-24.index": b"i" * 310, "ckpt-24.data-00000-of-00001": b"e" * 5000,
}


def bucket(region: str) -> str:
    return f"mrt-carry-{region}"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with local_aws(fake_image_map(), lifecycles=LIFECYCLES, max_concurrent_jobs=4) as url:
        for region in (A, B):
            s3 = aws_client("s3", url, region)
            config = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            s3.create_bucket(Bucket=bucket(region), **config)
            s3.put_object(Bucket=bucket(region), Key="data/shard-0", Body=SHARD_MAGIC + b"x" * 64)
        yield url


@pytest.fixture
def aws_conn(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The Airflow connection aws_io's server-side copy goes through (as a task's)."""
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(
        {"conn_type": "aws", "extra": {"endpoint_url": endpoint, "region_name": B}}))
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    return endpoint


def request(name: str, region: str, run_id: str, *, tag: str = "local", lr: str = "0.5") -> dict[str, Any]:
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": f"123456789012.dkr.ecr.{region}.amazonaws.com/"
                                   f"{TRAINING_REPOSITORY}:{tag}", "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::123456789012:role/mrt-sagemaker-execution",
        "HyperParameters": {"model": "resnet_tiny", "learning_rate": lr, "max_steps": "20", "seconds": "30"},
        "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket(region)}/data/"}}}],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket(region)}/training-jobs/"},
        "ResourceConfig": {"InstanceType": "ml.g5.12xlarge", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600, "MaxWaitTimeInSeconds": 1200},
        "EnableManagedSpotTraining": True,
        "CheckpointConfig": {"S3Uri": f"s3://{bucket(region)}/checkpoints/{run_id}/t1",
                             "LocalPath": "/opt/ml/checkpoints"},
        "Tags": [{"Key": "purchase_option", "Value": "spot"}],
    }


def interrupted_in_a(endpoint: str, run_id: str, **kwargs: Any) -> tuple[list[Candidate], Any]:
    """A's job trains, checkpoints, and ends MaxWaitTimeExceeded; the target resolves to B."""
    sm_a, s3_a = aws_client("sagemaker", endpoint, A), aws_client("s3", endpoint, A)
    candidates = [Candidate(request(f"mrt-carry-{run_id[-6:]}-a", A, run_id), A),
                  Candidate(request(f"mrt-carry-{run_id[-6:]}-b", B, run_id, **kwargs), B)]
    sm_a.create_training_job(**candidates[0].request)
    for name, body in CHECKPOINT.items():  # what SageMaker's sync uploads from /opt/ml/checkpoints
        s3_a.put_object(Bucket=bucket(A), Key=f"checkpoints/{run_id}/t1/{name}", Body=body)
    ended = wait_for_job_end(sm_a, candidates[0].base_name, timeout=120)
    assert (ended["TrainingJobStatus"], ended["SecondaryStatus"]) == ("Stopped", "MaxWaitTimeExceeded")

    clients = {r: aws_client("sagemaker", endpoint, r) for r in (A, B)}

    def describe(region: str, name: str) -> dict[str, Any] | None:
        try:
            return clients[region].describe_training_job(TrainingJobName=name)  # type: ignore[no-any-return]
        except clients[region].exceptions.ClientError:
            return None

    resolution = resolve(candidates, describe)
    assert (resolution.action, resolution.index) == ("create", 1)
    assert [(m.from_region, m.to_region, m.error_code) for m in resolution.moves] == [(A, B, "MaxWaitTimeExceeded")]
    return candidates, resolution


def prefix_objects(endpoint: str, region: str, run_id: str) -> dict[str, bytes]:
    s3 = aws_client("s3", endpoint, region)
    prefix = f"checkpoints/{run_id}/t1/"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket(region), Prefix=prefix).get("Contents", [])]
    return {k[len(prefix):]: s3.get_object(Bucket=bucket(region), Key=k)["Body"].read() for k in keys}


def carries(dsn: str, run_id: str) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT job_name, from_region, to_region, outcome, objects, bytes_copied, resumed_step,"
                        " seconds, reason FROM checkpoint_carries WHERE dag_id = %s AND run_id = %s",
                        (DAG_ID, run_id))
            return cur.fetchall()
    finally:
        conn.close()


def test_a_failover_starts_with_the_checkpoints_of_the_interrupted_job(aws_conn: str, campaign_dsn: str) -> None:
    run = RunStub(campaign_dsn, {"carry_checkpoints": True})
    candidates, resolution = interrupted_in_a(aws_conn, run.run_id)
    s3_reads: list[str] = []

    def client_for(region: str) -> Any:
        s3_reads.append(region)
        return aws_client("s3", aws_conn, region)

    carry = checkpoint_carry.carry_for(run, "t1", resolution, candidates, client_for=client_for)
    assert carry is not None and carry.outcome == "copied"
    # B's prefix holds A's checkpoint, byte for byte, before B's job exists.
    assert prefix_objects(aws_conn, B, run.run_id) == CHECKPOINT
    size = sum(len(b) for b in CHECKPOINT.values())
    [row] = carries(campaign_dsn, run.run_id)
    assert row[:7] == (candidates[1].base_name, A, B, "copied", len(CHECKPOINT), size, 24)
    assert float(row[7]) >= 0 and row[8] is None
    # Only the source region's client read anything here (the listing and the small index
    # file); the copies went through aws_io's destination-region client, server-side.
    assert set(s3_reads) == {A}

    # A resumed try that reaches the same create again copies nothing more.
    assert checkpoint_carry.carry_for(run, "t1", resolution, candidates, client_for=client_for) is not None
    assert len(carries(campaign_dsn, run.run_id)) == 1 and s3_reads.count(A) == 1

    # B's job starts from that prefix: SageMaker downloads CheckpointConfig.S3Uri at start.
    sm_b = aws_client("sagemaker", aws_conn, B)
    sm_b.create_training_job(**{**candidates[1].request, "HyperParameters": {
        **candidates[1].request["HyperParameters"], "seconds": "1"}})
    assert wait_for_job_end(sm_b, candidates[1].base_name, timeout=120)["TrainingJobStatus"] == "Completed"
    # ...and syncs /opt/ml/checkpoints back: A's files are still there for B's own resume.
    assert set(CHECKPOINT) <= set(prefix_objects(aws_conn, B, run.run_id))


def test_with_the_param_off_b_starts_empty(aws_conn: str, campaign_dsn: str) -> None:
    run = RunStub(campaign_dsn, {"carry_checkpoints": False})
    candidates, resolution = interrupted_in_a(aws_conn, run.run_id)
    carry = checkpoint_carry.carry_for(run, "t1", resolution, candidates)
    assert carry is not None and carry.outcome == "off"
    assert prefix_objects(aws_conn, B, run.run_id) == {}
    [row] = carries(campaign_dsn, run.run_id)
    assert row[3:7] == ("off", 0, 0, None)


def test_a_checkpoint_of_another_image_or_recipe_is_never_used(aws_conn: str, campaign_dsn: str) -> None:
    for change, reason in (({"tag": "v2"}, "image differs"), ({"lr": "0.05"}, "hyperparameters differ")):
        run = RunStub(campaign_dsn, {"carry_checkpoints": True})
        candidates, resolution = interrupted_in_a(aws_conn, run.run_id, **change)
        carry = checkpoint_carry.carry_for(run, "t1", resolution, candidates)
        assert carry is not None and carry.outcome == "incompatible" and reason in str(carry.reason)
        assert prefix_objects(aws_conn, B, run.run_id) == {}
        [row] = carries(campaign_dsn, run.run_id)
        assert row[3:6] == ("incompatible", 0, 0) and reason in row[8]


def test_what_is_carried_is_decided_before_any_s3_call() -> None:
    """The pure rules (no emulator): image identity, the index file's step, nothing to
    carry without an earlier job or into the same prefix (a new attempt in the region)."""
    from regional_training.launch.attempts import Attempt, Resolution

    assert checkpoint_carry.image_identity("1234.dkr.ecr.us-east-1.amazonaws.com/mrt/train:v1") == "mrt/train:v1"
    assert checkpoint_carry.image_identity("localhost:5000/mrt/train:v1") == "mrt/train:v1"
    assert checkpoint_carry.image_identity("mrt/train:v1") == "mrt/train:v1"
    assert checkpoint_carry.newest_step('model_checkpoint_path: "/opt/ml/checkpoints/ckpt-120"\n') == 120
    assert checkpoint_carry.newest_step('all_model_checkpoint_paths: "ckpt-3"\n') is None
    a, b = request("j-a", A, "r"), request("j-b", B, "r")
    candidates = [Candidate(a, A), Candidate(b, B)]
    ended = {"TrainingJobStatus": "Stopped", **a}
    first = Resolution("create", 0, Attempt(1, "j-a", None), None, (), (None, None))
    assert checkpoint_carry.plan(first, candidates, enabled=True) is None
    again = Resolution("create", 0, Attempt(2, "j-a-a2", None), None, (), (Attempt(1, "j-a", ended),))
    assert checkpoint_carry.plan(again, candidates, enabled=True) is None
    moved = Resolution("create", 1, Attempt(1, "j-b", None), None, (), (Attempt(1, "j-a", ended), None))
    carry = checkpoint_carry.plan(moved, candidates, enabled=True)
    assert carry is not None and (carry.outcome, carry.source_uri, carry.dest_uri) == (
        "copied", f"s3://{bucket(A)}/checkpoints/r/t1/", f"s3://{bucket(B)}/checkpoints/r/t1/")
    other_model = {**b, "HyperParameters": {**b["HyperParameters"], "model": "resnet50"}}
    carry = checkpoint_carry.plan(moved, [candidates[0], Candidate(other_model, B)], enabled=True)
    assert carry is not None and carry.outcome == "incompatible" and "model differs" in str(carry.reason)
