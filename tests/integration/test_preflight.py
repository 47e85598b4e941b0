"""Pre-flight against the local AWS emulator (a server): missing buckets and empty prefixes
are named with their region, in one error, before any training job exists."""

from __future__ import annotations

from typing import Any

import pytest

from regional_training.launch.preflight import Check, PreflightError, checks_for_jobs, preflight, run_checks
from regional_training.runtime import campaign_db

pytestmark = pytest.mark.integration


def _job(region: str, output_bucket: str, train_uri: str) -> dict[str, Any]:
    """The parts of a build_requests job that pre-flight reads."""
    return {
        "target": {"region_code": region},
        "request": {
            "OutputDataConfig": {"S3OutputPath": f"s3://{output_bucket}/training-jobs/"},
            "CheckpointConfig": {"S3Uri": f"s3://{output_bucket}/checkpoints/run/x/"},
            "InputDataConfig": [{"ChannelName": "train",
                                 "DataSource": {"S3DataSource": {"S3Uri": train_uri}}}],
        },
        "failover": [],
    }


@pytest.fixture()
def seeded_jobs(db) -> list[dict[str, Any]]:
    rows = campaign_db.fetch_dicts(db, "select_targets.sql", {"campaign_keys": [], "region_codes": []})
    assert len({r["region_code"] for r in rows}) >= 2
    return [_job(r["region_code"], r["output_bucket"], r["s3_uri"]) for r in rows]


def _training_job_counts(endpoint: str, regions: set[str]) -> dict[str, int]:
    from dev.local_stack import aws_client

    return {r: len(aws_client("sagemaker", endpoint, r).list_training_jobs(MaxResults=100)["TrainingJobSummaries"])
            for r in sorted(regions)}


def test_the_seeded_buckets_and_prefixes_pass(offline_stack: str, seeded_jobs) -> None:
    checks = checks_for_jobs(seeded_jobs)
    regions = {j["target"]["region_code"] for j in seeded_jobs}
    # One bucket check per output bucket (output and checkpoints share it), one per prefix.
    assert sum(c.kind == "bucket" for c in checks) == len(regions)
    assert sum(c.kind == "prefix" for c in checks) == len(seeded_jobs)
    assert preflight(seeded_jobs) == len(checks)


def test_a_missing_bucket_fails_once_naming_every_region_and_bucket_with_zero_jobs(
    offline_stack: str, seeded_jobs
) -> None:
    first, second = seeded_jobs[0], seeded_jobs[1]
    r1, r2 = first["target"]["region_code"], second["target"]["region_code"]
    train_bucket = first["request"]["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"].split("/")[2]
    bad = [
        _job(r1, "mrt-no-such-output-bucket", first["request"]["InputDataConfig"][0]["DataSource"]["S3DataSource"]
             ["S3Uri"]),
        _job(r2, second["request"]["OutputDataConfig"]["S3OutputPath"].split("/")[2],
             f"s3://{train_bucket}/no-such-prefix/"),
        _job(r2, second["request"]["OutputDataConfig"]["S3OutputPath"].split("/")[2], "s3://mrt-no-such-data/x/"),
    ]
    regions = {r1, r2}
    before = _training_job_counts(offline_stack, regions)
    with pytest.raises(PreflightError) as info:
        preflight([*seeded_jobs, *bad])
    message = str(info.value)
    assert "3 bucket(s)/prefix(es) missing or unreachable" in message
    assert f"{r1}: bucket mrt-no-such-output-bucket: the bucket does not exist" in message
    assert f"{r2}: s3://{train_bucket}/no-such-prefix/: no object under this prefix" in message
    assert f"{r2}: s3://mrt-no-such-data/x/: the bucket does not exist" in message
    assert _training_job_counts(offline_stack, regions) == before  # nothing was launched


def test_an_output_bucket_in_another_region_is_refused(offline_stack: str, seeded_jobs) -> None:
    first = next(j for j in seeded_jobs if j["target"]["region_code"] != "us-east-1")
    bucket = first["request"]["OutputDataConfig"]["S3OutputPath"].split("/")[2]
    problems = run_checks([Check("us-east-1", "bucket", bucket)])
    assert [p.reason for p in problems] == [
        f"the bucket is in {first['target']['region_code']}; a job in us-east-1 needs one in its region"]
