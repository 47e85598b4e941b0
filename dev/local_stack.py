"""The offline stack's parts, shared by the README's local run and the tests.

* :func:`local_aws` starts the emulator (``dev.local_aws.server``) on a free port;
* :func:`seed_aws` creates each region's buckets and uploads sample data to every
  available dataset copy named in the campaign database;
* :func:`airflow_env` is the environment that points Airflow at both: connections,
  Variables and dummy credentials, all in ``AIRFLOW_CONN_*`` / ``AIRFLOW_VAR_*``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dev.processes import background, free_port, stop_group, wait_until_answers

REPO = Path(__file__).resolve().parents[1]
TRAINING_REPOSITORY = "multi-region-training/resnet50-horovod"
CENTRAL_BUCKET = "mrt-central-artifacts"
CENTRAL_REGION = "us-east-1"
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

#: A sample-data writer: (region_code, dataset_key, local directory) -> files written.
SampleWriter = Callable[[str, str, Path], None]


def fake_image_map(seconds: float | None = None) -> dict[str, Any]:
    """Images -> the stand-in entry point (no TensorFlow needed); ``seconds``: each job's length."""
    image: dict[str, Any] = {"command": [sys.executable, str(REPO / "dev/local_aws/fake_entry_point.py")]}
    if seconds is not None:
        image["env"] = {"MRT_FAKE_TRAINING_SECONDS": str(seconds)}
    return {TRAINING_REPOSITORY: image}


def real_image_map(train_python: str | os.PathLike[str]) -> dict[str, Any]:
    """Images -> the training image, launched as SageMaker launches it (the toolkit's
    ``train`` in a container-like ``/opt/ml``, under ``mpirun``): see
    :func:`dev.local_aws.images.toolkit_image`."""
    from dev.local_aws.images import toolkit_image

    return {TRAINING_REPOSITORY: toolkit_image(train_python, REPO)}


def region_seed(region: str, dataset_key: str) -> int:
    """A stable per-copy seed: each region's sample data differs, run after run the same."""
    return zlib.crc32(f"{region}/{dataset_key}".encode()) % 1_000_000


