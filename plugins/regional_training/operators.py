"""The training operator: the provider's ``SageMakerTrainingOperator``, made durable.

What the stock operator does wrong for long multi-region jobs, and what this adds:

* On retry it finds the existing job and starts *another* under a timestamped name.
  Here a task follows its deterministic job (see :mod:`regional_training.launch.attempts`):
  running -> wait for it, completed -> return it, failed/stopped -> one new attempt.
* Deferred, it gives up after 60 polls x 30 s. Here the wait follows the request's
  stopping condition (max runtime, plus max wait for spot) with a margin.
* It polls through a trigger that must use the job's own region: we pass
  ``region_name`` explicitly and the trigger asserts it is set.
* Nothing stops the job when the task is killed or marked failed. Here ``on_kill``
  (worker side) and the trigger's ``on_kill`` (deferred side) call ``StopTrainingJob``
  when a user killed the task, and only then: a worker, scheduler or triggerer shutting
  down (a rolling restart) leaves the job running for the next try to reattach to
  (:func:`killed_by_user`).
* A region without capacity fails the task. Here a capacity or quota error at creation
  (``ResourceLimitExceeded`` ...) or a job that ended for capacity (``CapacityError``,
  spot ``MaxWaitTimeExceeded``, "insufficient capacity") moves the target to its
  next-ranked candidate (prebuilt requests in ``failover``) within the same task try,
  blocking the failed region as SkyPilot's recovery does, at most ``max_failovers``
  times; the moves go to XCom (``placement_moves``, where ``summarize`` finds them) and
  with each deferral to the resumed try. With no candidate left after jobs that ended
  for capacity the task fails without Airflow's retries (:class:`CapacityExhaustedError`:
  a retry would find the same ended jobs), naming SageMaker's reason for each region.
* It only returns the job, so collecting it takes a task of its own downstream: one
  more task instance per target for the scheduler to evaluate in every loop. Here,
  given the target's ``job``, the try that finds the job completed collects it
  (server-side copy to the central bucket, its ``training_runs`` row, the model asset
  event) and returns the row; a job that failed is recorded before the task fails.

With the Param ``launcher`` (docs/batch.md) the same operator follows the job an AWS
Batch array child creates (``batch_array``: it defers until the job exists, then waits as
usual) or submits each attempt as a Batch service job and waits on
:class:`regional_training.launch.batch_jobs.BatchServiceJobTrigger` (``batch_service``).

Which job is the target's job, and what to do next, is decided by
:func:`regional_training.launch.driver.next_step` (the one decision, which the Batch
array child calls too); the ``launcher`` Param picks the backend that describes, creates,
stops and gives the trigger (:mod:`regional_training.launch.backends`). This class only
acts on the step, in the provider's linear shape: create -> defer -> ``execute_complete``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTrainingOperator, serialize
from airflow.providers.amazon.aws.utils import validate_execute_complete_event
from airflow.sdk.exceptions import AirflowFailException

# The trigger lives in a light module (the triggerer imports it in its event loop); this
# name stays for triggers stored under the old path, and for callers.
from regional_training.launch.triggers import StoppingSageMakerTrigger
from regional_training.report.links import SageMakerTrainingJobLink, TrainingJobLogsLink, persist_training_job

# The failover moves' XCom key: run_keys holds every task id and XCom key.
from regional_training.run.run_keys import MOVES_KEY
from regional_training.runtime.aws_hooks import SageMakerHook

# attempts, retry_policy and launch (the resolution, the retry rules, the driver and the
# backends) are imported where a try uses them: the DAG's parse imports this module for
# the class alone, and their dataclasses cost it about 3 ms (bench/dag_benchmarks.py --breakdown).
if TYPE_CHECKING:
    from airflow.sdk import Context

    from regional_training.launch.attempts import Candidate, Move, Resolution
    from regional_training.launch.backends import Backend, Wait
    from regional_training.launch.job import Job

__all__ = ["CapacityExhaustedError", "DurableSageMakerTrainingOperator", "NoCapacityError", "StoppingSageMakerTrigger"]


class NoCapacityError(RuntimeError):
    """Every allowed candidate of a target lacked capacity, one refused at creation:
    Airflow's retry asks it again (retry_policy: ``retry``)."""


