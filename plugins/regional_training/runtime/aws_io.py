"""The AWS calls the steps make, through the Amazon provider's hooks.

Every client gets botocore's adaptive retry mode: a 500-target fan-out polling
SageMaker would otherwise trip its API rate limits.
"""

from __future__ import annotations

import functools
import os
from typing import Any

AWS_CONN_ID = "aws_default"
#: Retries with client-side rate limiting on throttling errors.
BOTOCORE_CONFIG: dict[str, Any] = {"retries": {"mode": "adaptive", "max_attempts": 10}}


def _hook(service: str, region: str | None) -> Any:
    """The provider's hook for ``service`` in ``region``, one per process and connection.

    A hook makes its own boto3 session, and a session loads botocore's endpoint data and
    the service's model: about 1 s of a task try each on the 2-core stack, where a
    collection try made four of them (bench/services_scale.py, the task logs' "Found
    credentials" lines). A task try is one process, so its calls share them. The key
    includes the connection as the environment gives it (the local stacks and the tests
    do), so a process that moves to another endpoint gets a new hook.
    """
    return _cached_hook(service, region, os.environ.get(f"AIRFLOW_CONN_{AWS_CONN_ID.upper()}"))


@functools.cache
def _cached_hook(service: str, region: str | None, _connection: str | None) -> Any:
    if service == "s3":
        from regional_training.runtime.aws_hooks import S3Hook

        return S3Hook(aws_conn_id=AWS_CONN_ID, region_name=region, config=BOTOCORE_CONFIG)
    from regional_training.runtime.aws_hooks import SageMakerHook

    return SageMakerHook(aws_conn_id=AWS_CONN_ID, region_name=region, config=BOTOCORE_CONFIG)


def s3_client(region: str | None) -> Any:
    """The S3 client in ``region`` (shared within the process, :func:`_hook`)."""
    return _hook("s3", region).get_conn()


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``(bucket, key)`` of an ``s3://`` URI, by the provider's own parser."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, key = S3Hook.parse_s3_url(uri)
    return bucket, key


def put_text(uri: str, text: str, *, region: str, content_type: str = "text/csv") -> None:
    bucket, key = split_s3_uri(uri)
    s3_client(region).put_object(Bucket=bucket, Key=key, Body=text.encode(), ContentType=content_type)


def get_text(uri: str, *, region: str) -> str:
    bucket, key = split_s3_uri(uri)
    return s3_client(region).get_object(Bucket=bucket, Key=key)["Body"].read().decode()


def copy_object(source_uri: str, dest_uri: str, *, dest_region: str) -> None:
    """Server-side copy (multipart ``UploadPartCopy`` above 8 MiB): bytes never pass here."""
    src_bucket, src_key = split_s3_uri(source_uri)
    dst_bucket, dst_key = split_s3_uri(dest_uri)
    s3_client(dest_region).copy({"Bucket": src_bucket, "Key": src_key}, dst_bucket, dst_key)


def sagemaker_hook(region: str) -> Any:
    """The SageMaker hook in ``region`` (shared within the process, :func:`_hook`)."""
    return _hook("sagemaker", region)


def describe_or_none(hook: Any, name: str) -> dict[str, Any] | None:
    """The job's description through ``hook`` (a ``SageMakerHook``), or ``None`` if no
    job has that name in the hook's region (SageMaker answers ``ValidationException``)."""
    from botocore.exceptions import ClientError

    try:
        return hook.describe_training_job(name)  # type: ignore[no-any-return]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "ValidationException":
            return None
        raise


def describe_training_job(name: str, *, region: str) -> dict[str, Any] | None:
    """The job's description in ``region``, or ``None`` if no job has that name there."""
    return describe_or_none(sagemaker_hook(region), name)
