"""The live-limits refresh's reading of AWS answers (regional_training.plan.live_limits): what
is a training quota, what is an on-demand price, and what makes a refresh fail before it
writes anything."""

from __future__ import annotations

import json
from typing import Any

import pytest

from regional_training.plan.live_limits import (
    TRAINING_QUOTA_NAME,
    LimitsRefreshError,
    on_demand_usd_per_hour,
    quota_instances,
    read_prices,
    read_quotas,
)


def item(usd: Any = "28.1520000000", unit: str = "Hrs", *, region: str = "us-east-1",
         instance_type: str = "ml.p3.16xlarge", extra_dimension: dict[str, Any] | None = None) -> str:
    dimensions = {"D1": {"unit": unit, "pricePerUnit": {"USD": usd}}}
    if extra_dimension:
        dimensions["D2"] = extra_dimension
    return json.dumps({"product": {"sku": "SKU1", "attributes": {"regionCode": region, "instanceName": instance_type}},
                       "terms": {"OnDemand": {"SKU1.T": {"priceDimensions": dimensions}}}})


def test_the_training_quota_name_gives_the_instance_type() -> None:
    assert TRAINING_QUOTA_NAME.match("ml.p3.16xlarge for training job usage").group(1) == "ml.p3.16xlarge"
    assert TRAINING_QUOTA_NAME.match("ml.g5.xlarge for training job usage").group(1) == "ml.g5.xlarge"
    for other in ("ml.p3.16xlarge for endpoint usage", "ml.p3.16xlarge for spot training job usage",
                  "Number of training jobs", "ml.p3.16xlarge for training job usage (per region)"):
        assert TRAINING_QUOTA_NAME.match(other) is None, other


@pytest.mark.parametrize("value", [4, 4.0, 0])
def test_a_whole_quota_value_is_read(value: Any) -> None:
    assert quota_instances({"Value": value}, "here") == int(value)


@pytest.mark.parametrize("value", [None, -1, 2.5, float("nan"), float("inf"), "4", True])
def test_a_quota_value_that_is_not_a_whole_count_fails(value: Any) -> None:
    with pytest.raises(LimitsRefreshError, match="not a whole number of instances"):
        quota_instances({"QuotaName": "q", "Value": value}, "here")


def test_the_on_demand_price_is_its_decimal_digits() -> None:
    assert on_demand_usd_per_hour(item(), "here") == ("us-east-1", "ml.p3.16xlarge", "28.1520000000", "SKU1")


@pytest.mark.parametrize(("text", "message"), [
    ("{\"product\": {", "not a Price List product"),
    (json.dumps({"product": {"sku": "S"}}), "not a Price List product"),
    (item(unit="GB-Mo"), "0 on-demand USD-per-hour prices"),
    (item(extra_dimension={"unit": "Hrs", "pricePerUnit": {"USD": "1.0"}}), "2 on-demand USD-per-hour prices"),
    (item(usd="0.0000000000"), "has price"),
    (item(usd="-3"), "has price"),
    (item(usd="NaN"), "has price"),
    (item(usd="abc"), "has price"),
])
def test_a_bad_price_list_item_fails(text: str, message: str) -> None:
    with pytest.raises(LimitsRefreshError, match=message):
        on_demand_usd_per_hour(text, "here")


class Pages:
    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self.pages, self.kwargs = pages, {}

    def paginate(self, **kwargs: Any) -> Any:
        self.kwargs = kwargs
        return iter(self.pages)


class Client:
    def __init__(self, pages: list[dict[str, Any]], quota: dict[str, Any] | None = None) -> None:
        self.paginator, self.quota, self.asked = Pages(pages), quota, []

    def get_paginator(self, name: str) -> Pages:
        return self.paginator

    def get_service_quota(self, **kwargs: Any) -> dict[str, Any]:
        self.asked.append(kwargs)
        return {"Quota": self.quota}


def test_quotas_are_read_by_name_over_every_page_and_a_known_code_is_asked_for() -> None:
    def quota(name: str, value: float, code: str) -> dict[str, Any]:
        return {"QuotaName": name, "Value": value, "QuotaCode": code}

    client = Client([{"Quotas": [quota("ml.p3.16xlarge for training job usage", 8, "L-1"),
                                 quota("ml.p3.16xlarge for endpoint usage", 99, "L-2")]},
                     {"Quotas": [quota("ml.g5.12xlarge for training job usage", 4, "L-3")]}],
                    quota=quota("ml.p4d.24xlarge for training job usage", 2, "L-4"))
    read = read_quotas(client, "us-east-1", ["ml.p3.16xlarge", "ml.g5.12xlarge", "ml.p4d.24xlarge"],
                       {"ml.p4d.24xlarge": "L-4", "ml.p3.16xlarge": "L-1"})
    assert [(q.instance_type, q.quota_instances, q.quota_code) for q in read] == [
        ("ml.g5.12xlarge", 4, "L-3"), ("ml.p3.16xlarge", 8, "L-1"), ("ml.p4d.24xlarge", 2, "L-4")]
    assert client.paginator.kwargs == {"ServiceCode": "sagemaker"}
    assert client.asked == [{"ServiceCode": "sagemaker", "QuotaCode": "L-4"}]  # the listed one is not asked


def test_a_page_without_its_list_or_a_price_of_another_product_fails() -> None:
    with pytest.raises(LimitsRefreshError, match="a page without its Quotas list"):
        read_quotas(Client([{"NextToken": "x"}]), "us-east-1", ["ml.p3.16xlarge"])
    with pytest.raises(LimitsRefreshError, match=r"the filter answered product SKU1 of ml\.p3\.16xlarge in eu-west-1"):
        read_prices(Client([{"PriceList": [item(region="eu-west-1")]}]), ["us-east-1"], ["ml.p3.16xlarge"])


def test_prices_are_asked_for_the_training_product_of_each_region_and_type() -> None:
    client = Client([{"PriceList": [item()]}])
    prices = read_prices(client, ["us-east-1"], ["ml.p3.16xlarge"])
    assert [(p.region_code, p.instance_type, p.usd_per_hour) for p in prices] == [
        ("us-east-1", "ml.p3.16xlarge", "28.1520000000")]
    assert client.paginator.kwargs["ServiceCode"] == "AmazonSageMaker"
    assert {f["Field"]: f["Value"] for f in client.paginator.kwargs["Filters"]} == {
        "regionCode": "us-east-1", "instanceName": "ml.p3.16xlarge", "component": "Training"}
