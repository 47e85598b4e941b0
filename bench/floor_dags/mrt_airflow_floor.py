"""Airflow's own cost per target: the production DAG's shape with no work in it.

``bench/services_scale.py --dag mrt_airflow_floor`` (or ``..._trigger_start``) runs
these on the same real services as ``multi_region_training``: a mapped task group per
target, a training task in the launch pool that defers while its "job" runs (a sleep in
the triggerer of ``MRT_FLOOR_JOB_SECONDS``) and ends in the triggerer, as ours does when
a job completes; a collector at priority 100 that runs as soon as its own target's
training ends; a summary of all. Nothing talks to AWS or the campaign database, so what a
run costs is what Airflow costs for that shape: the floor under ``multi_region_training``.

* ``mrt_airflow_floor``: two worker tries per target (launch, collect), like ours.
* ``mrt_airflow_floor_trigger_start``: the training task starts in the triggerer
  (``start_from_trigger``): one worker try per target (collect).
* ``mrt_airflow_floor_no_worker``: both in the triggerer (the collector is a second
  trigger-started task): no worker try per target at all.
* ``mrt_airflow_floor_one_task``: one mapped task per target that launches, defers, and
  collects when its trigger resumes it on a worker: two worker tries per target, like
  ours, but no collector task instance waiting on its training task (the scheduler
  evaluates every waiting task instance's dependencies in each loop).

Not production code: a benchmark's stand-in (docs/services.md, "Airflow's floor").
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, Param, TriggerRule, WeightRule, dag, task, task_group
from airflow.triggers.base import BaseTrigger, StartTriggerArgs, TaskSuccessEvent, TriggerEvent

#: The stand-in job's length, read from the environment (no I/O at parse time).
JOB_SECONDS = float(os.environ.get("MRT_FLOOR_JOB_SECONDS", "20"))
#: The dag-processor imports this file under a name of its own: the triggerer imports
#: the trigger from this module, on the services' PYTHONPATH (bench/services_scale.py).
MODULE = "mrt_airflow_floor"
POOL = os.environ.get("MRT_TRAINING_POOL", "default_pool")


class SleepTrigger(BaseTrigger):
    """Sleeps ``seconds``, then ends its task successfully (the job "completed"), or with
    ``resume``, resumes it on a worker."""

    def __init__(self, seconds: float, resume: bool = False) -> None:
        super().__init__()
        self.seconds = seconds
        self.resume = resume

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{MODULE}.SleepTrigger", {"seconds": self.seconds, "resume": self.resume}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        await asyncio.sleep(self.seconds)
        if self.resume:
            yield TriggerEvent({"status": "Completed"})
        else:
            yield TaskSuccessEvent(xcoms={"return_value": {"status": "Completed"}})


class StandInTrain(BaseOperator):
    """Launch (nothing), defer on the "job", end in the triggerer."""

    template_fields = ("target",)

    def __init__(self, *, target: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target

    def execute(self, context: Any) -> None:
        self.defer(trigger=SleepTrigger(JOB_SECONDS), method_name="execute_complete")

    def execute_complete(self, context: Any, event: Any = None) -> Any:
        return event


class StandInTrainAndCollect(StandInTrain):
    """Launch (nothing), defer on the "job", collect on the worker it resumes on."""

    def execute(self, context: Any) -> None:
        self.defer(trigger=SleepTrigger(JOB_SECONDS, resume=True), method_name="execute_complete")

    def execute_complete(self, context: Any, event: Any = None) -> Any:
        return {"target": self.target, **(event or {})}


class StandInTrainFromTrigger(StandInTrain):
    """The same, started by the scheduler straight in the triggerer: no worker try."""

    start_from_trigger = True
    start_trigger_args = StartTriggerArgs(
        trigger_cls=f"{MODULE}.SleepTrigger", trigger_kwargs={"seconds": JOB_SECONDS},
        next_method="execute_complete", next_kwargs=None, timeout=None,
    )


class StandInCollectFromTrigger(StandInTrain):
    """A collector that also starts and ends in the triggerer (after no wait)."""

    start_from_trigger = True
    start_trigger_args = StartTriggerArgs(
        trigger_cls=f"{MODULE}.SleepTrigger", trigger_kwargs={"seconds": 0},
        next_method="execute_complete", next_kwargs=None, timeout=None,
    )


def _floor_dag_args(dag_id: str) -> dict[str, Any]:
    """What every floor DAG is: manual, one run at a time, retries as ours."""
    return {
        "dag_id": dag_id, "schedule": None, "max_active_runs": 1, "is_paused_upon_creation": True,
        "default_args": {"retries": 2, "retry_delay": timedelta(seconds=5), "weight_rule": WeightRule.ABSOLUTE},
        "params": {"targets": Param(4, type="integer", minimum=1)},
        "tags": ["bench"],
    }


@task
def jobs_to_launch(params: dict[str, Any] | None = None) -> list[str]:
    return [f"target-{i:04d}" for i in range(int((params or {})["targets"]))]


@task(trigger_rule=TriggerRule.ALL_DONE, multiple_outputs=False)
def summarize(rows: list[Any]) -> dict[str, Any]:
    return {"rows": len(list(rows))}


def floor_dag(dag_id: str, train_cls: type[StandInTrain], in_worker_collect: bool) -> None:
    @dag(**_floor_dag_args(dag_id))
    def floor() -> None:
        @task(trigger_rule=TriggerRule.ALL_DONE, map_index_template="{{ mrt_target }}", priority_weight=100,
              multiple_outputs=False)
        def collect(job: str) -> dict[str, Any]:
            from airflow.sdk import get_current_context

            get_current_context()["mrt_target"] = job  # type: ignore[typeddict-unknown-key]
            return {"target": job, "status": "Completed"}

        @task_group(prefix_group_id=False)
        def target(job: str) -> Any:
            train = train_cls(task_id="train", target=job, pool=POOL, map_index_template="{{ task.target }}")
            if in_worker_collect:
                collected = collect(job)
            else:
                collected = StandInCollectFromTrigger(task_id="collect", target=job, priority_weight=100,
                                                      trigger_rule=TriggerRule.ALL_DONE)
            train >> collected
            return collected if in_worker_collect else collected.output

        summarize(target.expand(job=jobs_to_launch()))

    floor()


def one_task_floor_dag(dag_id: str) -> None:
    @dag(**_floor_dag_args(dag_id))
    def floor() -> None:
        train = StandInTrainAndCollect.partial(task_id="train", pool=POOL, map_index_template="{{ task.target }}",
                                               ).expand(target=jobs_to_launch())
        summarize(train.output)

    floor()


floor_dag("mrt_airflow_floor", StandInTrain, in_worker_collect=True)
floor_dag("mrt_airflow_floor_trigger_start", StandInTrainFromTrigger, in_worker_collect=True)
floor_dag("mrt_airflow_floor_no_worker", StandInTrainFromTrigger, in_worker_collect=False)
one_task_floor_dag("mrt_airflow_floor_one_task")
