"""The reuse key and window (pure): any changed input is a different key; windows are
exact ISO-8601 durations or off."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regional_training.plan.params import reuse_window_spec as param_spec  # params owns every Param schema
from regional_training.plan.reuse import ReuseKey, ReuseWindowError, image_reference, parse_window

HEX64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
keys = st.builds(
    ReuseKey,
    dataset_id=st.integers(1, 10**9),
    copy_id=st.integers(1, 10**9),
    dataset_version=st.sampled_from(["2026-09-01T00:00:00.000000Z", "2026-11-27T02:00:00.123456Z"]),
    hyperparameters_sha256=HEX64,
    training_image=st.sampled_from(["mrt/resnet50:1.0", "mrt/resnet50:1.1", "mrt/resnet50@sha256:" + "a" * 64]),
    instance_type=st.sampled_from(["ml.p4d.24xlarge", "ml.g5.12xlarge", "ml.p3.16xlarge"]),
    instance_count=st.integers(1, 16),
)
CHANGES = {
    "hyperparameters_sha256": HEX64,
    "training_image": st.from_regex(r"mrt/resnet50:[0-9]\.[0-9]{1,2}", fullmatch=True),
    "dataset_version": st.from_regex(r"2026-1[0-2]-0[1-9]T0[0-9]:00:00\.000000Z", fullmatch=True),
    "dataset_id": st.integers(1, 10**9),
    "copy_id": st.integers(1, 10**9),
    "instance_type": st.sampled_from(["ml.p4d.24xlarge", "ml.g5.48xlarge", "ml.p5.48xlarge"]),
    "instance_count": st.integers(1, 16),
}


@given(key=keys, data=st.data())
def test_a_changed_input_never_has_the_same_key(key: ReuseKey, data: st.DataObject) -> None:
    field = data.draw(st.sampled_from(sorted(CHANGES)))
    value: Any = data.draw(CHANGES[field].filter(lambda v: v != getattr(key, field)))
    changed = dataclasses.replace(key, **{field: value})
    assert changed.digest() != key.digest()
    assert changed.row_fields()["reuse_key"] != key.row_fields()["reuse_key"]


@given(key=keys)
def test_the_same_inputs_have_the_same_key(key: ReuseKey) -> None:
    assert dataclasses.replace(key).digest() == key.digest()
    assert re.fullmatch(r"[0-9a-f]{64}", key.digest())


@pytest.mark.parametrize(("value", "window"), [
    ("PT12H", timedelta(hours=12)), ("P7D", timedelta(days=7)), ("P2W", timedelta(days=14)),
    ("P1DT2H30M", timedelta(days=1, hours=2, minutes=30)), ("PT90S", timedelta(seconds=90)),
    (None, None), ("", None),
])
def test_windows(value: str | None, window: timedelta | None) -> None:
    assert parse_window(value) == window
    if value:
        assert re.fullmatch(param_spec()["pattern"], value)


@pytest.mark.parametrize(("value", "message"), [
    ("P1M", "years and months are refused"), ("P1Y", "years and months are refused"),
    ("7 days", "not an ISO-8601 duration"), ("-P1D", "not an ISO-8601 duration"), ("P", "not an ISO-8601"),
    ("2026-01-01", "not an ISO-8601"), ("PT0S", "is zero"), ("P91D", "90-day maximum"),
])
def test_bad_windows_are_named_errors(value: str, message: str) -> None:
    with pytest.raises(ReuseWindowError, match=message) as err:
        parse_window(value)
    assert "reuse_completed_within" in str(err.value)


def test_the_param_is_off_by_default() -> None:
    spec = param_spec()
    assert spec["default"] is None and spec["type"] == ["null", "string"]


def test_image_reference_prefers_the_digest() -> None:
    assert image_reference("mrt/resnet50", "1.0") == "mrt/resnet50:1.0"
    digest = "sha256:" + "b" * 64
    assert image_reference("mrt/resnet50", "1.0", digest) == f"mrt/resnet50@{digest}"
    with pytest.raises(ValueError, match="repository:tag"):
        image_reference("Bad Repo", "1.0")
