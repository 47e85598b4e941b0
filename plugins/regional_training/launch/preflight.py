"""Pre-flight before the first launch: every bucket and train prefix the run's jobs use
exists and is reachable in its region, so a missing bucket fails once, with zero jobs.

One cheap S3 call per distinct resource, all in parallel (a thread pool; boto3 clients
are thread-safe, created up front per region through the Amazon provider's ``S3Hook``
with the project's botocore config):

==============  ========================================  ============================================================
resource        call                                      refused when
==============  ========================================  ============================================================
output bucket   ``HeadBucket`` (the bucket of             404 (does not exist); 403 (not reachable with the
                ``S3OutputPath`` and                      connection's credentials); the bucket is in another region
                ``CheckpointConfig``)                     (SageMaker needs it in the job's region)
train prefix    ``ListObjectsV2`` ``MaxKeys=1`` (the      the bucket is missing or denied, or no object is under the
                ``train`` channel's ``S3Uri``)            prefix (the job would fail: no S3 objects found)
==============  ========================================  ============================================================

Definitive problems raise one :class:`PreflightError` (``AirflowFailException``: no
retry) naming every region and bucket/prefix; if only transient errors (throttling,
5xx, connection) remain, :class:`PreflightUnavailableError` lets Airflow retry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from airflow.sdk.exceptions import AirflowFailException

# The job field listing the input URIs pre-flight found: the typed job's (launch.job).
from regional_training.launch.job import CHECKED_INPUTS as CHECKED_INPUTS
from regional_training.launch.job import Job

#: Parallel S3 calls (bounded: 500 targets must not open 1,000 connections at once).
MAX_WORKERS = 16


@dataclass(frozen=True, order=True)
class Check:
    region: str
    kind: Literal["bucket", "prefix"]
    bucket: str
    prefix: str = ""

    def label(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}" if self.kind == "prefix" else f"bucket {self.bucket}"
        return f"{self.region}: {where}"


@dataclass(frozen=True)
class Problem:
    check: Check
    reason: str
    transient: bool = False


class PreflightError(AirflowFailException):
    """A bucket or prefix the run needs is missing or unreachable (no retry: fix the data)."""


class PreflightUnavailableError(RuntimeError):
    """S3 could not be asked (throttling, 5xx, connection): Airflow retries with backoff."""


def checks_for_jobs(jobs: Sequence[Mapping[str, Any]], *, include_failover: bool = False) -> list[Check]:
    """The distinct checks for ``build_requests``' jobs (each with ``target`` and ``request``).

    Failover candidates are left out by default: a missing alternative must not stop
    the targets whose own region is fine (a failover to it fails on its own).
    """
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    split_s3_uri = S3Hook.parse_s3_url  # (bucket, key)
    checks: set[Check] = set()
    for job in jobs:
        candidates = [job, *(job.get("failover") or [])] if include_failover else [job]
        for candidate in candidates:
            region, request = str(candidate["target"]["region_code"]), candidate["request"]
            outputs = [request["OutputDataConfig"]["S3OutputPath"]]
            if "CheckpointConfig" in request:
                outputs.append(request["CheckpointConfig"]["S3Uri"])
            for uri in outputs:
                checks.add(Check(region, "bucket", split_s3_uri(uri)[0]))
            for uri in input_uris(request):
                bucket, prefix = split_s3_uri(uri)
                checks.add(Check(region, "prefix", bucket, prefix))
    return sorted(checks)




def with_checked_inputs(job: Job) -> Job:
    """``job`` once its planned request passed pre-flight: its input URIs recorded, so its
    training task need not check them again (:class:`regional_training.runtime.aws_hooks.SageMakerHook`)."""
    return job.with_field(CHECKED_INPUTS, checked_inputs=tuple(input_uris(job.request)))


def input_uris(request: Mapping[str, Any]) -> list[str]:
    """The S3 URIs of a ``CreateTrainingJob`` request's input channels: what pre-flight
    checks as prefixes, and what the provider's ``create_training_job`` would check again
    (:class:`regional_training.runtime.aws_hooks.SageMakerHook`)."""
    return [channel["DataSource"]["S3DataSource"]["S3Uri"] for channel in request.get("InputDataConfig", [])
            if "S3DataSource" in channel["DataSource"]]


def _run_one(client: Any, check: Check) -> Problem | None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        if check.kind == "bucket":
            answer = client.head_bucket(Bucket=check.bucket)
            actual = answer.get("BucketRegion") or answer.get("ResponseMetadata", {}).get(
                "HTTPHeaders", {}).get("x-amz-bucket-region")
            if actual and actual != check.region:
                return Problem(check, f"the bucket is in {actual}; a job in {check.region} needs one in its region")
            return None
        answer = client.list_objects_v2(Bucket=check.bucket, Prefix=check.prefix, MaxKeys=1)
        if not answer.get("KeyCount"):
            return Problem(check, "no object under this prefix (the train channel would be empty)")
        return None
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", ""))
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("404", "NoSuchBucket", "NotFound"):
            return Problem(check, "the bucket does not exist")
        if code in ("403", "AccessDenied", "Forbidden"):
            return Problem(check, "access denied (not reachable with the aws_default connection)")
        transient = status is None or status >= 500 or status == 429 or "Throttl" in code or code == "SlowDown"
        return Problem(check, f"{code or status}: {err}", transient=transient)
    except BotoCoreError as err:  # connection, timeout: S3 was not asked
        return Problem(check, f"{type(err).__name__}: {err}", transient=True)


def run_checks(
    checks: Sequence[Check],
    *,
    client_for_region: Callable[[str], Any] | None = None,
    max_workers: int = MAX_WORKERS,
) -> list[Problem]:
    """Run every check in parallel; return the problems (empty: all good)."""
    if not checks:
        return []
    from regional_training.runtime.aws_io import s3_client

    # One client per region, made here: boto3 clients are thread-safe, sessions are not.
    client = client_for_region or s3_client
    clients = {region: client(region) for region in sorted({c.region for c in checks})}
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(checks)))) as pool:
        results = list(pool.map(lambda c: _run_one(clients[c.region], c), checks))
    return [p for p in results if p is not None]


def raise_for_problems(problems: Sequence[Problem]) -> None:
    """One error naming every missing or unreachable region + bucket/prefix."""
    definitive = [p for p in problems if not p.transient]
    if definitive:
        details = "; ".join(f"{p.check.label()}: {p.reason}" for p in definitive)
        regions = ", ".join(sorted({p.check.region for p in definitive}))
        raise PreflightError(
            f"pre-flight: {len(definitive)} bucket(s)/prefix(es) missing or unreachable in {regions}; "
            f"nothing was launched: {details}"
        )
    if problems:
        details = "; ".join(f"{p.check.label()}: {p.reason}" for p in problems)
        raise PreflightUnavailableError(f"pre-flight: S3 could not be asked: {details}")


def preflight(jobs: Sequence[Mapping[str, Any]], **kwargs: Any) -> int:
    """Check the jobs' buckets and prefixes; return the number of checks made.

    :raises PreflightError: naming every missing/unreachable resource (no job exists yet).
    """
    checks = checks_for_jobs(jobs)
    raise_for_problems(run_checks(checks, **kwargs))
    return len(checks)
