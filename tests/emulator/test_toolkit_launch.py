"""The emulator's container launch: every job through the sagemaker-training toolkit.

Real processes throughout: the emulator server, the toolkit's ``train`` in a private
``/opt/ml`` per emulated host, OpenMPI's ``mpirun`` (over ssh between hosts), Horovod
and TensorFlow on generated TFRecords. The requests carry the DAG's own
HyperParameters (``training_request.sagemaker_hyperparameters``).
Needs ``MRT_TRAIN_PYTHON`` and root (about 3-4 minutes on 2 cores). With
``MRT_TRAINING_IMAGE`` (scripts/test.sh sets it to the image scripts/build_images.sh
built) every job runs inside the built training image, one podman container per host;
the checks for a missing mpi4py or openssh-server then use that image minus the package.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dev.local_aws import container
from dev.local_stack import (
    LOCAL_RUN_CONF,
    TRAINING_REPOSITORY,
    aws_client,
    local_aws,
    real_image_map,
    tfrecord_samples,
    wait_for_job_end,
)
from regional_training.plan import training_request
from regional_training.plan.metric_format import METRIC_DEFINITIONS

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.training]

REGION = "us-east-1"
BUCKET = "mrt-toolkit-launch"
IMAGE = f"123456789012.dkr.ecr.{REGION}.amazonaws.com/{TRAINING_REPOSITORY}:local"
RECIPE = {key: LOCAL_RUN_CONF[key] for key in (
    "model", "num_classes", "epochs", "max_steps", "batch_size", "image_size", "warmup_epochs",
    "learning_rate", "log_every",
)}


def _hyperparameters(**recipe: Any) -> dict[str, str]:
    return training_request.sagemaker_hyperparameters({**RECIPE, **recipe}, processes_per_host=2)


#: Spot jobs named toolkit-spot-* lose their instances once, after their first checkpoint.
LIFECYCLES = {"jobs": {"toolkit-spot-*": {"spot_interruptions": 1, "interrupt_after_seconds": 1,
                                          "interrupt_after_checkpoint": True}}}


def _emulator(image_map: dict[str, Any], train_python: Path, log_name: str) -> Iterator[str]:
    log_path = Path(tempfile.gettempdir()) / log_name
    with local_aws(image_map, max_concurrent_jobs=2, stop_grace_seconds=5, log_path=log_path,
                   lifecycles=LIFECYCLES) as endpoint:
        s3 = aws_client("s3", endpoint, REGION)
        s3.create_bucket(Bucket=BUCKET)
        with tempfile.TemporaryDirectory() as tmp:
            tfrecord_samples(train_python)(REGION, "toolkit", Path(tmp))
            for path in sorted(Path(tmp).iterdir()):
                s3.upload_file(str(path), BUCKET, f"data/{path.name}")
        yield endpoint


@pytest.fixture(scope="module")
def endpoint(train_python: Path) -> Iterator[str]:
    yield from _emulator(real_image_map(train_python), train_python, "mrt-toolkit-launch.log")


def _create(endpoint: str, name: str, *, instance_count: int = 1, spot: bool = False, **recipe: Any) -> Any:
    sm = aws_client("sagemaker", endpoint, REGION)
    extra: dict[str, Any] = {"EnableManagedSpotTraining": True} if spot else {}
    sm.create_training_job(
        **extra,
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File",
                                "MetricDefinitions": METRIC_DEFINITIONS},
        RoleArn="arn:aws:iam::123456789012:role/mrt-sagemaker-execution",
        HyperParameters=_hyperparameters(**recipe),
        InputDataConfig=[{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/data/", "S3DataDistributionType": "FullyReplicated"}}}],
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/output"},
        ResourceConfig={"InstanceType": "ml.g5.12xlarge", "InstanceCount": instance_count, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": 900, **({"MaxWaitTimeInSeconds": 1800} if spot else {})},
        CheckpointConfig={"S3Uri": f"s3://{BUCKET}/checkpoints/{name}",
                          "LocalPath": training_request.CHECKPOINT_LOCAL_PATH},
    )
    return sm


def _wait(sm: Any, name: str, timeout: float = 420) -> dict[str, Any]:
    return wait_for_job_end(sm, name, timeout=timeout, poll=1)


def _logs(endpoint: str, name: str) -> dict[str, str]:
    """Every host's CloudWatch stream, by stream name."""
    logs = aws_client("logs", endpoint, REGION)
    streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs",
                                        logStreamNamePrefix=f"{name}/")["logStreams"]
    return {
        s["logStreamName"]: "\n".join(e["message"] for e in logs.get_log_events(
            logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=s["logStreamName"], startFromHead=True,
        )["events"])
        for s in streams
    }


