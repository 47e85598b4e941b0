"""An independent Python model of the placement rule, for the property tests.

It reads the same random world the test loaded into Postgres (plain Python objects, not
the database) and computes the plan by brute force: the lexicographically smallest
feasible assignment of every target (in priority order) to one of its candidates or to
"left out", where a target's candidates compare by (risk-adjusted expected cost, option
order, region) and "left out" is worse than any candidate. The risk term (issue 31) comes
from the history rows the test loaded (:func:`failure_probabilities`). A target is a job: one per dataset, or in a
parameter scan one per (dataset, point), datasets in id order, points in the order given. ``exhaustive=True`` enumerates
every assignment; otherwise a depth-first search prunes infeasible prefixes (sound:
quota, reservations and budget only grow along a prefix, and "left out" always fits).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

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


@dataclass(frozen=True)
class HistoryMove:
    from_region: str
    from_option: str
    moved_at: datetime


@dataclass(frozen=True)
class HistoryRow:
    """A recorded target (training_runs row) and the moves it made before it."""

    target_key: str
    region: str
    option: str | None
    instance_type: str
    recorded_at: datetime
    attempt: int
    status: str
    moves: tuple[HistoryMove, ...] = ()
    #: How the test writes it (the model must not care): moves before the row, as the
    #: collector does, or after it; the row first 'InProgress', then updated (an upsert).
    moves_first: bool = True
    via_update: bool = False


@dataclass
class World:
    regions: dict[str, bool]                                   # code -> training_enabled
    pricing: dict[tuple[str, str], Pricing]                    # (region, type)
    spot: dict[tuple[str, str], list[tuple[datetime, Decimal]]]
    capacity: dict[tuple[str, str], Capacity]
    campaigns: dict[str, tuple[int, str, str]]                 # key -> (id, status, region)
    datasets: dict[int, tuple[str, str, datetime]]             # id -> (campaign key, key, created)
    copies: dict[int, tuple[int, str, str]]                    # copy id -> (dataset, region, status)
    history: list[HistoryRow] = field(default_factory=list)


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
    risk_half_life_days: Decimal = Decimal(14)
    failover_delay_hours: Decimal = Decimal(1)
    as_of: datetime | None = None
    #: Instances already in use per region (other DAGs' jobs): taken off the quota.
    in_use: dict[str, int] = field(default_factory=dict)
    learn_from_failures: bool = True

    def binds(self) -> dict:
        binds = {k: v for k, v in self.__dict__.items() if k != "in_use"}
        return {**binds, "in_use_regions": list(self.in_use), "in_use_instances": list(self.in_use.values())}


@dataclass(frozen=True)
class Cand:
    copy_id: int
    region: str
    option: str
    cost: Decimal
    quota: int
    reserved: int
    risk: Decimal = Decimal(0)

    @property
    def adjusted(self) -> Decimal:
        return self.cost + self.risk

    @property
    def key(self) -> tuple:
        return (self.adjusted, OPTION_ORDER[self.option], self.region)


def failure_probabilities(world: World, p: Params) -> dict[tuple[str, str], tuple[int, Decimal]]:
    """(region, option) -> (failures within the horizon, decayed failure probability).

    A success is a Completed row (its region and option, if known); a failure is a move
    away from (region, option). Events count on their UTC day, each weighing
    0.5 ^ (age of the day's start / half-life); days starting after as_of or 8+
    half-lives before it are ignored. p = F / (F + S + 1), to 6 places.
    """
    assert p.as_of is not None
    if not p.learn_from_failures:
        return {}
    half_life = timedelta(days=float(p.risk_half_life_days))
    events: list[tuple[str, str | None, bool, datetime]] = []
    for row in world.history:
        if row.instance_type != p.instance_type:
            continue
        if row.status == "Completed" and row.option is not None:
            events.append((row.region, row.option, False, row.recorded_at))
        events.extend((m.from_region, m.from_option, True, m.moved_at) for m in row.moves)
    sums: dict[tuple[str, str], tuple[float, float]] = {}
    failures: dict[tuple[str, str], int] = {}
    for region, option, failed, at in events:
        day_start = datetime.combine(at.astimezone(UTC).date(), time(), UTC)
        if option is None or not (p.as_of - 8 * half_life < day_start <= p.as_of):
            continue
        w = 0.5 ** ((p.as_of - day_start).total_seconds() / half_life.total_seconds())
        f, total = sums.get((region, option), (0.0, 0.0))
        sums[(region, option)] = (f + (w if failed else 0.0), total + w)
        failures[(region, option)] = failures.get((region, option), 0) + int(failed)
    # PostgreSQL casts the float to numeric at 15 significant digits, then rounds
    return {k: (failures[k], Decimal(f"{f / (total + 1):.15g}").quantize(Decimal("0.000001"), ROUND_HALF_UP))
            for k, (f, total) in sums.items()}


def risk_usd(prob: Decimal, cost: Decimal, on_demand: Decimal, p: Params) -> Decimal:
    """The expected extra dollars: with probability ``prob`` the job reruns elsewhere at
    the on-demand price after the failover delay, instead of costing ``cost`` here."""
    fallback = p.instance_count * (p.estimated_hours + p.failover_delay_hours) * on_demand
    return max(Decimal(0), prob * (fallback - cost)).quantize(Decimal("0.0001"), ROUND_HALF_UP)


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
    probs = failure_probabilities(world, p)
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
            cap = Capacity(max(0, cap.quota - p.in_use.get(region, 0)), cap.reserved)
            spot = world.spot.get((region, p.instance_type))
            offered = {"on_demand": price.on_demand}
            if cap.reserved > 0:
                offered["reserved"] = price.reserved
            if spot:
                offered["spot"] = max(spot)[1] * (1 + price.allowance)
            for option, hourly in offered.items():
                if option in options:
                    cost = p.instance_count * p.estimated_hours * hourly
                    prob = probs.get((region, option), (0, Decimal(0)))[1]
                    t.cands.append(Cand(cid, region, option, cost, cap.quota, cap.reserved,
                                        risk_usd(prob, cost, price.on_demand, p)))
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
    probs = failure_probabilities(world, p)
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
                         reason, cumulative, spent_f, None, None, None))
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
            failures, prob = probs.get((c.region, c.option), (0, Decimal(0)))
            rows.append((t.priority, t.dataset_id, t.point_id, c.region, c.option, c.cost, rank, chosen,
                         fits_cap, fits_budget, reason, cumulative, spent_f, failures, prob, c.risk))
    return rows
