"""aws_io: one provider hook per process, service, region and connection."""

from __future__ import annotations

import json

import pytest

from regional_training.runtime import aws_io


def _connection(port: int) -> str:
    return json.dumps({"conn_type": "aws", "extra": {"endpoint_url": f"http://127.0.0.1:{port}"}})


def test_a_process_makes_one_hook_per_service_and_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", _connection(1))
    west = aws_io.sagemaker_hook("us-west-2")
    assert aws_io.sagemaker_hook("us-west-2") is west
    assert aws_io.sagemaker_hook("us-east-1") is not west
    assert aws_io.s3_client("us-west-2") is aws_io.s3_client("us-west-2")
    assert aws_io.s3_client("us-west-2").meta.endpoint_url == "http://127.0.0.1:1"
    # Another endpoint (a test's next stack): a new hook, not one bound to the old one.
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", _connection(2))
    assert aws_io.sagemaker_hook("us-west-2") is not west
    assert aws_io.s3_client("us-west-2").meta.endpoint_url == "http://127.0.0.1:2"
