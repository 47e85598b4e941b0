"""The DAG's tasks, one function each; the DAG file only wires them.

Every task function takes the :class:`~regional_training.run.run_context.Run` it belongs to
(:func:`current_run` inside a task), which is the one way to reach the run's ids, Params,
deployment settings, S3 layout and the campaign database. Each task is a transaction: its
outputs are keyed by the DAG run and written with overwrite or UPSERT, so a retry or a
cleared task repeats it without side effects. What a task records (collection, late
recording, reuse copies) is :mod:`regional_training.record.recording`'s; the summary only reads.
Task ids and XCom keys are :mod:`regional_training.run.run_keys`'.

Imports of the modules doing the work happen inside the functions: the DAG file imports
this module at parse time, which must stay cheap (``bench/dag_benchmarks.py``). Nothing
below imports this module back (tests/unit/test_import_graph.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from regional_training.run.run_keys import RECORDED_LATE, REUSED_KEY, SELECT_TARGETS, TRAIN

if TYPE_CHECKING:
    from regional_training.run.run_context import Run

log = logging.getLogger(__name__)


def current_run() -> Run:
    """:func:`regional_training.run.run_context.current_run`, imported when a task runs: the DAG
    file's task bodies call ``tasks.current_run()`` (Batch's child too), and its parse need
    not run that module (a dataclass: ~1 ms of every parse, issue 28)."""
    from regional_training.run import run_context

    return run_context.current_run()


def select_targets(run: Run) -> dict[str, Any]:
    """Place and validate the run's targets in the campaign database."""
    from regional_training.launch.retry_policy import by_error_class
    from regional_training.plan import limits, reuse
    from regional_training.plan.params import param_specs
    from regional_training.plan.selection import regions_to_check
    from regional_training.plan.selection import select_targets as place
    from regional_training.report.verdict import nothing_to_do_reason
    from regional_training.runtime import strict_params

    # Strict Params first: an unknown key or a float for an integer fails here, before
    # anything is read or launched, and is not retried.
    strict_params.check_conf(run.conf, param_specs())
    with by_error_class(SELECT_TARGETS), run.campaign_db() as conn:
        reuse.parse_window(run.params.get(reuse.PARAM_NAME))  # a bad window fails here, not at launch
        result = place(conn, run.params, dataset_ids=_ready_dataset_ids(run, conn), allow_list=_scan_allow_list(run),
                       in_use=_in_use_counter(run, conn), array_lines=_array_lines(run))
    targets = result["targets"]
    limits.check_regions(regions_to_check(run.params, targets))
    limits.check_target_count(len(targets))
    reason = nothing_to_do_reason(planned=len(targets), dry_run=False, left_out=result["left_out"])
    if reason:
        log.info("Nothing to train: %s.", reason)
    return result


def _array_lines(run: Run) -> list[dict[str, Any]] | None:
    """The Param ``array_file``'s lines (``None``: not set, the campaign database places
    the targets): its text, or the file at its ``s3://`` URI (read in the central region)."""
    from regional_training.plan import array_file
    from regional_training.runtime import aws_io

    value = run.params.get(array_file.PARAM_NAME)
    if not value:
        return None
    if array_file.is_uri(value):
        from botocore.exceptions import ClientError

        from regional_training.plan.targets import TargetError

        uri = value.strip()
        try:
            text = aws_io.get_text(uri, region=run.settings.central_region)
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code")
            if code not in ("NoSuchKey", "NoSuchBucket", "404", "AccessDenied", "403"):
                raise  # throttling, a network error: the task's retry may read it
            raise TargetError(f"param {array_file.PARAM_NAME!r}: cannot read {uri} ({code}); upload the file "
                              "there or give its text in the Param") from None
        return array_file.read_input(text, source=f"param {array_file.PARAM_NAME!r} ({uri})")
    return array_file.read_input(value)


def _in_use_counter(run: Run, conn: Any) -> Any:
    """Issue 31: count the instances SageMaker jobs already use per region, except this
    run's own (those its budget ledger reserved: a re-planned run keeps its live jobs)."""
    from regional_training.plan import capacity
    from regional_training.runtime import aws_io, campaign_db

    def count(regions: list[str], instance_type: str) -> dict[str, int]:
        own = {r["job_name"] for r in campaign_db.fetch_dicts(conn, "budget_run_jobs.sql",
                                                              {"dag_id": run.dag_id, "run_id": run.run_id})}
        return capacity.in_use_by_region(regions, instance_type, exclude=own,
                                         client_for=lambda region: aws_io.sagemaker_hook(region).conn)

    return count


def _scan_allow_list(run: Run) -> Any:
    """A parameter scan's allowed image tags and entry points (settings are read only
    for a scan: without one nothing changes)."""
    from regional_training.plan import scan

    if not run.params.get(scan.PARAM_NAME):
        return None
    return scan.load_allow_list(run.settings.training_image_tag)


