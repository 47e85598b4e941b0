"""``launcher=airflow``: the task itself creates the SageMaker training job in the
candidate's region and defers on :class:`regional_training.launch.triggers.StoppingSageMakerTrigger`.
The identity is ours: the attempt's deterministic name."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from regional_training.launch.backends import Connection, Wait, request_digest, wait_limit_seconds
from regional_training.launch.job import JobState
from regional_training.runtime.aws_io import describe_or_none

if TYPE_CHECKING:
    from regional_training.launch.attempts import Candidate

log = logging.getLogger("regional_training.launch")


class SageMakerBackend:
    """``CreateTrainingJob`` / ``DescribeTrainingJob`` / ``StopTrainingJob`` in the job's region."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def describe(self, region: str, name: str) -> JobState | None:
        description = describe_or_none(self.connection.hook(region), name)
        return None if description is None else JobState.of(description, name)

    def creator(self, candidate: Candidate, name: str) -> Wait | None:
        return None

    def create(self, candidate: Candidate, name: str) -> None:
        request = {**candidate.request, "TrainingJobName": name}
        log.info("Creating training job %s in %s (request sha256 %s).", name, candidate.region,
                 request_digest(request))
        self.connection.hook(candidate.region).create_training_job(request, wait_for_completion=False,
                                                                   print_log=False)

    def wait(self, candidate: Candidate, name: str) -> Wait:
        from regional_training.launch.triggers import StoppingSageMakerTrigger

        conn = self.connection
        limit = wait_limit_seconds(candidate.request)
        poll = int(conn.poll_seconds)
        trigger = StoppingSageMakerTrigger(
            job_name=name, job_type="Training", waiter_delay=poll,
            waiter_max_attempts=math.ceil(limit / poll) + 1, aws_conn_id=conn.aws_conn_id,
            region_name=candidate.region, verify=conn.verify, botocore_config=conn.botocore_config,
        )
        return Wait(trigger, timeout_seconds=limit)

    def stop(self, region: str, name: str) -> None:
        self.connection.hook(region).conn.stop_training_job(TrainingJobName=name)
