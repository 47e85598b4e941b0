"""Real training through the local emulator: the README's local run, as tests.

The emulated SageMaker launches every job the real DAG creates as SageMaker does: the
sagemaker-training toolkit's ``train`` in a container-like ``/opt/ml``, which runs
``images/training/train.py`` under OpenMPI's ``mpirun`` (two ranks, ``python -m mpi4py``;
TensorFlow + Horovod on CPU) on each region's generated TFRecords.
Needs ``MRT_TRAIN_PYTHON`` (fails without it). About 2-3 minutes on 2 cores.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import tarfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import helpers
import psutil
import pytest
from helpers import TRAINING_REGIONS, rows_of_run

from dev.local_stack import CENTRAL_BUCKET, LOCAL_RUN_CONF, TRAINING_REPOSITORY, aws_client, wait_for_job_end
from regional_training.plan import training_request
from regional_training.plan.metric_format import METRIC_DEFINITIONS

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow, pytest.mark.training]
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
REGIONS = list(TRAINING_REGIONS)


def run_dag(conf: dict[str, Any]) -> tuple[Any, dict[str, list[str]]]:
    return helpers.run_dag({**LOCAL_RUN_CONF, "regions": REGIONS, **conf})


def _rows(dsn: str, run_id: str) -> dict[str, dict[str, Any]]:
    rows = rows_of_run(dsn, run_id, "region_code", "status", "failure_reason", "metrics", "model_artifact_uri",
                       "training_job_name")
    return {r["region_code"]: r for r in rows}


def _job_log(endpoint: str, region: str, job_name: str) -> str:
    """The job's log as SageMaker publishes it: CloudWatch Logs, ``<job>/algo-1-<epoch>``."""
    logs = aws_client("logs", endpoint, region)
    streams = logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{job_name}/")["logStreams"]
    assert len(streams) == 1, streams
    events = logs.get_log_events(
        logGroupName=LOG_GROUP, logStreamName=streams[0]["logStreamName"], startFromHead=True
    )["events"]
    return "\n".join(e["message"] for e in events)


def _last_metric_line(log_text: str) -> dict[str, float]:
    """The last ``[metrics]`` line, parsed independently of the shared regexes."""
    lines = [line for line in log_text.splitlines() if "[metrics] " in line]
    assert lines, log_text[-3000:]
    last = lines[-1].split("[metrics] ", 1)[1]
    return {k: float(v) for k, v in (pair.split("=", 1) for pair in last.split())}