def _model_members(endpoint: str, job: dict[str, Any]) -> list[str]:
    bucket, _, key = job["ModelArtifacts"]["S3ModelArtifacts"][len("s3://"):].partition("/")
    body = aws_client("s3", endpoint, REGION).get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return tar.getnames()


def test_one_host_two_ranks_through_the_toolkit(endpoint: str) -> None:
    name = "toolkit-one-host"
    job = _wait(_create(endpoint, name), name)
    [log] = _logs(endpoint, name).values()
    assert job["TrainingJobStatus"] == "Completed", (job.get("FailureReason"), log[-4000:])
    # The toolkit's launch, not a bypass: its mpirun command, mpi4py, both ranks tagged.
    assert "Invoking script with the following command" in log
    assert "mpirun --host algo-1:2 -np 2" in log
    assert "-m mpi4py train.py" in log
    # Rank 0 logs (rank 1 only warns): one world of two ranks.
    assert "[1,0]<stdout>:" in log
    assert "horovod size=2 (local 2)" in log
    assert "Reporting training SUCCESS" in log
    assert any(m.startswith("1/") or m == "1" for m in _model_members(endpoint, job))
    # The metric regexes match through mpirun's "[1,0]<stdout>:" prefix.
    names = {m["MetricName"] for m in job["FinalMetricDataList"]}
    assert {"train:loss", "train:accuracy", "train:images_per_sec"} <= names, job["FinalMetricDataList"]


def test_two_instances_train_as_four_ranks_over_two_hosts(endpoint: str) -> None:
    name = "toolkit-two-hosts"
    job = _wait(_create(endpoint, name, instance_count=2), name)
    logs = _logs(endpoint, name)
    master = next(text for stream, text in logs.items() if stream.startswith(f"{name}/algo-1-"))
    assert job["TrainingJobStatus"] == "Completed", (job.get("FailureReason"), master[-4000:])
    assert sorted(stream.split("/")[1].rsplit("-", 1)[0] for stream in logs) == ["algo-1", "algo-2"]
    assert "mpirun --host algo-1:2,algo-2:2 -np 4" in master
    assert "horovod size=4" in master
    # mpirun's job map (--display-map): ranks 0-1 on algo-1, ranks 2-3 on algo-2.
    for host, ranks in (("algo-1", (0, 1)), ("algo-2", (2, 3))):
        block = master.split(f"Data for node: {host}", 1)[1].split("Data for node", 1)[0]
        assert "Num procs: 2" in block, block
        for rank in ranks:
            assert f"Process rank: {rank} " in block, (host, rank, block)
    worker = next(text for stream, text in logs.items() if stream.startswith(f"{name}/algo-2-"))
    assert "Starting MPI run as worker node" in worker
    # One model: the master's (rank 0 writes it; only algo-1's /opt/ml/model is uploaded).
    assert _model_members(endpoint, job)
    objects = aws_client("s3", endpoint, REGION).list_objects_v2(Bucket=BUCKET, Prefix=f"output/{name}/")
    assert [o["Key"] for o in objects["Contents"]] == [f"output/{name}/output/model.tar.gz"]


def test_a_spot_job_interrupted_mid_training_resumes_from_its_checkpoint(endpoint: str) -> None:
    name = "toolkit-spot-1"
    job = _wait(_create(endpoint, name, spot=True, checkpoint_every=8), name, timeout=900)
    logs = _logs(endpoint, name)
    assert job["TrainingJobStatus"] == "Completed", (job.get("FailureReason"), logs)
    statuses = [t["Status"] for t in job["SecondaryStatusTransitions"]]
    assert statuses[statuses.index("Interrupted"):] == [
        "Interrupted", "Starting", "Downloading", "Training", "Uploading", "Completed"
    ]
    # Two launches of algo-1 (a stream each); the second resumed after the first's checkpoint.
    first, second = (text for _, text in sorted(logs.items()))
    assert "no checkpoint found in /opt/ml/checkpoints: starting at step 0" in first
    resumed = re.search(r"resumed from checkpoint \S+ at step (\d+)", second)
    assert resumed and int(resumed.group(1)) > 0, second[-3000:]
    steps = [int(m) for m in re.findall(r"\[metrics\] step=(\d+)", second)]
    # Every step the resumed launch logged comes after its checkpoint, and it ends at the
    # last step (when the interruption came after the final checkpoint, nothing is left
    # to train: it resumed at max_steps and logged no step).
    assert all(step > int(resumed.group(1)) for step in steps), steps
    assert (steps[-1] if steps else int(resumed.group(1))) == RECIPE["max_steps"], steps
    assert 1 <= job["BillableTimeInSeconds"] < job["TrainingTimeInSeconds"]


