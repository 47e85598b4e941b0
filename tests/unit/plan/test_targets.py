from __future__ import annotations

from typing import Any

import pytest

from regional_training.plan.targets import Target, TargetError, validate_rows


def row(**overrides: Any) -> dict[str, Any]:
    base = {
        "region_code": "eu-west-1",
        "s3_uri": "s3://mrt-campaign-data-eu-west-1/datasets/c/d/",
        "campaign_key": "c",
        "dataset_key": "d",
        "dataset_id": 3,
        "copy_id": 5,
        "output_bucket": "mrt-output-eu-west-1",
    }
    return {**base, **overrides}


def test_valid_rows_become_targets() -> None:
    targets = validate_rows([row()], requested_campaigns=["c"], allowed_regions=[], known_regions={"eu-west-1"})
    assert [t.target_key for t in targets] == ["d"]


@pytest.mark.parametrize(
    ("rows", "kwargs", "message"),
    [
        ([row(s3_uri="http://x/d/")], {}, r"target row 1 \('eu-west-1', 'd'\): field 's3_uri'"),
        ([row(s3_uri="s3://bucket/a,b/")], {}, "field 's3_uri'"),
        ([row(s3_uri="s3://bucket/file.tfrecord")], {}, "must be a prefix"),
        ([row(region_code="eu_west_1")], {}, "field 'region_code'"),
        ([row(output_bucket="Not_A_Bucket")], {}, "field 'output_bucket'"),
        ([row(), row(dataset_key="e")], {}, r"target row 2 .*duplicates target row 1"),
        ([row(), row(s3_uri="s3://other/x/")], {}, "target 'd' appears twice"),
        ([row()], {"allowed_regions": ["us-east-1"]}, "region 'eu-west-1' is not in the allowed regions"),
        ([row()], {"allowed_regions": ["xx-nowhere-1"]}, "param 'regions': 'xx-nowhere-1' is not a region of"),
        ([row()], {"allowed_regions": ["not a region"]}, "param 'regions': 'not a region' is not an AWS region"),
        ([row()], {"requested_campaigns": ["c", "ghost"]}, "param 'campaigns': no available dataset copy .*'ghost'"),
        ([], {}, "no training targets"),
    ],
)
def test_bad_input_is_named(rows: list[dict[str, Any]], kwargs: dict[str, Any], message: str) -> None:
    args = {"requested_campaigns": [], "allowed_regions": [], "known_regions": {"eu-west-1", "us-east-1"}, **kwargs}
    with pytest.raises(TargetError, match=message):
        validate_rows(rows, **args)


def test_a_dataset_key_shared_by_two_campaigns_gives_both_a_qualified_key() -> None:
    """The schema makes dataset keys unique per campaign only: both datasets train, each
    under ``campaign.dataset``; a key used once keeps its plain form."""
    rows = [row(), row(campaign_key="other", s3_uri="s3://mrt-campaign-data-eu-west-1/datasets/other/d/",
                       dataset_id=4, copy_id=6), row(dataset_key="e", s3_uri="s3://b-e/e/", dataset_id=7)]
    targets = validate_rows(rows, requested_campaigns=[], allowed_regions=[], known_regions={"eu-west-1"})
    assert [t.target_key for t in targets] == ["c.d", "other.d", "e"]
    assert [Target.from_dict(t.to_dict()).target_key for t in targets] == ["c.d", "other.d", "e"]


def test_a_failover_alternative_in_a_region_sagemaker_lacks_is_refused_like_a_first_choice() -> None:
    # Issue 33: only first choices were checked against SageMaker's regions; a move to
    # an unknown region would have failed at failover time, after paid work elsewhere.
    from regional_training.plan import limits
    from regional_training.plan.selection import regions_to_check

    first = {"dataset_key": "d", "campaign_key": "c", "region_code": "eu-west-1", "point_id": "p02"}
    targets = [{**first, "alternatives": [{**first, "region_code": "us-west-2"},
                                          {**first, "region_code": "us-east-9"}]}]
    labelled = regions_to_check({"regions": []}, targets)
    assert labelled == [("target row 1 ('d_p02')", "eu-west-1"),
                        ("alternative 1 of target row 1 ('d_p02')", "us-west-2"),
                        ("alternative 2 of target row 1 ('d_p02')", "us-east-9")]
    with pytest.raises(limits.UnknownRegionError,
                       match=r"alternative 2 of target row 1 \('d_p02'\): region 'us-east-9' is not a region "
                             "SageMaker serves"):
        limits.check_regions(labelled)
    limits.check_regions(labelled[:2])  # known regions pass