def _load_and_predict(train_python: Path, model_dirs: list[Path]) -> list[list[int]]:
    """Load each SavedModel with the training venv's TensorFlow and predict a batch."""
    script = (
        "import json, sys, numpy as np, tensorflow as tf\n"
        "out = []\n"
        "for d in sys.argv[1:]:\n"
        "    model = tf.keras.models.load_model(d)\n"
        "    probs = model.predict(np.random.default_rng(0).random((3, 32, 32, 3), dtype=np.float32), verbose=0)\n"
        "    assert np.all(np.isfinite(probs)), probs\n"
        "    out.append(list(probs.shape))\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run(
        [str(train_python), "-c", script, *map(str, model_dirs)],
        capture_output=True, text=True, timeout=180, check=False, env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_two_regions_train_for_real(
    real_stack: str, campaign_dsn: str, train_python: Path, tmp_path: Path
) -> None:
    endpoint = real_stack
    dag_run, states = run_dag({})
    assert str(dag_run.state) == "success", states
    assert states["train"] == ["success"] * 2
    rows = _rows(campaign_dsn, dag_run.run_id)
    assert sorted(rows) == REGIONS

    # Both artifacts in the central bucket hold a SavedModel that loads and predicts.
    s3 = aws_client("s3", endpoint, "us-east-1")
    key = f"runs/{training_request.run_key('multi_region_training', dag_run.run_id)}"
    artifacts = sorted(
        o["Key"] for o in s3.list_objects_v2(Bucket=CENTRAL_BUCKET, Prefix=f"{key}/artifacts/")["Contents"]
    )
    assert len(artifacts) == 2, artifacts
    model_dirs = []
    for n, art in enumerate(artifacts):
        body = s3.get_object(Bucket=CENTRAL_BUCKET, Key=art)["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            tar.extractall(tmp_path / str(n), filter="data")
        assert (tmp_path / str(n) / "1" / "saved_model.pb").is_file()
        model_dirs.append(tmp_path / str(n) / "1")
    num_classes = LOCAL_RUN_CONF["num_classes"]
    assert _load_and_predict(train_python, model_dirs) == [[3, num_classes]] * 2

    for region, row in rows.items():
        assert row["status"] == "Completed", row
        job = aws_client("sagemaker", endpoint, region).describe_training_job(TrainingJobName=row["training_job_name"])
        log_text = _job_log(endpoint, region, row["training_job_name"])
        # The toolkit's launch: mpirun, mpi4py, two Horovod ranks (rank 0 logs the world;
        # mpirun --tag-output prefixes every line with [1,<rank>]).
        assert "mpirun --host algo-1:2 -np 2" in log_text and "-m mpi4py train.py" in log_text
        assert "[1,0]<stdout>:" in log_text and "horovod size=2 (local 2)" in log_text
        assert "Reporting training SUCCESS" in log_text
        last = _last_metric_line(log_text)
        assert last["step"] == LOCAL_RUN_CONF["max_steps"]
        # The metrics recorded for the run are the job's log's final values.
        expected = {
            "train:loss": last["train_loss"],
            "train:accuracy": last["train_accuracy"],
            "train:images_per_sec": last["images_per_sec"],
        }
        assert row["metrics"] == pytest.approx(expected, rel=1e-9), (row["metrics"], expected)
        final = {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
        assert final == pytest.approx(expected, rel=1e-9)
        # It learned something on its own region's data (4 classes: chance is 0.25).
        assert last["train_accuracy"] > 0.5, last
        assert job["BillableTimeInSeconds"] >= 1 and job["TrainingEndTime"] > job["TrainingStartTime"]
        # Checkpoints went to the request's checkpoint URI (not /opt/ml on this machine).
        bucket, _, prefix = job["CheckpointConfig"]["S3Uri"][len("s3://"):].partition("/")
        ckpts = aws_client("s3", endpoint, region).list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        assert any(o["Key"].endswith(".index") for o in ckpts)

    summary = json.loads(s3.get_object(Bucket=CENTRAL_BUCKET, Key=f"{key}/summary.json")["Body"].read())
    assert summary["completed"] == 2 and summary["failed"] == []
    for region, row in rows.items():  # per region: status, duration, images/sec, loss, accuracy, artifact
        line = next(line for line in summary["text"].splitlines() if line.startswith(region))
        m = row["metrics"]
        for text in ("Completed", f"{m['train:images_per_sec']:.1f}", f"{m['train:loss']:.4f}",
                     f"{m['train:accuracy']:.4f}", row["model_artifact_uri"]):
            assert text in line, (text, line)
        assert re.search(r"Completed\s+\d+\s", line), line  # the duration column follows the status


def test_entry_point_error_fails_the_job_and_the_run(
    real_stack: str, campaign_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A corrupt TFRecord shard in eu-west-1: the real entry point exits non-zero."""
    endpoint = real_stack
    s3 = aws_client("s3", endpoint, "eu-west-1")
    bucket, prefix = "mrt-campaign-data-eu-west-1", "datasets/dublin-urban-2026/dublin-urban-2026-v1/"
    saved = {
        o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
    }
    for key in saved:
        s3.put_object(Bucket=bucket, Key=key, Body=b"this is not a TFRecord file" * 10)
    try:
        dag_run, states = run_dag({"regions": ["eu-west-1"]})
    finally:
        for key, body in saved.items():
            s3.put_object(Bucket=bucket, Key=key, Body=body)

    assert str(dag_run.state) == "failed", states
    assert Counter(states["train"]) == Counter({"failed": 1})
    row = _rows(campaign_dsn, dag_run.run_id)["eu-west-1"]
    assert row["status"] == "Failed"
    job = aws_client("sagemaker", endpoint, "eu-west-1").describe_training_job(
        TrainingJobName=row["training_job_name"]
    )
    assert job["TrainingJobStatus"] == "Failed"
    # What SageMaker reports for a failed MPI launch: the toolkit's failure file (its mpirun
    # path does not capture stderr, so no message); the cause is in the job's log.
    assert job["FailureReason"].startswith("AlgorithmError: ExecuteUserScriptError:\nExitCode 1\n")
    assert 'Command "mpirun --host algo-1:2 -np 2' in job["FailureReason"]
    assert row["failure_reason"] == job["FailureReason"]
    log_text = _job_log(endpoint, "eu-west-1", row["training_job_name"])
    assert "DataLossError" in log_text and "corrupted record at 0" in log_text
    assert "Reporting training FAILURE" in log_text
    key = f"runs/{training_request.run_key('multi_region_training', dag_run.run_id)}"
    summary = json.loads(
        aws_client("s3", endpoint, "us-east-1").get_object(Bucket=CENTRAL_BUCKET, Key=f"{key}/summary.json")["Body"]
        .read()
    )
    assert [f["region"] for f in summary["failed"]] == ["eu-west-1"]
    assert "FAILED regions: eu-west-1 (AlgorithmError: ExecuteUserScriptError:" in summary["text"]
    out = capsys.readouterr().out
    assert "IncompleteRunError: 1 of 1 planned target(s) not completed or not recorded: " in out
    assert "(eu-west-1, map index" in out


def _job_processes(job_name: str) -> list[psutil.Process]:
    """Every process of the job: the emulator marks each with MRT_LOCAL_TRAINING_JOB."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("MRT_LOCAL_TRAINING_JOB") == job_name or any(
                job_name in part for part in proc.cmdline()
            ):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _create_job(endpoint: str, name: str, image: str, max_steps: int) -> Any:
    sm = aws_client("sagemaker", endpoint, "eu-west-1")
    hps = training_request.sagemaker_hyperparameters(
        {k: LOCAL_RUN_CONF[k] for k in ("model", "num_classes", "batch_size", "image_size", "learning_rate")}
        | {"max_steps": max_steps, "epochs": 1000, "log_every": 10},
        processes_per_host=2,
    )
    sm.create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": image, "TrainingInputMode": "File",
                                "MetricDefinitions": METRIC_DEFINITIONS},
        RoleArn="arn:aws:iam::123456789012:role/mrt-sagemaker-execution",
        HyperParameters=hps,
        InputDataConfig=[{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix",
            "S3Uri": "s3://mrt-campaign-data-eu-west-1/datasets/dublin-urban-2026/dublin-urban-2026-v1/"}}}],
        OutputDataConfig={"S3OutputPath": "s3://mrt-campaign-data-eu-west-1/stop-test/"},
        ResourceConfig={"InstanceType": "ml.g5.12xlarge", "InstanceCount": 1, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
    )
    return sm


