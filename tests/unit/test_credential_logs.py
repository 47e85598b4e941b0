"""Where a session found its credentials is not logged at INFO (issue 33, item 5): one
"Found credentials in environment variables" line per boto3 session was 1,512 lines at
500 targets, and in the triggerer each was written from inside the event loop."""

from __future__ import annotations

import asyncio
import logging

import pytest

from regional_training.runtime import aws_hooks, aws_sessions


@pytest.fixture()
def env_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def test_a_session_resolving_credentials_logs_nothing_at_info(
    env_credentials: None, caplog: pytest.LogCaptureFixture
) -> None:
    assert aws_hooks  # imported: every process making the project's hooks quiets them
    with caplog.at_level(logging.DEBUG, logger="regional_training"):
        credentials = aws_sessions.shared_boto3_session(region_name="us-east-1").get_credentials()
    assert credentials is not None and credentials.method == "env"
    assert not [r for r in caplog.records if r.name.endswith("credentials") and r.levelno >= logging.INFO], \
        caplog.text


def test_the_async_sessions_of_the_triggers_log_nothing_at_info(
    env_credentials: None, caplog: pytest.LogCaptureFixture
) -> None:
    from aiobotocore.session import get_session

    async def resolve() -> object:
        return await get_session().get_credentials()

    with caplog.at_level(logging.DEBUG, logger="regional_training"):
        assert asyncio.run(resolve()) is not None
    assert not [r for r in caplog.records if "Found credentials" in r.getMessage()], caplog.text


def test_warnings_of_those_loggers_still_show_and_a_configured_level_is_kept() -> None:
    for name in aws_sessions.CREDENTIAL_LOGGERS:
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING
    configured = logging.getLogger("aiobotocore.credentials")
    configured.setLevel(logging.DEBUG)  # a deployment's logging config asked for them
    try:
        aws_sessions.quiet_credential_logs()
        assert configured.level == logging.DEBUG
    finally:
        configured.setLevel(logging.WARNING)
