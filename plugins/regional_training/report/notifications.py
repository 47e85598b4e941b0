"""Tell people how a run ended: one message per run, through Airflow's notifier interface.

A failed run's message names every planned target that did not complete or was not
recorded, with its region and the reason the verdict knows, and links the run's report;
a clean run sends nothing, or one success message with the verdict's headline when
``mrt_notify_on_success`` is ``true``.

Where it is sent from: the run's final watcher task (``check_regions``: ALL_DONE,
``retries=0``), after it computed the verdict and before it fails the run. Not a
DAG-level ``on_failure_callback``, although Airflow calls that once per run too: in
Airflow 3 DAG callbacks run outside any task (in the dag-processor), where the verdict,
which is computed from the plan inside the watcher, is not at hand and would have to be
rebuilt from XCom a second way; the watcher has it, has the AWS connection, runs once
per run (no retries; a human clearing the watcher re-sends, which is right: the outcome
may have changed) and runs the same way under ``dag.test()`` and the real scheduler.

Settings (Airflow Variables, or ``AIRFLOW_VAR_*``), read at run time only:

* ``mrt_notification_topic_arn``: the deployment's SNS topic (validated: an SNS topic
  ARN whose region is a region code). Unset: notifications are off (logged).
* ``mrt_notify_on_success``: ``true``/``false`` (default ``false``).

Any Airflow notifier is pluggable: :func:`notify_run` takes ``notifier_factory(subject,
message) -> BaseNotifier``; the default builds the Amazon provider's ``SnsNotifier``.
The notifier's ``notify(context)`` is called directly rather than through ``__call__``,
which renders template fields first: the message is final text, and a failure reason
containing ``{{`` must not be rendered as Jinja.

AWS calls: ``sns:Publish`` on the topic.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from regional_training.report.verdict import Verdict
from regional_training.runtime import identifiers

log = logging.getLogger(__name__)

TOPIC_VARIABLE = "mrt_notification_topic_arn"
ON_SUCCESS_VARIABLE = "mrt_notify_on_success"
#: Standard topics only: SnsNotifier sends no MessageGroupId, which a FIFO topic requires.
TOPIC_ARN_PATTERN = r"^arn:aws[a-z-]*:sns:([a-z0-9-]+):[0-9]{12}:[A-Za-z0-9_-]{1,256}$"
#: SNS limits: subject <= 100 printable ASCII characters on one line; message <= 256 KiB.
SUBJECT_MAX = 100
MESSAGE_MAX_BYTES = 256 * 1024

NotifierFactory = Callable[[str, str], Any]


class NotificationSettingsError(ValueError):
    """A malformed notification setting (names the Variable)."""


@dataclass(frozen=True)
class NotificationSettings:
    topic_arn: str | None
    on_success: bool = False

    @property
    def topic_region(self) -> str | None:
        match = re.fullmatch(TOPIC_ARN_PATTERN, self.topic_arn or "")
        return match.group(1) if match else None


def settings_from_mapping(values: Mapping[str, str | None]) -> NotificationSettings:
    """Validate raw Variable values (keyed by Variable name)."""
    topic = values.get(TOPIC_VARIABLE) or None
    if topic is not None:
        match = re.fullmatch(TOPIC_ARN_PATTERN, topic)
        if not match or not identifiers.is_region(match.group(1)):
            raise NotificationSettingsError(
                f"Airflow Variable {TOPIC_VARIABLE!r} = {topic!r} is not an SNS topic ARN "
                "(arn:aws:sns:<region>:<12-digit account>:<topic name>)"
            )
    raw = (values.get(ON_SUCCESS_VARIABLE) or "false").strip().lower()
    if raw not in ("true", "false"):
        raise NotificationSettingsError(f"Airflow Variable {ON_SUCCESS_VARIABLE!r} = {raw!r} is not true or false")
    return NotificationSettings(topic_arn=topic, on_success=raw == "true")


def load_settings() -> NotificationSettings:
    """Read the Variables through the Task SDK (call inside a task only)."""
    from airflow.sdk import Variable

    return settings_from_mapping({name: Variable.get(name, default=None)
                                  for name in (TOPIC_VARIABLE, ON_SUCCESS_VARIABLE)})


def _subject(text: str) -> str:
    one_line = re.sub(r"[^\x20-\x7e]+", " ", text).strip()
    return one_line if len(one_line) <= SUBJECT_MAX else one_line[: SUBJECT_MAX - 3] + "..."


def failure_message(verdict: Verdict, *, dag_id: str, run_id: str, report_url: str | None) -> tuple[str, str]:
    """``(subject, body)`` naming each target that did not complete, its region and reason."""
    incomplete = verdict.incomplete
    regions = sorted({t.region_code for t in incomplete})
    subject = _subject(f"[{dag_id}] FAILED: {len(incomplete)} of {len(verdict.targets)} target(s) in "
                       f"{', '.join(regions)}")
    lines = [
        f"Run {run_id} of {dag_id} failed.",
        verdict.headline(),
        "",
        "Not completed:",
        *(f"- {t.region_code} / {t.target_key}: {t.outcome.replace('_', ' ')}"
          + (f" - {t.reason}" if t.reason else "") for t in incomplete),
        "",
        f"Report: {report_url}" if report_url else "Report: not written (see the summarize task's log)",
    ]
    return subject, _fit("\n".join(lines))


def success_message(verdict: Verdict, *, dag_id: str, run_id: str, report_url: str | None) -> tuple[str, str]:
    """``(subject, body)`` with the verdict's headline (nothing-to-do runs included)."""
    subject = _subject(f"[{dag_id}] succeeded: {verdict.headline()}")
    body = f"Run {run_id} of {dag_id} succeeded.\n{verdict.headline()}\n"
    if report_url:
        body += f"\nReport: {report_url}"
    return subject, _fit(body)


