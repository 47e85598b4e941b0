"""Recording a run's targets: every write of a target's outcome, apart from the summary.

* :func:`collect_target`: one target's job collected (its model copied server-side to the
  central bucket) and its row UPSERTed with its failover moves; what the training task
  does when its job ends (the operator calls it), and what the late recording does;
* :func:`record_unrecorded`: the late recording, the DAG's ``record_late`` task (after
  every training task, before ``summarize``): each launched target whose training task
  could not record it (failed, or never ran);
* :func:`reuse_completed`: a target identical to a recent completed job is not launched:
  the earlier model is copied and the target recorded ``Reused``;

A target recorded after ``summarize`` ran (a cleared training task) has the summary and
the report derived again from the database (:mod:`regional_training.record.run_summary`).

Below the operator and the task bodies (it imports neither): the summary
(:mod:`regional_training.report.summary`, :mod:`regional_training.record.run_summary`, the ``summarize``
task) only reads what is recorded here. Jobs arrive typed (:class:`regional_training.
launch.job.Job`): the XCom payload is read where a task pulls it. Every write is an
overwrite or an UPSERT keyed by the run, so a retried or cleared task records again
without adding anything.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from regional_training.run.run_keys import JOBS_TO_LAUNCH, MOVES_KEY, REUSED_KEY, TRAIN

if TYPE_CHECKING:
    from regional_training.launch.job import Job
    from regional_training.run.run_context import Run

log = logging.getLogger(__name__)


def reuse_completed(run: Run, jobs: Sequence[Job]) -> tuple[list[Job], list[dict[str, Any]]]:
    """``(jobs to launch, Reused rows)``; each reused model is copied server-side within
    the central bucket (as collection copies a trained one) and announced as a model
    asset event, like a collected one. Every job to launch gets its reuse keys."""
    from regional_training.plan import reuse
    from regional_training.runtime import aws_io

    settings = run.settings
    image = reuse.image_reference(settings.training_image_repository, settings.training_image_tag)
    window = reuse.parse_window(run.params.get(reuse.PARAM_NAME))
    if window is not None and run.as_of is None:
        raise ValueError(f"Param {reuse.PARAM_NAME!r} is set but the run has no as-of time (run_after)")
    launch: list[Job] = []
    reused: list[dict[str, Any]] = []
    with run.campaign_db() as conn:
        for planned in jobs:
            # A scan point may run another tag of the image: its own (jobs.build_jobs) decides.
            keys = reuse.job_keys(conn, planned, training_image=planned.training_image or image)
            job = planned.with_field("reuse_keys", reuse_keys=keys)
            key = reuse.key_for_copy(job, job.target.copy_id)
            source = None
            if key is not None and window is not None and run.as_of is not None:
                source = reuse.find_reusable(conn, key, window=window, as_of=run.as_of, dag_id=run.dag_id,
                                             run_id=run.run_id)
            if source is None or key is None:
                launch.append(job)
                continue
            model_uri = run.layout.artifact(job.target.target_key)
            aws_io.copy_object(source["model_artifact_uri"], model_uri, dest_region=settings.central_region)
            row = reuse.reused_row(source, key, target=job.planned.target_xcom(), dag_id=run.dag_id,
                                   run_id=run.run_id, model_artifact_uri=model_uri)
            reuse.record_reused(conn, row)
            log.info("Reused %s: identical to %s/%s (job %s), ended %s; not trained again.", row["target_key"],
                     source["run_id"], source["target_key"], source["training_job_name"], source["training_end_time"])
            run.emit_model_event(row, campaign_key=job.target.campaign_key)
            reused.append(row)
    if window is not None:
        log.info("Reuse within %s: %d of %d target(s) reused, %d to train.", window, len(reused), len(jobs),
                 len(launch))
    return launch, reused


def reused_rows(run: Run) -> list[dict[str, Any]]:
    """The ``Reused`` rows ``jobs_to_launch`` recorded for this run (none outside a task)."""
    if run.ti is None:
        return []
    return [dict(r) for r in run.ti.xcom_pull(task_ids=JOBS_TO_LAUNCH, key=REUSED_KEY) or []]


def _describer(run: Run) -> Any:
    """``describe(region, name)`` of a target's attempt: under ``launcher=batch_service``
    the job Batch made for the attempt's service job (batch_jobs.describe_service_attempt),
    else the training job of that name."""
    from regional_training.runtime import aws_io

    if run.params.get("launcher") == "batch_service":
        from regional_training.launch import batch_jobs  # only then: it imports the provider's Batch operator

        return batch_jobs.service_attempt_describer()
    return lambda region, name: aws_io.describe_training_job(name, region=region)


def collect_target(run: Run, job: Job, *, moves: list[dict[str, Any]],
                   latest: tuple[int, Any] | None = None, refresh: bool = True) -> dict[str, Any]:
    """Collect one target's job and record it with its failover moves: what its training
    task does when its job ends (``latest``, just resolved there), and what ``record_late``
    records for a launched target that has no row (:func:`record_unrecorded`, which
    passes ``refresh=False`` and derives the summary again once, after all of them)."""
    from regional_training.plan import reuse
    from regional_training.record import collection
    from regional_training.runtime import aws_io, campaign_db

    settings = run.settings
    with run.campaign_db() as conn:
        key = job.target.target_key
        for move in moves:
            campaign_db.execute(conn, "record_placement_move.sql",
                                {"dag_id": run.dag_id, "run_id": run.run_id, "target_key": key, **move})
        row = collection.collect(
            job=job,
            dag_id=run.dag_id,
            run_id=run.run_id,
            layout=run.layout,
            describe=_describer(run),
            copy=lambda src, dst: aws_io.copy_object(src, dst, dest_region=settings.central_region),
            # With the inputs of the copy it trained on (after any failover), so a later
            # run can reuse it (regional_training.plan.reuse).
            upsert=lambda row: campaign_db.execute(
                conn, "upsert_training_run.sql",
                {**row, **reuse.trained_fields(reuse.key_for_copy(job, row["copy_id"]))}),
            latest=latest,
        )
        run.emit_model_event(row, campaign_key=job.target.campaign_key)
    # Committed (and the connection closed) before the summary is derived again: a target
    # recorded after summarize ran (a cleared task) makes the report say so (run_summary).
    if refresh:
        from regional_training.record import run_summary

        run_summary.refresh_after_late_record(run, key)
    return {**row, "moves": moves}


def record_unrecorded(run: Run, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Record each launched target that has no row yet, as it stands: its training task
    failed or never ran, so its job failed, was never created, or completed and could not
    be recorded then. The same idempotent collection as the training task's; a target
    that still cannot be recorded is logged and left to the verdict, which names it."""
    from regional_training.launch.job import Job
    from regional_training.launch.jobs import resolve_job

    if run.ti is None or run.params.get("dry_run"):
        return []
    recorded = {str(r["target_key"]) for r in rows}
    late = []
    for index, item in enumerate(run.ti.xcom_pull(task_ids=JOBS_TO_LAUNCH) or []):
        if str(item["target_key"]) in recorded:
            continue
        try:
            job = Job.from_xcom(resolve_job(run.ti, item))  # the XCom edge: typed from here on
            moves = list(run.ti.xcom_pull(task_ids=TRAIN, key=MOVES_KEY, map_indexes=index) or [])
            late.append(collect_target(run, job, moves=moves, refresh=False))
        except Exception as err:  # the verdict names the target; the other targets are still recorded
            log.warning("Target %s (train[%d]) could not be recorded: %s: %s", item["target_key"], index,
                        type(err).__name__, err)
    if late:
        log.info("Recorded %d target(s) whose training task did not: %s", len(late),
                 ", ".join(f"{r['target_key']} ({r['status']})" for r in late))
        # Before summarize ran (the normal order) this writes nothing: summarize follows and
        # reads these rows. After it (this task cleared on its own) once, not once per target.
        from regional_training.record import run_summary

        run_summary.refresh_after_late_record(run, ", ".join(str(r["target_key"]) for r in late))
    return late