def _ready_dataset_ids(run: Run, conn: Any) -> list[int] | None:
    """The datasets an asset-triggered run trains (``None``: a timetable or manual run,
    which trains what the Params select); a dataset the DB does not know is a named error."""
    from regional_training.run import assets
    from regional_training.runtime import campaign_db

    selection = assets.dataset_selection(run.context or {})
    if selection is None:
        return None
    campaigns = [d.campaign_key for d in selection]
    rows = campaign_db.fetch_dicts(conn, "ready_datasets.sql",
                                   {"campaign_keys": campaigns, "dataset_keys": [d.dataset_key for d in selection]})
    found = {(r["campaign_key"], r["dataset_key"]): int(r["dataset_id"]) for r in rows}
    unknown = [f"{d.dataset_key} ({d.campaign_key})" for d in selection if (d.campaign_key, d.dataset_key) not in found]
    if unknown:
        raise assets.ReadyEventError(f"asset {assets.DATASET_READY.name!r} event(s) name dataset(s) the campaign "
                                     f"database does not have: {', '.join(unknown)}")
    log.info("Asset-triggered: training only %s.", ", ".join(f"{d.dataset_key} ({d.campaign_key})"
                                                             for d in selection))
    return sorted(found.values())


def render_array_file(run: Run, targets: list[dict[str, Any]]) -> str:
    """Write the array file with the run; returns its URI."""
    from regional_training.plan import array_file
    from regional_training.plan.targets import Target
    from regional_training.runtime import aws_io

    uri = run.layout.array_file
    aws_io.put_text(uri, array_file.render(Target.from_dict(t) for t in targets), region=run.settings.central_region)
    return uri


