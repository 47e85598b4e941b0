"""Schema, sample data and the target query against a real PostgreSQL server."""

from __future__ import annotations

import psycopg2
import pytest

from regional_training.plan.selection import select_targets
from regional_training.plan.targets import TargetError
from regional_training.runtime import campaign_db

pytestmark = pytest.mark.integration

DEFAULTS = {"campaigns": [], "regions": [], "instance_type": "ml.p4d.24xlarge", "processes_per_host": None,
            "placement": "region_local"}
CHEAPEST = {**DEFAULTS, "placement": "cheapest", "instance_count": 1, "estimated_hours": 2, "budget_usd": None,
            "purchase_options": []}


def test_migrations_are_recorded_and_idempotent(db) -> None:
    assert campaign_db.migrate(db, seed=True) == []
    with db.cursor() as cur:
        cur.execute("SELECT version FROM schema_migrations ORDER BY version")
        versions = [r[0] for r in cur.fetchall()]
        cur.execute("SELECT count(*) FROM campaigns")
        campaigns = cur.fetchone()[0]
    assert versions[0] == "V001"
    assert campaigns == 5  # seeding twice added nothing


def test_a_changed_applied_migration_is_refused(db) -> None:
    with db, db.cursor() as cur:
        cur.execute("UPDATE schema_migrations SET sha256 = repeat('0', 64) WHERE version = 'V001'")
    try:
        with pytest.raises(RuntimeError, match=r"V001__campaign_metadata\.sql changed after it was applied"):
            campaign_db.migrate(db)
    finally:
        db.rollback()
        digest = __import__("hashlib").sha256(campaign_db.migration_files()[0].read_bytes()).hexdigest()
        with db, db.cursor() as cur:
            cur.execute("UPDATE schema_migrations SET sha256 = %s WHERE version = 'V001'", (digest,))


def test_default_selection_is_one_region_local_copy_per_ready_campaign(db) -> None:
    targets = select_targets(db, DEFAULTS)["targets"]
    assert [(t["region_code"], t["campaign_key"]) for t in targets] == [
        ("eu-central-1", "munich-autobahn-2026"),
        ("eu-west-1", "dublin-urban-2026"),
        ("us-east-1", "boston-winter-2026"),
        ("us-west-2", "seattle-rain-2026"),
    ]
    # The Boston dataset also has a replica in us-west-2: the region-local copy wins.
    boston = next(t for t in targets if t["campaign_key"] == "boston-winter-2026")
    assert boston["s3_uri"].startswith("s3://mrt-campaign-data-us-east-1/")
    assert all(t["s3_uri"].startswith(f"s3://mrt-campaign-data-{t['region_code']}/") for t in targets)


def test_region_allow_list_and_explicit_campaigns(db) -> None:
    only_eu = select_targets(db, {**DEFAULTS, "regions": ["eu-west-1", "eu-central-1"]})["targets"]
    assert {t["region_code"] for t in only_eu} == {"eu-west-1", "eu-central-1"}
    # A campaign still labelling is not trained by default, but can be asked for.
    berlin = select_targets(db, {**DEFAULTS, "campaigns": ["berlin-night-2026"]})["targets"]
    assert [t["dataset_key"] for t in berlin] == ["berlin-night-2026-v1"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"campaigns": ["no-such-campaign"]}, "param 'campaigns': no available dataset copy .*'no-such-campaign'"),
        ({"campaigns": ["boston-winter-2026"], "regions": ["eu-west-1"]}, "'boston-winter-2026'"),
        ({"regions": ["ap-south-1"]}, "param 'regions': 'ap-south-1' is not a region of the campaign database"),
        ({"processes_per_host": 8, "instance_type": "ml.g5.12xlarge"}, "param 'processes_per_host' = 8 exceeds"),
    ],
)
def test_bad_selection_is_named_before_launch(db, params: dict, message: str) -> None:
    with pytest.raises((TargetError, ValueError), match=message):
        select_targets(db, {**DEFAULTS, **params})


def test_cheapest_placement_uses_reserved_capacity_and_keeps_ranked_alternatives(db) -> None:
    selection = select_targets(db, CHEAPEST)
    by_dataset = {t["dataset_key"]: t for t in selection["targets"]}
    boston = by_dataset["boston-winter-2026-v1"]
    # us-west-2 holds prepaid reserved p4d capacity and a replica of the Boston dataset.
    assert (boston["region_code"], boston["purchase_option"], boston["planned_cost_usd"]) == ("us-west-2",
                                                                                             "reserved", 0.0)
    assert boston["s3_uri"].startswith("s3://mrt-campaign-data-us-west-2/datasets/boston-winter-2026/")
    alternatives = [(a["region_code"], a["purchase_option"]) for a in boston["alternatives"]]
    assert ("us-east-1", "spot") in alternatives and len(alternatives) >= 2
    costs = [a["planned_cost_usd"] for a in boston["alternatives"]]
    assert costs == sorted(costs)
    assert selection["left_out"] == []
    assert selection["planned_total_usd"] == sum(t["planned_cost_usd"] for t in selection["targets"])


def test_a_budget_leaves_targets_out_and_lists_them(db) -> None:
    selection = select_targets(db, {**CHEAPEST, "budget_usd": 40, "purchase_options": ["on_demand", "spot"]})
    placed = sum(t["planned_cost_usd"] for t in selection["targets"])
    assert placed <= 40
    assert selection["left_out"], "a 40 USD budget cannot place four p4d jobs"
    assert {item["reason"] for item in selection["left_out"]} == {"over_budget"}
    assert len(selection["targets"]) + len(selection["left_out"]) == 4


def test_the_query_binds_its_parameters(db) -> None:
    hostile = "x'); DROP TABLE campaigns; --"
    assert campaign_db.fetch_dicts(db, "select_targets.sql", {"campaign_keys": [hostile], "region_codes": []}) == []
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM campaigns")
        assert cur.fetchone()[0] == 5


def test_schema_rejects_bad_rows(db) -> None:
    with pytest.raises(psycopg2.errors.CheckViolation), db, db.cursor() as cur:
        cur.execute(
            "INSERT INTO regions (region_code, display_name, output_bucket) VALUES (%s, %s, %s)",
            ("Mars-1", "Mars", "mrt-output-mars"),
        )


def test_an_unreachable_database_is_a_named_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AIRFLOW_CONN_CAMPAIGN_DB", f"postgresql://postgres@127.0.0.1:{port}/campaigns")
    with pytest.raises(campaign_db.CampaignDbUnavailableError, match=r"connection .campaign_db..* is unavailable"):
        campaign_db.airflow_connection()
