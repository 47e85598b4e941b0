"""The package's assets: what schedules training, and what training publishes.

Three assets, each one stable URI known at parse time (no I/O, no Variable), so any DAG
can be scheduled on them; *which* dataset or model an event is about travels in the
event's ``extra``:

==================  =====================================  ===========================================
asset (name)        URI                                    one event per ... ; ``extra``
==================  =====================================  ===========================================
``mrt_dataset_      ``x-mrt://campaign-db/datasets/ready``   dataset that became ``ready`` (labelling
ready``                                                    side: ``python -m regional_training.
                                                           emit_ready``); ``campaign_key``,
                                                           ``dataset_key``
``mrt_trained_      ``x-mrt://central-artifacts/models``     completed (or reused) target; see
model``                                                    :func:`model_event_extra`
``mrt_run_          ``x-mrt://central-artifacts/             run that reached its verdict; see
summary``           run-summaries``                        :func:`summary_event_extra`
==================  =====================================  ===========================================

Why one asset per kind and not one per dataset or model: an asset a DAG is scheduled on
must be declared in the DAG file, and the datasets and the central bucket are only
known at run time (campaign DB, Variables). The ``x-mrt`` scheme is this package's
own; the artifact's real ``s3://`` URI is in ``extra``. ``x-`` marks a private scheme for
Airflow: it is not normalized, so parsing the DAG does not load every provider's URI
handlers (``mrt://`` made each parse import the S3 hook, boto3 and requests).

Schedule (the DAG): ``AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 2 * * *",
timezone="UTC"), assets=DATASET_READY)``. A timetable run trains what is ``ready``; an
asset-triggered run trains exactly the datasets named by its triggering events (all the
events queued since the last run, de-duplicated): :func:`dataset_selection`.

Outlets: each training task declares ``outlets=[MODEL]``: it succeeds only once it has
collected its target's completed job, so each mapped task instance's one event is a
model, and :func:`emit_model_event` sets its ``extra``. Tasks that may record several
models or none (``jobs_to_launch`` for reused targets, ``record_late`` for targets their
training task could not record) declare ``outlets=[MODEL_ALIAS]`` and add one event per
model through it (a plain ``MODEL`` outlet would emit once for every successful task,
whatever it recorded). The training tasks do not use the alias: Airflow links an alias to
its asset at the first event through it, and training tasks that ended at the same
moment both inserted that link; the second's state update failed on the unique key and
Airflow set that task ``failed`` (CI, after the scheduler and triggerer restarts bunched
four completions together). The summary task declares ``outlets=[RUN_SUMMARY]`` and sets
``outlet_events[RUN_SUMMARY].extra = summary_event_extra(...)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetAlias

from regional_training.runtime.identifiers import READY_ASSET_NAME, READY_ASSET_URI

if TYPE_CHECKING:
    from regional_training.cli.emit_ready import ReadyDataset, ReadyEventError, ready_dataset

#: Names this module passes on from :mod:`regional_training.cli.emit_ready`, which the DAG's
#: parse does not need (its dataclass and the CLI's imports cost ~1 ms of every parse:
#: bench/dag_benchmarks.py): imported when first asked for (PEP 562).
_FROM_EMIT_READY = frozenset({"ReadyDataset", "ReadyEventError", "ready_dataset"})


def __getattr__(name: str) -> Any:
    if name in _FROM_EMIT_READY:
        from regional_training.cli import emit_ready

        return getattr(emit_ready, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["DATASET_READY", "MODEL", "MODEL_ALIAS", "RUN_SUMMARY", "ReadyDataset", "ReadyEventError",
           "dataset_selection", "emit_model_event", "model_event_extra", "ready_dataset", "summary_event_extra"]

#: Name and URI in identifiers, ``extra`` owned by emit_ready (no Airflow import in either).
DATASET_READY = Asset(name=READY_ASSET_NAME, uri=READY_ASSET_URI, group="mrt")
MODEL = Asset(name="mrt_trained_model", uri="x-mrt://central-artifacts/models", group="mrt")
#: What the tasks that record models declare as their outlet; events are added to :data:`MODEL` through it.
MODEL_ALIAS = AssetAlias(name="mrt_trained_models", group="mrt")
RUN_SUMMARY = Asset(name="mrt_run_summary", uri="x-mrt://central-artifacts/run-summaries", group="mrt")

#: ``training_runs`` statuses whose target has a model in this run's place.
MODEL_STATUSES = frozenset({"Completed", "Reused"})


def dataset_selection(context: Mapping[str, Any]) -> list[ReadyDataset] | None:
    """The datasets an asset-triggered run trains, or ``None`` for a timetable or manual run.

    Reads ``context["triggering_asset_events"]`` (every event queued since the last
    run); de-duplicated, sorted. A bad event fails here, before anything is launched.
    """
    events = context.get("triggering_asset_events") or {}
    try:
        ready = list(events[DATASET_READY]) if events else []
    except KeyError:
        ready = []
    if not ready:
        return None
    from regional_training.cli.emit_ready import ready_dataset

    found = {
        ready_dataset(event.extra or {}, where=f"event {index} (source {_source(event)})")
        for index, event in enumerate(ready)
    }
    return sorted(found)


def _source(event: Any) -> str:
    if getattr(event, "source_dag_id", None):
        return f"{event.source_dag_id}/{event.source_run_id}"
    return "REST API" if (event.extra or {}).get("from_rest_api") else "unknown"


def selection_keys(selection: Sequence[ReadyDataset]) -> tuple[list[str], list[str]]:
    """``(campaign keys, dataset keys)`` for the target query's Params."""
    return sorted({d.campaign_key for d in selection}), sorted({d.dataset_key for d in selection})


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def model_event_extra(row: Mapping[str, Any], *, campaign_key: str | None = None) -> dict[str, Any]:
    """The ``mrt_trained_model`` event's ``extra`` from a ``training_runs`` row (as the
    training task returns it, or as read back): JSON values only."""
    metrics = row.get("metrics") or {}
    if isinstance(metrics, str):
        import json

        metrics = json.loads(metrics)
    extra: dict[str, Any] = {
        "dag_id": row["dag_id"],
        "run_id": row["run_id"],
        "target_key": row["target_key"],
        "dataset_key": row["target_key"],
        "dataset_id": row["dataset_id"],
        "region": row["region_code"],
        "status": row["status"],
        "artifact_uri": row["model_artifact_uri"],
        "training_job_name": row["training_job_name"],
        "training_job_arn": row.get("training_job_arn"),
        "hyperparameters_sha256": row["hyperparameters_sha256"],
        "instance_type": row["instance_type"],
        "instance_count": row["instance_count"],
        "final_metrics": {str(k): float(v) for k, v in metrics.items()},
        "planned_cost_usd": _number(row.get("planned_cost_usd")),
        "actual_cost_usd": _number(row.get("actual_cost_usd")),
    }
    if campaign_key is not None:
        extra["campaign_key"] = campaign_key
    if row.get("reused_from_run_id"):
        extra["reused_from_run_id"] = row["reused_from_run_id"]
    return extra


