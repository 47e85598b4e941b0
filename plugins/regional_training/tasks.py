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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
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

    @cached_property
    def settings(self) -> Settings:
        from regional_training.settings import load_settings

        return load_settings()

    @property
    def layout(self) -> RunLayout:
        from regional_training.run_layout import RunLayout

        return RunLayout(self.settings.central_bucket, self.dag_id, self.run_id)

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
    return Run(context["dag"].dag_id, context["run_id"], dict(context["params"]), context.get("ti"))


def select_targets(run: Run) -> dict[str, Any]:
    """Place and validate the run's targets in the campaign database."""
    from regional_training.selection import select_targets as place

    with run.campaign_db() as conn:
        return place(conn, run.params)


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
    """The jobs to start: none for a dry run (the mapped tasks are then skipped)."""
    return [] if run.params.get("dry_run") else list(jobs)


def target_group_kwargs(job: dict[str, Any]) -> dict[str, Any]:
    """Per-target kwargs of the DAG's mapped task group (the ``target`` group): the job,
    for the collector, and the training operator's kwargs."""
    from regional_training.jobs import training_operator_kwargs

    return {"job": job, **training_operator_kwargs(job)}


def collect_target(run: Run, job: dict[str, Any]) -> dict[str, Any]:
    """Collect one target's job and record it with its failover moves (which the
    target's training task always pushes, maybe empty: there is no "not found")."""
    from regional_training import aws_io, campaign_db, collection
    from regional_training.operators import MOVES_KEY

    if run.ti is not None:  # the mapped task's name: region + target (DAG's map_index_template)
        from airflow.sdk import get_current_context

        get_current_context()["mrt_target"] = (  # type: ignore[typeddict-unknown-key]
            f"{job['target']['region_code']} {job['target']['dataset_key']}")
    settings = run.settings
    moves = list(run.ti.xcom_pull(task_ids="train", key=MOVES_KEY, map_indexes=run.ti.map_index) or []
                 ) if run.ti is not None else []
    with run.campaign_db() as conn:
        key = job["target"]["dataset_key"]
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
            upsert=lambda row: campaign_db.execute(conn, "upsert_training_run.sql", row),
        )
        return {**row, "moves": moves}


def summarize_run(
    run: Run, rows: list[dict[str, Any]] | None, jobs: list[dict[str, Any]], left_out: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """The run summary: logged as a table and stored next to the array file."""
    import json

    from regional_training import aws_io, summary

    result = summary.summarize(list(rows or []), run_id=run.run_id, dry_run=bool(run.params.get("dry_run")),
                               planned=len(jobs), left_out=list(left_out or []))
    uri = run.layout.summary
    aws_io.put_text(uri, json.dumps(result, indent=2, sort_keys=True), region=run.settings.central_region)
    for line in result["text"].splitlines():
        log.info("%s", line)
    return {**result, "summary_uri": uri}


def check_regions(run_summary: dict[str, Any] | None) -> None:
    """Watcher: fails the run naming every failed region."""
    from regional_training.summary import raise_if_failed

    raise_if_failed(run_summary)
