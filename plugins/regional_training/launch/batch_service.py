"""``launcher=batch_service``: each attempt is an AWS Batch service job
(``SubmitServiceJob``, ``SAGEMAKER_TRAINING``) in its region's queue; Batch creates the
training job when capacity comes, under a name of its own (``AWSBatch<name><32 hex>``,
a new one after each capacity re-queue), which is the job's real identity
(:func:`regional_training.launch.batch_jobs.describe_service_attempt`). The task waits on
:class:`regional_training.launch.triggers.BatchServiceJobTrigger`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from regional_training.launch.backends import Wait, request_digest, wait_limit_seconds
from regional_training.launch.job import JobState
from regional_training.launch.sagemaker import SageMakerBackend
from regional_training.runtime.aws_io import describe_or_none

if TYPE_CHECKING:
    from regional_training.launch.attempts import Candidate

log = logging.getLogger("regional_training.launch")


class BatchServiceBackend(SageMakerBackend):
    """Batch creates the job from the attempt's service job; the rest is SageMaker's."""

    def describe(self, region: str, name: str) -> JobState | None:
        from regional_training.launch import batch_jobs

        conn = self.connection
        description = batch_jobs.describe_service_attempt(
            batch_jobs.batch_client(region, aws_conn_id=conn.aws_conn_id, botocore_config=conn.botocore_config),
            batch_jobs.batch_settings().service_queue(region), name,
            lambda real: describe_or_none(conn.hook(region), real))
        return None if description is None else JobState.of(description, name)

    def create(self, candidate: Candidate, name: str) -> None:
        """Submit the attempt's service job, or find the one submitted already
        (:func:`regional_training.launch.batch_jobs.submit_service_job`): :meth:`wait` does it,
        since waiting on a service job needs its id either way."""

    def wait(self, candidate: Candidate, name: str) -> Wait:
        from regional_training.launch import batch_jobs

        conn = self.connection
        job_id = batch_jobs.submit_service_job(candidate.request, name, region=candidate.region, params=conn.params,
                                               aws_conn_id=conn.aws_conn_id, botocore_config=conn.botocore_config)
        log.info("Service job %s for %s in %s (request sha256 %s).", job_id, name, candidate.region,
                 request_digest({**candidate.request, "TrainingJobName": name}))
        trigger = batch_jobs.BatchServiceJobTrigger(
            service_job_id=job_id, job_name=name, region_name=candidate.region,
            capacity_wait_seconds=60 * int(conn.params.get("batch_capacity_wait_minutes") or 0),
            poll_seconds=conn.poll_seconds, aws_conn_id=conn.aws_conn_id, botocore_config=conn.botocore_config)
        return Wait(trigger, timeout_seconds=wait_limit_seconds(candidate.request))
