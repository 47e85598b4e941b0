from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regional_training.plan import array_file
from regional_training.plan.targets import Target, TargetError

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


# --- the seed's own file, brought through the Param array_file (issue 33) ---

SEED_FILE = (
    "us-east-1,s3://mrt-campaign-data-us-east-1/datasets/boston-winter-2026/boston-winter-2026-v1/\n"
    "us-west-2,s3://mrt-campaign-data-us-west-2/datasets/seattle-rain-2026/seattle-rain-2026-v1/\n"
    "eu-west-1,s3://mrt-campaign-data-eu-west-1/datasets/dublin-urban-2026/dublin-urban-2026-v1/\n"
    "eu-central-1,s3://mrt-campaign-data-eu-central-1/datasets/munich-autobahn-2026/munich-autobahn-2026-v1/\n"
)


def test_the_seeds_four_line_file_reads_as_four_lines_in_its_order() -> None:
    lines = array_file.read_input(SEED_FILE)
    assert [(line["line"], line["region"]) for line in lines] == [
        (1, "us-east-1"), (2, "us-west-2"), (3, "eu-west-1"), (4, "eu-central-1")]
    assert all(set(line) == {"line", "region", "s3_uri"} for line in lines)
    # CRLF line ends, no final newline, blank lines: the same lines (none shifts a field).
    assert array_file.read_input("\r\n" + SEED_FILE.replace("\n", "\r\n").rstrip()) == [
        {**line, "line": line["line"] + 1} for line in lines]


def test_the_longer_form_is_read_with_its_fields() -> None:
    (line,) = array_file.read_input("eu-west-1,s3://data-eu/datasets/c/d/,d,c,out-eu\n")
    assert line == {"line": 1, "region": "eu-west-1", "s3_uri": "s3://data-eu/datasets/c/d/", "target_key": "d",
                    "campaign_key": "c", "output_bucket": "out-eu"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("region,s3_uri\n" + SEED_FILE, r"line 1: 'region,s3_uri' is a header; remove it"),
        ("us-east-1\n", r"line 1: field 's3_uri' is missing .*add ',s3://<bucket>/<prefix>/' after the region"),
        ("us-east-1,s3://bkt/x/,k\n", r"line 1: 3 fields .*add campaign_key,output_bucket"),
        ("us-east-1,s3://bkt/x/,k,c,out,extra\n", r"line 1: 6 fields .*remove the fields after the 5th"),
        ("us-east-1,s3://bkt/x/,k_p01,c,out,p01,lr=0.1\n", r"line 1: has the scan fields .*Param 'scan'"),
        (SEED_FILE + "us-east-9x,s3://bkt/x/\n", r"line 5: field 'region' = 'us-east-9x' is not an AWS region"),
        ("us-east-1,s3://bkt/x\n", r"line 1: field 's3_uri' = 's3://bkt/x' .*add the trailing '/'"),
        ("us-east-1,s3://bkt/x/\neu-west-1,s3://bkt/y/\nus-east-1,s3://bkt/x/\n",
         r"line 3: field 's3_uri' = 's3://bkt/x/' duplicates line 1; remove one"),
        ('us-east-1,"s3://bkt/x/"\n', r"line 1: field 's3_uri' .* is quoted; remove the quotes"),
        ("us-east-1,\n", r"line 1: field 's3_uri' is empty; add its value"),
        ("us-east-1,s3://bkt/x/,k,c,Bad_Bucket\n", r"line 1: field 'output_bucket' = 'Bad_Bucket' is not an S3 bucket"),
        ("\n\n", r"param 'array_file': no lines; add one region,s3_uri line per target"),
    ],
)
def test_a_malformed_input_file_is_refused_naming_line_field_and_fix(text: str, message: str) -> None:
    with pytest.raises(TargetError, match=message) as err:
        array_file.read_input(text)
    assert str(err.value).startswith("param 'array_file'")


def test_the_stored_files_reader_says_which_fields_a_seed_line_lacks() -> None:
    # The Batch child reads the stored file with parse(): given the seed's two-field file
    # it names the three fields to add, and where a seed file belongs.
    with pytest.raises(TargetError, match=r"array line 1: expected 5 fields.*found 2.*add target_key,campaign_key,"
                                          r"output_bucket after its 2 field\(s\).*Param 'array_file'"):
        array_file.parse(SEED_FILE)


def test_keys_from_uri_follow_the_campaign_layout() -> None:
    assert array_file.keys_from_uri("s3://b/datasets/camp/data-v1/") == ("camp", "data-v1")
    assert array_file.keys_from_uri("s3://bkt/x/") == ("<campaign>", "x")


@pytest.mark.parametrize(("value", "uri"), [("s3://b/array.csv", True), (" s3://b/a.csv\n", True),
                                             (SEED_FILE, False), ("us-east-1,s3://bkt/x/", False)])
def test_the_param_is_a_uri_or_the_files_text(value: str, uri: bool) -> None:
    assert array_file.is_uri(value) is uri
