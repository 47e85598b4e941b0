"""The project's triggers, in a module that imports almost nothing.

Airflow's triggerer imports a trigger's class inside its event loop
(``TriggerRunner.get_trigger_by_classpath``, then ``trigger_class(**kwargs)``), and warns
"async thread was blocked" when one step holds the loop over 0.2 s. Defined next to
their operators, the classes cost that import the whole operator stack (the provider's
operators, hooks and SageMaker trigger, boto3): 0.13-0.15 s of CPU, twice in a fresh
triggerer (one per class), the first two warnings of a 64-target run. Here a class is
``airflow.triggers.base`` and a few names; what the run needs of the provider
(:mod:`regional_training.launch.trigger_hooks`) is imported in a worker thread when the first
trigger runs (:func:`load_trigger_hooks`).

The old class paths (``regional_training.operators.StoppingSageMakerTrigger``,
``regional_training.launch.batch_jobs.BatchServiceJobTrigger``) name the same classes, so a
trigger stored before this module existed still loads; a trigger serializes under this
module's path.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

__all__ = [
    "CAPACITY_PREFIX", "SERVICE_ENDED", "BatchServiceJobTrigger", "StoppingSageMakerTrigger", "load_trigger_hooks",
    "service_job_failed_for_capacity", "stop_on_kill",
]

#: Batch service-job states (DescribeServiceJob) in which the job has ended.
SERVICE_ENDED = frozenset({"SUCCEEDED", "FAILED"})
#: Batch's ``statusReason`` prefix for a job waiting for (or ended for want of) capacity.
CAPACITY_PREFIX = "CAPACITY:"

#: The module with the provider's parts (hooks, the SageMaker waiter).
HOOKS_MODULE = "regional_training.launch.trigger_hooks"
_loaded: ModuleType | None = None


async def load_trigger_hooks() -> ModuleType:
    """:mod:`regional_training.launch.trigger_hooks`, imported in a worker thread the first time.

    Not ``sys.modules`` first: while one thread imports the module it is there half
    initialised; ``import_module`` waits for it (in the thread, not the loop)."""
    global _loaded
    if _loaded is None:
        _loaded = await asyncio.to_thread(_import_hooks)
    return _loaded


async def stop_on_kill(trigger: Any, what: str, method: str, request: dict[str, Any]) -> None:
    """A deferred task's user kill, in its trigger: the client's ``method``
    (``stop_training_job``, ``terminate_service_job``) on the job, through the trigger's
    own async client (``trigger.hook()``). As
    :func:`regional_training.launch.driver.stop` does for a running task, an error (the job
    already ended) is logged, not raised: the kill goes on."""
    trigger.log.info("Task killed: %s for %s.", method, what)
    await load_trigger_hooks()
    async with await trigger.hook().get_async_conn() as client:
        try:
            await getattr(client, method)(**request)
        except client.exceptions.ClientError as err:  # already ended: nothing to stop
            trigger.log.warning("%s %s: %s", method, what, err)


def _import_hooks() -> ModuleType:
    # Without garbage collections while it loads, then frozen (async_clients says why).
    from regional_training.runtime.async_clients import loading_then_frozen

    with loading_then_frozen():
        return importlib.import_module(HOOKS_MODULE)


def _hooks_module() -> ModuleType:
    """The same, synchronously (outside the loop, or once :func:`load_trigger_hooks` ran)."""
    return _loaded or importlib.import_module(HOOKS_MODULE)


def service_job_failed_for_capacity(status: str, reason: str) -> bool:
    """A FAILED service job that Batch ended for capacity: terminated by the queue's
    ``jobStateTimeLimitActions`` ("Terminated by JobStateTimeLimit action due to reason:
    CAPACITY:...", user guide) while re-queued after a ``CapacityError``."""
    return status == "FAILED" and CAPACITY_PREFIX in reason


def epoch_seconds(value: Any) -> float:
    """Batch's timestamps are epoch milliseconds."""
    return float(value or 0) / 1000.0 if value else time.time()


class StoppingSageMakerTrigger(BaseTrigger):
    """Polls the training job in its own region; stops it when a user kills the deferred task.

    The polling and its events are the provider's ``SageMakerTrigger``'s (run as
    :class:`regional_training.launch.trigger_hooks.SageMakerJobWaiter`, on a client shared by
    the region's triggers), and so are the arguments and the serialized form, under this
    class's path. Every outcome resumes the task on a worker, a completed job too: the
    resumed try collects and records it
    (``DurableSageMakerTrainingOperator.execute_complete``), so each target is one task
    and nothing downstream waits on it per target (a waiting task is re-evaluated by the
    scheduler in every loop: bench/services_scale.py).
    """

    def __init__(self, job_name: str, job_type: str, waiter_delay: int = 30, waiter_max_attempts: int = 480,
                 aws_conn_id: str | None = "aws_default", region_name: str | None = None,
                 verify: bool | str | None = None, botocore_config: dict[str, Any] | None = None,
                 poke_interval: int | None = None, max_attempts: int | None = None) -> None:
        if not region_name:
            raise ValueError("StoppingSageMakerTrigger needs the job's region_name")
        super().__init__()
        # The provider's deprecated names, as its trigger takes them.
        self.waiter_delay = poke_interval if poke_interval is not None else waiter_delay
        self.attempts = max_attempts if max_attempts is not None else waiter_max_attempts
        self.job_name, self.job_type = job_name, job_type
        self.aws_conn_id, self.region_name = aws_conn_id, region_name
        self.verify, self.botocore_config = verify, botocore_config

    def serialize(self) -> tuple[str, dict[str, Any]]:
        # The provider's AwsBaseWaiterTrigger.serialize: the same keys in the same order,
        # None left out of the last three.
        params: dict[str, Any] = {"waiter_delay": self.waiter_delay, "waiter_max_attempts": self.attempts,
                                  "aws_conn_id": self.aws_conn_id, "job_name": self.job_name,
                                  "job_type": self.job_type}
        optional = {"region_name": self.region_name, "verify": self.verify, "botocore_config": self.botocore_config}
        params.update({key: value for key, value in optional.items() if value is not None})
        return f"{type(self).__module__}.{type(self).__qualname__}", params

    def waiter(self) -> Any:
        """The provider's trigger doing the polling (load the hooks module first in the loop)."""
        return _hooks_module().SageMakerJobWaiter(**self.serialize()[1])

    def hook(self) -> Any:
        return _hooks_module().SharedClientSageMakerHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name,
                                                         verify=self.verify, config=self.botocore_config)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        await load_trigger_hooks()
        async for event in self.waiter().run():
            yield event

    async def on_kill(self) -> None:
        await stop_on_kill(self, f"training job {self.job_name} in {self.region_name}", "stop_training_job",
                           {"TrainingJobName": self.job_name})


