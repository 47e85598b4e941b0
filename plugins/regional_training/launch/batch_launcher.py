"""The AWS Batch array-job launcher: child *N* launches line *N* of the array file.

``launcher=batch_array`` submits one Batch array job of size N (the array file's
lines) in the central region (:mod:`regional_training.batch_service` has the task). Each
child runs, in the Airflow image (it already holds this package, botocore and the
Amazon provider, and the Airflow role's image pipeline builds it: no second image to
build, scan and pin)::

    python -m regional_training.launch.batch_launcher --array-uri s3://.../array.csv \\
        --requests-uri s3://.../requests.json --region us-east-1

It reads the stored array file, takes line ``AWS_BATCH_JOB_ARRAY_INDEX`` (zero-based:
the seed's ``sed -n "$((AWS_BATCH_JOB_ARRAY_INDEX + 1))p"``; a one-line run is a plain
job, since Batch's arrays have 2 children at least, and Batch refuses ``AWS_BATCH*``
overrides, so its line comes in :data:`ARRAY_INDEX_VARIABLE`), finds that target's
stored request (with its failover requests) and creates-or-reattaches its training
job with the DAG operator's durable logic, decided by the same driver
(:func:`regional_training.launch.driver.next_step`, with the SageMaker backend):
deterministic names, reattach to a live or completed job (a child retried by Batch never
starts a second job), one new attempt after a failure (but not on Batch's automatic
retry after a deterministic failure, :func:`regional_training.launch.retry_policy.refusal`, as
for Airflow's), a move to the next candidate on a capacity error. Unlike the operator,
which defers, it waits by polling. It waits for the job and exits 0 when it
completed, 1 (naming the job, region and SageMaker's reason) when it did not, and
:data:`EXIT_REFUSED` for what no Batch retry can change (the job definition does not
retry that code): a line, index or request file it refuses (the message names the line
and the fields to add), Batch's automatic retry after a deterministic failure, and a
target whose every candidate's job ended for lack of capacity; ``SIGTERM`` (Batch's
``TerminateJob``) stops the training job first.

The DAG's mapped ``train`` task follows the job the child made (the operator's
``follow`` mode), so collection, summary and ``training_runs`` are the same as for
``launcher=airflow``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from regional_training.launch import driver
from regional_training.launch.attempts import CAPACITY_EXHAUSTED_ADVICE, Resolution, exhausted_message
from regional_training.launch.backends import ClientHook, Connection
from regional_training.launch.job import Job, JobState
from regional_training.launch.sagemaker import SageMakerBackend

log = logging.getLogger("regional_training.launch.batch_launcher")

#: The variable naming a plain job's line (a one-line run: not an array job, so Batch
#: sets no AWS_BATCH_JOB_ARRAY_INDEX, and refuses to let the submit set it).
ARRAY_INDEX_VARIABLE = "MRT_ARRAY_INDEX"
#: The run's requests, as the launch task stored them next to the array file.
REQUESTS_FILE = "requests.json"
#: A child's exit code when Batch's TerminateJob (SIGTERM) stopped it.
EXIT_TERMINATED = 143
#: Exit code when the child's target needs no launch in this run (e.g. reused).
EXIT_NOTHING = 0
#: Exit code of a refusal that no retry can fix (a bad line, index or request file): the
#: job definition's ``retryStrategy.evaluateOnExit`` exits on it instead of retrying
#: (regional_training.launch.batch_resources), so Batch does not re-run a deterministic refusal.
EXIT_REFUSED = 2

#: ``sagemaker(region)``: a SageMaker client in ``region``.
Clients = Callable[[str], Any]


class LaunchError(RuntimeError):
    """The child cannot launch its line (bad index, no request): names what is wrong."""


def select_line(text: str, index: int) -> dict[str, str]:
    """Line ``index`` (zero-based) of the array file, parsed and checked; the same line
    ``sed -n "$((index + 1))p"`` prints."""
    from regional_training.plan import array_file

    lines = array_file.parse(text)
    if not 0 <= index < len(lines):
        raise LaunchError(f"AWS_BATCH_JOB_ARRAY_INDEX={index} but the array file has {len(lines)} line(s)")
    return lines[index]


def array_index(environ: dict[str, str] | os._Environ[str]) -> int:
    """This child's line: Batch's ``AWS_BATCH_JOB_ARRAY_INDEX`` in an array job, else the
    launch task's :data:`ARRAY_INDEX_VARIABLE` (a one-line run's plain job)."""
    name = "AWS_BATCH_JOB_ARRAY_INDEX" if "AWS_BATCH_JOB_ARRAY_INDEX" in environ else ARRAY_INDEX_VARIABLE
    value = environ.get(name)
    if value is None or not value.isdigit():
        raise LaunchError(f"{name} is {value!r}: run this as a child of a Batch array job (or a plain job with "
                          f"{ARRAY_INDEX_VARIABLE} set)")
    return int(value)


class Launcher:
    """Create-or-reattach one target's job and wait for it (one Batch child)."""

    def __init__(self, job: Job, clients: Clients, *, poll_seconds: float = 30.0, batch_attempt: int = 1) -> None:
        self.job, self.poll_seconds, self.batch_attempt = job, poll_seconds, batch_attempt
        self.candidates = self.job.candidates
        self.backend = SageMakerBackend(Connection(hook=lambda region: ClientHook(clients(region)),
                                                   poll_seconds=poll_seconds))
        self.terminated = threading.Event()
        self.current: tuple[str, str] | None = None  # (region, job name)

    def run(self) -> int:
        refused: driver.Refused = {}
        while True:
            step = driver.next_step(self.candidates, self.backend, refused=refused,
                                    automatic_retry=lambda: self.batch_attempt > 1)
            for move in step.resolution.moves:
                log.info("Move %d: %s -> %s after %s.", move.move_number, move.from_region,
                         move.to_region or "nothing", move.error_code)
            if step.kind == "exhausted" or step.candidate is None:
                return self._exhausted(step.resolution)
            candidate, attempt = step.candidate, step.attempt
            self.current = (candidate.region, attempt.name)
            if step.kind == "done":
                log.info("Training job %s in %s completed.", attempt.name, candidate.region)
                return 0
            if step.kind == "refuse":
                # Every further Batch attempt would refuse the same way: the definition's
                # evaluateOnExit exits on this code (docs/batch.md).
                log.error("Refused (exit %d, not retried): %s; Batch attempt %d creates no new job (clear the DAG's "
                          "train task or submit the array again to make one new attempt)", EXIT_REFUSED,
                          step.refusal, self.batch_attempt)
                return EXIT_REFUSED
            if step.kind == "create":
                error = driver.create(self.backend, candidate, attempt.name, log)
                if error is not None:
                    refused[candidate.region] = error
                    continue
            else:
                log.info("Reattaching to training job %s (attempt %d) in %s.", attempt.name, attempt.number,
                         candidate.region)
            ended = self._wait(candidate.region, attempt.name)
            if ended is None:
                return EXIT_TERMINATED
            if ended.phase == "completed":
                log.info("Training job %s in %s completed.", attempt.name, candidate.region)
                return 0
            if ended.capacity is not None:
                log.warning("Training job %s in %s ended for lack of capacity: moving on.", attempt.name,
                            candidate.region)
                continue
            # SageMaker's own words (a Stopped job has no FailureReason: its SecondaryStatus
            # and status message say why), as the operator raises and collection records.
            log.error("Training job %s in %s ended %s: %s", attempt.name, candidate.region,
                      ended.description["TrainingJobStatus"], ended.reason)
            return 1

    def _exhausted(self, resolution: Resolution) -> int:
        """No candidate left. :data:`EXIT_REFUSED` when every candidate's job *ended* for
        lack of capacity: a Batch retry would describe the same ended jobs and create
        nothing (the operator's ``CapacityExhaustedError``); 1 when a creation was refused
        for capacity, which a later retry may get past."""
        limit = self.job.max_failovers
        message = exhausted_message(self.job.base_name, resolution.moves,
                                    len(self.candidates) - 1 if limit is None else limit)
        if not resolution.retry_may_create:
            log.error("Refused (exit %d, not retried): %s; %s, and submit again)", EXIT_REFUSED, message,
                      CAPACITY_EXHAUSTED_ADVICE)
            return EXIT_REFUSED
        log.error("%s; a creation was refused for capacity, so Batch's retry asks again", message)
        return 1

    def _wait(self, region: str, name: str) -> JobState | None:
        """The job's state once it ended; ``None`` if this child was terminated (Batch's
        ``TerminateJob``: the job is stopped first)."""
        while True:
            state = self.backend.describe(region, name)
            if state is not None and state.ended:
                return state
            if self.terminated.wait(self.poll_seconds):
                log.warning("Terminated: stopping training job %s in %s.", name, region)
                driver.stop(self.backend, region, name, log)
                return None