def _fit(body: str) -> str:
    data = body.encode()
    if len(data) <= MESSAGE_MAX_BYTES:
        return body
    tail = "\n... (truncated; the full list is in the report)"
    return data[: MESSAGE_MAX_BYTES - len(tail.encode())].decode(errors="ignore") + tail


def sns_notifier_factory(settings: NotificationSettings, aws_conn_id: str | None = None) -> NotifierFactory:
    """The default: the Amazon provider's ``SnsNotifier`` on the deployment's topic."""
    from airflow.providers.amazon.aws.notifications.sns import SnsNotifier

    from regional_training.runtime.aws_io import AWS_CONN_ID

    if settings.topic_arn is None:
        raise NotificationSettingsError(f"Airflow Variable {TOPIC_VARIABLE!r} is not set")

    def build(subject: str, message: str) -> SnsNotifier:
        return SnsNotifier(aws_conn_id=aws_conn_id or AWS_CONN_ID, target_arn=settings.topic_arn,  # type: ignore[arg-type]
                           message=message, subject=subject, region_name=settings.topic_region)

    return build


def notify_run(
    verdict: Verdict,
    *,
    dag_id: str,
    run_id: str,
    report_url: str | None,
    context: Mapping[str, Any] | None = None,
    settings: NotificationSettings | None = None,
    notifier_factory: NotifierFactory | None = None,
) -> tuple[str, str] | None:
    """Send the run's one message (failure, or success if configured); what was sent.

    Call once per run, from the watcher, before it raises on an incomplete verdict.
    """
    settings = settings if settings is not None else load_settings()
    if verdict.ok and not settings.on_success:
        return None
    build = success_message if verdict.ok else failure_message
    subject, message = build(verdict, dag_id=dag_id, run_id=run_id, report_url=report_url)
    if notifier_factory is None:
        if settings.topic_arn is None:
            log.warning("No notification sent: Airflow Variable %s is not set.", TOPIC_VARIABLE)
            return None
        notifier_factory = sns_notifier_factory(settings)
    notifier = notifier_factory(subject, message)
    notifier.notify(dict(context or {}))
    log.info("Sent the run's notification: %s", subject)
    return subject, message
