"""Cached identical work: a target whose inputs match a completed, recorded job within a
window is not trained again (SageMaker Pipelines' ``CacheConfig`` with an expiry).

"Identical" is :class:`ReuseKey`: the dataset, the copy trained on and its content
version (the copy's ``synced_at``: a re-synced copy is new data), the hyperparameters'
SHA-256 (what ``build_jobs`` already records), the training image (region-independent
``repository:tag`` or ``repository@sha256:digest``) and the instance recipe (type and
count). Any change to any of them is a different key, so it never hits the cache.

The window is the Param ``reuse_completed_within``: an ISO-8601 duration (``PT12H``,
``P7D``) parsed by pendulum (an Airflow dependency), or ``null`` (the default): **off**.
Why off: reuse is only as safe as its inputs are exact. An image *tag* can be
re-pushed (``local``, ``latest``) and a copy's ``synced_at`` is only bumped if the
labelling side re-syncs through the database; a deployment that pins image digests and
records syncs opts in per run or per trigger. Calendar units (years, months) are
refused: their length varies, a window must be exact. Windows count from the job's
``training_end_time`` and end at the run's ``as_of`` (its logical date or start, never
``now()``: a re-run decides the same way).

Where it happens (``tasks.jobs_to_launch``, before any job exists): :func:`job_keys`
computes each job's keys (one per candidate copy: a failover trains on another copy);
with a window set, :func:`find_reusable` looks each target up and a hit is recorded as
``Reused`` (:func:`reused_row`) and not launched. The collection of a trained target
records its row with the key of the copy it actually trained on (:func:`trained_fields`),
so a later run can reuse it.

SQL: ``queries/dataset_version.sql``, ``find_reusable.sql``; every row, trained or
reused, is written by the one ``upsert_training_run.sql``; schema
``migrations/V004__reuse_completed_work.sql``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

# The Param's name and pattern are params.py's (it owns every Param schema).
from regional_training.plan.params import REUSE_DURATION_PATTERN as _DURATION_PATTERN
from regional_training.plan.params import REUSE_PARAM as PARAM_NAME
from regional_training.runtime import campaign_db

if TYPE_CHECKING:
    from psycopg2.extensions import connection as PgConnection

    from regional_training.launch.job import Job

#: Row status of a target that was not trained because an identical job exists.
REUSED = "Reused"
#: The longest window accepted: an older model is retrained (new data and fixes land).
MAX_WINDOW = timedelta(days=90)
_IMAGE = re.compile(r"^[a-z0-9]+(?:[._/-][a-z0-9]+)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})$")


class ReuseWindowError(ValueError):
    """The Param ``reuse_completed_within`` is not an accepted duration (names the Param)."""


def parse_window(value: str | None) -> timedelta | None:
    """The window as a ``timedelta`` or ``None`` (off); a bad value is a named error."""
    if value is None or value == "":
        return None
    import pendulum
    from pendulum.parsing.exceptions import ParserError

    what = f"Param {PARAM_NAME!r} = {value!r}"
    if not isinstance(value, str) or not re.fullmatch(_DURATION_PATTERN, value):
        raise ReuseWindowError(
            f"{what} is not an ISO-8601 duration in weeks, days, hours, minutes or seconds "
            "(e.g. PT12H, P7D; years and months are refused: their length varies)"
        )
    try:
        parsed = pendulum.parse(value)
    except ParserError as err:
        raise ReuseWindowError(f"{what} is not an ISO-8601 duration: {err}") from err
    if not isinstance(parsed, pendulum.Duration):
        raise ReuseWindowError(f"{what} is not a duration")
    window = timedelta(seconds=parsed.total_seconds())
    if window <= timedelta(0):
        raise ReuseWindowError(f"{what} is zero; leave the Param empty to turn reuse off")
    if window > MAX_WINDOW:
        raise ReuseWindowError(f"{what} is longer than the {MAX_WINDOW.days}-day maximum")
    return window


def image_reference(repository: str, tag: str | None = None, digest: str | None = None) -> str:
    """``repository@sha256:<digest>`` when the digest is known (exact), else ``repository:tag``."""
    ref = f"{repository}@{digest}" if digest else f"{repository}:{tag}"
    if not _IMAGE.fullmatch(ref):
        raise ValueError(f"training image reference {ref!r} is not repository:tag or repository@sha256:<64 hex>")
    return ref


@dataclass(frozen=True)
class ReuseKey:
    """Everything that makes two training jobs identical (pure; no I/O)."""

    dataset_id: int
    copy_id: int
    dataset_version: str
    hyperparameters_sha256: str
    training_image: str
    instance_type: str
    instance_count: int

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of every field (``training_runs.reuse_key``)."""
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def row_fields(self) -> dict[str, Any]:
        """The key's columns as recorded on a ``training_runs`` row."""
        return {"training_image": self.training_image, "dataset_version": self.dataset_version,
                "reuse_key": self.digest()}


def dataset_version(conn: PgConnection, copy_id: int) -> str | None:
    """The copy's content version, or ``None`` (never synced or not available: no reuse)."""
    rows = campaign_db.fetch_dicts(conn, "dataset_version.sql", {"copy_id": copy_id})
    return rows[0]["dataset_version"] if rows else None


