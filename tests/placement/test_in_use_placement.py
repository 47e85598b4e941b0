"""Live capacity (issue 31): instances already in use in a region (another DAG's jobs)
are taken off its quota before placement."""

from __future__ import annotations

import pytest

from regional_training.plan.placement import fetch_placement

G5 = {"instance_type": "ml.g5.12xlarge", "instance_count": 1, "estimated_hours": 2,
      "allowed_purchase_options": ["on_demand"]}


def test_three_running_jobs_in_a_region_with_quota_four_leave_room_for_one(seeded_pg) -> None:
    """Boston at four scan points, on-demand only (7.09 USD/h in both its regions, so
    us-east-1 wins each tie by region), us-east-1's g5 quota set to 4: with nothing in use
    all four go there; with another DAG's 3 instances running there, one does and the
    other three go to us-west-2."""
    with seeded_pg.cursor() as cur:
        cur.execute("SELECT dataset_id FROM datasets WHERE dataset_key = 'boston-winter-2026-v1'")
        (boston,) = cur.fetchone()
        cur.execute("SELECT quota_instances FROM instance_capacity WHERE region_code = 'us-east-1'"
                    " AND instance_type = 'ml.g5.12xlarge'")
        (saved,) = cur.fetchone()
        cur.execute("UPDATE instance_capacity SET quota_instances = 4 WHERE region_code = 'us-east-1'"
                    " AND instance_type = 'ml.g5.12xlarge'")
    seeded_pg.commit()  # fetch_placement commits: the shared database is restored below
    try:
        points = ["p01", "p02", "p03", "p04"]
        free = fetch_placement(seeded_pg, **G5, dataset_ids=[boston], point_ids=points)
        assert [t.chosen.region_code for t in free.targets] == ["us-east-1"] * 4
        assert {t.chosen.instances_in_use for t in free.targets} == {0}
        busy = fetch_placement(seeded_pg, **G5, dataset_ids=[boston], point_ids=points, in_use={"us-east-1": 3})
    finally:
        with seeded_pg.cursor() as cur:
            cur.execute("UPDATE instance_capacity SET quota_instances = %s WHERE region_code = 'us-east-1'"
                        " AND instance_type = 'ml.g5.12xlarge'", (saved,))
        seeded_pg.commit()
    assert [t.chosen.region_code for t in busy.targets] == ["us-east-1", "us-west-2", "us-west-2", "us-west-2"]
    east = busy.targets[0].chosen
    assert (east.instances_in_use, east.quota_instances) == (3, 1)  # the room left
    # us-east-1 is full: the others' alternatives there are marked as not fitting
    for t in busy.targets[1:]:
        assert [a.fits_capacity for a in t.alternatives if a.region_code == "us-east-1"] == [False]


@pytest.mark.parametrize("bad", [{"us-east-1": -1}, {"us-east-1": 1.5}])
def test_bad_in_use_counts_are_refused_before_sql(bad) -> None:
    with pytest.raises(ValueError, match="in_use"):
        fetch_placement(None, **G5, in_use=bad)