def tfrecord_samples(
    train_python: str | os.PathLike[str], *, train_records: int = 512, num_classes: int = 4, image_size: int = 32
) -> SampleWriter:
    """A sample writer: ImageNet-format TFRecords from the training image's generator.

    Runs ``resnet_hvd.generate_data`` in the training venv with :func:`region_seed`;
    the copy gets the ``train/`` shards at its top level (the request's one channel).
    """

    def write(region: str, dataset_key: str, directory: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="mrt-samples-") as tmp:
            proc = subprocess.run(
                [
                    str(train_python), "-m", "resnet_hvd.generate_data", "--output-dir", tmp,
                    "--seed", str(region_seed(region, dataset_key)), "--num-classes", str(num_classes),
                    "--image-size", str(image_size), "--train-records", str(train_records),
                    "--validation-records", str(max(num_classes, train_records // 8)),
                ],
                env={**os.environ, "PYTHONPATH": str(REPO / "images/training"), "TF_CPP_MIN_LOG_LEVEL": "2",
                     "CUDA_VISIBLE_DEVICES": ""},
                capture_output=True, text=True, timeout=300, check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"sample generation failed for {region}/{dataset_key}: {proc.stderr[-2000:]}")
            for path in sorted((Path(tmp) / "train").iterdir()):
                shutil.copy2(path, directory / path.name)

    return write


@contextlib.contextmanager
def local_aws(
    image_map: dict[str, Any],
    *,
    capacity_error_regions: tuple[str, ...] = (),
    lifecycles: dict[str, Any] | None = None,
    max_concurrent_jobs: int = 2,
    max_processes_per_job: int = 2,
    stop_grace_seconds: float = 10.0,
    log_path: Path | None = None,
    host: str = "127.0.0.1",
) -> Iterator[str]:
    """Run the emulator in a subprocess; yield its endpoint URL; stop it on exit.

    ``host``: the address it listens on (the Celery stack's bridge address, which its
    simulated hosts reach: dev/sim_hosts.py)."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="mrt-local-aws-"))
    images = workdir / "images.json"
    images.write_text(json.dumps(image_map))
    cmd = [
        sys.executable, "-m", "dev.local_aws.server", "--host", host, "--port", str(port), "--images", str(images),
        "--workdir", str(workdir), "--max-concurrent-jobs", str(max_concurrent_jobs),
        "--max-processes-per-job", str(max_processes_per_job), "--stop-grace-seconds", str(stop_grace_seconds),
    ]
    for region in capacity_error_regions:
        cmd += ["--capacity-error-region", region]
    if lifecycles:  # spot, capacity and throttling lifecycles: local_aws.lifecycles
        (workdir / "lifecycles.json").write_text(json.dumps(lifecycles))
        cmd += ["--lifecycles", str(workdir / "lifecycles.json")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins")])}
    log_file = (log_path or workdir / "local-aws.log").open("wb")
    # At the stack's background priority: AWS's side runs elsewhere in production, and
    # its stand-in must not keep the triggerer's loop from a core (processes.background).
    proc = subprocess.Popen(background(cmd), env=env, stdout=log_file, stderr=subprocess.STDOUT,
                            start_new_session=True)
    endpoint = f"http://{host}:{port}"
    try:
        wait_until_answers(f"{endpoint}/moto-api/", proc, timeout=60, what=f"local AWS emulator (see {log_file.name})")
        yield endpoint
    finally:
        stop_group(proc)
        log_file.close()


def aws_client(service: str, endpoint: str, region: str) -> Any:
    """A new client against the emulator at ``endpoint`` (:func:`dev.local_aws.clients.client`)."""
    from dev.local_aws.clients import client

    return client(service, region, endpoint)


JOB_ENDED = frozenset({"Completed", "Failed", "Stopped"})


def wait_for_job_status(sm: Any, name: str, states: Iterable[str], *, timeout: float, poll: float = 0.5
                        ) -> dict[str, Any]:
    """Poll a training job until its status is one of ``states``; its description.
    Fails (assert) with the last description after ``timeout`` seconds."""
    wanted, deadline = set(states), time.monotonic() + timeout
    while True:
        job: dict[str, Any] = sm.describe_training_job(TrainingJobName=name)
        if job["TrainingJobStatus"] in wanted:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(poll)


def wait_for_job_end(sm: Any, name: str, *, timeout: float, poll: float = 0.5) -> dict[str, Any]:
    """Poll a training job until it has ended (Completed, Failed or Stopped); its description."""
    return wait_for_job_status(sm, name, JOB_ENDED, timeout=timeout, poll=poll)


def _create_bucket(endpoint: str, bucket: str, region: str) -> None:
    s3 = aws_client("s3", endpoint, region)
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(**kwargs)


def placeholder_samples(region: str, dataset_key: str, directory: Path) -> None:
    """Small region-specific shards for the stand-in entry point."""
    from dev.local_aws.fake_entry_point import SHARD_MAGIC

    for shard in range(2):
        body = f"{region}/{dataset_key}/{shard}\n".encode() * 64
        (directory / f"train-{shard:05d}-of-00002").write_bytes(SHARD_MAGIC + body)


def seed_aws(endpoint: str, dsn: str, write_samples: SampleWriter = placeholder_samples) -> list[str]:
    """Create every region's buckets and fill each available copy; return the copy URIs."""
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT region_code, output_bucket FROM regions ORDER BY region_code")
            regions = cur.fetchall()
            cur.execute(
                "SELECT dc.region_code, dc.s3_uri, d.dataset_key FROM dataset_copies dc"
                " JOIN datasets d USING (dataset_id) WHERE dc.status = 'available' ORDER BY dc.s3_uri"
            )
            copies = cur.fetchall()
    finally:
        conn.close()
    _create_bucket(endpoint, CENTRAL_BUCKET, CENTRAL_REGION)
    for region, output_bucket in regions:
        _create_bucket(endpoint, output_bucket, region)
    from dev.local_aws.batch import seed_batch  # the Batch launchers' queues and job definition

    seed_batch(endpoint, CENTRAL_REGION, [region for region, _ in regions])

    def fill(copy: tuple[str, str, str]) -> None:
        region, uri, dataset_key = copy
        bucket, _, prefix = uri[len("s3://"):].partition("/")
        _create_bucket(endpoint, bucket, region)
        s3 = aws_client("s3", endpoint, region)
        with tempfile.TemporaryDirectory() as tmp:
            write_samples(region, dataset_key, Path(tmp))
            for path in sorted(Path(tmp).rglob("*")):
                if path.is_file():
                    s3.upload_file(str(path), bucket, prefix + path.relative_to(tmp).as_posix())

    # Writers may be slow (the TFRecord generator starts TensorFlow): two at a time.
    with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
        list(pool.map(fill, copies))
    return [uri for _, uri, _ in copies]


def airflow_env(*, dsn: str, endpoint: str, airflow_home: Path) -> dict[str, str]:
    """Environment for Airflow (CLI or in-process) against the local stack."""
    return {
        **DUMMY_CREDENTIALS,
        "AWS_DEFAULT_REGION": CENTRAL_REGION,
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home}/airflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        # Every boto3 session of a process shares one botocore loader (regional_training.runtime.aws_sessions).
        "AIRFLOW__AWS__SESSION_FACTORY": "regional_training.runtime.aws_sessions.SharedLoaderSessionFactory",
        "AIRFLOW_CONN_CAMPAIGN_DB": dsn,
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
            {
                "conn_type": "aws",
                "extra": {"endpoint_url": endpoint, "region_name": CENTRAL_REGION},
            }
        ),
        "MRT_SAGEMAKER_POLL_SECONDS": "2",
        "MRT_RETRY_DELAY_SECONDS": "2",
        "AIRFLOW_VAR_MRT_AWS_ACCOUNT_ID": "123456789012",
        "AIRFLOW_VAR_MRT_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/mrt-sagemaker-execution",
        "AIRFLOW_VAR_MRT_TRAINING_IMAGE_REPOSITORY": TRAINING_REPOSITORY,
        "AIRFLOW_VAR_MRT_TRAINING_IMAGE_TAG": "local",
        "AIRFLOW_VAR_MRT_CENTRAL_BUCKET": CENTRAL_BUCKET,
        "AIRFLOW_VAR_MRT_CENTRAL_REGION": CENTRAL_REGION,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "plugins"), os.environ.get("PYTHONPATH")])),
    }


