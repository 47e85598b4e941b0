"""The training operator: the provider's ``SageMakerTrainingOperator``, made durable.

What the stock operator does wrong for long multi-region jobs, and what this adds:

* On retry it finds the existing job and starts *another* under a timestamped name.
  Here a task follows its deterministic job (see :mod:`regional_training.attempts`):
  running -> wait for it, completed -> return it, failed/stopped -> one new attempt.
* Deferred, it gives up after 60 polls x 30 s. Here the wait follows the request's
  stopping condition (max runtime, plus max wait for spot) with a margin.
* It polls through a trigger that must use the job's own region: we pass
  ``region_name`` explicitly and the trigger asserts it is set.
* Nothing stops the job when the task is killed or marked failed. Here ``on_kill``
  (worker side) and the trigger's ``on_kill`` (deferred side) call ``StopTrainingJob``.
* A region without capacity fails the task. Here a capacity or quota error at creation
  (``ResourceLimitExceeded`` ...) or at start (a job that failed for capacity) moves the
  target to its next-ranked candidate (prebuilt requests in ``failover``), blocking the
  failed region as SkyPilot's recovery does, at most ``max_failovers`` times; each move
  is pushed to XCom (``placement_moves``) for the collector to record.
"""

from __future__ import annotations

import copy
import math
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTrainingOperator, serialize
from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger
from botocore.exceptions import ClientError

from regional_training.attempts import LIVE_STATES, RETRYABLE_END_STATES, latest_attempt, next_action
from regional_training.aws_io import describe_or_none

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Extra time beyond the stopping condition: start-up, download, upload.
WAIT_MARGIN_SECONDS = 3600
#: Errors that mean "no capacity here", not "the job is broken": move to another region.
CAPACITY_ERROR_CODES = frozenset(
    {"ResourceLimitExceeded", "CapacityError", "InsufficientCapacityError", "InsufficientInstanceCapacity"}
)


def is_capacity_error(text: str | None) -> bool:
    """Whether an error code or ``FailureReason`` says the region lacks capacity or quota."""
    if not text:
        return False
    lowered = text.lower()
    return any(code.lower() in lowered for code in CAPACITY_ERROR_CODES) or "insufficient capacity" in lowered


class NoCapacityError(RuntimeError):
    """Every allowed candidate of a target lacked capacity."""


def wait_limit_seconds(config: dict[str, Any]) -> int:
    """How long a job of this request may legitimately take, end to end."""
    stopping = config.get("StoppingCondition", {})
    runtime = int(stopping.get("MaxRuntimeInSeconds", 86400))
    # With managed spot, MaxWaitTimeInSeconds already includes the runtime.
    total = max(runtime, int(stopping.get("MaxWaitTimeInSeconds", 0)))
    return total + WAIT_MARGIN_SECONDS


class StoppingSageMakerTrigger(SageMakerTrigger):
    """Polls the job in its own region; stops it when a user kills the deferred task."""

    def __init__(self, **kwargs: Any) -> None:
        if not kwargs.get("region_name"):
            raise ValueError("StoppingSageMakerTrigger needs the job's region_name")
        super().__init__(**kwargs)

    async def on_kill(self) -> None:
        self.log.info("Task killed: stopping training job %s in %s.", self.job_name, self.region_name)
        async with await self.hook().get_async_conn() as client:
            try:
                await client.stop_training_job(TrainingJobName=self.job_name)
            except client.exceptions.ClientError as err:  # already ended: nothing to stop
                self.log.warning("StopTrainingJob %s: %s", self.job_name, err)