def _derived_image(base: str, tag: str, run: str) -> Iterator[str]:
    """``base`` with one more layer (``RUN <run>``): the image as its Dockerfile builds it
    without that package, for the checks below. Removed afterwards."""
    context = Path(tempfile.mkdtemp(prefix="mrt-derived-image-"))
    env = {**os.environ, "CONTAINERS_CONF": str(container.CONTAINERS_CONF)}
    try:
        (context / "Containerfile").write_text(f"FROM {base}\nRUN {run}\n")
        subprocess.run(["podman", "build", "--isolation", "chroot", "--format", "docker", "-q", "-t", tag,
                        str(context)], env=env, check=True, capture_output=True, timeout=600)
        yield tag
    finally:
        shutil.rmtree(context, ignore_errors=True)
        subprocess.run(["podman", "rmi", "-f", tag], env=env, capture_output=True, check=False)


@pytest.fixture(scope="module")
def image_map_without_mpi4py(train_python: Path) -> Iterator[dict[str, Any]]:
    """The training image as it was built before mpi4py was pinned: the built image minus
    mpi4py where CI trains inside it (MRT_TRAINING_IMAGE), else the training venv as a
    hard-linked copy (instant, no extra space) minus mpi4py."""
    if built := os.environ.get("MRT_TRAINING_IMAGE"):
        for tag in _derived_image(built, "localhost/mrt-test/training:no-mpi4py",
                                  "/opt/venv/bin/python -m pip uninstall -q -y mpi4py"):
            yield {TRAINING_REPOSITORY: {"container": True, "image": tag, "command": ["train"]}}
        return
    venv = train_python.parent.parent
    copy = Path(tempfile.mkdtemp(prefix="mrt-venv-no-mpi4py-", dir=venv.parent))
    try:
        subprocess.run(["cp", "-al", f"{venv}/.", str(copy)], check=True)
        site = next(copy.glob("lib/python3*/site-packages"))
        for path in [*site.glob("mpi4py"), *site.glob("mpi4py-*.dist-info")]:
            shutil.rmtree(path)
        python = copy / "bin" / "python"
        assert os.access(python, os.X_OK)
        yield real_image_map(python)
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def test_without_mpi4py_the_job_fails_as_on_sagemaker(
    image_map_without_mpi4py: dict[str, Any], train_python: Path,
) -> None:
    for endpoint in _emulator(image_map_without_mpi4py, train_python, "mrt-toolkit-no-mpi4py.log"):
        name = "toolkit-no-mpi4py"
        job = _wait(_create(endpoint, name), name, timeout=240)
        [log] = _logs(endpoint, name).values()
        assert job["TrainingJobStatus"] == "Failed", log[-3000:]
        assert job["FailureReason"].startswith("AlgorithmError: ExecuteUserScriptError"), job["FailureReason"]
        assert "No module named mpi4py" in log
        assert "Reporting training FAILURE" in log
        # ModelArtifacts is always in the description (botocore's model requires it), but
        # a failed job uploads nothing there.
        objects = aws_client("s3", endpoint, REGION).list_objects_v2(Bucket=BUCKET, Prefix=f"output/{name}/")
        assert objects["KeyCount"] == 0, objects.get("Contents")


@pytest.mark.skipif(not os.environ.get("MRT_TRAINING_IMAGE"),
                    reason="the namespace launch uses this machine's sshd; scripts/test.sh sets MRT_TRAINING_IMAGE")
def test_an_image_without_openssh_server_fails_as_on_sagemaker(train_python: Path) -> None:
    """The toolkit starts sshd on every host of an MPI job (sagemaker_training/mpi.py,
    ``_start_sshd_daemon``) and fails the job with its own message when it is missing."""
    built = os.environ["MRT_TRAINING_IMAGE"]
    for tag in _derived_image(built, "localhost/mrt-test/training:no-sshd",
                              "apt-get purge -y -q openssh-server >/dev/null"):
        image_map = {TRAINING_REPOSITORY: {"container": True, "image": tag, "command": ["train"]}}
        for endpoint in _emulator(image_map, train_python, "mrt-toolkit-no-sshd.log"):
            name = "toolkit-no-sshd"
            job = _wait(_create(endpoint, name), name, timeout=240)
            [log] = _logs(endpoint, name).values()
            assert job["TrainingJobStatus"] == "Failed", log[-3000:]
            assert job["FailureReason"].startswith("AlgorithmError: Framework Error"), job["FailureReason"]
            assert "SSH daemon not found, please install SSH" in job["FailureReason"] + log
            assert "Reporting training FAILURE" in log
