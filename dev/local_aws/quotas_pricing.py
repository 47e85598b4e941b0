"""Service Quotas for SageMaker and the Price List API, for the live-limits refresh
(regional_training.plan.live_limits), in front of moto's server.

moto 5 has Service Quotas with ``ListAWSDefaultServiceQuotas`` and ``GetServiceQuota``
for ``vpc`` only, and no Price List API. This WSGI layer answers, in botocore's JSON 1.1
protocol (service-quotas and pricing ``service-2.json``):

* ``ServiceQuotasV20190624.ListServiceQuotas`` / ``GetServiceQuota`` for
  ``ServiceCode="sagemaker"``: one quota per instance type the region has a figure for,
  named ``"<type> for training job usage"``; pages of ``MaxResults`` (1..100) with an
  opaque ``NextToken`` (a bad one: ``InvalidPaginationTokenException``); an unknown code:
  ``NoSuchResourceException``. Other service codes go on to moto (its ``vpc``).
* ``AWSPriceListService.GetProducts`` for ``ServiceCode="AmazonSageMaker"``, only in
  ``us-east-1`` and ``ap-south-1`` (the API's two endpoints): ``TERM_MATCH``/``EQUALS``
  filters on the product's attributes, ``PriceList`` as JSON *strings* in the Price List
  format (``product`` + ``terms.OnDemand...priceDimensions``), a training and a hosting
  product per (region, type), pages with ``NextToken``.

What the regions have is set through ``POST /_mrt/limits`` (unsigned, like moto's own
``/moto-api/``): ``{"quotas": {region: {type: n}}, "default_quotas": {...},
"prices": {region: {type: usd}}, "malformed_prices": [region, ...]}`` (each key given
replaces that part; ``default_quotas`` are quotas at their default value, which
GetServiceQuota answers and ListServiceQuotas does not list); a region in
``malformed_prices`` answers a PriceList item that is not JSON. Throttling comes from
:mod:`dev.local_aws.wire` (``api_throttle``: ``service-quotas:*``, ``pricing:GetProducts``)
with each service's own throttling error. docs/emulator.md cites each behaviour.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]

ACCOUNT_ID = "123456789012"
PRICE_LIST_REGIONS = ("us-east-1", "ap-south-1")
_QUOTAS_TARGET = "ServiceQuotasV20190624."
_PRICING_TARGET = "AWSPriceListService."
_REGION = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/")


class _Error(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def quota_code(instance_type: str) -> str:
    """A stable ``L-XXXXXXXX`` code per type (real codes are opaque; clients match names)."""
    return "L-" + hashlib.sha256(instance_type.encode()).hexdigest()[:8].upper()


class LimitsState:
    """What each region's quotas and prices are; changed through ``/_mrt/limits``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.quotas: dict[str, dict[str, float]] = {}
        self.prices: dict[str, dict[str, float]] = {}
        self.malformed_prices: set[str] = set()
        #: Quotas at their default value: GetServiceQuota answers them, ListServiceQuotas
        #: (applied values only) does not list them.
        self.default_quotas: dict[str, dict[str, float]] = {}

    def update(self, body: dict[str, Any]) -> None:
        with self.lock:
            if "quotas" in body:
                self.quotas = {r: {t: float(v) for t, v in types.items()} for r, types in body["quotas"].items()}
            if "prices" in body:
                self.prices = {r: {t: float(v) for t, v in types.items()} for r, types in body["prices"].items()}
            if "default_quotas" in body:
                self.default_quotas = {r: {t: float(v) for t, v in types.items()}
                                       for r, types in body["default_quotas"].items()}
            if "malformed_prices" in body:
                self.malformed_prices = set(body["malformed_prices"])

    # --- Service Quotas ------------------------------------------------------------------------
    def _quota(self, region: str, instance_type: str, value: float) -> dict[str, Any]:
        code = quota_code(instance_type)
        return {"ServiceCode": "sagemaker", "ServiceName": "Amazon SageMaker",
                "QuotaArn": f"arn:aws:servicequotas:{region}:{ACCOUNT_ID}:sagemaker/{code}",
                "QuotaCode": code, "QuotaName": f"{instance_type} for training job usage", "Value": value,
                "Unit": "None", "Adjustable": True, "GlobalQuota": False, "QuotaAppliedAtLevel": "ACCOUNT"}

    def _region_quotas(self, region: str, *, defaults: bool = False) -> list[dict[str, Any]]:
        with self.lock:
            types = {**(self.default_quotas.get(region, {}) if defaults else {}), **self.quotas.get(region, {})}
        return [self._quota(region, t, v) for t, v in sorted(types.items())]

    def list_service_quotas(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        quotas = self._region_quotas(region)
        if body.get("QuotaCode"):
            quotas = [q for q in quotas if q["QuotaCode"] == body["QuotaCode"]]
        return _page(quotas, "Quotas", body, limit=100, default=100, token_error="InvalidPaginationTokenException")

    def get_service_quota(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        for quota in self._region_quotas(region, defaults=True):
            if quota["QuotaCode"] == body.get("QuotaCode"):
                return {"Quota": quota}
        raise _Error("NoSuchResourceException", f"The request failed because the specified quota "
                     f"{body.get('QuotaCode')} does not exist.")

    # --- Price List --------------------------------------------------------------------------
    def _products(self) -> list[tuple[dict[str, str], str]]:
        """(attributes, PriceList item) of every product: training and hosting per type."""
        with self.lock:
            prices = {r: dict(types) for r, types in self.prices.items()}
            malformed = set(self.malformed_prices)
        products = []
        for region, types in sorted(prices.items()):
            for instance_type, usd in sorted(types.items()):
                # hosting is priced apart (and dearer): a filter that misses "component" is caught
                for component, price in (("Training", usd), ("Hosting", round(usd * 1.25, 4))):
                    sku = hashlib.sha256(f"{region}/{instance_type}/{component}".encode()).hexdigest()[:16].upper()
                    attributes = {"servicecode": "AmazonSageMaker", "regionCode": region,
                                  "instanceName": instance_type, "component": component,
                                  "usagetype": f"{region}-{component}:{instance_type}", "operation": "RunInstance"}
                    item = _price_item(sku, attributes, price)
                    if region in malformed:
                        item = item[: len(item) // 2]  # cut in the middle: not JSON
                    products.append((attributes, item))
        return products

    def get_products(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        if region not in PRICE_LIST_REGIONS:
            raise _Error("InvalidParameterException", f"The Price List API has no endpoint in {region}; "
                         f"use {' or '.join(PRICE_LIST_REGIONS)}.")
        if body.get("ServiceCode") != "AmazonSageMaker":
            return {"FormatVersion": "aws_v1", "PriceList": []}
        filters = body.get("Filters") or []
        for f in filters:
            if f.get("Type") not in ("TERM_MATCH", "EQUALS"):
                raise _Error("InvalidParameterException", f"filter type {f.get('Type')!r} is not emulated")
        items = [item for attributes, item in self._products()
                 if all(attributes.get(f["Field"]) == f["Value"] for f in filters)]
        page = _page(items, "PriceList", body, limit=100, default=100, token_error="InvalidNextTokenException")
        return {"FormatVersion": "aws_v1", **page}


def _price_item(sku: str, attributes: dict[str, str], usd: float) -> str:
    term = f"{sku}.JRTCKXETXF"
    return json.dumps({
        "product": {"productFamily": "ML Instance", "attributes": attributes, "sku": sku},
        "serviceCode": "AmazonSageMaker",
        "terms": {"OnDemand": {term: {
            "priceDimensions": {f"{term}.6YS6EN2CT7": {
                "unit": "Hrs", "endRange": "Inf", "beginRange": "0", "appliesTo": [], "rateCode": f"{term}.6YS6EN2CT7",
                "description": f"${usd} per {attributes['instanceName']} {attributes['component']} hour",
                "pricePerUnit": {"USD": f"{usd:.10f}"}}},
            "sku": sku, "effectiveDate": "2026-12-01T00:00:00Z", "offerTermCode": "JRTCKXETXF", "termAttributes": {},
        }}},
        "version": "20261201000000", "publicationDate": "2026-12-01T00:00:00Z",
    })


def _page(items: list[Any], key: str, body: dict[str, Any], *, limit: int, default: int,
          token_error: str) -> dict[str, Any]:
    size = body.get("MaxResults") or default
    if not isinstance(size, int) or not 1 <= size <= limit:
        raise _Error("IllegalArgumentException" if key == "Quotas" else "InvalidParameterException",
                     f"MaxResults must be 1..{limit}")
    start = 0
    if body.get("NextToken"):
        try:
            start = int(base64.urlsafe_b64decode(str(body["NextToken"]).encode()).decode().split(":", 1)[1])
        except (ValueError, IndexError) as err:
            raise _Error(token_error, "Invalid pagination token.") from err
    out: dict[str, Any] = {key: items[start:start + size]}
    if start + size < len(items):
        out["NextToken"] = base64.urlsafe_b64encode(f"{key}:{start + size}".encode()).decode()
    return out


class QuotasPricingMiddleware:
    """Answers the calls above; everything else goes on to ``app`` (moto)."""

    def __init__(self, app: WsgiApp, state: LimitsState | None = None) -> None:
        self.app = app
        self.state = state or LimitsState()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == "/_mrt/limits" and environ.get("REQUEST_METHOD") == "POST":
            self.state.update(json.loads(self._body(environ) or b"{}"))
            return _respond(start_response, "200 OK", b"{}")
        target = environ.get("HTTP_X_AMZ_TARGET") or ""
        handler = self._handler(target)
        if handler is None:
            return self.app(environ, start_response)
        raw = self._body(environ)
        body = json.loads(raw or b"{}")
        if target.startswith(_QUOTAS_TARGET) and body.get("ServiceCode") != "sagemaker":
            return self.app(environ, start_response)  # moto's own (vpc)
        found = _REGION.search(environ.get("HTTP_AUTHORIZATION") or "")
        region = found.group(1) if found else "us-east-1"
        try:
            answer = handler(region, body)
        except _Error as err:
            payload = json.dumps({"__type": err.code, "message": err.message}).encode()
            return _respond(start_response, "400 Bad Request", payload)
        return _respond(start_response, "200 OK", json.dumps(answer).encode())

    def _handler(self, target: str) -> Callable[[str, dict[str, Any]], dict[str, Any]] | None:
        return {f"{_QUOTAS_TARGET}ListServiceQuotas": self.state.list_service_quotas,
                f"{_QUOTAS_TARGET}GetServiceQuota": self.state.get_service_quota,
                f"{_PRICING_TARGET}GetProducts": self.state.get_products}.get(target)

    @staticmethod
    def _body(environ: Environ) -> bytes:
        import io

        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(raw)  # moto reads it again when we pass the call on
        return bytes(raw)


def _respond(start_response: StartResponse, status: str, body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", str(uuid.uuid4())),
                            ("Content-Length", str(len(body)))])
    return [body]
