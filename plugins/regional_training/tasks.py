"""The DAG's tasks, one function each; the DAG file only wires them.

Every task function takes the :class:`Run` it belongs to (:func:`current_run` inside a
task), which is the one way to reach the run's ids, Params, deployment settings, S3
layout and the campaign database. Each task is a transaction: its outputs are keyed by
the DAG run and written with overwrite or UPSERT, so a retry or a cleared task repeats
it without side effects.

Imports of the modules doing the work happen inside the functions: the DAG file imports
this module at parse time, which must stay cheap (``bench/dag_benchmarks.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from regional_training.run_layout import RunLayout
    from regional_training.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    """One DAG run as its tasks see it."""

    dag_id: str
    run_id: str
    params: Mapping[str, Any] = field(default_factory=dict)
    #: The running task instance (XCom), when there is one.
    ti: Any = None
    #: The conf the run was triggered with, as given (Params are checked strictly against it).
    conf: Mapping[str, Any] = field(default_factory=dict)
    #: The moment the run decides "as of" (its ``run_after``: the same on every retry,
    #: never ``now()``), e.g. the end of the reuse window.
    as_of: datetime | None = None
    #: The task's template context (asset events in and out), when there is one.
    context: Mapping[str, Any] | None = None

    @cached_property
    def settings(self) -> Settings:
        from regional_training.settings import load_settings

        return load_settings()

    @property
    def layout(self) -> RunLayout:
        from regional_training.run_layout import RunLayout

        return RunLayout(self.settings.central_bucket, self.dag_id, self.run_id)

    def emit_model_event(self, row: Mapping[str, Any], *, campaign_key: str | None) -> None:
        """The row's model event (:func:`regional_training.assets.emit_model_event`), as the
        running task declares its outlets; nothing outside a task."""
        if self.context is None or "outlet_events" not in self.context:
            return
        from regional_training import assets

        assets.emit_model_event(self.context["outlet_events"], row, campaign_key=campaign_key,
                                outlets=getattr(self.context.get("task"), "outlets", None) or ())

    @contextmanager
    def campaign_db(self) -> Iterator[Any]:
        """The campaign database through its Airflow connection, closed afterwards."""
        from regional_training.campaign_db import airflow_connection

        conn = airflow_connection()
        try:
            yield conn
        finally:
            conn.close()


def current_run() -> Run:
    """The run of the task being executed (call inside a task only)."""
    from airflow.sdk import get_current_context

    context = get_current_context()
    dag_run = context.get("dag_run")
    conf = dict(getattr(dag_run, "conf", None) or {})
    as_of = getattr(dag_run, "run_after", None) or getattr(dag_run, "logical_date", None)
    return Run(context["dag"].dag_id, context["run_id"], dict(context["params"]), context.get("ti"), conf,
               as_of, context)


#: XCom key under which ``jobs_to_launch`` hands the summary its ``Reused`` rows.
REUSED_KEY = "reused_rows"
#: The key of ``summarize``'s result that hands the watcher the rows it recorded
#: (:func:`record_unrecorded`).
RECORDED_LATE = "recorded_late"


def select_targets(run: Run) -> dict[str, Any]:
    """Place and validate the run's targets in the campaign database."""
    from regional_training import limits, reuse, strict_params
    from regional_training.params import param_specs
    from regional_training.retry_policy import by_error_class
    from regional_training.selection import select_targets as place
    from regional_training.verdict import nothing_to_do_reason

    # Strict Params first: an unknown key or a float for an integer fails here, before
    # anything is read or launched, and is not retried.
    strict_params.check_conf(run.conf, param_specs())
    with by_error_class("select_targets"), run.campaign_db() as conn:
        reuse.parse_window(run.params.get(reuse.PARAM_NAME))  # a bad window fails here, not at launch
        result = place(conn, run.params, dataset_ids=_ready_dataset_ids(run, conn), allow_list=_scan_allow_list(run))
    targets = result["targets"]
    limits.check_regions([(f"param 'regions' item {i}", r) for i, r in enumerate(run.params.get("regions") or [], 1)]
                         + [(f"target row {i} ({t['dataset_key']!r})", t["region_code"])
                            for i, t in enumerate(targets, 1)])
    limits.check_target_count(len(targets))
    reason = nothing_to_do_reason(planned=len(targets), dry_run=False, left_out=result["left_out"])
    if reason:
        log.info("Nothing to train: %s.", reason)
    return result


