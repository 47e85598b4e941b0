"""The identifier rules: S3's bucket rules, and the database's CHECKs kept in step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regional_training.runtime import identifiers

MIGRATIONS = Path(__file__).resolve().parents[3] / "include" / "sql" / "migrations"


@pytest.mark.parametrize("name", ["mrt-output-us-east-1", "a.b.c", "abc", "1bucket2", "a" * 63])
def test_valid_bucket_names(name: str) -> None:
    assert identifiers.is_bucket(name)


@pytest.mark.parametrize(
    "name",
    ["ab", "a" * 64, "Upper", "under_score", "-start", "end-", "two..dots", "192.168.5.4", "xn--bucket",
     "sthree-data", "amzn-s3-demo-bucket", "data-s3alias", "data--ol-s3", "data.mrap", "data--x-s3",
     "data--table-s3", None, 3],
)
def test_invalid_bucket_names(name: object) -> None:
    assert not identifiers.is_bucket(name)


def test_s3_uris_need_a_valid_bucket_and_no_separators() -> None:
    assert identifiers.is_s3_prefix("s3://mrt-data/datasets/x/")
    assert not identifiers.is_s3_prefix("s3://mrt-data/datasets/x")
    assert not identifiers.is_s3_uri("s3://two..dots/x/")
    assert not identifiers.is_s3_uri("s3://mrt-data/a,b/")
    assert not identifiers.is_s3_uri("https://mrt-data/x/")


def test_regions_keys_options_job_names_and_tags() -> None:
    assert identifiers.is_region("us-gov-west-1") and not identifiers.is_region("moon-base-1")
    assert identifiers.is_key("seattle-rain-2026-v1") and not identifiers.is_key("-x")
    assert identifiers.is_purchase_option("spot") and not identifiers.is_purchase_option("free")
    assert identifiers.is_job_name("mrt-us-east-1-a2") and not identifiers.is_job_name("a_b")
    assert identifiers.is_tag_value("manual__2026-11-28T16:00:00+00:00")
    assert not identifiers.is_tag_value("a,b") and not identifiers.is_tag_value("x" * 257)


def _checks() -> dict[str, str]:
    """``column -> CHECK text`` of every column CHECK in the migrations."""
    text = "\n".join(p.read_text() for p in sorted(MIGRATIONS.glob("*.sql")))
    return {m.group(1): m.group(2) for m in re.finditer(r"CHECK \((\w+) (~ '[^']*'|IN \([^)]*\))\)", text)}


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        ("region_code", f"~ '{identifiers.REGION_PATTERN}'"),
        ("output_bucket", f"~ '{identifiers.BUCKET_PATTERN}'"),
        ("campaign_key", f"~ '{identifiers.KEY_PATTERN}'"),
        ("dataset_key", f"~ '{identifiers.KEY_PATTERN}'"),
        ("purchase_option", "IN (" + ", ".join(f"'{o}'" for o in sorted(identifiers.PURCHASE_OPTIONS)) + ")"),
    ],
)
def test_the_database_checks_match_the_rules(column: str, expected: str) -> None:
    found = _checks()[column]
    if column == "purchase_option":  # order in SQL is free
        assert sorted(re.findall(r"'(\w+)'", found)) == sorted(identifiers.PURCHASE_OPTIONS)
    else:
        assert found == expected


def test_uris_longer_than_sagemaker_and_s3_allow_are_refused() -> None:
    prefix = "s3://mrt-data/"
    assert identifiers.is_s3_uri(prefix + "k" * (identifiers.S3_URI_MAX - len(prefix)))
    assert not identifiers.is_s3_uri(prefix + "k" * (identifiers.S3_URI_MAX - len(prefix) + 1))
    # S3 counts a key's bytes: 1,000 two-byte characters are over its 1,024.
    assert not identifiers.is_s3_uri(prefix + "é" * 600)


@given(st.text(max_size=300))
def test_any_text_becomes_a_valid_tag_value(text: str) -> None:
    value = identifiers.tag_value(text)
    assert identifiers.is_tag_value(value)
    if identifiers.is_tag_value(text):
        assert value == text  # valid values are kept as they are


def test_target_keys_are_the_dataset_key_or_campaign_qualified() -> None:
    assert identifiers.target_key("d-v1") == "d-v1"
    assert identifiers.target_key("d-v1", "boston") == "boston.d-v1"
    assert identifiers.is_target_key("boston.d-v1") and identifiers.is_target_key("d-v1")
    assert not identifiers.is_target_key("a.b.c") and not identifiers.is_target_key(".d")