class CapacityExhaustedError(NoCapacityError, AirflowFailException):
    """Every allowed candidate's job *ended* for lack of capacity (a spot job's
    ``MaxWaitTimeExceeded``, a ``CapacityError``): a retry would describe the same ended
    jobs and create none, so the task fails at once, without Airflow's retries."""


#: How long ``on_kill`` waits for the server's word on the task's state. The supervisor
#: that sent SIGTERM for a user's action sends SIGKILL 5 s later (Airflow 3.3's
#: ``ActivitySubprocess.kill``, ``escalation_delay``), and ``StopTrainingJob`` needs the rest.
STATE_QUERY_SECONDS = 2.0


def killed_by_user(ti: Any, timeout: float = STATE_QUERY_SECONDS) -> bool | None:
    """Whether the SIGTERM that ran ``on_kill`` came from a user's action on this task.

    Airflow 3.3 sends a running task SIGTERM in two cases (``airflow.sdk.execution_time``):
    the supervisor's heartbeat is refused (HTTP 404/409/410) because a user marked the task
    failed or success or cleared it (then ``restarting``): ``_send_heartbeat_if_needed`` ->
    ``kill(SIGTERM)``; or the supervisor itself got SIGTERM (its worker, a LocalExecutor
    scheduler or a Celery worker, is shutting down) and forwards it to the task
    (``ActivitySubprocess.wait``'s ``_forward_signal``), the task still ``running``. The
    task runner's handler calls ``on_kill`` in both. So: ask the server (through the
    supervisor, ``get_task_states``) for this task instance's state: ``running`` -> False
    (a shutdown), any other -> True, no answer within ``timeout`` (the main thread may hold
    the supervisor channel; the API server may be restarting) -> None. The deferred side
    needs none of this: the triggerer calls a trigger's ``on_kill`` only on a user's action,
    not when it shuts down (``triggerer_job_runner``, "Only first case should invoke on_kill()").
    """
    answer: list[Any] = []

    def ask() -> None:
        try:
            answer.append(ti.get_task_states(dag_id=ti.dag_id, map_index=ti.map_index, task_ids=[ti.task_id],
                                             run_ids=[ti.run_id]))
        except Exception as err:  # no supervisor, API unreachable: unknown
            answer.append(err)

    # A thread, not a call: the handler runs on the main thread, which may be inside a
    # request to the supervisor holding its channel's lock.
    thread = threading.Thread(target=ask, name="on_kill-state", daemon=True)
    thread.start()
    thread.join(timeout)
    if not answer or not isinstance(answer[0], dict):
        return None
    key = ti.task_id if ti.map_index is None or ti.map_index < 0 else f"{ti.task_id}_{ti.map_index}"
    states = answer[0].get(ti.run_id) or {}
    if key not in states:
        return None
    return str(states[key]) != "running"


def _launcher(context: Context) -> str:
    """The run's ``launcher`` Param (``airflow`` when absent): decided at execute time."""
    return str((context.get("params") or {}).get("launcher") or "airflow")