def _scan_allow_list(run: Run) -> Any:
    """A parameter scan's allowed image tags and entry points (settings are read only
    for a scan: without one nothing changes)."""
    from regional_training import scan

    if not run.params.get(scan.PARAM_NAME):
        return None
    return scan.load_allow_list(run.settings.training_image_tag)


def _ready_dataset_ids(run: Run, conn: Any) -> list[int] | None:
    """The datasets an asset-triggered run trains (``None``: a timetable or manual run,
    which trains what the Params select); a dataset the DB does not know is a named error."""
    from regional_training import assets, campaign_db

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
    from regional_training import array_file, aws_io
    from regional_training.targets import Target

    uri = run.layout.array_file
    aws_io.put_text(uri, array_file.render(Target.from_dict(t) for t in targets), region=run.settings.central_region)
    return uri


def build_requests(run: Run, array_uri: str, targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One validated request per line of the stored array file (plus failover requests)."""
    from regional_training import aws_io
    from regional_training.jobs import build_jobs

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
    (:func:`regional_training.jobs.job_reference`); outside one, the jobs themselves.

    Each job gets its reuse keys (``reuse_keys``, for its collection to record). With the
    Param ``reuse_completed_within`` set, a target whose identical job completed within
    the window is not launched: its earlier model is copied to this run's place and the
    target recorded ``Reused`` (:func:`_reuse_completed`; the rows go to the summary
    through XCom, ``REUSED_KEY``). Before the first launch, every output bucket and
    train-channel prefix is checked in its region (:mod:`regional_training.preflight`):
    a missing one fails here, naming it, with no job created.
    """
    from regional_training import preflight
    from regional_training.jobs import job_reference

    if run.params.get("dry_run") or not jobs:
        return []
    launch, reused = _reuse_completed(run, jobs)
    if run.ti is not None:  # always pushed (maybe empty): a retry replaces the earlier try's rows
        run.ti.xcom_push(key=REUSED_KEY, value=reused)
    if launch:
        checks = preflight.preflight(launch)
        log.info("Pre-flight: %d bucket/prefix check(s) passed.", checks)
        launch = [preflight.with_checked_inputs(job) for job in launch]
    if run.ti is None:
        return launch
    # Each job as its own XCom, the expansion over references (jobs.job_reference says why).
    references = [job_reference(job, run.ti.task_id) for job in launch]
    for job, reference in zip(launch, references, strict=True):
        run.ti.xcom_push(key=reference["xcom_key"], value=job)
    return references


def _reuse_completed(run: Run, jobs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(jobs to launch, Reused rows)``; each reused model is copied server-side within
    the central bucket (as collection copies a trained one) and announced as a model
    asset event, like a collected one."""
    from regional_training import aws_io, reuse
    from regional_training.targets import target_key_of

    settings = run.settings
    image = reuse.image_reference(settings.training_image_repository, settings.training_image_tag)
    window = reuse.parse_window(run.params.get(reuse.PARAM_NAME))
    if window is not None and run.as_of is None:
        raise ValueError(f"Param {reuse.PARAM_NAME!r} is set but the run has no as-of time (run_after)")
    launch, reused = [], []
    with run.campaign_db() as conn:
        for planned in jobs:
            # A scan point may run another tag of the image: its own (jobs.build_jobs) decides.
            job = {**planned, "reuse_keys": reuse.job_keys(conn, planned,
                                                           training_image=planned.get("training_image") or image)}
            key = reuse.key_for_copy(job, job["target"]["copy_id"])
            source = None
            if key is not None and window is not None and run.as_of is not None:
                source = reuse.find_reusable(conn, key, window=window, as_of=run.as_of, dag_id=run.dag_id,
                                             run_id=run.run_id)
            if source is None or key is None:
                launch.append(job)
                continue
            model_uri = run.layout.artifact(target_key_of(job["target"]))
            aws_io.copy_object(source["model_artifact_uri"], model_uri, dest_region=settings.central_region)
            row = reuse.reused_row(source, key, target=job["target"], dag_id=run.dag_id, run_id=run.run_id,
                                   model_artifact_uri=model_uri)
            reuse.record_reused(conn, row)
            log.info("Reused %s: identical to %s/%s (job %s), ended %s; not trained again.", row["target_key"],
                     source["run_id"], source["target_key"], source["training_job_name"], source["training_end_time"])
            run.emit_model_event(row, campaign_key=job["target"].get("campaign_key"))
            reused.append(row)
    if window is not None:
        log.info("Reuse within %s: %d of %d target(s) reused, %d to train.", window, len(reused), len(jobs),
                 len(launch))
    return launch, reused


def reused_rows(run: Run) -> list[dict[str, Any]]:
    """The ``Reused`` rows ``jobs_to_launch`` recorded for this run (none outside a task)."""
    if run.ti is None:
        return []
    return [dict(r) for r in run.ti.xcom_pull(task_ids="jobs_to_launch", key=REUSED_KEY) or []]


def collect_target(run: Run, job: dict[str, Any], *, moves: list[dict[str, Any]],
                   latest: tuple[int, Any] | None = None) -> dict[str, Any]:
    """Collect one target's job and record it with its failover moves: what its training
    task does when its job ends (``latest``, just resolved there), and what ``summarize``
    does for a launched target that has no row (:func:`record_unrecorded`)."""
    from regional_training import aws_io, campaign_db, collection, reuse
    from regional_training.targets import target_key_of

    settings = run.settings
    with run.campaign_db() as conn:
        key = target_key_of(job["target"])
        for move in moves:
            campaign_db.execute(conn, "record_placement_move.sql",
                                {"dag_id": run.dag_id, "run_id": run.run_id, "target_key": key, **move})
        row = collection.collect(
            job=job,
            dag_id=run.dag_id,
            run_id=run.run_id,
            layout=run.layout,
            describe=lambda region, name: aws_io.describe_training_job(name, region=region),
            copy=lambda src, dst: aws_io.copy_object(src, dst, dest_region=settings.central_region),
            # With the inputs of the copy it trained on (after any failover), so a later
            # run can reuse it (regional_training.reuse).
            upsert=lambda row: campaign_db.execute(
                conn, "upsert_training_run.sql",
                {**row, **reuse.trained_fields(reuse.key_for_copy(job, row["copy_id"]))}),
            latest=latest,
        )
        run.emit_model_event(row, campaign_key=job["target"].get("campaign_key"))
        return {**row, "moves": moves}


def record_unrecorded(run: Run, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Record each launched target that has no row yet, as it stands: its training task
    failed or never ran, so its job failed, was never created, or completed and could not
    be recorded then. The same idempotent collection as the training task's; a target
    that still cannot be recorded is logged and left to the verdict, which names it."""
    from regional_training.jobs import resolve_job
    from regional_training.operators import MOVES_KEY

    if run.ti is None or run.params.get("dry_run"):
        return []
    recorded = {str(r["target_key"]) for r in rows}
    late = []
    for index, item in enumerate(run.ti.xcom_pull(task_ids="jobs_to_launch") or []):
        if str(item["target_key"]) in recorded:
            continue
        try:
            job = resolve_job(run.ti, item)
            moves = list(run.ti.xcom_pull(task_ids="train", key=MOVES_KEY, map_indexes=index) or [])
            late.append(collect_target(run, job, moves=moves))
        except Exception as err:  # the verdict names the target; the other targets are still recorded
            log.warning("Target %s (train[%d]) could not be recorded: %s: %s", item["target_key"], index,
                        type(err).__name__, err)
    if late:
        log.info("Recorded %d target(s) whose training task did not: %s", len(late),
                 ", ".join(f"{r['target_key']} ({r['status']})" for r in late))
    return late


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
    from regional_training.verdict import compute_verdict, states_by_map_index

    train_states = None
    if with_states and run.ti is not None:
        states = run.ti.get_task_states(dag_id=run.dag_id, task_ids=["train"], run_ids=[run.run_id])
        train_states = states_by_map_index(states.get(run.run_id, {}), "train")
    return compute_verdict(jobs, rows, dry_run=bool(run.params.get("dry_run")), left_out=left_out,
                           train_states=train_states)


def summarize_run(
    run: Run, rows: list[dict[str, Any]] | None, jobs: list[dict[str, Any]], left_out: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """The run summary and report: logged as a table, stored next to the array file."""
    import json

    from airflow.configuration import conf

    from regional_training import assets, aws_io, links, report, scan, summary

    rows = collected_rows(rows)
    late = record_unrecorded(run, rows)
    rows, left_out = rows + late + reused_rows(run), list(left_out or [])
    dry_run = bool(run.params.get("dry_run"))
    result = summary.summarize(rows, run_id=run.run_id, dry_run=dry_run, planned=len(jobs), left_out=left_out,
                               metric=scan.metric_of(run.params.get(scan.PARAM_NAME)))
    result["verdict"] = _verdict(run, jobs, rows, left_out, with_states=False).to_dict()
    region = run.settings.central_region
    # A scan: each dataset's best model gets its stable pointer (runs/<run>/best/<dataset>/).
    for dataset, pointer in scan.publish_best(result.get("scan"), layout=run.layout, copy=lambda src, dst:
                                              aws_io.copy_object(src, dst, dest_region=region)).items():
        log.info("Best model of %s: %s", dataset, pointer)
    uri = run.layout.summary
    aws_io.put_text(uri, json.dumps(result, indent=2, sort_keys=True), region=region)
    page = report.render_report(
        result,
        report.fetch_run_series(rows, jobs),
        links.report_links(result, dag_id=run.dag_id, api_base_url=conf.get("api", "base_url", fallback="")),
        plan=report.plan_from_jobs(jobs) if dry_run else None,
    )
    aws_io.put_text(run.layout.report, page, region=region, content_type="text/html; charset=utf-8")
    for line in result["text"].splitlines():
        log.info("%s", line)
    log.info("Report: %s", run.layout.report)
    if run.context is not None and "outlet_events" in run.context:  # the mrt_run_summary event
        run.context["outlet_events"][assets.RUN_SUMMARY].extra = assets.summary_event_extra(
            dag_id=run.dag_id, run_id=run.run_id, verdict=result["verdict"], rows=rows, summary_uri=uri,
            report_uri=run.layout.report)
    # The rows recorded here go to the watcher with the summary (the training tasks' rows
    # it pulls itself).
    return {"summary_uri": uri, "report_uri": run.layout.report, "headline": result["verdict"]["headline"],
            RECORDED_LATE: late}


def check_regions(run: Run, run_summary: dict[str, Any] | None, jobs: list[dict[str, Any]] | None,
                  rows: list[dict[str, Any]] | None, left_out: list[dict[str, Any]] | None) -> None:
    """Watcher: every planned target completed and was recorded, or the run fails naming
    each one that did not (and why); one notification per run."""
    from airflow.configuration import conf

    from regional_training import links, notifications
    from regional_training.verdict import IncompleteRunError, raise_if_incomplete

    if jobs is None:
        raise IncompleteRunError("no plan: select_targets, render_array_file or build_requests failed "
                                 "(see its log); nothing was launched")
    late = list((run_summary or {}).get(RECORDED_LATE) or [])
    verdict = _verdict(run, jobs, collected_rows(rows) + late + reused_rows(run), list(left_out or []),
                       with_states=True)
    for line in verdict.lines():
        log.info("%s", line)
    report_url = links.report_url(run.dag_id, run.run_id, conf.get("api", "base_url", fallback=""))
    notifications.notify_run(verdict, dag_id=run.dag_id, run_id=run.run_id, report_url=report_url)
    raise_if_incomplete(verdict)
    if run_summary is None:
        raise IncompleteRunError("every target is recorded, but summarize failed: no summary or report was "
                                 "written (clear summarize)")
