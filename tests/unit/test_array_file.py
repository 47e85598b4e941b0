from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regional_training import array_file
from regional_training.targets import Target, TargetError

regions = st.sampled_from(["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2", "us-gov-west-1"])
keys = st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True)
buckets = st.from_regex(r"[a-z0-9][a-z0-9-]{1,20}[a-z0-9]", fullmatch=True)
path_parts = st.from_regex(r"[A-Za-z0-9_.=-]{1,12}", fullmatch=True)


@st.composite
def target_lists(draw: st.DrawFn) -> list[Target]:
    items = draw(st.lists(st.tuples(regions, keys, keys, buckets, st.lists(path_parts, max_size=3)), max_size=12))
    out, seen = [], set()
    for i, (region, campaign, dataset, bucket, parts) in enumerate(items):
        if (region, dataset) in seen:
            continue
        seen.add((region, dataset))
        prefix = "/".join([*parts, dataset]) + "/"
        out.append(Target(region, f"s3://{bucket}/{prefix}", campaign, dataset, i + 1, i + 1, f"out-{bucket}"))
    return out


@given(target_lists())
def test_render_parse_round_trip(targets: list[Target]) -> None:
    text = array_file.render(targets)
    rows = array_file.parse(text)
    expected = sorted(targets, key=lambda t: (t.region_code, t.target_key))
    assert [(r["region"], r["s3_uri"], r["target_key"]) for r in rows] == [
        (t.region_code, t.s3_uri, t.target_key) for t in expected
    ]
    assert text.count("\n") == len(targets)


@given(target_lists(), st.randoms())
def test_render_is_byte_identical_whatever_the_order(targets: list[Target], rnd) -> None:
    shuffled = list(targets)
    rnd.shuffle(shuffled)
    assert array_file.render(shuffled).encode() == array_file.render(targets).encode()


def test_seed_format_region_and_uri_first() -> None:
    t = Target("eu-west-1", "s3://data-eu/datasets/c/d/", "c", "d", 1, 1, "out-eu")
    assert array_file.render([t]) == "eu-west-1,s3://data-eu/datasets/c/d/,d,c,out-eu\n"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("s3_uri", "s3://data/a,b/", "field 's3_uri'"),
        ("s3_uri", "s3://data/a\nb/", "field 's3_uri'"),
        ("s3_uri", "https://data/a/", "field 's3_uri'"),
        ("region_code", "moon-base-1", "field 'region'"),
        ("region_code", "us-east-1,x", "field 'region'"),
        ("campaign_key", "c\r", "field 'campaign_key'"),
    ],
)
def test_render_rejects_values_that_break_the_format(field: str, value: str, message: str) -> None:
    good = dict(region_code="us-east-1", s3_uri="s3://data/ok/", campaign_key="c", dataset_key="d",
                dataset_id=1, copy_id=1, output_bucket="out")
    other = Target(**{**good, "dataset_key": "e", "s3_uri": "s3://data/other/"})
    bad = Target(**{**good, field: value})
    with pytest.raises(TargetError) as err:
        array_file.render([other, bad])
    assert message in str(err.value)
    assert "array line" in str(err.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("us-east-1,s3://bkt/x/,k,c,out,extra\n", "array line 1: expected 5 fields"),
        ("us-east-1,s3://bkt/x/,k,c,out\nus-east-1,s3://bkt/y/,k2,c\n", "array line 2: expected 5 fields"),
        ("us-east-1,s3://bkt/x/,k,c,out", "not terminated"),
        ("mars-1,s3://bkt/x/,k,c,out\n", "field 'region'"),
        ("us-east-1,ftp://b/x/,k,c,out\n", "field 's3_uri'"),
        ("us-east-1,s3://bkt/x/,k,c,Bad_Bucket\n", "field 'output_bucket'"),
    ],
)
def test_parse_names_the_bad_line(text: str, message: str) -> None:
    with pytest.raises(TargetError, match=message):
        array_file.parse(text)