def emit_model_event(outlet_events: Any, row: Mapping[str, Any], *, campaign_key: str | None = None,
                     outlets: Iterable[Any] = (MODEL_ALIAS,)) -> bool:
    """Add a :data:`MODEL` event for the row if it has a model.

    ``outlet_events`` is the task's ``context["outlet_events"]`` and ``outlets`` the
    task's declared outlets: a task that names :data:`MODEL` itself (each training task,
    which succeeds only with a collected model) sets its one event's ``extra``; one that
    names :data:`MODEL_ALIAS` adds an event through it. Returns whether an event was added.
    """
    if row.get("status") not in MODEL_STATUSES or not row.get("model_artifact_uri"):
        return False
    extra = model_event_extra(row, campaign_key=campaign_key)
    if MODEL in list(outlets):
        outlet_events[MODEL].extra = extra
    else:
        outlet_events[MODEL_ALIAS].add(MODEL, extra=extra)
    return True


def summary_event_extra(
    *, dag_id: str, run_id: str, verdict: Mapping[str, Any], rows: Iterable[Mapping[str, Any]],
    summary_uri: str, report_uri: str | None,
) -> dict[str, Any]:
    """The ``mrt_run_summary`` event's ``extra``: the verdict's headline, counts and cost.

    ``verdict`` is ``Verdict.to_dict()`` (regional_training.report.verdict).
    """
    rows = list(rows)
    by_status: dict[str, int] = {}
    for row in rows:
        by_status[str(row.get("status"))] = by_status.get(str(row.get("status")), 0) + 1
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "ok": bool(verdict.get("ok")),
        "headline": verdict.get("headline"),
        "nothing_to_do": verdict.get("nothing_to_do"),
        "planned_targets": len(verdict.get("targets") or ()),
        "targets_by_status": dict(sorted(by_status.items())),
        "planned_cost_usd": round(sum(_number(r.get("planned_cost_usd")) or 0.0 for r in rows), 4),
        "actual_cost_usd": round(sum(_number(r.get("actual_cost_usd")) or 0.0 for r in rows), 4),
        "summary_uri": summary_uri,
        "report_uri": report_uri,
    }
