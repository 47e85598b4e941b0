"""Live quotas and prices (issue 31, item 2): the placement's ``instance_capacity`` and
``instance_pricing`` rows refreshed from what AWS publishes, keeping what they replaced.

* **Quotas**: Service Quotas ``ListServiceQuotas(ServiceCode="sagemaker")`` in each
  region, followed through ``NextToken`` (botocore's paginator), names the training
  quota of each instance type ``"<instance type> for training job usage"`` (the quota
  names of the SageMaker page of the Service Quotas console); its ``Value`` is the
  number of instances the account may run there. ListServiceQuotas lists *applied*
  values only; a type it leaves out whose ``QuotaCode`` an earlier refresh stored is asked
  for with ``GetServiceQuota``; one never seen keeps its row.
* **Prices**: the Price List Query API ``GetProducts(ServiceCode="AmazonSageMaker")``,
  served only from the ``us-east-1`` and ``ap-south-1`` endpoints (the Price List API's
  "Service Endpoint" section; :data:`PRICE_LIST_REGIONS`), filtered per region and
  instance type to the training product. Each ``PriceList`` item is a JSON *string*
  (botocore's pricing model: ``SynthesizedJsonPriceListJsonItem``) holding the product
  and its terms; the on-demand price is its ``terms.OnDemand`` price dimension in USD per
  ``Hrs``.

Safety: everything is read and checked first; only then is it written, in ONE
transaction (:func:`refresh`). A throttled call (after botocore's own retries), an
error, a page that cannot be parsed or an ambiguous price raises
:class:`LimitsRefreshError` before any row changes; the failure is recorded in
``limits_refreshes`` and the old rows stay. A row marked ``manual_wins`` is never
overwritten; every change keeps the replaced row in ``instance_*_history`` (V009's
triggers). See docs/placement.md "Live quotas and prices". No import-time I/O.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

log = logging.getLogger(__name__)

#: Service Quotas' service code of SageMaker (ListServiceQuotas ``ServiceCode``).
QUOTAS_SERVICE_CODE = "sagemaker"
#: The Price List's service code of SageMaker (GetProducts ``ServiceCode``).
PRICE_LIST_SERVICE_CODE = "AmazonSageMaker"
#: The only regions the Price List Query API has endpoints in.
PRICE_LIST_REGIONS = ("us-east-1", "ap-south-1")
#: ``<instance type> for training job usage``: the quota of training instances of a type.
TRAINING_QUOTA_NAME = re.compile(r"^(ml\.[a-z0-9-]+\.[0-9]*x?large) for training job usage$")
#: A refresh is not urgent: 3 retries (botocore's standard mode retries throttling
#: errors, ``TooManyRequestsException`` and ``ThrottlingException`` included), then the
#: refresh fails, changes nothing, and the next scheduled one tries again.
REFRESH_BOTOCORE_CONFIG: dict[str, Any] = {"retries": {"mode": "standard", "max_attempts": 3}}

ClientFor = Callable[[str, str], Any]  # (botocore service name, region) -> client


class LimitsRefreshError(RuntimeError):
    """A refresh read something it cannot trust; nothing was written."""


@dataclass(frozen=True)
class Quota:
    region_code: str
    instance_type: str
    quota_instances: int
    quota_code: str


@dataclass(frozen=True)
class Price:
    region_code: str
    instance_type: str
    usd_per_hour: str  # a decimal string: the Price List's own digits, never a float
    sku: str


@dataclass(frozen=True)
class RefreshResult:
    kind: str
    refresh_id: int
    rows_changed: int
    rows_kept_manual: int
    read: int


# --- quotas --------------------------------------------------------------------------------
def quota_instances(quota: dict[str, Any], where: str) -> int:
    """The instances a ``ServiceQuota`` allows: a whole, finite, non-negative ``Value``."""
    value = quota.get("Value")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value < 0 or value != int(value):
        raise LimitsRefreshError(f"{where}: quota {quota.get('QuotaName')!r} has Value {value!r}, "
                                 "not a whole number of instances")
    return int(value)


def read_quotas(client: Any, region: str, instance_types: Iterable[str],
                known_codes: dict[str, str] | None = None) -> list[Quota]:
    """The training-instance quotas of ``instance_types`` in ``client``'s region
    (``region``). Every page is read before anything is returned: a failed page raises."""
    wanted = set(instance_types)
    found: dict[str, Quota] = {}
    where = f"Service Quotas {region}"
    for page in client.get_paginator("list_service_quotas").paginate(ServiceCode=QUOTAS_SERVICE_CODE):
        for quota in _listed(page, "Quotas", where):
            match = TRAINING_QUOTA_NAME.match(str(quota.get("QuotaName", "")))
            if match and match.group(1) in wanted:
                found[match.group(1)] = _quota(quota, region, match.group(1), where)
    for instance_type, code in sorted((known_codes or {}).items()):
        if instance_type in wanted and instance_type not in found and code:
            answer = client.get_service_quota(ServiceCode=QUOTAS_SERVICE_CODE, QuotaCode=code)
            quota = answer.get("Quota")
            if not isinstance(quota, dict) or quota.get("QuotaCode") != code:
                raise LimitsRefreshError(f"{where}: GetServiceQuota {code} answered no such quota")
            found[instance_type] = _quota(quota, region, instance_type, where)
    return [found[t] for t in sorted(found)]


def _quota(quota: dict[str, Any], region: str, instance_type: str, where: str) -> Quota:
    code = quota.get("QuotaCode")
    if not isinstance(code, str) or not code:
        raise LimitsRefreshError(f"{where}: quota {quota.get('QuotaName')!r} has no QuotaCode")
    return Quota(region, instance_type, quota_instances(quota, where), code)


def _listed(page: Any, key: str, where: str) -> list[Any]:
    items = page.get(key) if isinstance(page, dict) else None
    if not isinstance(items, list):
        raise LimitsRefreshError(f"{where}: a page without its {key} list")
    return items


# --- prices --------------------------------------------------------------------------------
def on_demand_usd_per_hour(item: str, where: str) -> tuple[str, str, str, str]:
    """(region, instance type, USD per hour, SKU) of one ``PriceList`` item; a malformed
    item, or one without exactly one on-demand USD-per-hour price, raises."""
    try:
        product = json.loads(item)
        attributes = product["product"]["attributes"]
        region, instance_type, sku = attributes["regionCode"], attributes["instanceName"], product["product"]["sku"]
        dimensions = [d for term in product["terms"]["OnDemand"].values() for d in term["priceDimensions"].values()]
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        raise LimitsRefreshError(f"{where}: a PriceList item that is not a Price List product "
                                 f"({type(err).__name__}: {err})") from err
    hourly = {str(d.get("pricePerUnit", {}).get("USD")) for d in dimensions
              if isinstance(d, dict) and d.get("unit") == "Hrs" and "USD" in (d.get("pricePerUnit") or {})}
    if len(hourly) != 1:
        raise LimitsRefreshError(f"{where}: product {sku} ({instance_type}) has {len(hourly)} on-demand "
                                 "USD-per-hour prices, not one")
    price = hourly.pop()
    try:
        value = Decimal(price)
    except InvalidOperation as err:
        raise LimitsRefreshError(f"{where}: product {sku} has price {price!r}") from err
    if not value.is_finite() or value <= 0:
        raise LimitsRefreshError(f"{where}: product {sku} ({instance_type}) has price {price!r} USD/h")
    return str(region), str(instance_type), str(value), str(sku)


def read_prices(client: Any, regions: Iterable[str], instance_types: Iterable[str]) -> list[Price]:
    """On-demand training prices per (region, type) from one Price List endpoint
    (``client``). A (region, type) the Price List has no training product for is left
    out (its row stays); two different prices for one is an error."""
    prices: dict[tuple[str, str], Price] = {}
    for region in sorted(set(regions)):
        for instance_type in sorted(set(instance_types)):
            where = f"Price List {PRICE_LIST_SERVICE_CODE} {region} {instance_type}"
            filters = [{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in (
                ("regionCode", region), ("instanceName", instance_type), ("component", "Training"))]
            pages = client.get_paginator("get_products").paginate(
                ServiceCode=PRICE_LIST_SERVICE_CODE, Filters=filters, FormatVersion="aws_v1")
            for page in pages:
                for item in _listed(page, "PriceList", where):
                    got_region, got_type, usd, sku = on_demand_usd_per_hour(item, where)
                    if (got_region, got_type) != (region, instance_type):
                        raise LimitsRefreshError(f"{where}: the filter answered product {sku} of "
                                                 f"{got_type} in {got_region}")
                    earlier = prices.get((region, instance_type))
                    if earlier is not None and Decimal(earlier.usd_per_hour) != Decimal(usd):
                        raise LimitsRefreshError(f"{where}: two on-demand prices ({earlier.usd_per_hour} "
                                                 f"and {usd} USD/h)")
                    prices[(region, instance_type)] = Price(region, instance_type, usd, sku)
    return [prices[k] for k in sorted(prices)]


# --- the refresh ---------------------------------------------------------------------------
def refresh(conn: Any, kind: str, client_for: ClientFor, *, regions: Sequence[str] | None = None,
            instance_types: Sequence[str] | None = None, pricing_region: str = "us-east-1") -> RefreshResult:
    """Refresh ``kind`` (``"quotas"`` or ``"prices"``) for every known region x priced
    instance type (or only ``regions`` / ``instance_types``): read everything, then write
    it in one transaction. Raises :class:`LimitsRefreshError` (recorded, nothing changed)
    on anything it cannot trust, a botocore error included."""
    from botocore.exceptions import BotoCoreError, ClientError

    from regional_training.runtime import campaign_db

    if kind not in ("quotas", "prices"):
        raise ValueError(f"kind must be 'quotas' or 'prices', got {kind!r}")
    if kind == "prices" and pricing_region not in PRICE_LIST_REGIONS:
        raise ValueError(f"pricing_region {pricing_region!r}: the Price List API answers only in "
                         f"{', '.join(PRICE_LIST_REGIONS)}")
    started = datetime.now(UTC)
    scope = campaign_db.fetch_dicts(conn, "limits_scope.sql", {
        "regions": list(regions) if regions is not None else None,
        "instance_types": list(instance_types) if instance_types is not None else None})
    try:
        if kind == "quotas":
            rows: list[Any] = _read_all_quotas(scope, client_for)
        else:
            rows = read_prices(client_for("pricing", pricing_region), sorted({r["region_code"] for r in scope}),
                               sorted({r["instance_type"] for r in scope}))
    except (LimitsRefreshError, ClientError, BotoCoreError) as err:
        message = _describe(err)
        campaign_db.execute(conn, "limits_refresh_failed.sql", {"kind": kind, "started_at": started,
                                                                "error": message[:2000]})
        log.warning("Refresh of %s changed nothing (the old rows stay): %s", kind, message)
        raise LimitsRefreshError(f"refresh of {kind} changed nothing: {message}") from err
    return _apply(conn, kind, started, rows)


def _read_all_quotas(scope: list[dict[str, Any]], client_for: ClientFor) -> list[Quota]:
    by_region: dict[str, dict[str, str | None]] = {}
    for row in scope:
        by_region.setdefault(row["region_code"], {})[row["instance_type"]] = row["quota_code"]
    quotas: list[Quota] = []
    for region, types in sorted(by_region.items()):
        known = {t: c for t, c in types.items() if c}
        quotas += read_quotas(client_for("service-quotas", region), region, types, known)
    return quotas


def _describe(err: BaseException) -> str:
    response = getattr(err, "response", None)
    if isinstance(response, dict) and response.get("Error"):
        error = response["Error"]
        operation = getattr(err, "operation_name", "?")
        return f"{operation}: {error.get('Code')}: {error.get('Message')}"
    return str(err)


def _apply(conn: Any, kind: str, started: datetime, rows: list[Any]) -> RefreshResult:
    from regional_training.runtime.campaign_db import load_sql

    payload = json.dumps([asdict(r) for r in rows])
    try:
        with conn.cursor() as cur:
            cur.execute(load_sql("queries/limits_refresh_begin.sql"), {"kind": kind, "started_at": started})
            refresh_id = int(cur.fetchone()[0])
            if kind == "quotas":
                cur.execute(load_sql("queries/limits_apply_quotas.sql"), {"quotas": payload})
            else:
                cur.execute(load_sql("queries/limits_apply_prices.sql"), {"prices": payload})
            changed, kept = (int(v or 0) for v in cur.fetchone())
            cur.execute(load_sql("queries/limits_refresh_end.sql"),
                        {"refresh_id": refresh_id, "rows_changed": changed, "rows_kept_manual": kept})
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    log.info("Refreshed %s: %d read, %d rows changed, %d manual rows kept (refresh %d).", kind, len(rows),
             changed, kept, refresh_id)
    return RefreshResult(kind, refresh_id, changed, kept, len(rows))


def airflow_client(service: str, region: str) -> Any:
    """A client through the ``aws_default`` connection (the Airflow role)."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    from regional_training.runtime.aws_io import AWS_CONN_ID

    return AwsBaseHook(aws_conn_id=AWS_CONN_ID, client_type=service, region_name=region,
                       config=REFRESH_BOTOCORE_CONFIG).get_conn()


def refresh_task(kind: str) -> dict[str, Any]:
    """The refresh DAG's task: :func:`refresh` through the Airflow connections. The Price
    List endpoint is ``MRT_PRICING_REGION`` (default ``us-east-1``; or ``ap-south-1``)."""
    import os

    from regional_training.runtime import campaign_db

    conn = campaign_db.airflow_connection()
    try:
        result = refresh(conn, kind, airflow_client,
                         pricing_region=os.environ.get("MRT_PRICING_REGION", "us-east-1"))
    finally:
        conn.close()
    return asdict(result)
