"""An independent Python model of the placement rule, for the property tests.

It reads the same random world the test loaded into Postgres (plain Python objects, not
the database) and computes the plan by brute force: the lexicographically smallest
feasible assignment of every target (in priority order) to one of its candidates or to
"left out", where a target's candidates compare by (expected cost, option order,
region) and "left out" is worse than any candidate. A target is a job: one per dataset, or in a
parameter scan one per (dataset, point), datasets in id order, points in the order given. ``exhaustive=True`` enumerates
every assignment; otherwise a depth-first search prunes infeasible prefixes (sound:
quota, reservations and budget only grow along a prefix, and "left out" always fits).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

OPTION_ORDER = {"reserved": 0, "on_demand": 1, "spot": 2}


@dataclass(frozen=True)
class Pricing:
    on_demand: Decimal
    reserved: Decimal
    allowance: Decimal


@dataclass(frozen=True)
class Capacity:
    quota: int
    reserved: int


@dataclass
class World:
    regions: dict[str, bool]                                   # code -> training_enabled
    pricing: dict[tuple[str, str], Pricing]                    # (region, type)
    spot: dict[tuple[str, str], list[tuple[datetime, Decimal]]]
    capacity: dict[tuple[str, str], Capacity]
    campaigns: dict[str, tuple[int, str, str]]                 # key -> (id, status, region)
    datasets: dict[int, tuple[str, str, datetime]]             # id -> (campaign key, key, created)
    copies: dict[int, tuple[int, str, str]]                    # copy id -> (dataset, region, status)


@dataclass
class Params:
    dataset_ids: list[int]
    campaign_keys: list[str]
    region_codes: list[str]
    instance_type: str
    instance_count: int
    estimated_hours: Decimal
    budget_usd: Decimal | None
    allowed_purchase_options: list[str]
    point_ids: list[str] = field(default_factory=list)

    def binds(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Cand:
    copy_id: int
    region: str
    option: str
    cost: Decimal
    quota: int
    reserved: int

    @property
    def key(self) -> tuple:
        return (self.cost, OPTION_ORDER[self.option], self.region)


@dataclass
class Target:
    priority: int
    dataset_id: int
    n_copies: int
    point_id: str | None = None
    cands: list[Cand] = field(default_factory=list)


def targets(world: World, p: Params) -> list[Target]:
    if p.dataset_ids:
        ids = sorted(set(p.dataset_ids) & set(world.datasets))
    else:
        ids = []
        for key, (_cid, status, _region) in world.campaigns.items():
            if (not p.campaign_keys and status == "ready") or key in p.campaign_keys:
                own = [(created, did) for did, (ck, _k, created) in world.datasets.items() if ck == key]
                if own:
                    ids.append(max(own)[1])
        ids.sort()
    allowed = {r for r, enabled in world.regions.items()
               if enabled and (not p.region_codes or r in p.region_codes)}
    options = p.allowed_purchase_options or list(OPTION_ORDER)
    out = []
    jobs = [(did, point) for did in ids for point in (p.point_ids or [None])]
    for priority, (did, point) in enumerate(jobs, start=1):
        copies = [(cid, region) for cid, (d, region, status) in world.copies.items()
                  if d == did and status == "available" and region in allowed]
        t = Target(priority, did, len(copies), point)
        for cid, region in copies:
            price = world.pricing.get((region, p.instance_type))
            if price is None:
                continue
            cap = world.capacity.get((region, p.instance_type), Capacity(0, 0))
            spot = world.spot.get((region, p.instance_type))
            offered = {"on_demand": price.on_demand}
            if cap.reserved > 0:
                offered["reserved"] = price.reserved
            if spot:
                offered["spot"] = max(spot)[1] * (1 + price.allowance)
            for option, hourly in offered.items():
                if option in options:
                    cost = p.instance_count * p.estimated_hours * hourly
                    t.cands.append(Cand(cid, region, option, cost, cap.quota, cap.reserved))
        t.cands.sort(key=lambda c: c.key)
        out.append(t)
    return out


def _usage(choice: list[Cand | None], n: int) -> tuple[dict, dict, Decimal]:
    quota: dict[str, int] = {}
    reserved: dict[str, int] = {}
    spent = Decimal(0)
    for c in choice:
        if c is None:
            continue
        quota[c.region] = quota.get(c.region, 0) + n
        if c.option == "reserved":
            reserved[c.region] = reserved.get(c.region, 0) + n
        spent += c.cost
    return quota, reserved, spent


def _feasible(choice: list[Cand | None], p: Params) -> bool:
    quota, reserved, spent = _usage(choice, p.instance_count)
    limits = {c.region: c for c in choice if c is not None}
    for region, used in quota.items():
        if used > limits[region].quota:
            return False
    for region, used in reserved.items():
        if used > limits[region].reserved:
            return False
    return p.budget_usd is None or spent <= p.budget_usd


def _cap_ok(prefix: list[Cand | None], c: Cand, p: Params) -> bool:
    quota, reserved, _ = _usage(prefix, p.instance_count)
    n = p.instance_count
    return quota.get(c.region, 0) + n <= c.quota and (
        c.option != "reserved" or reserved.get(c.region, 0) + n <= c.reserved)


def solve(ts: list[Target], p: Params, *, exhaustive: bool = False) -> list[Cand | None]:
    """The lexicographically smallest feasible assignment (None = left out)."""
    choices = [[*t.cands, None] for t in ts]  # each list already in preference order
    if exhaustive:
        # itertools.product yields tuples in lexicographic order of the per-target
        # preference, so the first feasible tuple is the lexicographic minimum; check
        # every tuple anyway (no early exit) to keep this a plain enumeration.
        best = None
        for combo in itertools.product(*choices):
            if _feasible(list(combo), p) and best is None:
                best = list(combo)
        assert best is not None  # all-None is always feasible
        return best

    def dfs(prefix: list[Cand | None]) -> list[Cand | None] | None:
        if len(prefix) == len(ts):
            return prefix
        for c in choices[len(prefix)]:
            nxt = [*prefix, c]
            if _feasible(nxt, p):
                found = dfs(nxt)
                if found is not None:
                    return found
        return None

    result = dfs([])
    assert result is not None
    return result


def expected_rows(world: World, p: Params, *, exhaustive: bool = False) -> list[tuple]:
    """The query's result as comparable tuples, in (priority, rank) order."""
    ts = targets(world, p)
    plan = solve(ts, p, exhaustive=exhaustive)
    n = p.instance_count
    quota_f, reserved_f, spent_f = _usage(plan, n)
    rows = []
    for i, (t, pick) in enumerate(zip(ts, plan, strict=True)):
        prefix = plan[:i]
        cumulative = _usage(plan[: i + 1], n)[2]
        if pick is not None:
            reason = None
        elif t.n_copies == 0:
            reason = "no_copy"
        elif not t.cands:
            reason = "no_offer"
        elif any(_cap_ok(prefix, c, p) for c in t.cands):
            reason = "over_budget"
        else:
            reason = "no_capacity"
        if not t.cands:
            rows.append((t.priority, t.dataset_id, t.point_id, None, None, None, None, False, False, False,
                         reason, cumulative, spent_f))
            continue
        scored = []
        for c in t.cands:
            chosen = c == pick
            own_q = n if pick is not None and pick.region == c.region else 0
            own_r = n if pick is not None and pick.region == c.region and pick.option == "reserved" else 0
            fits_cap = quota_f.get(c.region, 0) - own_q + n <= c.quota and (
                c.option != "reserved" or reserved_f.get(c.region, 0) - own_r + n <= c.reserved)
            fits_budget = p.budget_usd is None or (
                spent_f - (pick.cost if pick is not None else 0) + c.cost <= p.budget_usd)
            scored.append((not chosen, not (fits_cap and fits_budget), c.key, c, chosen, fits_cap, fits_budget))
        scored.sort(key=lambda s: s[:3])
        for rank, (_a, _b, _k, c, chosen, fits_cap, fits_budget) in enumerate(scored, start=1):
            rows.append((t.priority, t.dataset_id, t.point_id, c.region, c.option, c.cost, rank, chosen,
                         fits_cap, fits_budget, reason, cumulative, spent_f))
    return rows