def in_process_env(*, dsn: str, endpoint: str, airflow_home: Path, fast_polling: bool = True) -> dict[str, str]:
    """:func:`airflow_env` for a test process that runs the DAG itself (``dag.test()``):
    without ``PYTHONPATH`` (the process's own path already holds the package) and, with
    ``fast_polling``, status checks and retries every second."""
    env = {k: v for k, v in airflow_env(dsn=dsn, endpoint=endpoint, airflow_home=airflow_home).items()
           if k != "PYTHONPATH"}
    if fast_polling:
        env.update({"MRT_SAGEMAKER_POLL_SECONDS": "1", "MRT_RETRY_DELAY_SECONDS": "1"})
    return env


#: The local run's Params: a tiny model and a few steps, so CPU training takes seconds.
#: 512 generated records / (16 x 2 ranks) = 16 steps per epoch; images/sec is measured
#: after the entry point's 20 warm-up steps, so 48 steps give it two intervals.
LOCAL_RUN_CONF: dict[str, Any] = {
    "instance_type": "ml.g5.12xlarge",
    "processes_per_host": 2,
    "model": "resnet_tiny",
    "num_classes": 4,
    "epochs": 3,
    "max_steps": 48,
    "batch_size": 16,
    "image_size": 32,
    "warmup_epochs": 0,
    "learning_rate": 0.5,
    "log_every": 8,
    "max_runtime_hours": 1,
    "volume_size_gb": 10,
    # Issue 31's learning and live capacity read what earlier runs left in the shared
    # campaign database and emulator (moves, jobs still waiting): off here, so a test's
    # plan does not depend on the tests before it; tests of those features turn them on.
    "learn_from_failures": False,
    "count_instances_in_use": False,
}


def main(argv: list[str] | None = None) -> int:
    """``python -m dev.local_stack seed --endpoint URL --dsn DSN``: create and fill the
    buckets of a running emulator (the compose stack's ``local-aws-seed`` one-shot)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    seed = sub.add_parser("seed", help="create every region's buckets and upload sample shards")
    seed.add_argument("--endpoint", required=True, help="the emulator, e.g. http://local-aws:5000")
    seed.add_argument("--dsn", default=os.environ.get("CAMPAIGN_DB_DSN"), help="campaign DB (or CAMPAIGN_DB_DSN)")
    args = parser.parse_args(argv)
    if not args.dsn:
        parser.error("--dsn or CAMPAIGN_DB_DSN is required")
    copies = seed_aws(args.endpoint, args.dsn)
    print(f"seeded {len(copies)} dataset copies and the central bucket {CENTRAL_BUCKET} at {args.endpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
