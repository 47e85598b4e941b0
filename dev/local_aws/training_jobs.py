"""SageMaker training jobs that run for real, patched into moto's SageMaker backend.

Stock moto marks a job ``Completed`` the instant it is created, writes no model and
has no ``StopTrainingJob``. Here ``CreateTrainingJob`` starts a runner thread that
honours the SageMaker container contract from the request itself:

* lays out a job directory like ``/opt/ml`` (``input/config/*.json``,
  ``input/data/<channel>``, ``model/``, ``output/``, ``checkpoints/``);
* downloads each channel and any earlier checkpoints from the (emulated) S3;
* runs the image's local command with the hyperparameters as ``--name value`` and the
  ``SM_*`` environment, under ``horovodrun`` with ``ProcessesPerHost`` local processes
  when the MPI hyperparameters ask for it;
* tars ``model/`` to ``<S3OutputPath>/<job>/output/model.tar.gz``, uploads checkpoints,
  and reports ``Completed`` or ``Failed`` (the command's error as ``FailureReason``),
  start/end times, billable seconds and final metrics parsed from its log with the
  request's own metric definitions.

Jobs run at most ``max_concurrent`` at a time; ``StopTrainingJob`` kills the process
group. Duplicate names raise ``ResourceInUse``, as SageMaker does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local_aws.images import LocalImage, repository_of

log = logging.getLogger("local_aws.training_jobs")

_RESERVED_HP = (
    "sagemaker_program", "sagemaker_mpi_enabled", "sagemaker_mpi_num_of_processes_per_host",
    "sagemaker_mpi_custom_mpi_options", "sagemaker_submit_directory", "sagemaker_region",
)


def _now() -> datetime:
    # Naive UTC, like the timestamps moto itself stores.
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class EmulatorConfig:
    endpoint_url: str
    images: dict[str, LocalImage]
    workdir: Path
    max_concurrent: int = 2
    #: Local cap on Horovod processes per job (a laptop is not an 8-GPU host).
    max_processes: int = 2
    #: Regions whose capacity is exhausted: CreateTrainingJob fails there (issue 6's failover).
    capacity_errors: set[str] = field(default_factory=set)
    #: Seconds between SIGTERM and SIGKILL when a job is stopped (SageMaker: 120).
    stop_grace_seconds: float = 10.0


class _Runner:
    """Runs one job in a thread; owns its process so Stop can kill it."""

    def __init__(self, job: Any, region: str, config: EmulatorConfig, slots: threading.Semaphore):
        self.job, self.region, self.config, self.slots = job, region, config, slots
        self.process: subprocess.Popen[bytes] | None = None
        self.stop_requested = threading.Event()
        self._artifacts: dict[str, str] = {}
        self.max_runtime_exceeded = False
        self.thread = threading.Thread(target=self._run, name=f"job-{job.training_job_name}", daemon=True)

    # --- AWS clients against this same server -------------------------------------------
    def _s3(self) -> Any:
        import boto3

        return boto3.client(
            "s3", region_name=self.region, endpoint_url=self.config.endpoint_url,
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )

    def _download_prefix(self, uri: str, dest: Path) -> int:
        bucket, _, prefix = uri[len("s3://"):].partition("/")
        s3, count = self._s3(), 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(prefix):].lstrip("/")
                if not rel or obj["Key"].endswith("/"):
                    continue
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, obj["Key"], str(target))
                count += 1
        return count

    def _upload_dir(self, source: Path, uri: str) -> None:
        bucket, _, prefix = uri[len("s3://"):].partition("/")
        s3 = self._s3()
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            s3.upload_file(str(path), bucket, f"{prefix.rstrip('/')}/{path.relative_to(source).as_posix()}")

    # --- lifecycle ------------------------------------------------------------------------
    def _set(self, **attrs: Any) -> None:
        for key, value in attrs.items():
            setattr(self.job, key, value)
        self.job.last_modified_time = _now()

    def _finish(
        self, status: str, reason: str | None = None, metrics: dict[str, float] | None = None,
        secondary: str | None = None,
    ) -> None:
        end = _now()
        start = self.job.training_start_time or end
        seconds = max(1, math.ceil((end - start).total_seconds()))
        attrs: dict[str, Any] = {
            "training_job_status": status,
            "secondary_status": secondary or status,
            "training_end_time": end,
            "training_time_in_seconds": seconds,
            # Wall-clock seconds, as SageMaker reports it (bills x InstanceCount).
            "billable_time_in_seconds": seconds,
            "final_metric_data_list": [
                {"MetricName": name, "Value": value, "Timestamp": end} for name, value in (metrics or {}).items()
            ],
        }
        if reason:
            attrs["failure_reason"] = reason[-1024:]
        if status == "Completed":
            attrs["model_artifacts"] = self._artifacts
        self._set(**attrs)
        log.info("job %s in %s: %s %s", self.job.training_job_name, self.region, status, reason or "")

    def _run(self) -> None:
        with self.slots:
            if self.stop_requested.is_set():
                self._finish("Stopped", "stopped before it started")
                return
            self._set(training_start_time=_now(), secondary_status="Downloading")
            jobdir = Path(tempfile.mkdtemp(prefix=f"{self.job.training_job_name}-", dir=self.config.workdir))
            try:
                self._execute(jobdir)
            except Exception as err:  # the job fails; the emulator keeps serving
                log.exception("job %s crashed in the emulator", self.job.training_job_name)
                self._finish("Failed", f"emulator error: {err}")
            finally:
                shutil.rmtree(jobdir, ignore_errors=True)

    def _execute(self, jobdir: Path) -> None:
        from regional_training.metric_format import parse_final_metrics

        job = self.job
        spec = job.algorithm_specification
        try:
            image = self.config.images[repository_of(spec["TrainingImage"])]
        except (KeyError, ValueError):
            self._finish("Failed", f"CannotStartContainerError: image {spec['TrainingImage']!r} is not known "
                         "to the local emulator (see its image map)")
            return
        ml = jobdir / "opt" / "ml"
        config_dir, data_dir = ml / "input" / "config", ml / "input" / "data"
        model_dir, output_dir = ml / "model", ml / "output"
        checkpoint_config = job.checkpoint_config or {}
        ckpt_dir = _in_job(jobdir, checkpoint_config.get("LocalPath") or "/opt/ml/checkpoints")
        for d in (config_dir, data_dir, model_dir, output_dir / "data", ckpt_dir):
            d.mkdir(parents=True, exist_ok=True)
        image = image.render(
            {
                "job_dir": str(jobdir), "ml_dir": str(ml), "model_dir": str(model_dir),
                "output_dir": str(output_dir), "input_dir": str(ml / "input"), "checkpoint_dir": str(ckpt_dir),
            }
        )
        hps = dict(job.hyper_parameters or {})
        hosts = [f"algo-{i + 1}" for i in range(int(job.resource_config.get("InstanceCount", 1)))]
        channels = self._write_config(config_dir, hps, hosts)
        env = {**os.environ, **image.env}
        for name, channel in channels.items():
            uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
            if self._download_prefix(uri, data_dir / name) == 0:
                self._finish("Failed", f"ClientError: no data found at {uri} for channel {name!r}")
                return
            env[f"SM_CHANNEL_{name.upper()}"] = str(data_dir / name)
        checkpoint_uri = checkpoint_config.get("S3Uri")
        if checkpoint_uri:
            self._download_prefix(checkpoint_uri, ckpt_dir)  # resume, as SageMaker does

        user_hps = {k: v for k, v in hps.items() if k not in _RESERVED_HP}
        args = [arg for key, value in sorted(user_hps.items()) for arg in (f"--{key}", str(value))]
        command = [*image.command, *args]
        mpi = str(hps.get("sagemaker_mpi_enabled", "false")).lower() == "true"
        if mpi and image.horovodrun:
            procs = min(int(hps.get("sagemaker_mpi_num_of_processes_per_host", 1)), self.config.max_processes)
            command = [*image.horovodrun, "-np", str(procs), "-H", f"localhost:{procs}", "--gloo", *command]
        env.update(
            {
                "SM_MODEL_DIR": str(model_dir),
                "SM_OUTPUT_DATA_DIR": str(output_dir / "data"),
                "SM_OUTPUT_DIR": str(output_dir),
                "SM_INPUT_DIR": str(ml / "input"),
                "SM_INPUT_CONFIG_DIR": str(config_dir),
                "SM_CHECKPOINT_DIR": str(ckpt_dir),
                "SM_HOSTS": json.dumps(hosts),
                "SM_CURRENT_HOST": hosts[0],
                "SM_NUM_GPUS": "0",
                "SM_NUM_CPUS": str(os.cpu_count() or 1),
                "SM_HPS": json.dumps(user_hps),
                "SM_CHANNELS": json.dumps(sorted(channels)),
                "SM_TRAINING_ENV": json.dumps({"job_name": job.training_job_name, "hosts": hosts}),
                "TRAINING_JOB_NAME": job.training_job_name,
                # The emulator's own marker: lets anyone find (and tests check) a job's processes.
                "MRT_LOCAL_TRAINING_JOB": job.training_job_name,
            }
        )
        self._set(secondary_status="Training")
        log_path = jobdir / "job.log"
        max_runtime = float((job.stopping_condition or {}).get("MaxRuntimeInSeconds") or 0)
        returncode = self._train(command, env, jobdir, log_path, f"{job.training_job_name}/{hosts[0]}", max_runtime)
        text = log_path.read_text(errors="replace")
        self._log_tail(text)
        metrics = parse_final_metrics(text, spec.get("MetricDefinitions") or [])
        if checkpoint_uri and any(ckpt_dir.iterdir()):
            self._upload_dir(ckpt_dir, checkpoint_uri)
        if self.stop_requested.is_set():
            if self.max_runtime_exceeded:
                self._finish("Stopped", f"MaxRuntimeExceeded: the job ran longer than {max_runtime:.0f}s", metrics,
                             secondary="MaxRuntimeExceeded")
            else:
                self._finish("Stopped", "stopped by StopTrainingJob", metrics)
            return
        if returncode != 0:
            self._finish("Failed", f"AlgorithmError: exit code {returncode}: {_error_tail(text)}", metrics)
            return
        self._set(secondary_status="Uploading")
        tar_path = jobdir / "model.tar.gz"
        with tarfile.open(tar_path, "w:gz") as tar:
            for path in sorted(model_dir.iterdir()):
                tar.add(path, arcname=path.name)
        bucket, _, key = self._artifacts["S3ModelArtifacts"][len("s3://"):].partition("/")
        self._s3().upload_file(str(tar_path), bucket, key)
        self._finish("Completed", None, metrics)

    def _write_config(self, config_dir: Path, hps: dict[str, str], hosts: list[str]) -> dict[str, Any]:
        """``input/config/*.json`` as SageMaker writes them; returns the channels by name."""
        (config_dir / "hyperparameters.json").write_text(json.dumps(hps))
        (config_dir / "resourceconfig.json").write_text(
            json.dumps({"current_host": hosts[0], "hosts": hosts, "network_interface_name": "lo"})
        )
        channels = {c["ChannelName"]: c for c in self.job.input_data_config or []}
        (config_dir / "inputdataconfig.json").write_text(
            json.dumps({name: {"TrainingInputMode": c.get("InputMode", "File")} for name, c in channels.items()})
        )
        return channels

    def _train(
        self, command: list[str], env: dict[str, str], jobdir: Path, log_path: Path, stream: str, max_runtime: float
    ) -> int:
        """Run the command to its end (or Stop, or MaxRuntime), shipping its log as it goes."""
        logs = _LogShipper(self, log_path, f"{stream}-{int(time.time())}")
        log.info("job %s in %s: %s", self.job.training_job_name, self.region, " ".join(command))
        with log_path.open("wb") as log_file:
            # Own session, so Stop can kill horovodrun and every rank it started.
            self.process = subprocess.Popen(
                command, cwd=jobdir, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
            )
            if self.stop_requested.is_set():
                self._kill()
            started = time.monotonic()
            while True:
                try:
                    returncode = self.process.wait(timeout=_LOG_FLUSH_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    logs.flush()
                    if max_runtime and time.monotonic() - started > max_runtime and not self.stop_requested.is_set():
                        self.max_runtime_exceeded = True
                        self.stop()
        logs.flush()
        return returncode

    def _log_tail(self, text: str) -> None:
        for line in text.splitlines()[-40:]:
            log.info("[%s] %s", self.job.training_job_name, line)

    def _kill(self) -> None:
        """SIGTERM the whole process tree (grace period), then SIGKILL what is left.

        ``horovodrun`` starts its ranks through a middleman that calls ``setsid``, so
        the ranks are not in the job's process group: the tree is collected (psutil)
        before anything is signalled, while every rank is still a descendant.
        """
        import psutil

        if not self.process or self.process.poll() is not None:
            return
        try:
            root = psutil.Process(self.process.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(tree, timeout=self.config.stop_grace_seconds)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=5)

    def stop(self) -> None:
        self.stop_requested.set()
        self._set(training_job_status="Stopping", secondary_status="Stopping")
        self._kill()


#: Seconds between pushes of new log lines to CloudWatch Logs while a job runs.
_LOG_FLUSH_SECONDS = 2.0
#: SageMaker's log group for training jobs.
LOG_GROUP = "/aws/sagemaker/TrainingJobs"


class _LogShipper:
    """Ships a job's log file to CloudWatch Logs as SageMaker does (group
    ``/aws/sagemaker/TrainingJobs``, stream ``<job>/algo-1-<epoch>``), while it runs."""

    def __init__(self, runner: _Runner, path: Path, stream: str):
        self.runner, self.path, self.stream = runner, path, stream
        self.offset, self.client = 0, None

    def _logs(self) -> Any:
        if self.client is None:
            import boto3

            self.client = boto3.client(
                "logs", region_name=self.runner.region, endpoint_url=self.runner.config.endpoint_url,
                aws_access_key_id="testing", aws_secret_access_key="testing",
            )
            with contextlib.suppress(self.client.exceptions.ResourceAlreadyExistsException):
                self.client.create_log_group(logGroupName=LOG_GROUP)
            self.client.create_log_stream(logGroupName=LOG_GROUP, logStreamName=self.stream)
        return self.client

    def flush(self) -> None:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
            complete = data[: data.rfind(b"\n") + 1]
            self.offset += len(complete)
            lines = complete.decode(errors="replace").splitlines()
            now = int(time.time() * 1000)
            for first in range(0, len(lines), 5000):
                self._logs().put_log_events(
                    logGroupName=LOG_GROUP, logStreamName=self.stream,
                    logEvents=[{"timestamp": now, "message": line or " "} for line in lines[first:first + 5000]],
                )
            if lines and not getattr(self.runner.job, "log_stream_name", None):
                self.runner.job.log_stream_name = self.stream
        except Exception:  # logs are best effort; the job goes on
            log.exception("could not ship the log of %s", self.runner.job.training_job_name)


def _in_job(jobdir: Path, container_path: str) -> Path:
    """Where a container path (``/opt/ml/checkpoints``) is inside the job directory."""
    return jobdir / container_path.lstrip("/")


_RANK_PREFIX = re.compile(r"^\[\d+(?:,\d+)?\]<std(?:out|err)>:")
_EXCEPTION_LINE = re.compile(r"^(?:[a-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Exit)\b:?|^ERROR\b")
#: Launcher lines that only say that *some* rank failed (the cause is elsewhere).
_CONSEQUENTIAL = ("Horovod has been shut down", "Horovod detected that one or more processes exited")


def _error_tail(text: str) -> str:
    """The entry point's own error for ``FailureReason``.

    Under ``horovodrun`` a failing rank makes the other ranks and the launcher fail
    too; their errors come later in the log and only say so. The first exception line
    that is not such a consequence is the cause (rank prefixes, TF's ``{{function_node
    ...}}`` and module paths dropped); without one, the last lines that mention an error.
    """
    lines = [_RANK_PREFIX.sub("", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    causes = [
        line for line in lines if _EXCEPTION_LINE.match(line) and not any(c in line for c in _CONSEQUENTIAL)
    ]
    if causes:
        cause = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", causes[0])
        return re.sub(r"^(?:[a-z_]\w*\.)+(?=[A-Z])", "", cause)[:900]
    errors = [line for line in lines if "Error" in line or "ERROR" in line]
    return " | ".join((errors or lines)[-3:])[:900]


def install(config: EmulatorConfig) -> dict[str, _Runner]:
    """Patch moto's SageMaker backend and responses; returns the live runners by ARN."""
    from moto.core.common_models import BaseModel  # noqa: F401  (moto must be importable)
    from moto.sagemaker import models, responses
    from moto.sagemaker.exceptions import ResourceInUseException, ValidationError

    runners: dict[str, _Runner] = {}
    slots = threading.Semaphore(config.max_concurrent)
    original_create = models.SageMakerModelBackend.create_training_job

    def create_training_job(self: Any, training_job_name: str, **kwargs: Any) -> Any:
        if training_job_name in self.training_jobs:
            raise ResourceInUseException(message=f"Training job {training_job_name} already exists")
        if self.region_name in config.capacity_errors:
            from moto.sagemaker.exceptions import SagemakerClientError

            class ResourceLimitExceeded(SagemakerClientError):
                code = "ResourceLimitExceeded"

            raise ResourceLimitExceeded(
                f"The account-level service limit for {kwargs['resource_config'].get('InstanceType')} "
                f"is exhausted in {self.region_name}"
            )
        metric_definitions = list(kwargs["algorithm_specification"].get("MetricDefinitions") or [])
        job = original_create(self, training_job_name, **kwargs)
        job.algorithm_specification["MetricDefinitions"] = metric_definitions  # moto overwrites them
        runner = _Runner(job, self.region_name, config, slots)
        runner._artifacts = {"S3ModelArtifacts": job.model_artifacts["S3ModelArtifacts"]}
        job.training_job_status, job.secondary_status = "InProgress", "Starting"
        job.training_start_time = job.training_end_time = None
        job.final_metric_data_list = []
        job.model_artifacts = None  # SageMaker reports artifacts only once the job completed
        runners[job.arn] = runner
        runner.thread.start()
        return job

    def stop_training_job(self: Any, training_job_name: str) -> None:
        job = self.training_jobs.get(training_job_name)
        if job is None:
            raise ValidationError(message=f"Could not find training job '{training_job_name}'.")
        if job.training_job_status in ("Completed", "Failed", "Stopped"):
            raise ValidationError(
                message=f"The request was rejected because the training job is in status {job.training_job_status}."
            )
        runners[job.arn].stop()

    def stop_training_job_response(self: Any) -> Any:
        from moto.core.responses import ActionResult

        self.sagemaker_backend.stop_training_job(self._get_param("TrainingJobName"))
        return ActionResult({})

    models.SageMakerModelBackend.create_training_job = create_training_job
    models.SageMakerModelBackend.stop_training_job = stop_training_job
    responses.SageMakerResponse.stop_training_job = stop_training_job_response
    return runners


def stop_all(runners: dict[str, _Runner]) -> None:
    for runner in runners.values():
        if runner.thread.is_alive():
            runner.stop()
    for runner in runners.values():
        runner.thread.join(timeout=15)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run local_aws.server instead")
