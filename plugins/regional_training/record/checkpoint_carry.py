"""Checkpoint carry-over (issue 31): a target's checkpoints follow it to its new region.

Checkpoints are per run and target in each region's own bucket
(:func:`regional_training.run.run_layout.checkpoint_uri`), so a target that fails over from
region A to region B would start B's job with an empty prefix: step 0, the work done in A
thrown away. Before such a job is created, the target's previous job's checkpoint prefix
(its ``CheckpointConfig.S3Uri``, from ``DescribeTrainingJob``) is copied *server-side*
to the new job's prefix: S3 ``CopyObject`` (``UploadPartCopy`` above the transfer
threshold) with ``CopySource`` in the other region's bucket, made through the
destination region's client, so no checkpoint byte passes through the worker. SageMaker
downloads ``CheckpointConfig.S3Uri`` to ``CheckpointConfig.LocalPath`` when the job
starts (AWS, "Use Checkpoints in Amazon SageMaker"), and the entry point restores the
newest checkpoint there (images/training/resnet_hvd/checkpoint.py).

A checkpoint is carried only when the previous job trained the same thing: the same
training image (repository and tag; the registry host is per region), the same
hyperparameters (their sha256, :func:`regional_training.plan.training_request.
hyperparameters_sha256`, which covers the model and the recipe). Anything else is
recorded ``incompatible`` and never used: restoring another model's variables would fail
the job (``assert_existing_objects_matched``) or, worse, resume the wrong run.

A new attempt in the same region needs nothing: its prefix is the previous job's. Every
carry is recorded in ``checkpoint_carries`` (V008): objects, bytes, seconds and the step
the new job resumes from (the TF ``checkpoint`` index file's ``ckpt-<step>``; the entry
point saves ``checkpoint_number=step``). The run's ``carry_checkpoints`` Param (default
on) turns it off. No I/O at import time.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from regional_training.launch.attempts import Candidate, Resolution

log = logging.getLogger(__name__)

Outcome = Literal["copied", "empty", "incompatible", "off"]
#: The index file ``tf.train.CheckpointManager`` rewrites after each save.
INDEX_FILE = "checkpoint"
#: ``model_checkpoint_path: "ckpt-42"`` (relative: the manager saves relative paths).
_NEWEST = re.compile(r'^model_checkpoint_path:\s*"(?:.*/)?[^"/]*?-(\d+)"\s*$', re.MULTILINE)


@dataclass(frozen=True)
class Carry:
    """One carry-over decision for the job about to be created (a ``checkpoint_carries`` row)."""

    job_name: str
    from_job_name: str
    from_region: str
    to_region: str
    outcome: Outcome
    source_uri: str
    dest_uri: str
    reason: str | None = None
    objects: int = 0
    bytes_copied: int = 0
    seconds: float = 0.0
    resumed_step: int | None = None


def checkpoint_s3_uri(request_or_description: dict[str, Any] | None) -> str | None:
    """``CheckpointConfig.S3Uri`` of a request or a job's description, ``/``-terminated."""
    uri = ((request_or_description or {}).get("CheckpointConfig") or {}).get("S3Uri")
    if not uri:
        return None
    return str(uri) if str(uri).endswith("/") else f"{uri}/"


def image_identity(image: str) -> str:
    """A training image without its registry host: ``repo:tag`` or ``repo@sha256:...``.

    Each region pulls from its own ECR registry (``<account>.dkr.ecr.<region>.amazonaws.com``),
    so the same image has a different URI per region; the repository and tag (or digest) name it.
    """
    first, _, rest = image.partition("/")
    return rest if rest and ("." in first or ":" in first) else image


def incompatibility(previous: dict[str, Any], request: dict[str, Any]) -> str | None:
    """Why ``previous`` (a job's description) may not seed ``request``'s job, or ``None``."""
    from regional_training.plan.training_request import hyperparameters_sha256

    before = image_identity(str((previous.get("AlgorithmSpecification") or {}).get("TrainingImage") or ""))
    after = image_identity(str((request.get("AlgorithmSpecification") or {}).get("TrainingImage") or ""))
    if before != after:
        return f"image differs ({before or 'none'} != {after or 'none'})"
    old_hp, new_hp = dict(previous.get("HyperParameters") or {}), dict(request.get("HyperParameters") or {})
    if old_hp.get("model") != new_hp.get("model"):
        return f"model differs ({old_hp.get('model')} != {new_hp.get('model')})"
    if hyperparameters_sha256(old_hp) != hyperparameters_sha256(new_hp):
        changed = sorted(k for k in old_hp.keys() | new_hp.keys() if old_hp.get(k) != new_hp.get(k))
        return f"hyperparameters differ ({', '.join(changed)})"
    return None


def newest_step(index_text: str) -> int | None:
    """The step of the newest checkpoint a TF ``checkpoint`` index file names, or ``None``."""
    match = _NEWEST.search(index_text)
    return int(match.group(1)) if match else None


def source_job(resolution: Resolution, candidates: Sequence[Candidate]) -> tuple[Candidate, str, dict[str, Any]] | None:
    """The target's newest earlier job that has a description: (its candidate, name, description)."""
    for index in range(len(resolution.newest) - 1, -1, -1):
        attempt = resolution.newest[index]
        if attempt is not None and attempt.description:
            return candidates[index], attempt.name, attempt.description
    return None


def list_prefix(client: Any, uri: str) -> list[dict[str, Any]]:
    """Every object under an ``s3://bucket/prefix/`` (ListObjectsV2, paginated)."""
    from regional_training.runtime.aws_io import split_s3_uri

    bucket, prefix = split_s3_uri(uri)
    objects: list[dict[str, Any]] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        objects.extend(page.get("Contents") or [])
    return objects


