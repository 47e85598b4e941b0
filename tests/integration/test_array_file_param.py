"""The Param ``array_file`` against the real campaign database (issue 33): the seed's
four ``region,s3_uri`` lines become four targets; each bad line is refused naming the
line, the field and what to add, before anything is launched."""

from __future__ import annotations

from typing import Any

import pytest

from regional_training.plan import array_file, scan
from regional_training.plan.selection import select_targets
from regional_training.plan.targets import TargetError

pytestmark = pytest.mark.integration

PARAMS = {"campaigns": [], "regions": [], "instance_type": "ml.p4d.24xlarge", "processes_per_host": None,
          "placement": "cheapest", "purchase_options": [], "scan": None}
SEED_FILE = (
    "us-east-1,s3://mrt-campaign-data-us-east-1/datasets/boston-winter-2026/boston-winter-2026-v1/\n"
    "us-west-2,s3://mrt-campaign-data-us-west-2/datasets/seattle-rain-2026/seattle-rain-2026-v1/\n"
    "eu-west-1,s3://mrt-campaign-data-eu-west-1/datasets/dublin-urban-2026/dublin-urban-2026-v1/\n"
    "eu-central-1,s3://mrt-campaign-data-eu-central-1/datasets/munich-autobahn-2026/munich-autobahn-2026-v1/\n"
)
BOSTON_WEST = "s3://mrt-campaign-data-us-west-2/datasets/boston-winter-2026/boston-winter-2026-v1/"


def place(db: Any, text: str, **params: Any) -> dict[str, Any]:
    return select_targets(db, {**PARAMS, **params}, array_lines=array_file.read_input(text))


def test_the_seeds_four_lines_are_four_targets_placed_by_the_file(db: Any) -> None:
    result = place(db, SEED_FILE)
    targets = result["targets"]
    assert [(t["region_code"], t["dataset_key"], t["campaign_key"], t["output_bucket"]) for t in targets] == [
        ("us-east-1", "boston-winter-2026-v1", "boston-winter-2026", "mrt-output-us-east-1"),
        ("us-west-2", "seattle-rain-2026-v1", "seattle-rain-2026", "mrt-output-us-west-2"),
        ("eu-west-1", "dublin-urban-2026-v1", "dublin-urban-2026", "mrt-output-eu-west-1"),
        ("eu-central-1", "munich-autobahn-2026-v1", "munich-autobahn-2026", "mrt-output-eu-central-1"),
    ]
    # Placed by the file (Param placement=cheapest notwithstanding): on-demand, no failover.
    assert {(t["purchase_option"], t["placement_rank"], len(t["alternatives"])) for t in targets} == {
        ("on_demand", 1, 0)}
    assert result["left_out"] == [] and all(isinstance(t["copy_id"], int) for t in targets)
    # The stored array file the children read is this project's longer form of the same lines.
    from regional_training.plan.targets import Target

    stored = array_file.parse(array_file.render(Target.from_dict(t) for t in targets))
    assert sorted((r["region"], r["s3_uri"]) for r in stored) == sorted(
        (line["region"], line["s3_uri"]) for line in array_file.read_input(SEED_FILE))


def test_a_copy_outside_the_recording_region_and_the_longer_form_are_taken(db: Any) -> None:
    text = f"us-west-2,{BOSTON_WEST},boston-winter-2026-v1,boston-winter-2026,mrt-output-us-west-2\n"
    (target,) = place(db, text)["targets"]
    assert (target["region_code"], target["dataset_key"]) == ("us-west-2", "boston-winter-2026-v1")


def test_every_line_trains_once_per_scan_point(db: Any) -> None:
    grid = {"grid": {"learning_rate": [0.1, 0.2]}}
    targets = select_targets(db, {**PARAMS, "scan": grid}, array_lines=array_file.read_input(SEED_FILE),
                             allow_list=scan.AllowList(image_tags=frozenset(), entry_points=frozenset()))["targets"]
    assert len(targets) == 8 and {t["point_id"] for t in targets} == {"p01", "p02"}


@pytest.mark.parametrize(("text", "params", "message"), [
    ("us-east-2,s3://mrt-campaign-data-us-east-1/datasets/x/y/\n", {},
     r"line 1: field 'region' = 'us-east-2' is not a region of the campaign database \(known: eu-central-1, "
     r"eu-west-1, us-east-1, us-west-2\); add its row to the table regions"),
    ("us-east-1,s3://other-bucket/datasets/boston-winter-2026/boston-winter-2026-v1/\n", {},
     r"line 1: field 's3_uri' = 's3://other-bucket/.*' is not in a bucket of region 'us-east-1' "
     r"\(mrt-campaign-data-us-east-1\); fix the region or the URI"),
    ("us-east-1,s3://mrt-campaign-data-us-east-1/datasets/camp-x/data-x/\n", {},
     r"line 1: field 's3_uri' = .* is not a dataset copy of the campaign database; add its row to dataset_copies "
     r"\(dataset 'data-x' of campaign 'camp-x', region_code 'us-east-1', status 'available'\)"),
    (f"us-east-1,{BOSTON_WEST}\n", {},
     r"line 1: field 'region' = 'us-east-1', but .* is the copy in 'us-west-2'; write 'us-west-2'"),
    ("eu-central-1,s3://mrt-campaign-data-eu-central-1/datasets/dublin-urban-2026/dublin-urban-2026-v1/\n", {},
     r"line 1: field 's3_uri' = .* is a copy with status 'syncing', not 'available'"),
    (SEED_FILE, {"regions": ["us-east-1", "us-west-2", "eu-west-1"]},
     r"line 4: field 'region' = 'eu-central-1' is not in the Param 'regions' .*; add it there or remove the line"),
    (SEED_FILE, {"campaigns": ["boston-winter-2026"]},
     r"line 2: the copy .* belongs to campaign 'seattle-rain-2026', which is not in the Param 'campaigns'"),
    (SEED_FILE, {"purchase_options": ["spot"]}, r"param 'purchase_options' = \['spot'\]: .* add 'on_demand'"),
    (f"us-west-2,{BOSTON_WEST},boston-winter-2026-v1,boston-winter-2026,mrt-output-us-east-1\n", {},
     r"line 1: field 'output_bucket' = 'mrt-output-us-east-1', but the campaign database says "
     r"'mrt-output-us-west-2'; write that \(or give only region,s3_uri"),
    (f"us-west-2,{BOSTON_WEST},boston-winter-2026-v1,seattle-rain-2026,mrt-output-us-west-2\n", {},
     r"line 1: field 'campaign_key' = 'seattle-rain-2026', but the campaign database says 'boston-winter-2026'"),
])
def test_a_bad_line_is_refused_naming_line_field_and_what_to_add(db: Any, text: str, params: dict[str, Any],
                                                                   message: str) -> None:
    with pytest.raises(TargetError, match=message) as err:
        place(db, text, **params)
    assert str(err.value).startswith("param 'array_file'") or "purchase_options" in params


def test_an_asset_triggered_run_refuses_an_array_file(db: Any) -> None:
    with pytest.raises(TargetError, match="param 'array_file': an asset-triggered run"):
        select_targets(db, PARAMS, dataset_ids=[1], array_lines=array_file.read_input(SEED_FILE))
