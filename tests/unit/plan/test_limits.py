"""Limits up front: the mapping limit from Airflow's config, regions from botocore's data."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from regional_training.plan.limits import (
    TooManyTargetsError,
    UnknownRegionError,
    check_region,
    check_regions,
    check_target_count,
    known_sagemaker_regions,
    max_map_length,
)


def test_the_mapping_limit_is_airflows_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert max_map_length() == 1024  # Airflow's default
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "3")
    assert max_map_length() == 3
    check_target_count(3)
    with pytest.raises(TooManyTargetsError, match=r"4 targets selected, .*max_map_length = 3"):
        check_target_count(4)


def test_1025_targets_are_refused_with_the_count_the_limit_and_what_to_narrow() -> None:
    check_target_count(1024)
    with pytest.raises(TooManyTargetsError) as info:
        check_target_count(1025)
    message = str(info.value)
    assert "1025 targets" in message and "max_map_length = 1024" in message
    assert "'campaigns'" in message and "'regions'" in message
    check_target_count(0)
    with pytest.raises(TooManyTargetsError, match="11 targets"):
        check_target_count(11, limit=10)


def test_known_regions_come_from_botocore_in_every_partition() -> None:
    regions = known_sagemaker_regions()
    assert {"us-east-1", "eu-west-1", "ap-south-1", "us-gov-west-1", "cn-north-1"} <= regions
    assert "us-east-9" not in regions and "aws-global" not in regions


def test_an_unknown_region_is_refused_naming_the_row() -> None:
    check_regions([("target row 1", "us-east-1"), ("param 'regions'", "eu-west-1")])
    with pytest.raises(UnknownRegionError, match=r"^target row 2 \('us-east-9', 'imagenet-v1'\): region 'us-east-9'"):
        check_regions([("target row 1", "us-east-1"), ("target row 2 ('us-east-9', 'imagenet-v1')", "us-east-9")])
    with pytest.raises(UnknownRegionError, match="param 'regions'"):
        check_region("param 'regions'", "mars-north-1")


def test_limit_errors_are_not_retried() -> None:
    assert issubclass(TooManyTargetsError, AirflowFailException)
    assert issubclass(UnknownRegionError, AirflowFailException)
