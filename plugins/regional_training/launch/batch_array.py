"""``launcher=batch_array``: one AWS Batch array job's child *N* creates line *N*'s job
(:mod:`regional_training.launch.batch_launcher`, with :class:`~.sagemaker.SageMakerBackend` and
the same driver); the DAG's task describes, waits on and stops it as SageMaker's, and
while the child has not made it yet, waits on a timer (``resume_following``)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from regional_training.launch.backends import Wait
from regional_training.launch.sagemaker import SageMakerBackend

if TYPE_CHECKING:
    from regional_training.launch.attempts import Candidate

log = logging.getLogger("regional_training.launch")


class BatchArrayBackend(SageMakerBackend):
    """SageMaker's, except that the array child creates the job."""

    def creator(self, candidate: Candidate, name: str) -> Wait | None:
        """Wait (deferred, no worker held) for this target's array child to create
        ``name``; fail naming the child and region if it ended without a live job."""
        from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

        from regional_training.launch import batch_jobs

        conn = self.connection
        launch = conn.ti.xcom_pull(task_ids=batch_jobs.LAUNCH_TASK_ID) if conn.ti is not None else None
        if not launch:
            raise RuntimeError(f"launcher=batch_array but {batch_jobs.LAUNCH_TASK_ID} submitted no array job")
        child_id = batch_jobs.array_child(launch, str(conn.target_key))
        child = batch_jobs.describe_batch_job(child_id, region=launch["region"])
        if child.get("status") in ("SUCCEEDED", "FAILED"):
            raise RuntimeError(f"array child {child_id} (target {conn.target_key}, {candidate.region}) ended "
                               f"{child['status']} ({child.get('statusReason') or 'no reason'}) and no training "
                               f"job {name} is live: see the child's log")
        log.info("Waiting for array child %s (%s) to create %s.", child_id, child.get("status"), name)
        return Wait(TimeDeltaTrigger(timedelta(seconds=conn.poll_seconds)), method_name="resume_following")
