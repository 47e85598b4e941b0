"""The run's notification through the Amazon provider's SnsNotifier to the emulator's SNS:
an SQS queue subscribed to the topic receives exactly one message, whose body is the one
that names the failed targets, their reasons and the report."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from dev.local_stack import CENTRAL_REGION, aws_client, in_process_env
from regional_training.report.notifications import failure_message, notify_run, settings_from_mapping
from regional_training.report.verdict import compute_verdict

pytestmark = pytest.mark.integration

REPORT = "http://127.0.0.1:8080/campaign/runs/multi_region_training/scheduled__2026-11-28/report"


@pytest.fixture()
def topic_and_queue(aws_endpoint: str, airflow_db: Any, campaign_dsn: str,
                    monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A topic with an SQS queue subscribed to it (the body is SNS's JSON envelope)."""
    for key, value in in_process_env(dsn=campaign_dsn, endpoint=aws_endpoint, airflow_home=airflow_db,
                                     fast_polling=False).items():
        monkeypatch.setenv(key, value)
    sns = aws_client("sns", aws_endpoint, CENTRAL_REGION)
    sqs = aws_client("sqs", aws_endpoint, CENTRAL_REGION)
    name = f"mrt-notify-{uuid.uuid4().hex[:12]}"  # a fresh topic and queue per test
    topic = sns.create_topic(Name=name)["TopicArn"]
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return topic, queue_url


def _received(endpoint: str, queue_url: str) -> list[dict[str, Any]]:
    sqs = aws_client("sqs", endpoint, CENTRAL_REGION)
    messages: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if not batch:
            return messages
        messages += batch


def test_a_failed_run_sends_one_message_naming_the_failed_region(
    aws_endpoint: str, topic_and_queue: tuple[str, str]
) -> None:
    topic, queue_url = topic_and_queue
    jobs = [{"target": {"dataset_key": f"{r}-data", "region_code": r}} for r in ("us-east-1", "eu-west-1")]
    rows = [{"target_key": "us-east-1-data", "region_code": "us-east-1", "status": "Completed"},
            {"target_key": "eu-west-1-data", "region_code": "eu-west-1", "status": "Failed",
             "failure_reason": "AlgorithmError: loss became NaN"}]
    verdict = compute_verdict(jobs, rows)
    settings = settings_from_mapping({"mrt_notification_topic_arn": topic})
    sent = notify_run(verdict, dag_id="multi_region_training", run_id="scheduled__2026-11-28", report_url=REPORT,
                      settings=settings)
    assert sent == failure_message(verdict, dag_id="multi_region_training", run_id="scheduled__2026-11-28",
                                   report_url=REPORT)
    (message,) = _received(aws_endpoint, queue_url)
    envelope = json.loads(message["Body"])  # SNS's JSON envelope around the message
    assert envelope["TopicArn"] == topic
    assert envelope["Subject"] == "[multi_region_training] FAILED: 1 of 2 target(s) in eu-west-1"
    assert envelope["Message"] == (
        "Run scheduled__2026-11-28 of multi_region_training failed.\n"
        "1 of 2 planned target(s) completed and recorded\n"
        "\n"
        "Not completed:\n"
        "- eu-west-1 / eu-west-1-data: training failed - AlgorithmError: loss became NaN\n"
        "\n"
        f"Report: {REPORT}"
    )


def test_a_clean_run_sends_nothing_unless_success_is_configured(
    aws_endpoint: str, topic_and_queue: tuple[str, str]
) -> None:
    topic, queue_url = topic_and_queue
    jobs = [{"target": {"dataset_key": "us-east-1-data", "region_code": "us-east-1"}}]
    verdict = compute_verdict(jobs, [{"target_key": "us-east-1-data", "region_code": "us-east-1",
                                      "status": "Completed"}])
    quiet = settings_from_mapping({"mrt_notification_topic_arn": topic})
    assert notify_run(verdict, dag_id="d", run_id="r", report_url=REPORT, settings=quiet) is None
    assert _received(aws_endpoint, queue_url) == []
    loud = settings_from_mapping({"mrt_notification_topic_arn": topic, "mrt_notify_on_success": "true"})
    notify_run(verdict, dag_id="d", run_id="r", report_url=REPORT, settings=loud)
    (message,) = _received(aws_endpoint, queue_url)
    envelope = json.loads(message["Body"])
    assert envelope["Subject"] == "[d] succeeded: 1 of 1 planned target(s) completed and recorded"
    assert envelope["Message"] == (
        f"Run r of d succeeded.\n1 of 1 planned target(s) completed and recorded\n\nReport: {REPORT}")