def find_reusable(
    conn: PgConnection, key: ReuseKey, *, window: timedelta | None, as_of: datetime, dag_id: str, run_id: str
) -> dict[str, Any] | None:
    """The newest completed job with inputs identical to ``key`` that ended within
    ``window`` before ``as_of`` (excluding this run's own rows), or ``None``.

    ``window`` ``None`` (reuse off) never queries.
    """
    if window is None:
        return None
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware (the run's logical date)")
    params = {**asdict(key), "reuse_key": key.digest(), "not_before": as_of - window, "as_of": as_of,
              "dag_id": dag_id, "run_id": run_id}
    rows = campaign_db.fetch_dicts(conn, "find_reusable.sql", params)
    return rows[0] if rows else None


#: The reuse columns of ``upsert_training_run.sql`` for a row that was not reused.
NOT_REUSED: dict[str, Any] = {"training_image": None, "dataset_version": None, "reuse_key": None,
                              "reused_from_dag_id": None, "reused_from_run_id": None,
                              "reused_from_target_key": None}


def trained_fields(key: ReuseKey | None) -> dict[str, Any]:
    """The reuse columns of a trained (collected) row: its inputs, so a later run can reuse
    it; ``None`` (the copy's version is unknown) records no key: never reused."""
    return {**NOT_REUSED, **(key.row_fields() if key is not None else {})}


def job_keys(conn: PgConnection, job: Job, *, training_image: str) -> dict[str, dict[str, Any]]:
    """``{copy_id: ReuseKey fields}`` for every candidate of a build step's job (its target
    and failover alternatives), read when the run plans (the copy's version *then*).

    A copy with no known version gets no key. JSON-safe (it travels with the job in XCom).
    """
    keys: dict[str, dict[str, Any]] = {}
    for placement in (job.planned, *job.alternatives):  # every alternative, as the payload lists them
        target, resources = placement.target, placement.request["ResourceConfig"]
        version = dataset_version(conn, int(target.copy_id))
        if version is None:
            continue
        keys[str(target.copy_id)] = asdict(ReuseKey(
            dataset_id=int(target.dataset_id), copy_id=int(target.copy_id), dataset_version=version,
            hyperparameters_sha256=cast(str, job.hyperparameters_sha256), training_image=training_image,
            instance_type=resources["InstanceType"], instance_count=int(resources["InstanceCount"])))
    return keys


def key_for_copy(job: Job, copy_id: Any) -> ReuseKey | None:
    """The key :func:`job_keys` recorded on ``job`` for the copy trained on, if any."""
    fields = (job.reuse_keys or {}).get(str(copy_id))
    return ReuseKey(**fields) if fields else None


def reused_row(
    source: dict[str, Any], key: ReuseKey, *, target: dict[str, Any], dag_id: str, run_id: str, model_artifact_uri: str
) -> dict[str, Any]:
    """The ``Reused`` row of a target served by ``source`` (a :func:`find_reusable` row).

    ``target`` is the planned target (``Target.to_dict()``): where it was placed and
    what it was planned to cost; actual cost and billable time are 0. JSON-safe
    (``metrics`` a dict): it travels in XCom to the summary.
    """
    from regional_training.plan.targets import target_key_of  # the DAG's parse imports this module (params)

    metrics = source.get("metrics") or {}
    return {
        "dag_id": dag_id, "run_id": run_id, "target_key": target_key_of(target),
        "region_code": target["region_code"], "dataset_id": key.dataset_id, "copy_id": key.copy_id,
        "training_job_name": source["training_job_name"], "training_job_arn": source["training_job_arn"],
        "attempt": 0, "status": REUSED, "failure_reason": None,
        "hyperparameters_sha256": key.hyperparameters_sha256, "instance_type": key.instance_type,
        "instance_count": key.instance_count,
        # No job ran for this run: no start, end or billable time.
        "training_start_time": None, "training_end_time": None, "billable_seconds": 0,
        "metrics": json.loads(metrics) if isinstance(metrics, str) else dict(metrics),
        "source_artifact_uri": source["model_artifact_uri"], "model_artifact_uri": model_artifact_uri,
        "purchase_option": target.get("purchase_option"), "placement_rank": target.get("placement_rank"),
        "price_per_instance_hour": target.get("price_per_instance_hour"),
        "billing_usd_per_hour": target.get("billing_usd_per_hour"),
        "planned_cost_usd": target.get("planned_cost_usd"), "actual_cost_usd": 0.0,
        **key.row_fields(),
        "reused_from_dag_id": source["dag_id"], "reused_from_run_id": source["run_id"],
        "reused_from_target_key": source["target_key"],
        # The scan point this target is (regional_training.plan.scan); the program is the source job's.
        "point_id": target.get("point_id"), "point_overrides": target.get("point_overrides") or None,
        "entry_point": source.get("entry_point"),
    }


def record_reused(conn: PgConnection, row: dict[str, Any]) -> int:
    """UPSERT a ``Reused`` row (from :func:`reused_row`); rows written."""
    from regional_training.plan import scan

    return campaign_db.execute(conn, "upsert_training_run.sql",
                               {**row, "metrics": json.dumps(row["metrics"], sort_keys=True),
                                "point_overrides": scan.overrides_json(row.get("point_overrides"))})
