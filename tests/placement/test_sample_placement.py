"""The sample pricing makes a non-trivial plan; fetch_placement groups it for the DAG."""

from __future__ import annotations

from decimal import Decimal

import pytest

from regional_training.plan.placement import fetch_placement

P4D = {"instance_type": "ml.p4d.24xlarge", "instance_count": 2, "estimated_hours": 10}


def summary(plan):
    return [(t.dataset_key, t.chosen.region_code if t.chosen else None,
             t.chosen.purchase_option if t.chosen else None, t.left_out_reason) for t in plan.targets]


def test_sample_plan_uses_reserved_spot_and_leaves_nothing_out(seeded_pg) -> None:
    plan = fetch_placement(seeded_pg, **P4D)
    assert summary(plan) == [
        # boston's copy in Oregon takes the 2 prepaid reserved p4d (not its home region)
        ("boston-winter-2026-v1", "us-west-2", "reserved", None),
        # the reservation is used up: seattle falls back to Oregon spot
        ("seattle-rain-2026-v1", "us-west-2", "spot", None),
        ("dublin-urban-2026-v1", "eu-west-1", "spot", None),
        ("munich-autobahn-2026-v1", "eu-central-1", "spot", None),
    ]
    boston = plan.targets[0]
    assert boston.chosen.expected_cost_usd == 0
    # us-east-1 spot uses the newest observation (16.96), not the older 11.20
    east_spot = [a for a in boston.alternatives if (a.region_code, a.purchase_option) == ("us-east-1", "spot")]
    assert east_spot[0].price_per_instance_hour == Decimal("16.9600")
    assert east_spot[0].expected_cost_usd == Decimal("16.96") * Decimal("1.35") * 20
    assert east_spot[0].billing_usd_per_hour == Decimal("37.6885")  # spot is billed at on-demand rate
    assert [a.rank for a in boston.alternatives] == [2, 3, 4, 5]
    assert plan.total_expected_cost_usd == Decimal("380") + Decimal("299") + Decimal("423")
    seattle = plan.targets[1]
    # its reserved alternative exists but does not fit (boston holds the reservation)
    reserved = [a for a in seattle.alternatives if a.purchase_option == "reserved"]
    assert reserved and not reserved[0].fits_capacity and reserved[0].rank == len(seattle.alternatives) + 1
    assert [a.purchase_option for a in seattle.failover_candidates()] == ["on_demand"]


def test_budget_leaves_out_and_lists_the_target(seeded_pg) -> None:
    plan = fetch_placement(seeded_pg, **P4D, budget_usd=1000)
    assert [t.dataset_key for t in plan.left_out] == ["munich-autobahn-2026-v1"]
    assert plan.left_out[0].left_out_reason == "over_budget"
    assert plan.left_out[0].alternatives  # what it would have cost is still shown
    assert plan.total_expected_cost_usd == Decimal("679") <= Decimal(1000)


def test_quota_and_region_allow_list(seeded_pg) -> None:
    # p5: eu-central-1 is at quota (0); munich only has a copy there
    plan = fetch_placement(seeded_pg, instance_type="ml.p5.48xlarge", instance_count=2, estimated_hours=4,
                           campaign_keys=["munich-autobahn-2026", "berlin-night-2026"])
    assert {t.left_out_reason for t in plan.targets} == {"no_capacity"}
    # only on-demand allowed, Europe only: US-only datasets have no copy there
    plan = fetch_placement(seeded_pg, **P4D, allowed_purchase_options=["on_demand"],
                           region_codes=["eu-west-1", "eu-central-1"])
    assert summary(plan) == [
        ("boston-winter-2026-v1", None, None, "no_copy"),
        ("seattle-rain-2026-v1", None, None, "no_copy"),
        ("dublin-urban-2026-v1", "eu-west-1", "on_demand", None),
        ("munich-autobahn-2026-v1", "eu-central-1", "on_demand", None),
    ]
    # no price for an unknown instance type anywhere: no_offer, not silently dropped
    plan = fetch_placement(seeded_pg, instance_type="ml.trn1.32xlarge", instance_count=1, estimated_hours=1)
    assert len(plan.targets) == 4 and {t.left_out_reason for t in plan.targets} == {"no_offer"}


def test_explicit_dataset_ids_and_failover_order(seeded_pg) -> None:
    plan = fetch_placement(seeded_pg, **P4D, dataset_ids=[1])
    (boston,) = plan.targets
    order = [(a.region_code, a.purchase_option) for a in boston.failover_candidates(exclude_regions=["us-west-2"])]
    assert order == [("us-east-1", "spot"), ("us-east-1", "on_demand")]


@pytest.mark.parametrize("bad", [
    {"instance_count": 0}, {"estimated_hours": 0}, {"budget_usd": -1},
    {"allowed_purchase_options": ["savings_plan"]},
])
def test_bad_parameters_are_refused_before_sql(bad) -> None:
    with pytest.raises(ValueError):
        fetch_placement(None, **{**P4D, **bad})


def test_a_scan_places_jobs_one_per_dataset_and_point(seeded_pg) -> None:
    """Boston has copies in us-east-1 and us-west-2: five points (p4d, 2 instances each)
    take us-west-2's 2 reserved instances first, then its spot, until its quota of 8 is
    used: the fifth job goes to us-east-1."""
    with seeded_pg.cursor() as cur:
        cur.execute("SELECT dataset_id FROM datasets WHERE dataset_key = 'boston-winter-2026-v1'")
        (boston,) = cur.fetchone()
    seeded_pg.rollback()
    points = ["p01", "p02", "p03", "p04", "p05"]
    plan = fetch_placement(seeded_pg, **P4D, dataset_ids=[boston], point_ids=points)
    assert [(t.dataset_key, t.point_id) for t in plan.targets] == [("boston-winter-2026-v1", p) for p in points]
    chosen = [(t.chosen.region_code, t.chosen.purchase_option) for t in plan.targets if t.chosen]
    # the reservation (2 instances = one job) goes to the first point; the rest by cost and quota
    assert chosen[0] == ("us-west-2", "reserved")
    used: dict[str, int] = {}
    for region, _option in chosen:
        used[region] = used.get(region, 0) + P4D["instance_count"]
    with seeded_pg.cursor() as cur:
        cur.execute("SELECT region_code, quota_instances FROM instance_capacity WHERE instance_type = %s",
                    (P4D["instance_type"],))
        quota = dict(cur.fetchall())
    seeded_pg.rollback()
    assert all(n <= quota[region] for region, n in used.items())  # every job counted against the quota
    assert used == {"us-west-2": 8, "us-east-1": 2}  # one dataset, spread over both of its regions
    assert chosen[-1][0] == "us-east-1"
    # without a scan: one job for the dataset, no point
    single = fetch_placement(seeded_pg, **P4D, dataset_ids=[boston])
    assert [(t.point_id, t.chosen.region_code) for t in single.targets if t.chosen] == [(None, "us-west-2")]
