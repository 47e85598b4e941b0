"""Pre-flight's error classes, with S3 answers at the client boundary (the emulator test
covers the real calls: tests/integration/test_preflight.py)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from regional_training.launch.preflight import (
    Check,
    PreflightError,
    PreflightUnavailableError,
    checks_for_jobs,
    raise_for_problems,
    run_checks,
)


def error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "HeadBucket")


class Client:
    def __init__(self, failure: Exception | None) -> None:
        self.failure = failure

    def head_bucket(self, Bucket: str) -> dict:
        if self.failure:
            raise self.failure
        return {"BucketRegion": "eu-west-1"}

    def list_objects_v2(self, **kwargs: object) -> dict:
        if self.failure:
            raise self.failure
        return {"KeyCount": 1}


CHECK = Check("eu-west-1", "bucket", "out")


@pytest.mark.parametrize(
    ("failure", "reason", "transient"),
    [
        (error("403", 403), "access denied (not reachable with the aws_default connection)", False),
        (error("404", 404), "the bucket does not exist", False),
        (error("SlowDown", 503), "SlowDown: ", True),
        (EndpointConnectionError(endpoint_url="https://s3.eu-west-1.amazonaws.com"), "EndpointConnectionError", True),
    ],
)
def test_problems_are_named_and_only_definitive_ones_fail_without_retry(failure, reason, transient) -> None:
    (problem,) = run_checks([CHECK], client_for_region=lambda region: Client(failure))
    assert problem.reason.startswith(reason) and problem.transient is transient
    with pytest.raises(PreflightUnavailableError if transient else PreflightError, match="eu-west-1: bucket out"):
        raise_for_problems([problem])


def test_all_good_and_no_checks_make_no_calls() -> None:
    assert run_checks([CHECK, Check("eu-west-1", "prefix", "data", "x/")],
                      client_for_region=lambda region: Client(None)) == []
    assert run_checks([], client_for_region=lambda region: pytest.fail("no client needed")) == []


def test_failover_candidates_are_checked_only_on_request() -> None:
    def job(region: str, bucket: str) -> dict:
        return {"target": {"region_code": region}, "request": {
            "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/training-jobs/"},
            "InputDataConfig": [{"DataSource": {"S3DataSource": {"S3Uri": f"s3://{bucket}-data/ds/"}}}]}}

    jobs = [{**job("us-east-1", "a"), "failover": [job("us-west-2", "b")]}]
    assert checks_for_jobs(jobs) == [Check("us-east-1", "bucket", "a"), Check("us-east-1", "prefix", "a-data", "ds/")]
    assert len(checks_for_jobs(jobs, include_failover=True)) == 4