def plan(resolution: Resolution, candidates: Sequence[Candidate], *, enabled: bool) -> Carry | None:
    """What to carry into the job ``resolution`` creates, before any S3 call: ``None`` when
    there is nothing to decide (no earlier job, or the same checkpoint prefix: a new
    attempt in the same region resumes from its own prefix already)."""
    if resolution.index is None or resolution.attempt is None:
        return None
    candidate = candidates[resolution.index]
    found = source_job(resolution, candidates)
    dest_uri = checkpoint_s3_uri(candidate.request)
    if found is None or dest_uri is None:
        return None
    source, from_name, description = found
    source_uri = checkpoint_s3_uri(description)
    if source_uri is None or source_uri == dest_uri:
        return None
    carry = Carry(job_name=resolution.attempt.name, from_job_name=from_name, from_region=source.region,
                  to_region=candidate.region, outcome="copied", source_uri=source_uri, dest_uri=dest_uri)
    if not enabled:
        return Carry(**{**asdict(carry), "outcome": "off", "reason": "carry_checkpoints is off"})
    reason = incompatibility(description, candidate.request)
    if reason is not None:
        return Carry(**{**asdict(carry), "outcome": "incompatible", "reason": reason})
    return carry


def copy_checkpoints(carry: Carry, *, client_for: Callable[[str], Any],
                     copy: Callable[..., None] | None = None) -> Carry:
    """Copy ``carry``'s source prefix to its destination server-side; return the figures.

    ``client_for(region)``: the S3 client there (listing the source, reading its small
    index file). ``copy(source_uri, dest_uri, dest_region=...)``: a server-side copy
    (:func:`regional_training.runtime.aws_io.copy_object` by default). The index file is copied
    last: the destination never names a checkpoint whose files are not all there yet.
    """
    from regional_training.runtime.aws_io import copy_object, split_s3_uri

    copy = copy or copy_object
    started = time.monotonic()
    source_client = client_for(carry.from_region)
    objects = [o for o in list_prefix(source_client, carry.source_uri) if not str(o["Key"]).endswith("/")]
    if not objects:
        return Carry(**{**asdict(carry), "outcome": "empty", "reason": "the earlier job left no checkpoint",
                        "seconds": round(time.monotonic() - started, 3)})
    bucket, prefix = split_s3_uri(carry.source_uri)
    step = None
    objects.sort(key=lambda o: str(o["Key"]).rsplit("/", 1)[-1] == INDEX_FILE)
    for obj in objects:
        relative = str(obj["Key"])[len(prefix):]
        if relative == INDEX_FILE:
            body = source_client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            step = newest_step(body.decode(errors="replace"))
        copy(f"s3://{bucket}/{obj['Key']}", f"{carry.dest_uri}{relative}", dest_region=carry.to_region)
    return Carry(**{**asdict(carry), "objects": len(objects), "bytes_copied": sum(int(o.get("Size") or 0)
                                                                                for o in objects),
                    "seconds": round(time.monotonic() - started, 3), "resumed_step": step})


def recorded(conn: Any, *, dag_id: str, run_id: str, job_name: str) -> bool:
    """Whether the job's carry was copied and recorded already (a resumed or retried try)."""
    from regional_training.runtime.campaign_db import load_sql

    with conn.cursor() as cur:
        cur.execute(load_sql("queries/checkpoint_carry_recorded.sql"),
                    {"dag_id": dag_id, "run_id": run_id, "job_name": job_name})
        found = cur.fetchone() is not None
    conn.commit()  # end the read's transaction: the copy that may follow takes seconds
    return found


def record(conn: Any, carry: Carry, *, dag_id: str, run_id: str, target_key: str) -> None:
    from regional_training.runtime.campaign_db import load_sql

    try:
        with conn.cursor() as cur:
            cur.execute(load_sql("queries/checkpoint_carry_record.sql"),
                        {**asdict(carry), "dag_id": dag_id, "run_id": run_id, "target_key": target_key})
        conn.commit()
    except Exception:
        conn.rollback()
        raise


def carry_for(run: Any, target_key: str, resolution: Resolution, candidates: Sequence[Candidate], *,
              client_for: Callable[[str], Any] | None = None) -> Carry | None:
    """The operator's one call before it creates ``resolution``'s job: decide, copy, record.

    ``run``: :class:`regional_training.run.run_context.Run` (its ``carry_checkpoints`` Param,
    its campaign database). Returns the carry (``None``: nothing to carry). A copy that
    fails raises: creating the job anyway would silently restart the target at step 0.
    """
    from regional_training.runtime.aws_io import s3_client

    decided = plan(resolution, candidates, enabled=bool(run.params.get("carry_checkpoints", True)))
    if decided is None:
        return None
    with run.campaign_db() as conn:
        if decided.outcome == "copied" and recorded(conn, dag_id=run.dag_id, run_id=run.run_id,
                                                    job_name=decided.job_name):
            log.info("Checkpoints of %s already carried to %s.", decided.from_job_name, decided.dest_uri)
            return decided
        done = copy_checkpoints(decided, client_for=client_for or s3_client) if decided.outcome == "copied" \
            else decided
        record(conn, done, dag_id=run.dag_id, run_id=run.run_id, target_key=target_key)
    if done.outcome == "copied":
        log.info("Carried %d checkpoint objects (%d bytes, step %s) of %s from %s to %s in %.2f s.", done.objects,
                 done.bytes_copied, done.resumed_step, done.from_job_name, done.from_region, done.dest_uri,
                 done.seconds)
    else:
        log.info("No checkpoint carried from %s (%s) to %s: %s (%s).", done.from_job_name, done.from_region,
                 done.job_name, done.outcome, done.reason)
    return done