class DurableSageMakerTrainingOperator(SageMakerTrainingOperator):
    """Create-or-reattach a deterministic training job in ``region_name`` and wait for it.

    :param config: the ``CreateTrainingJob`` request; its ``TrainingJobName`` is the
        deterministic base name (attempts append ``-a<N>``).
    :param region_name: the region the job runs in (required, templated, mappable).
    """

    def __init__(
        self, *, failover: list[dict[str, Any]] | None = None, max_failovers: int = 0, **kwargs: Any
    ) -> None:
        kwargs.setdefault("check_if_job_exists", False)  # attempts.next_action decides
        kwargs.setdefault("print_log", False)
        kwargs.setdefault("deferrable", True)
        super().__init__(**kwargs)
        self.failover = list(failover or [])
        self.max_failovers = max_failovers
        self._job_name: str | None = None

    def execute(self, context: Context) -> dict[str, Any]:
        if not self.region_name:
            raise ValueError(f"{self.task_id}: region_name is required (the job's region)")
        candidates = [{"config": copy.deepcopy(self.config), "region_name": self.region_name}, *self.failover]
        candidates = candidates[: self.max_failovers + 1]
        # A retry after a failover must follow the job it moved to, not start the first
        # candidate again: at most one live job per target.
        for candidate in candidates:
            self._use(candidate)
            latest = latest_attempt(self.config["TrainingJobName"], self._describe)
            if latest and (latest.status in LIVE_STATES or latest.status == "Completed"):
                return self._run_candidate(context)
        moves: list[dict[str, Any]] = []
        blocked: set[str] = set()
        for index, candidate in enumerate(candidates):
            if candidate["region_name"] in blocked:
                continue
            self._use(candidate)
            latest = latest_attempt(self.config["TrainingJobName"], self._describe)
            if latest and latest.status in RETRYABLE_END_STATES and is_capacity_error(
                (latest.description or {}).get("FailureReason")
            ):
                reason = (latest.description or {}).get("FailureReason", "")
                self._move(context, moves, blocked, candidate, candidates[index + 1 :], "CapacityError", reason)
                continue
            try:
                return self._run_candidate(context)
            except ClientError as err:
                error = err.response.get("Error", {})
                if not is_capacity_error(error.get("Code")) and not is_capacity_error(error.get("Message")):
                    raise
                self._move(context, moves, blocked, candidate, candidates[index + 1 :],
                           str(error.get("Code")), str(error.get("Message")))
        tried = ", ".join(f"{m['from_region']} ({m['from_option']})" for m in moves) or "no candidate"
        raise NoCapacityError(
            f"no capacity for {candidates[0]['config']['TrainingJobName']}: tried {tried}; "
            f"no further candidate within max_failovers={self.max_failovers}"
        )

    def _run_candidate(self, context: Context) -> dict[str, Any]:
        base_name = self.config["TrainingJobName"]
        limit = wait_limit_seconds(self.config)
        self.max_ingestion_time = limit
        self.max_attempts = math.ceil(limit / self.check_interval) + 1
        action, attempt = next_action(base_name, self._describe)
        self._job_name = attempt.name
        self.log.info("Training job %s (attempt %d) in %s: %s.", attempt.name, attempt.number, self.region_name,
                      {"create": "creating it", "wait": "reattaching", "done": "already completed"}[action])
        if action == "done":
            return {"Training": serialize(attempt.description or {})}
        if action == "wait":
            self._defer_on(attempt.name, limit)
        self.config["TrainingJobName"] = attempt.name
        result = super().execute(context)
        return result  # type: ignore[no-any-return]

    def _use(self, candidate: dict[str, Any]) -> None:
        """Point the operator at one candidate: its request and region (and a new hook)."""
        self.config = copy.deepcopy(candidate["config"])
        self.region_name = candidate["region_name"]
        self.__dict__.pop("hook", None)  # the cached hook is bound to the previous region

    def _move(self, context: Context, moves: list[dict[str, Any]], blocked: set[str], candidate: dict[str, Any],
              rest: list[dict[str, Any]], code: str, message: str) -> None:
        blocked.add(candidate["region_name"])
        following = next((c for c in rest if c["region_name"] not in blocked), None)
        move = {
            "move_number": len(moves) + 1,
            "from_region": candidate["region_name"],
            "from_option": _tag(candidate["config"], "purchase_option"),
            "to_region": following["region_name"] if following else None,
            "to_option": _tag(following["config"], "purchase_option") if following else None,
            "error_code": code,
            "error_message": message[:1000],
        }
        moves.append(move)
        self.log.warning("No capacity for %s in %s (%s: %s); moving to %s.", candidate["config"]["TrainingJobName"],
                         candidate["region_name"], code, message, move["to_region"] or "nothing")
        if "ti" in context:
            context["ti"].xcom_push(key="placement_moves", value=moves)

    def defer(self, *, trigger: Any, method_name: str, kwargs: dict[str, Any] | None = None,
              timeout: timedelta | int | float | None = None) -> NoReturn:
        # The base class defers on the stock trigger; swap in the stopping, region-pinned one.
        if isinstance(trigger, SageMakerTrigger) and not isinstance(trigger, StoppingSageMakerTrigger):
            trigger = self._trigger(trigger.job_name)
        super().defer(trigger=trigger, method_name=method_name, kwargs=kwargs, timeout=timeout)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
        # Resumed in a fresh operator: find the candidate (request, region) whose job the
        # trigger waited on from the job's name (the base name or "<base>-a<N>").
        name = str((event or {}).get("job_name", ""))
        for candidate in [{"config": self.config, "region_name": self.region_name}, *self.failover]:
            base = candidate["config"]["TrainingJobName"]
            if name == base or re.fullmatch(rf"{re.escape(base)}-a\d+", name):
                self._use(candidate)
                break
        return super().execute_complete(context, event)

    def _trigger(self, job_name: str) -> StoppingSageMakerTrigger:
        return StoppingSageMakerTrigger(
            job_name=job_name,
            job_type="Training",
            waiter_delay=self.check_interval,
            waiter_max_attempts=self.max_attempts,
            aws_conn_id=self.aws_conn_id,
            region_name=self.region_name,
            verify=self.verify,
            botocore_config=self.botocore_config,
        )

    def _defer_on(self, job_name: str, limit: int) -> NoReturn:
        self.defer(trigger=self._trigger(job_name), method_name="execute_complete", timeout=timedelta(seconds=limit))

    def _describe(self, name: str) -> dict[str, Any] | None:
        return describe_or_none(self.hook, name)

    def on_kill(self) -> None:
        name = self._job_name or self.config.get("TrainingJobName")
        if not name:
            return
        self.log.info("Task killed: stopping training job %s in %s.", name, self.region_name)
        try:
            self.hook.conn.stop_training_job(TrainingJobName=name)
        except Exception as err:  # already ended, or never created
            self.log.warning("StopTrainingJob %s: %s", name, err)


def _tag(config: dict[str, Any], key: str) -> str | None:
    return next((t["Value"] for t in config.get("Tags", []) if t["Key"] == key), None)
