"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from unittest import mock

import pytest
from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook
from sagemaker_fake import FakeSageMaker


@pytest.fixture()
def sagemaker() -> Iterator[FakeSageMaker]:
    """SageMaker as the operator sees it: the provider's hook answering from a FakeSageMaker."""
    fake = FakeSageMaker()
    with mock.patch.object(SageMakerHook, "describe_training_job", autospec=True, side_effect=fake.describe), \
            mock.patch.object(SageMakerHook, "create_training_job", autospec=True, side_effect=fake.create):
        yield fake
