"""SageMaker training jobs that run for real, patched into moto's SageMaker backend.

Stock moto marks a job ``Completed`` the instant it is created, writes no model and
has no ``StopTrainingJob``. Here ``CreateTrainingJob`` starts a runner thread that
honours the SageMaker container contract from the request itself:

* lays out a directory like ``/opt/ml`` per host (``algo-1`` ... ``algo-<InstanceCount>``:
  ``input/config/*.json``, ``input/data/<channel>``, ``code/``, ``model/``, ``output/``,
  ``checkpoints/``);
* downloads each channel and any earlier checkpoints from the (emulated) S3 to each host;
* the training image (a *container launch*, :mod:`dev.local_aws.images`): runs the image's
  own command (the sagemaker-training toolkit's ``train``) on every host, each in its
  own namespaces with its directory bound onto ``/opt/ml`` (:mod:`dev.local_aws.container`);
  the toolkit reads the hyperparameters and starts ``mpirun`` (over ssh to the other
  hosts) with ``mpi4py`` and the entry point, exactly as in the SageMaker container;
* other images (the stand-in entry point; a *direct launch*): runs the command with the
  hyperparameters as ``--name value`` and the ``SM_*`` environment;
* tars ``model/`` to ``<S3OutputPath>/<job>/output/model.tar.gz``, uploads checkpoints,
  and reports ``Completed`` or ``Failed`` (``FailureReason`` from the container's
  ``/opt/ml/output/failure``, as SageMaker does, else the command's error),
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
import select
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

from dev.local_aws import container
from dev.local_aws.clients import shared_client
from dev.local_aws.images import LocalImage, image_for
from dev.local_aws.lifecycles import Lifecycle, LifecycleConfig

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
    #: Seconds between SIGTERM and SIGKILL when a job is stopped (SageMaker: 120; the
    #: server's default; tests pass a few seconds).
    stop_grace_seconds: float = 120.0
    #: Spot, capacity and throttling lifecycles per region/job (all off by default).
    lifecycles: LifecycleConfig = field(default_factory=LifecycleConfig)


class _Runner:
    """Runs one job in a thread; owns its process so Stop can kill it."""

    def __init__(self, job: Any, region: str, config: EmulatorConfig, slots: threading.Semaphore):
        self.job, self.region, self.config, self.slots = job, region, config, slots
        self.process: subprocess.Popen[bytes] | None = None  # the master host's
        self.processes: list[subprocess.Popen[bytes]] = []  # every host's
        self.stop_requested = threading.Event()
        self._artifacts: dict[str, str] = {}
        self.max_runtime_exceeded = False
        self.max_wait_exceeded = False
        self.lifecycle: Lifecycle = config.lifecycles.for_job(region, job.training_job_name)
        self.spot = bool(getattr(job, "enable_managed_spot_training", False))
        #: Set by _train when the lifecycle reclaims the spot instances mid-training.
        self.interrupted = False
        #: Seconds the job's containers ran, over every launch (spot billing).
        self.active_seconds = 0.0
        self.checkpoint_dir = Path("/nonexistent")  # the master's, once the job has hosts
        self.thread = threading.Thread(target=self._run, name=f"job-{job.training_job_name}", daemon=True)

    # --- AWS clients against this same server -------------------------------------------
    def _s3(self) -> Any:
        return shared_client("s3", self.region, self.config.endpoint_url)

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
    def _set(self, status_message: str | None = None, **attrs: Any) -> None:
        """Set job attributes; a new secondary status is also a SecondaryStatusTransitions entry."""
        now = _now()
        new_secondary = attrs.get("secondary_status")
        transitions = self.job.secondary_status_transitions
        if new_secondary and (not transitions or transitions[-1]["Status"] != new_secondary):
            if transitions and "EndTime" not in transitions[-1]:
                transitions[-1]["EndTime"] = now
            transitions.append({"Status": new_secondary, "StartTime": now,
                                "StatusMessage": status_message or _STATUS_MESSAGES.get(new_secondary, new_secondary)})
        elif status_message and transitions:
            transitions[-1]["StatusMessage"] = status_message
        for key, value in attrs.items():
            setattr(self.job, key, value)
        self.job.last_modified_time = now

    def _finish(
        self, status: str, reason: str | None = None, metrics: dict[str, float] | None = None,
        secondary: str | None = None, status_message: str | None = None,
    ) -> None:
        end = _now()
        attrs: dict[str, Any] = {
            "training_job_status": status,
            "secondary_status": secondary or status,
            "final_metric_data_list": [
                {"MetricName": name, "Value": value, "Timestamp": end} for name, value in (metrics or {}).items()
            ],
        }
        if self.job.training_start_time is not None:
            # A job that never got its instances has no training or billable time (SageMaker).
            seconds = max(1, math.ceil((end - self.job.training_start_time).total_seconds()))
            # On demand: wall-clock seconds, as SageMaker reports it (bills x InstanceCount).
            # Managed spot: the seconds the containers ran, at the spot discount.
            billable = (max(1, math.ceil(self.active_seconds * self.lifecycle.spot_price_ratio))
                        if self.spot else seconds)
            attrs.update(training_end_time=end, training_time_in_seconds=seconds, billable_time_in_seconds=billable)
        if reason:
            attrs["failure_reason"] = reason[-1024:]
        self._set(status_message=status_message, **attrs)
        self.job.secondary_status_transitions[-1].setdefault("EndTime", end)
        log.info("job %s in %s: %s %s", self.job.training_job_name, self.region, status, reason or "")

    def _run(self) -> None:
        with self.slots:
            if self.stop_requested.is_set():
                self._finish("Stopped")
                return
            try:
                if self._before_start():
                    return
                # Managed spot: each interruption relaunches on fresh hosts, from the checkpoints.
                launches = 1 + (self.lifecycle.spot_interruptions if self.spot else 0)
                for launch in range(launches):
                    self.interrupted = False
                    self._set(training_start_time=self.job.training_start_time or _now(),
                              secondary_status="Downloading")
                    jobdir = Path(tempfile.mkdtemp(prefix=f"{self.job.training_job_name}-", dir=self.config.workdir))
                    try:
                        self._execute(jobdir, interrupt=launch < launches - 1)
                    finally:
                        shutil.rmtree(jobdir, ignore_errors=True)
                    if not self.interrupted:
                        return
                    self._set(secondary_status="Interrupted")
                    self._set(secondary_status="Starting", status_message="Restarting the training job after "
                              "a spot interruption: preparing the instances for training")
            except Exception as err:  # the job fails; the emulator keeps serving
                log.exception("job %s crashed in the emulator", self.job.training_job_name)
                self._finish("Failed", f"emulator error: {err}")

    def _before_start(self) -> bool:
        """Capacity lifecycles that end the job before it starts; True: it ended."""
        lifecycle = self.lifecycle
        if lifecycle.capacity_error_after_start:
            if not self.stop_requested.wait(lifecycle.starting_seconds):
                self._finish("Failed", CAPACITY_ERROR)
            else:
                self._finish("Stopped")
            return True
        if self.spot and lifecycle.spot_never_launched:
            self._set(secondary_status="Starting", status_message=INSUFFICIENT_CAPACITY)
            stopped = self.stop_requested.wait(self._max_wait() or 0)
            self._set(secondary_status="Stopping", training_job_status="Stopping")
            if stopped:
                self._finish("Stopped")
            else:
                self._finish("Stopped", None, secondary="MaxWaitTimeExceeded",
                             status_message="Training job exceeded MaxWaitTimeInSeconds provided")
            return True
        return False

    def _max_wait(self) -> float | None:
        """Seconds from creation a spot job may take in all (MaxWaitTimeInSeconds, capped locally)."""
        if not self.spot:
            return None
        limits = [float(v) for v in ((self.job.stopping_condition or {}).get("MaxWaitTimeInSeconds"),
                                     self.lifecycle.max_wait_seconds) if v]
        return min(limits) if limits else None

    def _execute(self, jobdir: Path, interrupt: bool = False) -> None:
        from regional_training.plan.metric_format import parse_final_metrics

        job = self.job
        spec = job.algorithm_specification
        try:
            image = image_for(self.config.images, spec["TrainingImage"])
        except (KeyError, ValueError):
            self._finish("Failed", f"CannotStartContainerError: image {spec['TrainingImage']!r} is not known "
                         "to the local emulator (see its image map)")
            return
        hosts = [f"algo-{i + 1}" for i in range(int(job.resource_config.get("InstanceCount", 1)))]
        if image.container:
            container.check_launch(image)
            addresses = container.host_addresses(hosts)
            roots = container.prepare_hosts(jobdir, hosts, addresses)
        else:
            # The direct launch runs one local process tree: the master host only.
            roots = {hosts[0]: jobdir / hosts[0]}
        checkpoint_config = job.checkpoint_config or {}
        checkpoint_uri = checkpoint_config.get("S3Uri")
        ckpt_path = checkpoint_config.get("LocalPath") or "/opt/ml/checkpoints"
        hps = dict(job.hyper_parameters or {})
        channels = {c["ChannelName"]: c for c in self.job.input_data_config or []}
        if not self._fill_hosts(roots, image, hps, hosts, channels, ckpt_path):
            return
        master_root = roots[hosts[0]]
        ml = master_root / "opt" / "ml"
        model_dir, ckpt_dir = ml / "model", _in_job(master_root, ckpt_path)
        if image.container:
            launches = {host: self._container_launch(image, root, job) for host, root in roots.items()}
        else:
            launches = {hosts[0]: self._direct_launch(image, master_root, hps, hosts, sorted(channels))}
        self._set(secondary_status="Training")
        max_runtime = float((job.stopping_condition or {}).get("MaxRuntimeInSeconds") or 0)
        self.checkpoint_dir = ckpt_dir
        returncode = self._train(
            launches, jobdir, max_runtime, self.lifecycle.interrupt_after_seconds if interrupt else None
        )
        log_path = jobdir / f"{hosts[0]}.log"
        text = log_path.read_text(errors="replace")
        self._log_tail(text)
        metrics = parse_final_metrics(text, spec.get("MetricDefinitions") or [])
        if checkpoint_uri and any(ckpt_dir.iterdir()):
            self._upload_dir(ckpt_dir, checkpoint_uri)
        if self.interrupted:
            return
        if self.stop_requested.is_set():
            # SageMaker sends SIGTERM, gives the algorithm 120 s "to save the model
            # artifacts", and uploads them: a stopped job keeps what /opt/ml/model holds.
            # A Stopped job has no FailureReason (the field is "the reason it failed").
            self._upload_model(jobdir, model_dir)
            if self.max_wait_exceeded:
                self._finish("Stopped", None, metrics, secondary="MaxWaitTimeExceeded",
                             status_message="Training job exceeded MaxWaitTimeInSeconds provided")
            elif self.max_runtime_exceeded:
                self._finish("Stopped", None, metrics, secondary="MaxRuntimeExceeded")
            else:
                self._finish("Stopped", None, metrics)
            return
        if returncode != 0:
            self._finish("Failed", _failure_reason(ml / "output" / "failure", returncode, text), metrics)
            return
        self._set(secondary_status="Uploading")
        self._upload_model(jobdir, model_dir)
        self._finish("Completed", None, metrics)

    def _upload_model(self, jobdir: Path, model_dir: Path) -> None:
        """Tar ``/opt/ml/model`` to ``S3ModelArtifacts``. Only the master's: SageMaker
        uploads /opt/ml/model of algo-1... and of every host, but the entry point writes
        it on rank 0 only, which is on algo-1."""
        tar_path = jobdir / "model.tar.gz"
        with tarfile.open(tar_path, "w:gz") as tar:
            for path in sorted(model_dir.iterdir()) if model_dir.is_dir() else []:
                tar.add(path, arcname=path.name)
        bucket, _, key = self._artifacts["S3ModelArtifacts"][len("s3://"):].partition("/")
        self._s3().upload_file(str(tar_path), bucket, key)

    def _fill_hosts(
        self, roots: dict[str, Path], image: LocalImage, hps: dict[str, str], hosts: list[str],
        channels: dict[str, Any], ckpt_path: str,
    ) -> bool:
        """Each host's /opt/ml: config, data, checkpoints, code. False: the job failed."""
        checkpoint_uri = (self.job.checkpoint_config or {}).get("S3Uri")
        for host, root in roots.items():
            ml = root / "opt" / "ml"
            for d in (ml / "input" / "config", ml / "input" / "data", ml / "model", ml / "output" / "data",
                      _in_job(root, ckpt_path), ml / "code"):
                d.mkdir(parents=True, exist_ok=True)
            self._write_config(ml / "input" / "config", hps, hosts, host)
            # Every host gets every channel (S3DataDistributionType FullyReplicated) and
            # the checkpoints (SageMaker syncs CheckpointConfig.S3Uri on each host).
            for name, channel in channels.items():
                uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
                if self._download_prefix(uri, ml / "input" / "data" / name) == 0:
                    self._finish("Failed", f"ClientError: no data found at {uri} for channel {name!r}")
                    return False
            if checkpoint_uri:
                self._download_prefix(checkpoint_uri, _in_job(root, ckpt_path))  # resume, as SageMaker does
            for dest, source in image.code.items():
                _copy(Path(source), ml / "code" / dest)
        return True

    def _container_launch(self, image: LocalImage, root: Path, job: Any) -> tuple[list[str], dict[str, str]]:
        """The container's command on one emulated host, with the container's environment.

        Only the image's ``ENV`` and what SageMaker sets for every container: the toolkit
        derives everything else (SM_*, the hyperparameters, mpirun) from /opt/ml.
        """
        env = {
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            **image.env,
            "TRAINING_JOB_NAME": job.training_job_name,
            "TRAINING_JOB_ARN": job.arn,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            # The emulator's own marker: lets anyone find (and tests check) a job's processes.
            "MRT_LOCAL_TRAINING_JOB": job.training_job_name,
        }
        return container.launch_command(root, image, env), env

    def _direct_launch(
        self, image: LocalImage, root: Path, hps: dict[str, str], hosts: list[str], channels: list[str]
    ) -> tuple[list[str], dict[str, str]]:
        """The command run as a local process with the SM_* environment (no toolkit)."""
        ml = root / "opt" / "ml"
        ckpt_dir = _in_job(root, (self.job.checkpoint_config or {}).get("LocalPath") or "/opt/ml/checkpoints")
        image = image.render(
            {
                "job_dir": str(root), "ml_dir": str(ml), "model_dir": str(ml / "model"),
                "output_dir": str(ml / "output"), "input_dir": str(ml / "input"), "checkpoint_dir": str(ckpt_dir),
            }
        )
        user_hps = {k: v for k, v in hps.items() if k not in _RESERVED_HP}
        args = [arg for key, value in sorted(user_hps.items()) for arg in (f"--{key}", str(value))]
        command = [*image.command, *args]
        mpi = str(hps.get("sagemaker_mpi_enabled", "false")).lower() == "true"
        if mpi and image.horovodrun:
            # Fallback for machines without root; SageMaker never launches this way.
            procs = min(int(hps.get("sagemaker_mpi_num_of_processes_per_host", 1)), self.config.max_processes)
            command = [*image.horovodrun, "-np", str(procs), "-H", f"localhost:{procs}", "--gloo", *command]
        env = {**os.environ, **image.env}
        env.update({f"SM_CHANNEL_{name.upper()}": str(ml / "input" / "data" / name) for name in channels})
        env.update(
            {
                "SM_MODEL_DIR": str(ml / "model"),
                "SM_OUTPUT_DATA_DIR": str(ml / "output" / "data"),
                "SM_OUTPUT_DIR": str(ml / "output"),
                "SM_INPUT_DIR": str(ml / "input"),
                "SM_INPUT_CONFIG_DIR": str(ml / "input" / "config"),
                "SM_CHECKPOINT_DIR": str(ckpt_dir),
                "SM_HOSTS": json.dumps(hosts),
                "SM_CURRENT_HOST": hosts[0],
                "SM_NUM_GPUS": "0",
                "SM_NUM_CPUS": str(os.cpu_count() or 1),
                "SM_HPS": json.dumps(user_hps),
                "SM_CHANNELS": json.dumps(channels),
                "SM_TRAINING_ENV": json.dumps({"job_name": self.job.training_job_name, "hosts": hosts}),
                "TRAINING_JOB_NAME": self.job.training_job_name,
                "MRT_LOCAL_TRAINING_JOB": self.job.training_job_name,
            }
        )
        return command, env

    def _write_config(self, config_dir: Path, hps: dict[str, str], hosts: list[str], current: str) -> None:
        """``input/config/*.json`` as SageMaker writes them on host ``current``."""
        (config_dir / "hyperparameters.json").write_text(json.dumps(hps))
        (config_dir / "resourceconfig.json").write_text(
            json.dumps({
                "current_host": current, "current_instance_type": self.job.resource_config.get("InstanceType"),
                "current_group_name": "homogeneousCluster", "hosts": hosts, "network_interface_name": "lo",
                "instance_groups": [{
                    "instance_group_name": "homogeneousCluster",
                    "instance_type": self.job.resource_config.get("InstanceType"), "hosts": hosts,
                }],
            })
        )
        channels = {c["ChannelName"]: c for c in self.job.input_data_config or []}
        (config_dir / "inputdataconfig.json").write_text(
            json.dumps({
                name: {"TrainingInputMode": c.get("InputMode", "File"), "S3DistributionType": "FullyReplicated",
                       "RecordWrapperType": "None"}
                for name, c in channels.items()
            })
        )

    def _train(
        self, launches: dict[str, tuple[list[str], dict[str, str]]], jobdir: Path, max_runtime: float,
        interrupt_after: float | None = None,
    ) -> int:
        """Run every host's command until the master's ends (or Stop, or MaxRuntime).

        Each host's log goes to ``<jobdir>/<host>.log`` and to its own CloudWatch stream
        (``<job>/<host>-<epoch>``), as SageMaker ships one per instance. The master's
        exit status is the job's; the other hosts get a few seconds to finish, then go.
        """
        epoch = int(time.time())
        shippers, files = [], []
        self.processes = []
        for host, (command, env) in launches.items():
            log_path = jobdir / f"{host}.log"
            shippers.append(_LogShipper(self, log_path, f"{self.job.training_job_name}/{host}-{epoch}"))
            log.info("job %s in %s, %s: %s", self.job.training_job_name, self.region, host, " ".join(command))
            files.append(log_path.open("wb"))
            # Own session, so Stop can kill the launcher and every rank it started.
            self.processes.append(subprocess.Popen(
                command, cwd=jobdir, env=env, stdout=files[-1], stderr=subprocess.STDOUT, start_new_session=True
            ))
        self.process = self.processes[0]
        try:
            if self.stop_requested.is_set():
                self._kill()
            started = time.monotonic()
            max_wait = self._max_wait()
            while (returncode := _wait_exit(self.process, _LOG_FLUSH_SECONDS)) is None:
                for shipper in shippers:
                    shipper.flush()
                self._watch(time.monotonic() - started, max_runtime, max_wait, interrupt_after)
            self.active_seconds += time.monotonic() - started
            deadline = time.monotonic() + _WORKER_GRACE_SECONDS
            for worker in self.processes[1:]:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.wait(timeout=max(0.1, deadline - time.monotonic()))
            self._kill()
        finally:
            for handle in files:
                handle.close()
        for shipper in shippers:
            shipper.flush()
        return returncode

    def _watch(self, elapsed: float, max_runtime: float, max_wait: float | None,
               interrupt_after: float | None) -> None:
        """The limits and lifecycles that end a running launch from outside."""
        if self.stop_requested.is_set() or self.interrupted:
            return
        if max_runtime and elapsed > max_runtime:
            self.max_runtime_exceeded = True
            self.stop()
        elif max_wait and (_now() - self.job.creation_time).total_seconds() > max_wait:
            self.max_wait_exceeded = True
            self.stop()
        elif interrupt_after and elapsed > interrupt_after and (
            not self.lifecycle.interrupt_after_checkpoint or (self.checkpoint_dir / "checkpoint").is_file()
        ):
            # The spot instances are reclaimed: every container goes at once.
            log.info("job %s in %s: spot interruption", self.job.training_job_name, self.region)
            self.interrupted = True
            self._kill()

    def _log_tail(self, text: str) -> None:
        for line in text.splitlines()[-40:]:
            log.info("[%s] %s", self.job.training_job_name, line)

    def _kill(self) -> None:
        """SIGTERM every host's process tree (grace period), then SIGKILL what is left.

        ``horovodrun`` (the direct launch's fallback) starts its ranks through a
        middleman that calls ``setsid``, so the ranks are not in the job's process
        group: the trees are collected (psutil) before anything is signalled, while every
        rank is still a descendant. A container launch's host dies with its PID namespace.
        """
        import psutil

        tree = []
        for process in self.processes:
            if process.poll() is not None:
                continue
            try:
                root = psutil.Process(process.pid)
                tree += [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(tree, timeout=self.config.stop_grace_seconds)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=5)

    def stop(self) -> None:
        """StopTrainingJob: ``Stopping`` at once, SIGTERM, SIGKILL after the grace period.

        The signals go from their own thread: the API call returns while the algorithm
        uses its grace period (SageMaker's StopTrainingJob answers at once, too)."""
        self.stop_requested.set()
        self._set(training_job_status="Stopping", secondary_status="Stopping")
        threading.Thread(target=self._kill, name=f"stop-{self.job.training_job_name}", daemon=True).start()