def load_job(array_text: str, requests: dict[str, Any], index: int) -> Job | None:
    """The stored job of the target on line ``index`` (``requests.json`` holds each as its
    XCom payload); ``None`` if the run launches nothing for it (the launch task stores
    only the jobs to launch)."""
    line = select_line(array_text, index)
    payload = requests.get("jobs", {}).get(line["target_key"])
    if payload is None:
        return None
    job = Job.from_xcom(payload)
    if job.target.region_code != line["region"]:
        raise LaunchError(f"array line {index + 1}: region {line['region']!r} differs from the stored request's "
                          f"{job.target.region_code!r}")
    return job


def _client(service: str, region: str) -> Any:
    import boto3
    from botocore.config import Config

    from regional_training.runtime.aws_io import BOTOCORE_CONFIG

    # boto3 reads AWS_ENDPOINT_URL (the local emulator) and the task role's credentials.
    return boto3.client(service, region_name=region, config=Config(**BOTOCORE_CONFIG))


def _get_text(uri: str, region: str) -> str:
    from regional_training.runtime.aws_io import split_s3_uri  # the package's one S3 URI parser

    try:
        bucket, key = split_s3_uri(uri)
    except ValueError as err:
        raise LaunchError(str(err)) from None
    return str(_client("s3", region).get_object(Bucket=bucket, Key=key)["Body"].read().decode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Launch one array-file line's training job (an AWS Batch child).")
    parser.add_argument("--array-uri", required=True)
    parser.add_argument("--requests-uri", required=True)
    parser.add_argument("--region", required=True, help="the central bucket's region")
    parser.add_argument("--poll-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stdout)
    from regional_training.plan.scan import ScanError
    from regional_training.plan.targets import TargetError

    try:
        index = array_index(os.environ)
        job = load_job(_get_text(args.array_uri, args.region), json.loads(_get_text(args.requests_uri, args.region)),
                       index)
    except (LaunchError, TargetError, ScanError, json.JSONDecodeError) as err:
        # The same file, index and requests on every try: refused, named, not retried.
        log.error("Refused (exit %d, not retried): %s", EXIT_REFUSED, err)
        return EXIT_REFUSED
    if job is None:
        log.info("Array line %d: nothing to launch in this run.", index + 1)
        return EXIT_NOTHING
    launcher = Launcher(job, lambda region: _client("sagemaker", region), poll_seconds=args.poll_seconds,
                        batch_attempt=int(os.environ.get("AWS_BATCH_JOB_ATTEMPT", "1")))
    signal.signal(signal.SIGTERM, lambda *_: launcher.terminated.set())
    log.info("Array line %d: target %s in %s.", index + 1, job.target.dataset_key, job.target.region_code)
    return launcher.run()


if __name__ == "__main__":
    sys.exit(main())
