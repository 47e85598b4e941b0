"""Artifact collection: one region's job result copied to the centre and recorded.

The copy is S3 server-side (``CopyObject``/``UploadPartCopy`` through boto3's managed
copy), never through the worker. The result row is UPSERTed, so clearing and re-running
a region replaces its row rather than adding one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from regional_training.launch.attempts import Attempt, Describe, ended_reason, resolve
from regional_training.launch.job import Job
from regional_training.plan import scan
from regional_training.plan.placement import actual_cost_usd
from regional_training.plan.targets import Target
from regional_training.run.run_layout import RunLayout

#: A job that was never created (e.g. its launch failed before CreateTrainingJob).
NOT_STARTED = "NotStarted"


def final_metrics(description: dict[str, Any]) -> dict[str, float]:
    return {m["MetricName"]: float(m["Value"]) for m in description.get("FinalMetricDataList", [])}


def _actual_cost(description: dict[str, Any] | None, target: Target, request: dict[str, Any]) -> float | None:
    if not description:
        return None
    cost = actual_cost_usd(
        description.get("BillableTimeInSeconds"),
        target.billing_usd_per_hour,
        request["ResourceConfig"]["InstanceCount"],
    )
    return None if cost is None else float(cost)


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def collect(
    *,
    job: Job,
    dag_id: str,
    run_id: str,
    layout: RunLayout,
    describe: Describe,
    copy: Callable[[str, str], None],
    upsert: Callable[[dict[str, Any]], object],
    latest: tuple[int, Attempt] | None = None,
) -> dict[str, Any]:
    """Collect one target's job: returns the recorded row (JSON-serialisable).

    ``job`` is the target's job (its candidates in rank order, cut to ``max_failovers``,
    and its hash; typed: the XCom payload is read once, where a task pulls it);
    ``describe(region, name)`` returns the job's description in ``region`` or ``None``
    if no such job (the target's newest job is collected, as
    :func:`regional_training.launch.attempts.resolve` finds it: a re-run region replaces its
    row, never adds one); ``copy(src_uri, dst_uri)`` copies server-side;
    ``upsert(row)`` records the row. ``latest``: the newest attempt as ``(candidate
    index, attempt)``, when the caller has just resolved it (the training task, on its
    job's end): then nothing is described again.
    """
    targets, candidates = job.targets, job.candidates
    if latest is None:
        latest = resolve(candidates, describe).latest
    index, attempt = latest if latest else (0, None)
    target, request = targets[index], candidates[index].request
    description = attempt.description if attempt else None
    # The job's own name: under launcher=batch_service Batch names it (AWSBatch...), and
    # the report's log streams and links follow the row.
    name = str((description or {}).get("TrainingJobName") or (attempt.name if attempt else request["TrainingJobName"]))
    status = description["TrainingJobStatus"] if description else NOT_STARTED
    source_uri = model_uri = None
    if status == "Completed":
        source_uri = description["ModelArtifacts"]["S3ModelArtifacts"]  # type: ignore[index]
        model_uri = layout.artifact(target.target_key)
        copy(source_uri, model_uri)
    failure = None
    if description is None:
        failure = "the training job was never created; see the train task's log"
    elif status != "Completed":
        # SageMaker's words: FailureReason, or a Stopped job's SecondaryStatus and message
        # (MaxWaitTimeExceeded, MaxRuntimeExceeded, Stopped), never a bare "ended Stopped".
        failure = ended_reason(description)
    row = {
        "dag_id": dag_id,
        "run_id": run_id,
        "target_key": target.target_key,
        "region_code": target.region_code,
        "dataset_id": target.dataset_id,
        "copy_id": target.copy_id,
        "training_job_name": name,
        "training_job_arn": description.get("TrainingJobArn") if description else None,
        "status": status,
        "failure_reason": failure,
        "hyperparameters_sha256": job.hyperparameters_sha256,
        "instance_type": request["ResourceConfig"]["InstanceType"],
        "instance_count": request["ResourceConfig"]["InstanceCount"],
        "training_start_time": _iso(description.get("TrainingStartTime")) if description else None,
        "training_end_time": _iso(description.get("TrainingEndTime")) if description else None,
        "billable_seconds": description.get("BillableTimeInSeconds") if description else None,
        "attempt": attempt.number if attempt else 0,
        "purchase_option": target.purchase_option,
        "placement_rank": target.placement_rank,
        "price_per_instance_hour": target.price_per_instance_hour,
        "billing_usd_per_hour": target.billing_usd_per_hour,
        "planned_cost_usd": target.planned_cost_usd,
        "actual_cost_usd": _actual_cost(description, target, request),
        "metrics": final_metrics(description) if description else {},
        "source_artifact_uri": source_uri,
        "model_artifact_uri": model_uri,
        # What this job ran: its scan point (None without a scan) and program.
        **scan.row_fields(target.point_id, target.point_overrides, request),
    }
    upsert({**row, "metrics": json.dumps(row["metrics"], sort_keys=True),
            "point_overrides": scan.overrides_json(row["point_overrides"])})
    return row