#: FailureReason of a job whose instances could not be provisioned after it was created.
CAPACITY_ERROR = (
    "CapacityError: Unable to provision requested ML compute capacity. "
    "Please retry using a different ML instance type."
)
#: The StatusMessage SageMaker shows (in SecondaryStatusTransitions only) while a spot
#: job waits for capacity.
INSUFFICIENT_CAPACITY = "Insufficient capacity error from EC2 while launching instances, retrying!"
_STATUS_MESSAGES = {
    "Starting": "Launching requested ML instances",
    "Downloading": "Downloading input data",
    "Training": "Training image download completed. Training in progress.",
    "Uploading": "Uploading generated training model",
    "Completed": "Training job completed",
    "Failed": "Training job failed",
    "Stopping": "Stopping the training job",
    "Stopped": "Training job stopped",
    "Interrupted": "Spot instances were interrupted: the job restarts when capacity is available",
    "MaxRuntimeExceeded": "Training job exceeded MaxRuntimeInSeconds provided",
    "MaxWaitTimeExceeded": "Training job exceeded MaxWaitTimeInSeconds provided",
}
#: Seconds the other hosts get to exit after the master's container did.
_WORKER_GRACE_SECONDS = 5.0
#: Seconds between pushes of new log lines to CloudWatch Logs while a job runs.
_LOG_FLUSH_SECONDS = 2.0
#: SageMaker's log group for training jobs.
LOG_GROUP = "/aws/sagemaker/TrainingJobs"


