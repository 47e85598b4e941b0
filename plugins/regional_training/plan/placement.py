"""Cost- and capacity-aware placement of training targets (issue #6).

The decision is made in SQL (``include/sql/queries/place_targets.sql``, rule in
``docs/placement.md``); this module binds its parameters, groups its rows per target
(chosen candidate, ranked alternatives for failover, or the reason it was left out) and
computes the actual cost of a finished job. No import-time I/O.

Typical use in a task::

    plan = fetch_placement(conn, instance_type="ml.p4d.24xlarge", instance_count=2,
                           estimated_hours=10, budget_usd=1000)
    for target in plan.placed:      # target.chosen, then target.alternatives on failover
        ...
    for target in plan.left_out:    # target.left_out_reason: no_copy | no_offer | ...
        ...
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from regional_training.runtime import identifiers

if TYPE_CHECKING:
    from psycopg2.extensions import connection as PgConnection

QUERY_FILE = "place_targets.sql"

#: Purchase options, in the order the placement prefers them at equal expected cost.
PURCHASE_OPTIONS = identifiers.PURCHASE_OPTIONS

#: Why a target was left out of the plan (``TargetPlacement.left_out_reason``).
LEFT_OUT_REASONS: dict[str, str] = {
    "no_copy": "no available copy in an allowed, training-enabled region",
    "no_offer": "copies exist, but no allowed purchase option is priced for the instance "
    "type in their regions",
    "no_capacity": "every candidate is over the region's quota or reserved count, given "
    "the higher-priority targets",
    "over_budget": "every candidate that fits capacity would push the plan over budget",
}

_CENT = Decimal("0.01")

#: The failure model's defaults (docs/placement.md "Learning from failures"): a failure
#: two weeks old weighs half a fresh one; a failed launch costs an hour before the job
#: runs elsewhere (SageMaker reports a capacity error within minutes, a starved spot
#: job only when its MaxWaitTimeInSeconds runs out: the hour is *assumed*).
RISK_HALF_LIFE_DAYS = Decimal(14)
FAILOVER_DELAY_HOURS = Decimal(1)


@dataclass(frozen=True)
class PlacementRow:
    """One (target, candidate) row of ``place_targets.sql``; field names = its columns.

    A target without any candidate has one row whose copy/option fields are ``None``.
    """

    priority: int
    dataset_id: int
    dataset_key: str
    campaign_key: str
    #: The parameter-scan point of this job (``None``: no scan, one job per dataset).
    point_id: str | None
    copy_id: int | None
    region_code: str | None
    s3_uri: str | None
    output_bucket: str | None
    purchase_option: str | None
    instance_type: str
    instance_count: int
    estimated_hours: Decimal
    #: Price of the option per instance-hour (spot: newest observed spot price).
    price_per_instance_hour: Decimal | None
    #: Price the plan uses (spot: spot price x (1 + interruption allowance)).
    effective_usd_per_hour: Decimal | None
    #: Rate SageMaker bills ``BillableTimeInSeconds`` at (spot: the on-demand price).
    billing_usd_per_hour: Decimal | None
    spot_price_observed_at: datetime | None
    #: The room left for this run: the account's quota minus ``instances_in_use``.
    quota_instances: int | None
    #: Instances of the type already in use in the region (SageMaker's InProgress jobs,
    #: counted before placement: regional_training.plan.capacity; issue 31).
    instances_in_use: int | None
    reserved_instances: int | None
    expected_cost_usd: Decimal | None
    #: The failure model's term (issue 31; 0 / ``None``-free with no history): failure
    #: events of this region x option within the horizon, their decayed probability,
    #: the expected extra dollars, and the cost the ranking uses (expected + risk).
    recent_failures: int | None
    failure_probability: Decimal | None
    risk_usd: Decimal | None
    risk_adjusted_cost_usd: Decimal | None
    rank: int | None
    chosen: bool
    fits_capacity: bool
    fits_budget: bool
    left_out_reason: str | None
    cumulative_cost_usd: Decimal
    plan_total_usd: Decimal

    @property
    def fits(self) -> bool:
        """Whether the target could move here within quota, reservations and budget."""
        return self.fits_capacity and self.fits_budget

    @property
    def is_spot(self) -> bool:
        return self.purchase_option == "spot"


@dataclass(frozen=True)
class TargetPlacement:
    """One job (a selected dataset, at one scan point in a scan): its chosen candidate
    and the ranked alternatives."""

    priority: int
    dataset_id: int
    dataset_key: str
    campaign_key: str
    point_id: str | None
    chosen: PlacementRow | None
    #: Every other candidate in rank order (those that fit the plan come first).
    alternatives: tuple[PlacementRow, ...]
    left_out_reason: str | None

    @property
    def placed(self) -> bool:
        return self.chosen is not None

    def failover_candidates(self, *, exclude_regions: Iterable[str] = ()) -> list[PlacementRow]:
        """Alternatives that fit the plan, in rank order, outside ``exclude_regions``.

        SkyPilot-style recovery blocks the region that failed: pass the regions already
        tried and take the first row returned (or give up when it is empty).
        """
        blocked = set(exclude_regions)
        return [row for row in self.alternatives if row.fits and row.region_code not in blocked]


@dataclass(frozen=True)
class Placement:
    """The whole plan for one run, in priority order."""

    targets: tuple[TargetPlacement, ...]
    budget_usd: Decimal | None
    params: dict[str, Any] = field(repr=False, compare=False)

    @property
    def placed(self) -> list[TargetPlacement]:
        return [t for t in self.targets if t.placed]

    @property
    def left_out(self) -> list[TargetPlacement]:
        return [t for t in self.targets if not t.placed]

    @property
    def total_expected_cost_usd(self) -> Decimal:
        return sum((t.chosen.expected_cost_usd or Decimal(0) for t in self.placed if t.chosen), Decimal(0))


def placement_params(
    *,
    instance_type: str,
    instance_count: int,
    estimated_hours: float | Decimal,
    budget_usd: float | Decimal | None = None,
    allowed_purchase_options: Sequence[str] = (),
    dataset_ids: Sequence[int] = (),
    campaign_keys: Sequence[str] = (),
    region_codes: Sequence[str] = (),
    point_ids: Sequence[str] = (),
    risk_half_life_days: float | Decimal = RISK_HALF_LIFE_DAYS,
    failover_delay_hours: float | Decimal = FAILOVER_DELAY_HOURS,
    as_of: datetime | None = None,
    in_use: Mapping[str, int] | None = None,
    learn_from_failures: bool = True,
) -> dict[str, Any]:
    """Validated binds for ``place_targets.sql`` (empty lists mean "all", see the SQL;
    ``point_ids``: a scan's points, each dataset one job per point; empty: no scan;
    ``risk_half_life_days``, ``failover_delay_hours``, ``as_of``: the failure model,
    ``as_of`` ``None`` = the database's now(); ``in_use``: region -> instances of the
    type already in use there, taken off its quota; ``learn_from_failures`` ``False``:
    no failure model, every risk term 0)."""
    if instance_count <= 0:
        raise ValueError(f"instance_count must be positive, got {instance_count}")
    hours = Decimal(str(estimated_hours))
    if not hours > 0:
        raise ValueError(f"estimated_hours must be positive, got {estimated_hours}")
    budget = None if budget_usd is None else Decimal(str(budget_usd))
    if budget is not None and budget < 0:
        raise ValueError(f"budget_usd must not be negative, got {budget_usd}")
    unknown = sorted(set(allowed_purchase_options) - set(PURCHASE_OPTIONS))
    if unknown:
        raise ValueError(f"unknown purchase option(s) {unknown}; expected a subset of {PURCHASE_OPTIONS}")
    bad_points = [p for p in point_ids if not identifiers.is_point_id(p)]
    if bad_points or len(set(point_ids)) != len(point_ids):
        raise ValueError(f"point_ids must be distinct scan point ids, got {list(point_ids)}")
    half_life = Decimal(str(risk_half_life_days))
    if not half_life > 0:
        raise ValueError(f"risk_half_life_days must be positive, got {risk_half_life_days}")
    delay = Decimal(str(failover_delay_hours))
    if not delay >= 0:
        raise ValueError(f"failover_delay_hours must not be negative, got {failover_delay_hours}")
    if as_of is not None and as_of.tzinfo is None:
        raise ValueError(f"as_of must be timezone-aware, got {as_of!r}")
    used = dict(in_use or {})
    if any(not isinstance(n, int) or n < 0 for n in used.values()):
        raise ValueError(f"in_use must map regions to instance counts >= 0, got {used}")
    return {
        "dataset_ids": [int(i) for i in dataset_ids],
        "campaign_keys": list(campaign_keys),
        "region_codes": list(region_codes),
        "instance_type": instance_type,
        "instance_count": int(instance_count),
        "estimated_hours": hours,
        "budget_usd": budget,
        "allowed_purchase_options": list(allowed_purchase_options),
        "point_ids": list(point_ids),
        "risk_half_life_days": half_life,
        "failover_delay_hours": delay,
        "as_of": as_of,
        "learn_from_failures": bool(learn_from_failures),
        "in_use_regions": list(used),
        "in_use_instances": list(used.values()),
    }


def group_rows(rows: Iterable[dict[str, Any]], *, budget_usd: Decimal | None = None,
               params: dict[str, Any] | None = None) -> Placement:
    """Group ``place_targets.sql`` rows (dicts, query order) into a :class:`Placement`."""
    by_target: dict[int, list[PlacementRow]] = {}
    for raw in rows:
        row = PlacementRow(**raw)
        by_target.setdefault(row.priority, []).append(row)
    targets = []
    for priority in sorted(by_target):
        group = sorted(by_target[priority], key=lambda r: (r.rank is None, r.rank or 0))
        chosen = [r for r in group if r.chosen]
        if len(chosen) > 1:  # the SQL guarantees at most one; fail loudly if not
            raise RuntimeError(f"placement chose {len(chosen)} candidates for priority {priority}")
        head = group[0]
        targets.append(TargetPlacement(
            priority=priority,
            dataset_id=head.dataset_id,
            dataset_key=head.dataset_key,
            campaign_key=head.campaign_key,
            point_id=head.point_id,
            chosen=chosen[0] if chosen else None,
            alternatives=tuple(r for r in group if not r.chosen and r.copy_id is not None),
            left_out_reason=head.left_out_reason,
        ))
    return Placement(targets=tuple(targets), budget_usd=budget_usd, params=params or {})


def fetch_placement(conn: PgConnection, **kwargs: Any) -> Placement:
    """Run the placement; keyword arguments are those of :func:`placement_params`."""
    from regional_training.runtime import campaign_db

    params = placement_params(**kwargs)
    rows = campaign_db.fetch_dicts(conn, QUERY_FILE, params)
    return group_rows(rows, budget_usd=params["budget_usd"], params=params)


def actual_cost_usd(
    billable_seconds: int | None,
    price_per_instance_hour: float | Decimal | None,
    instance_count: int = 1,
    *,
    quantum: Decimal | None = _CENT,
) -> Decimal | None:
    """Actual cost of a finished job: billable seconds x instances x hourly price / 3600.

    ``billable_seconds`` is SageMaker's ``BillableTimeInSeconds`` (per instance, wall
    clock). Pass the row's ``billing_usd_per_hour`` as the price: for managed spot
    SageMaker reports the savings as a *reduced* ``BillableTimeInSeconds`` billed at the
    on-demand rate (savings = 1 - billable / training time), so multiplying it by the
    spot price would count the discount twice. ``None`` (job never billed, or no price
    known) gives ``None``. Rounded half-up to ``quantum`` (cents; ``None`` = unrounded,
    28 significant digits).
    """
    if billable_seconds is None or price_per_instance_hour is None:
        return None
    if billable_seconds < 0:
        raise ValueError(f"billable_seconds must not be negative, got {billable_seconds}")
    if instance_count <= 0:
        raise ValueError(f"instance_count must be positive, got {instance_count}")
    price = Decimal(str(price_per_instance_hour))
    if price < 0:
        raise ValueError(f"price_per_instance_hour must not be negative, got {price_per_instance_hour}")
    cost = Decimal(int(billable_seconds)) * int(instance_count) * price / Decimal(3600)
    return cost if quantum is None else cost.quantize(quantum, rounding=ROUND_HALF_UP)

