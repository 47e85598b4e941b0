"""Live quotas and prices (issue 31) against the emulator as a server and the real
PostgreSQL: a refresh reads SageMaker's training quotas from Service Quotas and on-demand
prices from the Price List API into instance_capacity / instance_pricing, keeps what it
replaced and when, keeps a manual row marked to win, and leaves every old row in place
when an answer is throttled past the retries or malformed.

Each test works on an instance type of its own (no other test prices it), so the shared
session database's placement rows stay as the other tests expect them."""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg2
import pytest

from dev.local_aws.quotas_pricing import quota_code
from dev.local_stack import fake_image_map, local_aws
from regional_training.plan import live_limits

pytestmark = pytest.mark.integration

EAST, WEST = "us-east-1", "eu-west-1"
#: More quotas than one ListServiceQuotas page (100): the refresh must follow NextToken.
FILLER = {f"ml.c5.{n}xlarge": 10 for n in range(2, 130)}


def set_limits(endpoint: str, limits: dict[str, Any]) -> None:
    request = urllib.request.Request(f"{endpoint}/_mrt/limits", data=json.dumps(limits).encode(),  # noqa: S310
                                     method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback only
        assert answer.status == 200


def clients(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    def client_for(service: str, region: str) -> Any:
        return boto3.client(service, region_name=region, endpoint_url=endpoint, aws_access_key_id="testing",
                            aws_secret_access_key="testing", config=Config(**live_limits.REFRESH_BOTOCORE_CONFIG))

    return client_for


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with local_aws(fake_image_map()) as url:
        yield url


@pytest.fixture(scope="module")
def throttled() -> Iterator[str]:
    """Every ListServiceQuotas throttled (TooManyRequestsException); GetProducts once."""
    lifecycles = {"api_throttle": {"service-quotas:ListServiceQuotas": {"burst": 1000},
                                   "pricing:GetProducts": {"burst": 1}}}
    with local_aws(fake_image_map(), lifecycles=lifecycles) as url:
        yield url


def sql(dsn: str, query: str, *args: Any) -> list[tuple]:
    with contextlib.closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute(query, args)
        rows = cur.fetchall() if cur.description else []
        conn.commit()
        return rows


@pytest.fixture()
def itype(request: pytest.FixtureRequest, campaign_dsn: str) -> Iterator[str]:
    """A type only this test prices: typed rows (manual) in both regions, quota only in the east."""
    name = {"test_refresh_updates_quotas_and_prices_and_keeps_what_it_replaced": "ml.trn1.32xlarge",
            "test_a_malformed_price_list_leaves_every_old_row": "ml.trn1n.32xlarge",
            "test_a_manual_row_marked_to_win_is_kept": "ml.inf2.48xlarge",
            "test_a_throttled_refresh_leaves_the_old_rows_and_a_retried_throttle_does_not"
            : "ml.inf2.24xlarge"}[request.node.name]
    sql(campaign_dsn, "INSERT INTO instance_pricing (region_code, instance_type, on_demand_usd_per_hour) "
        "VALUES (%s, %s, 20.0), (%s, %s, 22.0)", EAST, name, WEST, name)
    sql(campaign_dsn, "INSERT INTO instance_capacity (region_code, instance_type, quota_instances) VALUES (%s, %s, 2)",
        EAST, name)
    yield name
    sql(campaign_dsn, "DELETE FROM instance_capacity WHERE instance_type = %s", name)
    sql(campaign_dsn, "DELETE FROM instance_pricing WHERE instance_type = %s", name)


def capacity(dsn: str, itype: str) -> list[tuple]:
    return sql(dsn, "SELECT region_code, quota_instances, source, quota_code FROM instance_capacity"
               " WHERE instance_type = %s ORDER BY region_code", itype)


def pricing(dsn: str, itype: str) -> list[tuple]:
    return sql(dsn, "SELECT region_code, on_demand_usd_per_hour, source FROM instance_pricing"
               " WHERE instance_type = %s ORDER BY region_code", itype)


def refresh(dsn: str, endpoint: str, kind: str, itype: str) -> live_limits.RefreshResult:
    with contextlib.closing(psycopg2.connect(dsn)) as conn:
        return live_limits.refresh(conn, kind, clients(endpoint), regions=[EAST, WEST], instance_types=[itype])


def test_refresh_updates_quotas_and_prices_and_keeps_what_it_replaced(campaign_dsn: str, endpoint: str,
                                                                      itype: str) -> None:
    set_limits(endpoint, {"quotas": {EAST: {**FILLER, itype: 6}, WEST: {itype: 4}},
                          "prices": {EAST: {itype: 21.5}, WEST: {itype: 23.25}, "ap-south-1": {itype: 1.0}}})
    quotas = refresh(campaign_dsn, endpoint, "quotas", itype)
    assert (quotas.read, quotas.rows_changed, quotas.rows_kept_manual) == (2, 2, 0)
    # the east row replaced; the west row new (it has a price, so it may have a quota)
    assert capacity(campaign_dsn, itype) == [(WEST, 4, "service_quotas", quota_code(itype)),
                                             (EAST, 6, "service_quotas", quota_code(itype))]
    history = sql(campaign_dsn, "SELECT region_code, quota_instances, source, replaced_by, refresh_id"
                  " FROM instance_capacity_history WHERE instance_type = %s", itype)
    assert history == [(EAST, 2, "manual", "service_quotas", quotas.refresh_id)]

    prices = refresh(campaign_dsn, endpoint, "prices", itype)
    assert (prices.read, prices.rows_changed) == (2, 2)  # the training price, not hosting's 1.25x
    assert pricing(campaign_dsn, itype) == [(WEST, Decimal("23.2500"), "price_list"),
                                            (EAST, Decimal("21.5000"), "price_list")]
    replaced = sql(campaign_dsn, "SELECT region_code, on_demand_usd_per_hour, refresh_id, replaced_at > valid_from"
                   " FROM instance_pricing_history WHERE instance_type = %s ORDER BY region_code", itype)
    assert replaced == [(WEST, Decimal("22.0000"), prices.refresh_id, True),
                        (EAST, Decimal("20.0000"), prices.refresh_id, True)]

    # the same answers again: nothing changes, no history row
    assert refresh(campaign_dsn, endpoint, "quotas", itype).rows_changed == 0
    assert refresh(campaign_dsn, endpoint, "prices", itype).rows_changed == 0
    assert sql(campaign_dsn, "SELECT count(*) FROM instance_capacity_history WHERE instance_type = %s", itype) == [(1,)]
    assert sql(campaign_dsn, "SELECT count(*) FROM instance_pricing_history WHERE instance_type = %s", itype) == [(2,)]

    # a quota back at its default value is no longer listed (ListServiceQuotas lists
    # applied values only): the refresh asks for it by the code it stored (GetServiceQuota)
    set_limits(endpoint, {"quotas": {EAST: FILLER, WEST: {itype: 4}}, "default_quotas": {EAST: {itype: 3}}})
    again = refresh(campaign_dsn, endpoint, "quotas", itype)
    assert (again.read, again.rows_changed) == (2, 1)
    assert capacity(campaign_dsn, itype)[1] == (EAST, 3, "service_quotas", quota_code(itype))

    # the Price List answers from its own endpoints only
    with pytest.raises(ValueError, match="answers only in us-east-1, ap-south-1"), \
            contextlib.closing(psycopg2.connect(campaign_dsn)) as conn:
        live_limits.refresh(conn, "prices", clients(endpoint), pricing_region=WEST)


def test_a_malformed_price_list_leaves_every_old_row(campaign_dsn: str, endpoint: str, itype: str) -> None:
    # new prices in both regions, but eu-west-1's item is cut in half: had the refresh
    # written region by region, us-east-1 would show 30.0
    set_limits(endpoint, {"prices": {EAST: {itype: 30.0}, WEST: {itype: 31.0}}, "malformed_prices": [WEST]})
    try:
        with pytest.raises(live_limits.LimitsRefreshError, match=r"eu-west-1 .*not a Price List product"):
            refresh(campaign_dsn, endpoint, "prices", itype)
    finally:
        set_limits(endpoint, {"malformed_prices": []})
    assert pricing(campaign_dsn, itype) == [(WEST, Decimal("22.0000"), "manual"), (EAST, Decimal("20.0000"), "manual")]
    assert sql(campaign_dsn, "SELECT count(*) FROM instance_pricing_history WHERE instance_type = %s", itype) == [(0,)]
    failed = sql(campaign_dsn, "SELECT outcome, error FROM limits_refreshes WHERE kind = 'prices'"
                 " ORDER BY refresh_id DESC LIMIT 1")
    assert failed[0][0] == "failed" and "not a Price List product" in failed[0][1]


def test_a_manual_row_marked_to_win_is_kept(campaign_dsn: str, endpoint: str, itype: str) -> None:
    sql(campaign_dsn, "UPDATE instance_capacity SET manual_wins = true WHERE instance_type = %s", itype)
    sql(campaign_dsn, "UPDATE instance_pricing SET manual_wins = true WHERE instance_type = %s AND region_code = %s",
        itype, WEST)
    set_limits(endpoint, {"quotas": {EAST: {itype: 9}, WEST: {itype: 5}},
                          "prices": {EAST: {itype: 40.0}, WEST: {itype: 41.0}}})
    quotas = refresh(campaign_dsn, endpoint, "quotas", itype)
    assert (quotas.rows_changed, quotas.rows_kept_manual) == (1, 1)
    assert capacity(campaign_dsn, itype) == [(WEST, 5, "service_quotas", quota_code(itype)),
                                             (EAST, 2, "manual", None)]
    prices = refresh(campaign_dsn, endpoint, "prices", itype)
    assert (prices.rows_changed, prices.rows_kept_manual) == (1, 1)
    assert pricing(campaign_dsn, itype) == [(WEST, Decimal("22.0000"), "manual"),
                                            (EAST, Decimal("40.0000"), "price_list")]
    assert sql(campaign_dsn, "SELECT rows_kept_manual FROM limits_refreshes WHERE refresh_id = %s",
               prices.refresh_id) == [(1,)]


def test_a_throttled_refresh_leaves_the_old_rows_and_a_retried_throttle_does_not(
        campaign_dsn: str, throttled: str, itype: str) -> None:
    set_limits(throttled, {"quotas": {EAST: {itype: 7}, WEST: {itype: 7}}, "prices": {EAST: {itype: 50.0}}})
    with pytest.raises(live_limits.LimitsRefreshError, match="ListServiceQuotas: TooManyRequestsException"):
        refresh(campaign_dsn, throttled, "quotas", itype)
    assert capacity(campaign_dsn, itype) == [(EAST, 2, "manual", None)]
    # one throttled GetProducts: botocore's retry (standard mode) gets the answer
    assert refresh(campaign_dsn, throttled, "prices", itype).rows_changed == 1
    assert pricing(campaign_dsn, itype)[1] == (EAST, Decimal("50.0000"), "price_list")
    with urllib.request.urlopen(f"{throttled}/_mrt/api-calls", timeout=10) as answer:  # noqa: S310
        counts = json.loads(answer.read())
    # the first call and botocore's 3 retries of the quota list, one GetProducts
    assert (counts["throttled service-quotas:ListServiceQuotas"], counts["throttled pricing:GetProducts"]) == (4, 1)


def test_the_dags_clients_reach_both_apis_through_the_aws_connection(endpoint: str, campaign_dsn: str,
                                                                     airflow_db: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """refresh_limits' tasks build their clients from the ``aws_default`` connection, with
    the refresh's retry settings."""
    from dev.local_stack import in_process_env

    for key, value in in_process_env(dsn=campaign_dsn, endpoint=endpoint, airflow_home=airflow_db).items():
        monkeypatch.setenv(key, value)
    set_limits(endpoint, {"quotas": {EAST: {"ml.p3.16xlarge": 8}}, "prices": {EAST: {"ml.p3.16xlarge": 28.152}}})
    quotas = live_limits.read_quotas(live_limits.airflow_client("service-quotas", EAST), EAST, ["ml.p3.16xlarge"])
    assert [q.quota_instances for q in quotas] == [8]
    pricing = live_limits.airflow_client("pricing", EAST)
    assert pricing.meta.config.retries == live_limits.REFRESH_BOTOCORE_CONFIG["retries"]
    assert [p.usd_per_hour for p in live_limits.read_prices(pricing, [EAST], ["ml.p3.16xlarge"])] == ["28.1520000000"]