def _wait_exit(process: subprocess.Popen[bytes], timeout: float) -> int | None:
    """The process's exit status once it exits within ``timeout`` seconds, else ``None``.

    ``Popen.wait(timeout=...)`` polls ``waitpid`` with sleeps of at most 50 ms: about 20
    wake-ups a second per job, in the emulator's one interpreter with every job's thread
    (a 1,000-target run has 70 jobs in flight). A pidfd becomes readable when the process
    exits, so the thread sleeps in ``select`` until then or the timeout.
    """
    if (code := process.poll()) is not None:  # reaped already (also by a stop's thread)
        return code
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # no pidfd (not Linux >= 5.3), or reaped since
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout)
    finally:
        os.close(pidfd)
    return process.wait() if ready else None


class _LogShipper:
    """Ships a job's log file to CloudWatch Logs as SageMaker does (group
    ``/aws/sagemaker/TrainingJobs``, stream ``<job>/algo-1-<epoch>``), while it runs."""

    def __init__(self, runner: _Runner, path: Path, stream: str):
        self.runner, self.path, self.stream = runner, path, stream
        self.offset, self.client = 0, None

    def _logs(self) -> Any:
        if self.client is None:
            self.client = shared_client("logs", self.runner.region, self.runner.config.endpoint_url)
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


