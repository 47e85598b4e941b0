"""Notification settings and messages (the SNS delivery itself: tests/integration)."""

from __future__ import annotations

from typing import Any

import pytest

from regional_training.report.notifications import (
    NotificationSettings,
    NotificationSettingsError,
    failure_message,
    notify_run,
    settings_from_mapping,
    success_message,
)
from regional_training.report.verdict import compute_verdict

TOPIC = "arn:aws:sns:us-east-1:123456789012:mrt-training-runs"
JOBS = [{"target": {"dataset_key": f"{r}-data", "region_code": r}} for r in ("us-east-1", "eu-west-1", "us-west-2")]


def _failed() -> Any:
    rows = [{"target_key": "us-east-1-data", "region_code": "us-east-1", "status": "Completed"},
            {"target_key": "eu-west-1-data", "region_code": "eu-west-1", "status": "Failed",
             "failure_reason": "AlgorithmError: {{ not jinja }}"}]
    return compute_verdict(JOBS, rows, train_states={0: "success", 1: "failed", 2: "upstream_failed"})


class Recorder:
    """A notifier stand-in recording what the interface was asked to send."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    def factory(self, subject: str, message: str) -> Any:
        recorder = self

        class _Notifier:
            def notify(self, context: dict[str, Any]) -> None:
                recorder.sent.append((subject, message, context))

        return _Notifier()


def test_settings_are_validated_naming_the_variable() -> None:
    assert settings_from_mapping({}) == NotificationSettings(None, False)
    ok = settings_from_mapping({"mrt_notification_topic_arn": TOPIC, "mrt_notify_on_success": "True"})
    assert ok == NotificationSettings(TOPIC, True) and ok.topic_region == "us-east-1"
    for bad in ("mrt-training-runs", "arn:aws:sns:us-east-9x:123456789012:t", "arn:aws:sqs:us-east-1:123456789012:t",
                TOPIC + ".fifo"):
        with pytest.raises(NotificationSettingsError, match="'mrt_notification_topic_arn'"):
            settings_from_mapping({"mrt_notification_topic_arn": bad})
    with pytest.raises(NotificationSettingsError, match="'mrt_notify_on_success' = 'yes'"):
        settings_from_mapping({"mrt_notify_on_success": "yes"})


def test_the_failure_message_names_each_failed_target_its_reason_and_the_report() -> None:
    subject, body = failure_message(_failed(), dag_id="multi_region_training", run_id="scheduled__x",
                                    report_url="https://airflow.example.com/campaign/runs/r/report")
    assert subject == "[multi_region_training] FAILED: 2 of 3 target(s) in eu-west-1, us-west-2"
    assert body.splitlines() == [
        "Run scheduled__x of multi_region_training failed.",
        "1 of 3 planned target(s) completed and recorded",
        "",
        "Not completed:",
        "- eu-west-1 / eu-west-1-data: training failed - AlgorithmError: {{ not jinja }}",
        "- us-west-2 / us-west-2-data: never launched - train[2] upstream_failed: no job was launched",
        "",
        "Report: https://airflow.example.com/campaign/runs/r/report",
    ]


def test_one_message_per_run_failure_always_success_only_when_configured() -> None:
    clean = compute_verdict(JOBS[:1], [{"target_key": "us-east-1-data", "region_code": "us-east-1",
                                        "status": "Completed"}])
    recorder = Recorder()
    kwargs: dict[str, Any] = {"dag_id": "d", "run_id": "r", "report_url": None, "notifier_factory": recorder.factory}
    assert notify_run(clean, settings=NotificationSettings(TOPIC, False), **kwargs) is None
    assert recorder.sent == []
    sent = notify_run(clean, settings=NotificationSettings(TOPIC, True), context={"run_id": "r"}, **kwargs)
    assert sent == success_message(clean, dag_id="d", run_id="r", report_url=None)
    assert recorder.sent[0][0] == "[d] succeeded: 1 of 1 planned target(s) completed and recorded"
    notify_run(_failed(), settings=NotificationSettings(TOPIC, False), **kwargs)
    assert len(recorder.sent) == 2 and "FAILED" in recorder.sent[1][0]


def test_no_topic_sends_nothing_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    sent = notify_run(_failed(), dag_id="d", run_id="r", report_url=None, settings=NotificationSettings(None))
    assert sent is None
    assert "mrt_notification_topic_arn is not set" in caplog.text
