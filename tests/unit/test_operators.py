from __future__ import annotations

import pytest

from regional_training.operators import WAIT_MARGIN_SECONDS, is_capacity_error, wait_limit_seconds


@pytest.mark.parametrize(
    "text",
    [
        "ResourceLimitExceeded",
        "CapacityError: Unable to provision requested ML compute capacity.",
        "InsufficientInstanceCapacity: We currently do not have sufficient p4d capacity",
        "ClientError: insufficient capacity in the requested Availability Zone",
    ],
)
def test_capacity_errors_are_recognised(text: str) -> None:
    assert is_capacity_error(text)


@pytest.mark.parametrize("text", [None, "", "AlgorithmError: exit code 2", "ValidationException: bad role"])
def test_other_errors_are_not_capacity_errors(text: str | None) -> None:
    assert not is_capacity_error(text)


def test_wait_limit_follows_runtime_and_spot_max_wait() -> None:
    assert wait_limit_seconds({"StoppingCondition": {"MaxRuntimeInSeconds": 7200}}) == 7200 + WAIT_MARGIN_SECONDS
    spot = {"StoppingCondition": {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 90000}}
    assert wait_limit_seconds(spot) == 90000 + WAIT_MARGIN_SECONDS