def _in_job(root: Path, container_path: str) -> Path:
    """Where a container path (``/opt/ml/checkpoints``) is inside a host's root."""
    return root / container_path.lstrip("/")


def _copy(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    else:
        shutil.copy2(source, dest)


def _failure_reason(failure_file: Path, returncode: int, log_text: str) -> str:
    """``FailureReason`` as SageMaker makes it: ``AlgorithmError: `` and the first 1024
    characters of the container's ``/opt/ml/output/failure`` (the toolkit writes it);
    without that file (a direct launch), the entry point's own error from the log."""
    if failure_file.is_file():
        text = failure_file.read_text(errors="replace").strip()
        if text:
            return f"AlgorithmError: {text}"[:1024]
    return f"AlgorithmError: exit code {returncode}: {_error_tail(log_text)}"


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
        job.secondary_status_transitions = [
            {"Status": "Starting", "StartTime": job.creation_time, "StatusMessage": _STATUS_MESSAGES["Starting"]}
        ]
        job.training_start_time = job.training_end_time = None
        job.final_metric_data_list = []
        # ModelArtifacts stays (moto sets <S3OutputPath>/<job>/output/model.tar.gz): it is a
        # required member of DescribeTrainingJobResponse in botocore's model; the object
        # exists only once the job uploaded it (docs/emulator.md, *assumed*).
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

    throttled: dict[tuple[str, str, str], int] = {}
    throttle_lock = threading.Lock()

    def throttling(operation: str, handler: Any) -> Any:
        """A ThrottlingException burst before ``handler`` (see Lifecycle.throttle)."""

        def respond(self: Any) -> Any:
            from moto.sagemaker.exceptions import SagemakerClientError

            name = str(self._get_param("TrainingJobName"))
            budget = config.lifecycles.for_job(self.region, name).throttle.get(operation, 0)  # type: ignore[call-overload]
            key = (self.region, operation, name)
            with throttle_lock:
                refuse = throttled.get(key, 0) < budget
                if refuse:
                    throttled[key] = throttled.get(key, 0) + 1
            if refuse:

                class ThrottlingException(SagemakerClientError):
                    code = "ThrottlingException"

                raise ThrottlingException("Rate exceeded")
            return handler(self)

        return respond

    responses.SageMakerResponse.create_training_job = throttling(  # type: ignore[method-assign]
        "CreateTrainingJob", responses.SageMakerResponse.create_training_job
    )
    responses.SageMakerResponse.describe_training_job = throttling(  # type: ignore[method-assign]
        "DescribeTrainingJob", responses.SageMakerResponse.describe_training_job
    )
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
    sys.exit("run python -m dev.local_aws.server instead")