class DurableSageMakerTrainingOperator(SageMakerTrainingOperator):
    """Create-or-reattach a deterministic training job in ``region_name`` and wait for it.

    :param config: the ``CreateTrainingJob`` request; its ``TrainingJobName`` is the
        deterministic base name (attempts append ``-a<N>``).
    :param region_name: the region the job runs in (required, templated, mappable).
    :param failover: the ranked alternatives, as :class:`~regional_training.launch.attempts.Candidate`
        dicts (``{"request": ..., "region": ...}``).
    :param max_failovers: how many moves to alternatives one target may make.
    :param job: instead of the four above and ``checked_inputs``, the target's job or a reference to it
        (``jobs_to_launch``'s item, :func:`regional_training.launch.jobs.job_reference`), from
        which they are taken when a try starts or resumes: what the DAG's mapped task
        passes (see :meth:`_start`).
    :param checked_inputs: the input URIs of ``config`` that pre-flight found in
        ``region_name`` (taken from ``job`` too): the provider's ``create_training_job``
        does not check them again (:class:`regional_training.runtime.aws_hooks.SageMakerHook`).
    """

    # Templated so a mapped task group can pass them (its arguments resolve at rendering).
    template_fields: Sequence[str] = (*SageMakerTrainingOperator.template_fields, "failover", "max_failovers",
                                      "job")
    # The provider's links would point at the first region; these follow the current job.
    operator_extra_links = (SageMakerTrainingJobLink(), TrainingJobLogsLink())

    def __init__(
        self, *, failover: list[dict[str, Any]] | None = None, max_failovers: int = 0,
        job: dict[str, Any] | None = None, checked_inputs: list[str] | None = None,
        **kwargs: Any
    ) -> None:
        kwargs.setdefault("check_if_job_exists", False)  # attempts.resolve decides
        kwargs.setdefault("print_log", False)
        kwargs.setdefault("deferrable", True)
        if job is not None:
            kwargs.setdefault("config", {})  # taken from the job once rendered
        super().__init__(**kwargs)
        self.failover = failover if failover is not None else []
        self.max_failovers = max_failovers
        self.job = job
        #: The planned request's input URIs pre-flight found (from ``job``): not checked again.
        self.checked_inputs = checked_inputs or []
        #: The job this try acts on (region, name), for ``on_kill``.
        self._current: tuple[str, str] | None = None
        #: The running try's task instance (``context["ti"]``), whose state ``on_kill`` asks.
        self._ti: Any = None
        #: The run's ``launcher`` Param (:func:`_launcher`), set when a try starts or resumes.
        self._launcher = "airflow"
        #: The run's Params, as the try that started or resumed read them.
        self._params: dict[str, Any] = {}
        #: :meth:`_hook`'s hooks by region.
        self._hooks: dict[str, SageMakerHook] = {}
        #: The whole job ``job`` stands for, once a try has started: what collection records.
        self.target_job: Job | None = None
        #: (region, job name) the links name (XCom ``mrt_training_job``) and the moves in
        #: XCom, as this try knows them: each is pushed only when it changes. A resumed try
        #: gets both with its deferral's kwargs, so it reads neither back, and the end of a
        #: try formats the links without reading XCom (links.SageMakerTrainingJobLink).
        self.linked_job: tuple[str, str] | None = None
        self._pushed_moves: list[dict[str, Any]] = []

    def _start(self, context: Context) -> None:
        """What every entry point (``execute``, ``execute_complete``, ``resume_following``)
        does first: read the ``launcher`` Param, and take the request, region and failover
        from ``job`` when given.

        Here and not in ``render_template_fields``: the DAG maps this operator, and a
        mapped operator renders through its unmapped copy's field rendering, which does
        not call that method. ``job`` is a reference in the DAG (``jobs_to_launch``'s
        item), and the job itself is pulled here, alone (:func:`regional_training.launch.jobs.
        job_reference` says why).
        """
        self._launcher = _launcher(context)
        self._params = dict(context.get("params") or {})
        self._ti = context.get("ti")
        if self.job is None or self.target_job is not None:
            return
        # Imported here, at run time: jobs pulls in the request builders, which the DAG
        # file's parse does not need.
        from regional_training.launch.job import Job
        from regional_training.launch.jobs import resolve_job, training_operator_kwargs

        # self.job stays what was passed (a reference, in the DAG): the rendered fields
        # then hold the reference only, not the request and failover.
        self.target_job = Job.from_xcom(resolve_job(context.get("ti"), self.job))
        for name, value in training_operator_kwargs(self.target_job).items():
            setattr(self, name, value)

    @property
    def target_key(self) -> str | None:
        """The target this task trains (its request's ``target`` tag): names the mapped task."""
        tags = self.config.get("Tags", []) if isinstance(self.config, dict) else []
        return next((t["Value"] for t in tags if t["Key"] == "target"), None)

    def candidates(self) -> list[Candidate]:
        """The target's candidates in rank order, cut to ``max_failovers`` moves."""
        from regional_training.launch.attempts import Candidate

        if not self.region_name:
            raise ValueError(f"{self.task_id}: region_name is required (the job's region)")
        first = Candidate(request=self.config, region=self.region_name)
        return [first, *(Candidate.from_dict(c) for c in self.failover)][: self.max_failovers + 1]

    def execute(self, context: Context) -> dict[str, Any]:
        self._start(context)
        return self._act(context, refused={})

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None, *,
                         linked_job: list[str] | None = None, moves: list[dict[str, Any]] | None = None
                         ) -> dict[str, Any]:
        from regional_training.launch.attempts import ended_reason, resolve
        from regional_training.launch.driver import describer
        from regional_training.launch.retry_policy import Decision, NotRetriedError, classify

        self._start(context)
        event = validate_execute_complete_event(event)
        refused = self._resumed(context, linked_job, moves)
        if event["status"] == "capacity":  # a Batch service job cancelled after waiting for capacity
            refused[str(event["region"])] = ("CAPACITY", str(event.get("message")))
            return self._act(context, refused=refused)
        resolution = resolve(self.candidates(), describer(self._backend()), refused=refused)
        if event["status"] == "success" or resolution.ended_for_capacity(str(event.get("job_name"))):
            # Success: the resolution returns the job. A job that ended for capacity: it
            # has moved on to the next candidate (or none is left); act within this try.
            return self._act(context, refused=refused, resolution=resolution)
        ended = next((a.description for a in resolution.newest if a is not None and a.name == event.get("job_name")),
                     None)
        # SageMaker's words (FailureReason; a Stopped job's SecondaryStatus and message), not
        # the trigger's (for Stopped, its waiter's "terminal failure state" text).
        message = (f"training job {event.get('job_name')} ended {ended['TrainingJobStatus']}: {ended_reason(ended)}"
                   if ended and ended.get("TrainingJobStatus") in ("Failed", "Stopped") else
                   f"training job {event.get('job_name')} ended {event['status']}: {event.get('message')}")
        self._record_failure(context, resolution)
        if ended and ended.get("TrainingJobStatus") in ("Failed", "Stopped") and \
                classify(ended).decision is Decision.FAILED_JOB:
            # AlgorithmError, a bad request, MaxRuntimeExceeded, a person's stop: a retry
            # would pay for the same end.
            raise NotRetriedError(f"{message} (not retried: clear the task to make one new attempt)")
        raise RuntimeError(message)

    def _act(self, context: Context, *, refused: dict[str, tuple[str, str]],
             resolution: Resolution | None = None) -> dict[str, Any]:
        """Act on :func:`regional_training.launch.driver.next_step` until the task defers,
        returns the collected job or fails."""
        from regional_training.launch import driver
        from regional_training.launch.retry_policy import AIRFLOW_REFUSAL_ADVICE, NotRetriedError, is_automatic_retry

        candidates = self.candidates()
        backend = self._backend()
        ti = context.get("ti")

        def automatic() -> bool:
            # Airflow's automatic retry (not a run's or a clear's first try) makes no new
            # paid job after a deterministic failure (retry_policy.refusal).
            return ti is not None and is_automatic_retry(ti.try_number, ti.max_tries, self.retries or 0)

        while True:
            step = driver.next_step(candidates, backend, refused=refused, automatic_retry=automatic,
                                    resolution=resolution)
            resolution = None
            self._push_moves(context, step.resolution.moves)
            if step.kind == "exhausted" or step.candidate is None:
                self._fail_exhausted(context, step.resolution)
            candidate, attempt = step.candidate, step.attempt
            # The job's real name: under batch_service, the AWSBatch... job Batch made.
            self._current = (candidate.region, step.real_name)
            self.log.info("Training job %s (attempt %d) in %s: %s.", attempt.name, attempt.number, candidate.region,
                          {"wait": "reattaching", "done": "already completed"}.get(step.kind, "creating it"))
            # The task's extra links (console, logs) follow the job it is on now.
            if self.linked_job != self._current:
                persist_training_job(context, self, region_name=candidate.region, job_name=self._current[1],
                                     attempt=attempt.number)
                self.linked_job = self._current
            if step.kind == "done":
                return self._collect(context, step.resolution)
            if step.kind == "wait":
                self._defer(backend.wait(candidate, attempt.name))
            if step.kind == "refuse":
                raise NotRetriedError(f"{step.refusal}; {AIRFLOW_REFUSAL_ADVICE}")
            creator = backend.creator(candidate, attempt.name)
            if creator is not None:  # batch_array: the array child creates it (defers or fails)
                self._defer(creator)
            # Before anything that can start a job (a create, a service job's submit): the
            # budget holds it, and the target's checkpoints reach the new region first.
            self._reserve_budget(context, step.resolution)
            self._carry_checkpoints(context, step.resolution, candidates)
            error = self._create(candidate, attempt.name)
            if error is not None:
                refused[candidate.region] = error
                continue
            self._defer(backend.wait(candidate, attempt.name))

    def _collect(self, context: Context, resolution: Resolution) -> dict[str, Any]:
        """The job completed: collect and record it (``recording.collect_target``) and return
        the row. Without a ``job`` (the operator used on its own) there is nothing to
        record it against: the provider's return value, the job's description."""
        if self.target_job is None:
            attempt = resolution.attempt
            return {"Training": serialize(attempt.description if attempt and attempt.description else {})}
        from regional_training.record import recording
        from regional_training.run import run_context

        return recording.collect_target(run_context.current_run(), self.target_job,
                                        moves=[m.to_dict() for m in resolution.moves], latest=resolution.latest)

    def _record_failure(self, context: Context, resolution: Resolution) -> None:
        """Record a job that failed or found no capacity before the task fails, so its
        region's row is there while other targets still train. If that fails too, the
        training error stays the task's error: ``record_late`` records the target later."""
        if self.target_job is None or "ti" not in context:
            return
        try:
            self._collect(context, resolution)
        except Exception as err:
            self.log.warning("Could not record %s now (record_late records it): %s: %s",
                             self.config.get("TrainingJobName"), type(err).__name__, err)

    def resume_following(self, context: Context, event: dict[str, Any] | None = None, *,
                         linked_job: list[str] | None = None, moves: list[dict[str, Any]] | None = None
                         ) -> dict[str, Any]:
        """``launcher=batch_array``: look again for the job the array child makes."""
        self._start(context)
        return self._act(context, refused=self._resumed(context, linked_job, moves))

    def _reserve_budget(self, context: Context, resolution: Resolution) -> None:
        """Issue 31: no launch may push the run's committed spend over ``budget_usd``: the
        job is reserved in the run's ledger first, or the task fails naming the target
        (``budget.OverBudgetError``). Outside the DAG (no ``job``, no such Param): nothing."""
        if self.target_job is not None and "budget_usd" in (context.get("params") or {}):
            from regional_training.launch import budget
            from regional_training.run import run_context

            budget.reserve_for(run_context.current_run(), self.target_job, resolution)

    def _carry_checkpoints(self, context: Context, resolution: Resolution, candidates: list[Candidate]) -> None:
        """Issue 31: the target's newest checkpoint follows it to the new job's region
        (:func:`regional_training.record.checkpoint_carry.carry_for`). Outside the DAG (no ``job``,
        no such Param): nothing."""
        if self.target_job is not None and "carry_checkpoints" in (context.get("params") or {}):
            from regional_training.record import checkpoint_carry
            from regional_training.run import run_context

            checkpoint_carry.carry_for(run_context.current_run(), str(self.target_key), resolution, candidates)

    def _backend(self) -> Backend:
        """The run's ``launcher``'s backend (:data:`regional_training.launch.backends.REGISTRY`),
        reaching AWS through this operator's hooks and connection."""
        from regional_training.launch.backends import Connection, backend_for

        return backend_for(self._launcher, Connection(
            hook=self._hook, aws_conn_id=self.aws_conn_id, botocore_config=self.botocore_config, verify=self.verify,
            poll_seconds=self.check_interval, params=self._params, ti=self._ti, target_key=self.target_key))

    def _create(self, candidate: Candidate, name: str) -> tuple[str, str] | None:
        """Create attempt ``name`` through the run's backend (:func:`regional_training.launch.
        driver.create`: ``None`` once the job exists, ``(code, message)`` when refused for
        capacity). A method, so a test DAG can hold a try between the create and its
        deferral (tests/e2e/dags/mrt_launch_window.py)."""
        from regional_training.launch import driver

        return driver.create(self._backend(), candidate, name, self.log)

    def _defer(self, wait: Wait) -> NoReturn:
        """Wait, deferred (no worker held), on what the backend said to wait on."""
        self.defer(trigger=wait.trigger, method_name=wait.method_name,
                   timeout=None if wait.timeout_seconds is None else timedelta(seconds=wait.timeout_seconds),
                   kwargs=self._resume_kwargs())

    def _hook(self, region: str) -> SageMakerHook:
        """The provider's hook in one candidate's region (``self.hook`` is bound to
        ``region_name``), one per region and try: each hook makes its own boto3 session,
        about 1 s of a try on the 2-core stack, and a try describes, then creates."""
        if region not in self._hooks:
            # Pre-flight checked the planned request's inputs in the planned region only.
            checked = self.checked_inputs if region == self.region_name else ()
            self._hooks[region] = SageMakerHook(aws_conn_id=self.aws_conn_id, region_name=region, verify=self.verify,
                                                config=self.botocore_config, checked_s3_urls=checked)
        return self._hooks[region]

    def _resume_kwargs(self) -> dict[str, Any]:
        """What the resumed try needs from this one: the job its links name and its moves."""
        return {"linked_job": list(self.linked_job) if self.linked_job else None, "moves": self._pushed_moves}

    def _resumed(self, context: Context, linked_job: list[str] | None,
                 moves: list[dict[str, Any]] | None) -> dict[str, tuple[str, str]]:
        """Take what the deferring try left (:meth:`_resume_kwargs`); the regions whose
        creation was refused earlier in this try (they left no job), from its moves. A
        deferral without those kwargs (made by an earlier version) reads the moves back."""
        if moves is None:
            ti = context.get("ti")
            moves = (ti.xcom_pull(task_ids=ti.task_id, key=MOVES_KEY, map_indexes=ti.map_index) or []
                     if ti is not None else [])
        self._pushed_moves = list(moves)
        self.linked_job = (linked_job[0], linked_job[1]) if linked_job else None
        return {m["from_region"]: (m["error_code"], m["error_message"]) for m in self._pushed_moves}

    def _push_moves(self, context: Context, moves: tuple[Move, ...]) -> None:
        value = [m.to_dict() for m in moves]
        if value != self._pushed_moves:
            if "ti" in context:
                context["ti"].xcom_push(key=MOVES_KEY, value=value)
            self._pushed_moves = value
        for move in moves:
            self.log.info("Move %d: %s (%s) -> %s (%s) after %s.", move.move_number, move.from_region,
                          move.from_option, move.to_region or "nothing", move.to_option, move.error_code)

    def _fail_exhausted(self, context: Context, resolution: Resolution) -> NoReturn:
        """No candidate left: record the target's newest job, then fail the task; without
        Airflow's retries when every candidate's job ended for capacity (a retry would
        describe the same ended jobs and create none: issue 33)."""
        from regional_training.launch.attempts import CAPACITY_EXHAUSTED_ADVICE, exhausted_message

        self._record_failure(context, resolution)
        message = exhausted_message(self.config["TrainingJobName"], resolution.moves, self.max_failovers)
        if not resolution.retry_may_create:
            raise CapacityExhaustedError(f"{message}; not retried: {CAPACITY_EXHAUSTED_ADVICE}, and trigger a new run)")
        raise NoCapacityError(message)

    def on_kill(self) -> None:
        region, name = self._current or (self.region_name or "", self.config.get("TrainingJobName"))
        if not name or not region:
            return
        # Outside a supervised try (no task instance: a direct call) the caller asked to kill.
        by_user = True if self._ti is None else killed_by_user(self._ti, STATE_QUERY_SECONDS)
        if not by_user:
            # A rolling restart must never stop training; unknown is treated the same: a
            # job left running is reattached by the next try, a stopped one is lost work.
            self.log.info("Task process terminated (%s): training job %s in %s left running; the next try "
                          "reattaches to it.", "not by a user: a component shutting down" if by_user is False
                          else "its state unknown", name, region)
            return
        from regional_training.launch import driver

        self.log.info("Task killed: stopping training job %s in %s.", name, region)
        driver.stop(self._backend(), region, name, self.log)