def test_stopped_job_leaves_no_process(real_aws_endpoint: str) -> None:
    endpoint, name = real_aws_endpoint, f"mrt-stop-test-{int(time.time())}"
    image = f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/{TRAINING_REPOSITORY}:local"
    sm = _create_job(endpoint, name, image, max_steps=1_000_000)
    # The toolkit imports TensorFlow and starts sshd before mpirun: ~40 s on an idle
    # 2-core machine; a generous deadline, for a busy one. Stop once the job trains and
    # its process tree (the container launch, the toolkit, mpirun...) is up.
    deadline = time.monotonic() + 300
    while True:
        job = sm.describe_training_job(TrainingJobName=name)
        assert job["TrainingJobStatus"] == "InProgress", job
        if job["SecondaryStatus"] == "Training" and len(_job_processes(name)) >= 3:
            break
        assert time.monotonic() < deadline, f"the job never trained: {job['SecondaryStatus']}"
        time.sleep(0.5)
    assert len(_job_processes(name)) >= 3
    sm.stop_training_job(TrainingJobName=name)
    job = wait_for_job_end(sm, name, timeout=60)
    assert job["TrainingJobStatus"] == "Stopped", job
    assert _job_processes(name) == []


def test_unknown_image_fails_with_a_clear_reason(real_aws_endpoint: str) -> None:
    name = f"mrt-unknown-image-{int(time.time())}"
    sm = _create_job(real_aws_endpoint, name, "123456789012.dkr.ecr.eu-west-1.amazonaws.com/no-such-image:1", 5)
    job = wait_for_job_end(sm, name, timeout=30)
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith("CannotStartContainerError: image ")
    assert "no-such-image" in job["FailureReason"] and "image map" in job["FailureReason"]
