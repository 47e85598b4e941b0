"""Per-step metrics read back from a job's CloudWatch log stream in the emulator, with the
request's metric definitions: only the first host's streams, in order, across a resume."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import boto3
import pytest
import report_support as rs

from regional_training.plan.metric_format import METRIC_DEFINITIONS
from regional_training.report.report import LOG_GROUP, fetch_metric_series, fetch_run_series, parse_metric_series

pytestmark = pytest.mark.integration


def _log_group(logs: Any) -> None:
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName=LOG_GROUP)


def _put(logs: object, stream: str, lines: list[str], t0: int) -> None:
    logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)  # type: ignore[attr-defined]
    logs.put_log_events(  # type: ignore[attr-defined]
        logGroupName=LOG_GROUP, logStreamName=stream,
        logEvents=[{"timestamp": t0 + i, "message": line} for i, line in enumerate(lines)],
    )


def test_the_series_comes_from_the_first_hosts_streams_in_the_jobs_region(offline_stack: str) -> None:
    logs = boto3.client("logs", endpoint_url=offline_stack, region_name="eu-west-1")
    _log_group(logs)
    job = "mrt-report-series-test"
    lines = rs.log_lines(0)
    now = int(time.time() * 1000)  # CloudWatch refuses events older than 14 days
    # a spot interruption: the job resumed on a new stream; algo-2's lines are another host's
    _put(logs, f"{job}/algo-1-1764300000", lines[:13], now - 7_200_000)
    _put(logs, f"{job}/algo-1-1764303600", lines[13:], now - 3_600_000)
    _put(logs, f"{job}/algo-2-1764300000", ["[metrics] step=999 train_loss=42"], now - 7_200_000)
    # same name in another region: must not be read
    other = boto3.client("logs", endpoint_url=offline_stack, region_name="us-west-2")
    _log_group(other)
    _put(other, f"{job}/algo-1-1764300000", ["[metrics] step=1 train_loss=7"], now - 7_200_000)

    series = fetch_metric_series(job, "eu-west-1", definitions=METRIC_DEFINITIONS)
    assert series == parse_metric_series(lines)
    assert [p["step"] for p in series] == [float(s) for s in range(4, 49, 4)]
    assert fetch_metric_series("mrt-never-started", "eu-west-1") == []

    rows: list[dict[str, Any]] = [
        {"target_key": "dublin-urban-2026-v1", "training_job_name": job, "region_code": "eu-west-1",
         "training_job_arn": "arn:aws:sagemaker:eu-west-1:123456789012:training-job/x"},
        {"target_key": "never", "training_job_name": "never", "region_code": "eu-west-1", "training_job_arn": None},
    ]
    loss_only = [d for d in METRIC_DEFINITIONS if d["Name"] == "train:loss"]
    jobs = [{"target": {"dataset_key": "dublin-urban-2026-v1"}, "request": {"MetricDefinitions": loss_only}}]
    by_target = fetch_run_series(rows, jobs)
    assert list(by_target) == ["dublin-urban-2026-v1"]
    assert {k for p in by_target["dublin-urban-2026-v1"] for k in p} == {"step", "train:loss"}