class BatchServiceJobTrigger(BaseTrigger):
    """Waits for a Batch service job to end (``DescribeServiceJob``), in its region.

    Yields ``{"status": "success" | "error" | "capacity", "job_name", "service_job_id",
    "message"}``. ``capacity``: the job, re-queued by Batch after a
    ``CapacityError`` (``statusReason`` ``CAPACITY:*``), waited longer than
    ``capacity_wait_seconds`` after its submission (it has been terminated), or the
    queue's ``jobStateTimeLimitActions`` terminated it for that reason. Killing the
    deferred task terminates the service job.
    """

    def __init__(self, *, service_job_id: str, job_name: str, region_name: str, capacity_wait_seconds: float,
                 poll_seconds: float, aws_conn_id: str | None = "aws_default",
                 botocore_config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.service_job_id, self.job_name, self.region_name = service_job_id, job_name, region_name
        self.capacity_wait_seconds, self.poll_seconds = capacity_wait_seconds, poll_seconds
        self.aws_conn_id, self.botocore_config = aws_conn_id, botocore_config

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}", {
            "service_job_id": self.service_job_id, "job_name": self.job_name, "region_name": self.region_name,
            "capacity_wait_seconds": self.capacity_wait_seconds, "poll_seconds": self.poll_seconds,
            "aws_conn_id": self.aws_conn_id, "botocore_config": self.botocore_config,
        })

    def hook(self) -> Any:
        return _hooks_module().SharedClientBatchHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name,
                                                     config=self.botocore_config)

    def _event(self, status: str, message: str) -> TriggerEvent:
        return TriggerEvent({"status": status, "job_name": self.job_name, "service_job_id": self.service_job_id,
                             "region": self.region_name, "message": message})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        await load_trigger_hooks()
        async with await self.hook().get_async_conn() as client:
            while True:
                job = await client.describe_service_job(jobId=self.service_job_id)
                status, reason = job.get("status"), job.get("statusReason") or ""
                if status in SERVICE_ENDED:
                    outcome = ("success" if status == "SUCCEEDED" else
                               "capacity" if service_job_failed_for_capacity(status, reason) else "error")
                    yield self._event(outcome, f"service job {self.service_job_id} {status}: {reason}")
                    return
                waited = time.time() - epoch_seconds(job.get("createdAt"))
                if reason.startswith(CAPACITY_PREFIX) and waited > self.capacity_wait_seconds:
                    self.log.warning("Service job %s waited %.0f s for capacity (%s): terminating it.",
                                     self.service_job_id, waited, reason)
                    await client.terminate_service_job(
                        jobId=self.service_job_id, reason=f"no capacity within {self.capacity_wait_seconds:.0f} s")
                    yield self._event("capacity", reason)
                    return
                await asyncio.sleep(self.poll_seconds)

    async def on_kill(self) -> None:
        await stop_on_kill(self, f"service job {self.service_job_id} in {self.region_name}", "terminate_service_job",
                           {"jobId": self.service_job_id, "reason": "Airflow task killed"})