def build_requests(run: Run, array_uri: str, targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One validated request per line of the stored array file (plus failover requests)."""
    from regional_training.launch.jobs import build_jobs
    from regional_training.runtime import aws_io

    return build_jobs(
        array_text=aws_io.get_text(array_uri, region=run.settings.central_region),
        targets=targets,
        params=run.params,
        settings=run.settings,
        dag_id=run.dag_id,
        run_id=run.run_id,
    )


def jobs_to_launch(run: Run, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The jobs to start: none for a dry run (the mapped tasks are then skipped). In a
    task, each is stored as its own XCom and the list holds references to them
    (:func:`regional_training.launch.jobs.job_reference`); outside one, the jobs themselves.

    Each job gets its reuse keys (``reuse_keys``, for its collection to record). With the
    Param ``reuse_completed_within`` set, a target whose identical job completed within
    the window is not launched: its earlier model is copied to this run's place and the
    target recorded ``Reused`` (:func:`regional_training.record.recording.reuse_completed`; the rows go to the summary
    through XCom, ``run_keys.REUSED_KEY``). Before the first launch, every output bucket and
    train-channel prefix is checked in its region (:mod:`regional_training.launch.preflight`):
    a missing one fails here, naming it, with no job created.
    """
    from regional_training.launch import preflight
    from regional_training.launch.job import Job
    from regional_training.launch.jobs import job_reference
    from regional_training.record import recording

    if run.params.get("dry_run") or not jobs:
        return []
    # The XCom edge: typed once here, back to payloads (key for key, as before) at the push.
    launch, reused = recording.reuse_completed(run, [Job.from_xcom(job) for job in jobs])
    if run.ti is not None:  # always pushed (maybe empty): a retry replaces the earlier try's rows
        run.ti.xcom_push(key=REUSED_KEY, value=reused)
    if launch:
        # Pre-flight checks each planned placement (target and request), never the alternatives.
        checks = preflight.preflight([job.planned.to_xcom() for job in launch])
        log.info("Pre-flight: %d bucket/prefix check(s) passed.", checks)
        launch = [preflight.with_checked_inputs(job) for job in launch]
    payloads = [job.to_xcom() for job in launch]
    if run.ti is None:
        return payloads
    # Each job as its own XCom, the expansion over references (jobs.job_reference says why).
    references = [job_reference(job, run.ti.task_id) for job in payloads]
    for job, reference in zip(payloads, references, strict=True):
        run.ti.xcom_push(key=reference["xcom_key"], value=job)
    return references


def collected_rows(value: Any) -> list[dict[str, Any]]:
    """The training tasks' rows as a list. Airflow hands over a lazy sequence of the
    mapped task's return values (``None`` for a task that failed), a single dict when it
    expanded once, ``None`` when none ran."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [dict(value)]
    # One slice is one request; iterating fetches item by item until a "not found",
    # which the task SDK logs at error level.
    items = value[:] if isinstance(value, Sequence) else list(value)
    return [dict(v) for v in items if v is not None]


def _verdict(run: Run, jobs: list[dict[str, Any]], rows: list[dict[str, Any]],
             left_out: list[dict[str, Any]], *, with_states: bool) -> Any:
    """The verdict from the plan (``jobs``), never from what arrived (``rows``)."""
    from regional_training.report.verdict import compute_verdict, states_by_map_index

    train_states = None
    if with_states and run.ti is not None:
        states = run.ti.get_task_states(dag_id=run.dag_id, task_ids=[TRAIN], run_ids=[run.run_id])
        train_states = states_by_map_index(states.get(run.run_id, {}), TRAIN)
    return compute_verdict(jobs, rows, dry_run=bool(run.params.get("dry_run")), left_out=left_out,
                           train_states=train_states)


def record_late(run: Run, rows: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The ``record_late`` task, once every training task has ended: record each launched
    target still without a row (its training task failed or never ran;
    :func:`regional_training.record.recording.record_unrecorded`). Returns the rows it recorded,
    which the watcher adds to the training tasks' own. Idempotent: a cleared try finds
    those targets recorded (their rows are UPSERTs) and records nothing twice."""
    from regional_training.record import recording

    return recording.record_unrecorded(run, collected_rows(rows))


def summarize_run(run: Run, jobs: list[dict[str, Any]] | None, left_out: list[dict[str, Any]] | None
                  ) -> dict[str, Any]:
    """The run summary and report: logged as a table, stored next to the array file.

    Reads only: it runs after ``record_late`` (:func:`record_late`), which recorded every
    target it could, and derives the summary and the report from what the campaign
    database records for the run (:func:`regional_training.record.run_summary.write`, the same
    function a target recorded after this task ran calls again; a scan's best models get
    their pointers there). Without a plan (``select_targets`` or a step after it refused:
    ``jobs`` is ``None``) there is nothing to summarize: skipped, not retried, and the
    watcher fails the run naming why."""
    from airflow.sdk.exceptions import AirflowSkipException

    from regional_training.record import run_summary
    from regional_training.run import assets

    if jobs is None:
        raise AirflowSkipException("no plan: select_targets, render_array_file or build_requests did not succeed "
                                   "(see its log); nothing was launched, nothing to summarize")
    # A scan's best models get their stable pointers there (runs/<run>/best/<dataset>/).
    result = run_summary.write(run, jobs, list(left_out or []))
    uri = run.layout.summary
    for line in result["text"].splitlines():
        log.info("%s", line)
    log.info("Report: %s", run.layout.report)
    if run.context is not None and "outlet_events" in run.context:  # the mrt_run_summary event
        run.context["outlet_events"][assets.RUN_SUMMARY].extra = assets.summary_event_extra(
            dag_id=run.dag_id, run_id=run.run_id, verdict=result["verdict"], rows=result["rows"], summary_uri=uri,
            report_uri=run.layout.report)
    return {"summary_uri": uri, "report_uri": run.layout.report, "headline": result["verdict"]["headline"]}


def check_regions(run: Run, run_summary: dict[str, Any] | None, jobs: list[dict[str, Any]] | None,
                  rows: list[dict[str, Any]] | None, left_out: list[dict[str, Any]] | None,
                  late: list[dict[str, Any]] | None = None) -> None:
    """Watcher: every planned target completed and was recorded, or the run fails naming
    each one that did not (and why); one notification per run. ``rows``: the training
    tasks' own rows; ``late``: ``record_late``'s."""
    from airflow.configuration import conf

    from regional_training.record import recording
    from regional_training.report import links, notifications
    from regional_training.report.verdict import IncompleteRunError, raise_if_incomplete

    if jobs is None:
        raise IncompleteRunError("no plan: select_targets, render_array_file or build_requests failed "
                                 "(see its log); nothing was launched")
    # A run that summarized before record_late existed carries its late rows in the summary's XCom.
    late = list(late or []) or list((run_summary or {}).get(RECORDED_LATE) or [])
    verdict = _verdict(run, jobs, collected_rows(rows) + late + recording.reused_rows(run), list(left_out or []),
                       with_states=True)
    for line in verdict.lines():
        log.info("%s", line)
    if run_summary is not None and verdict.headline() != run_summary.get("headline"):
        # Targets were recorded after summarize: each wrote the summary again, so the one
        # stored normally agrees. If not (its re-render failed, or it raced a running
        # summarize), derive it again before anyone reads it.
        from regional_training.record import run_summary as summaries

        written = summaries.written_headline(run)
        if written != verdict.headline():
            log.info("The summary said %r; writing it again from what is recorded.", written)
            summaries.write(run, jobs, list(left_out or []))
    report_url = links.report_url(run.dag_id, run.run_id, conf.get("api", "base_url", fallback=""))
    notifications.notify_run(verdict, dag_id=run.dag_id, run_id=run.run_id, report_url=report_url)
    raise_if_incomplete(verdict)
    if run_summary is None:
        raise IncompleteRunError("every target is recorded, but summarize failed: no summary or report was "
                                 "written (clear summarize)")
