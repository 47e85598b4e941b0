"""Property: on random price/capacity/quota tables, place_targets.sql = brute force."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from brute_force import Capacity, HistoryMove, HistoryRow, Params, Pricing, World, expected_rows, targets
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from regional_training.runtime.campaign_db import load_sql

REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1"]
TYPE = "ml.p4d.24xlarge"
DECOY = "ml.g5.12xlarge"  # priced too, must never leak into a p4d plan
T0 = datetime(2026, 12, 1, tzinfo=UTC)

money = st.sampled_from([Decimal(x) for x in ("0.5", "1", "1.5", "2", "2.5", "3", "4", "8")])
spot_money = st.sampled_from([Decimal(x) for x in ("0.25", "0.5", "1", "1.5", "2", "3")])
OPTIONS = ["reserved", "on_demand", "spot"]
# Event ages in hours before T0 (negative: after it, ignored), up to beyond 8 half-lives.
ages = st.sampled_from([-2, 0, 1, 5, 24, 72, 24 * 7, 24 * 20, 24 * 60, 24 * 200])


@st.composite
def history(draw: st.DrawFn) -> list[HistoryRow]:
    """Recorded targets of earlier runs and their failover moves (the failure model's input)."""
    rows = []
    for i in range(draw(st.integers(0, 8))):
        moves = tuple(
            HistoryMove(draw(st.sampled_from(REGIONS)), draw(st.sampled_from(OPTIONS)),
                        T0 - timedelta(hours=draw(ages)))
            for _ in range(draw(st.integers(0, 3))))
        rows.append(HistoryRow(
            target_key=f"hist-{i}", region=draw(st.sampled_from(REGIONS)),
            option=draw(st.sampled_from([*OPTIONS, None])),
            instance_type=draw(st.sampled_from([TYPE, TYPE, TYPE, DECOY])),
            recorded_at=T0 - timedelta(hours=draw(ages)),
            attempt=draw(st.sampled_from([0, 1, 1, 2])),
            status=draw(st.sampled_from(["Completed", "Failed", "Stopped"])), moves=moves,
            moves_first=draw(st.booleans()), via_update=draw(st.booleans())))
    return rows


@st.composite
def worlds(draw: st.DrawFn) -> tuple[World, Params]:
    regions = {r: draw(st.integers(0, 7)) > 0 for r in REGIONS}
    pricing, spot, capacity = {}, {}, {}
    for r in REGIONS:
        for itype in (TYPE, DECOY):
            if draw(st.integers(0, 6)) == 0:
                continue  # no price: no offer at all there
            pricing[(r, itype)] = Pricing(
                on_demand=draw(money),
                reserved=draw(st.sampled_from([Decimal(0), Decimal("0.5"), Decimal(1), Decimal(3)])),
                allowance=draw(st.sampled_from([Decimal(0), Decimal("0.25"), Decimal("0.5"), Decimal(1)])),
            )
            hours = draw(st.lists(st.integers(0, 48), max_size=3, unique=True))
            if hours:
                spot[(r, itype)] = [(T0 - timedelta(hours=h), draw(spot_money)) for h in hours]
            if draw(st.integers(0, 6)):
                quota = draw(st.integers(0, 6))
                capacity[(r, itype)] = Capacity(quota, draw(st.sampled_from([0, 0, 1, 2, 3, 4])))
    n_campaigns = draw(st.sampled_from([3, 4, 5, 6, 1, 2]))  # multi-target worlds matter most
    ids = iter(draw(st.lists(st.integers(1, 60), min_size=2 * n_campaigns,
                             max_size=2 * n_campaigns, unique=True)))
    campaigns, datasets, copies = {}, {}, {}
    copy_id = 0
    for i in range(n_campaigns):
        key = f"camp-{i}"
        campaigns[key] = (i + 1, draw(st.sampled_from(["ready", "ready", "labelling"])),
                          draw(st.sampled_from(REGIONS)))
        for _ in range(draw(st.integers(1, 2))):
            did = next(ids)
            datasets[did] = (key, f"ds-{did}", T0 - timedelta(days=draw(st.integers(0, 2))))
            for r in draw(st.lists(st.sampled_from(REGIONS), unique=True, min_size=1, max_size=4)):
                copy_id += 1
                copies[copy_id] = (did, r, draw(st.sampled_from(["available"] * 8 + ["syncing", "deleted"])))
    mode = draw(st.sampled_from(["ready", "ids", "campaigns"]))
    params = Params(
        dataset_ids=draw(st.lists(st.sampled_from([*sorted(datasets), 999]), unique=True,
                                   min_size=min(3, len(datasets) + 1)))
        if mode == "ids" else [],
        campaign_keys=draw(st.lists(st.sampled_from([*sorted(campaigns), "nope"]), unique=True,
                                     min_size=min(3, len(campaigns) + 1)))
        if mode == "campaigns" else [],
        region_codes=draw(st.one_of(st.just([]), st.just([]),
                                  st.lists(st.sampled_from(REGIONS), unique=True, min_size=2))),
        instance_type=TYPE,
        instance_count=draw(st.integers(1, 3)),
        estimated_hours=draw(st.sampled_from([Decimal(1), Decimal("2.5"), Decimal(10)])),
        budget_usd=draw(st.one_of(st.none(), st.sampled_from([Decimal(x) for x in (0, 5, 12, 30, 60, 150, 400)]))),
        allowed_purchase_options=draw(st.lists(st.sampled_from(["reserved", "spot", "on_demand"]), unique=True)),
        # A parameter scan: every dataset one job per point (none: one job per dataset).
        point_ids=draw(st.sampled_from([[], [], ["p01", "p02"], ["p01", "p02", "p03"], ["p02", "p01"]])),
        # The failure model (issue 31): half of the worlds have no history at all.
        risk_half_life_days=draw(st.sampled_from([Decimal(1), Decimal(7), Decimal(14)])),
        failover_delay_hours=draw(st.sampled_from([Decimal(0), Decimal(1), Decimal("2.5")])),
        as_of=T0,
        learn_from_failures=draw(st.sampled_from([True, True, True, False])),
        # Instances already in use (another DAG's jobs), taken off the region's quota.
        in_use=draw(st.one_of(st.just({}), st.dictionaries(st.sampled_from(REGIONS), st.integers(0, 5),
                                                           max_size=3))),
    )
    hist = draw(st.one_of(st.just([]), history()))
    return World(regions, pricing, spot, capacity, campaigns, datasets, copies, hist), params


@contextlib.contextmanager
def rolled_back(conn) -> Iterator[object]:
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        conn.rollback()


def load(cur, world: World) -> None:
    for r, enabled in world.regions.items():
        cur.execute("INSERT INTO regions (region_code, display_name, output_bucket, training_enabled)"
                    " VALUES (%s, %s, %s, %s)", (r, r, f"out-{r}", enabled))
    for (r, itype), p in world.pricing.items():
        cur.execute("INSERT INTO instance_pricing (region_code, instance_type, on_demand_usd_per_hour,"
                    " reserved_usd_per_hour, spot_interruption_allowance) VALUES (%s, %s, %s, %s, %s)",
                    (r, itype, p.on_demand, p.reserved, p.allowance))
    for (r, itype), obs in world.spot.items():
        for at, price in obs:
            cur.execute("INSERT INTO spot_price_observations VALUES (%s, %s, %s, %s)", (r, itype, at, price))
    for (r, itype), cap in world.capacity.items():
        cur.execute("INSERT INTO instance_capacity (region_code, instance_type, quota_instances,"
                    " reserved_instances) VALUES (%s, %s, %s, %s)", (r, itype, cap.quota, cap.reserved))
    for key, (cid, status, region) in world.campaigns.items():
        cur.execute("INSERT INTO campaigns (campaign_id, campaign_key, recorded_region, recorded_from,"
                    " recorded_to, status) OVERRIDING SYSTEM VALUE"
                    " VALUES (%s, %s, %s, '2026-01-01', '2026-02-01', %s)", (cid, key, region, status))
    for did, (ckey, dkey, created) in world.datasets.items():
        cur.execute("INSERT INTO datasets (dataset_id, campaign_id, dataset_key, label_schema,"
                    " record_count, size_bytes, created_at) OVERRIDING SYSTEM VALUE"
                    " VALUES (%s, %s, %s, 'x', 1, 1, %s)", (did, world.campaigns[ckey][0], dkey, created))
    for cid, (did, region, status) in world.copies.items():
        cur.execute("INSERT INTO dataset_copies (copy_id, dataset_id, region_code, s3_uri, status)"
                    " OVERRIDING SYSTEM VALUE VALUES (%s, %s, %s, %s, %s)",
                    (cid, did, region, f"s3://b-{region}/{did}/", status))
    load_history(cur, world)


def load_history(cur, world: World) -> None:
    any_dataset = min(world.datasets)
    for row in world.history:
        # the triggers keep placement_outcomes_daily whatever the order of the writes
        if row.moves_first:
            insert_moves(cur, row)
        cur.execute("INSERT INTO training_runs (dag_id, run_id, target_key, region_code, dataset_id,"
                    " training_job_name, status, hyperparameters_sha256, instance_type, instance_count,"
                    " attempt, purchase_option, recorded_at) VALUES ('hist', 'r1', %s, %s, %s, %s, %s, %s,"
                    " %s, 1, %s, %s, %s)",
                    (row.target_key, row.region, any_dataset, f"job-{row.target_key}",
                     "InProgress" if row.via_update else row.status, "0" * 64,
                     row.instance_type, row.attempt, row.option, row.recorded_at))
        if row.via_update:
            cur.execute("UPDATE training_runs SET status = %s WHERE target_key = %s", (row.status, row.target_key))
        if not row.moves_first:
            insert_moves(cur, row)


def insert_moves(cur, row: HistoryRow) -> None:
    for number, move in enumerate(row.moves, start=1):
        cur.execute("INSERT INTO placement_moves (dag_id, run_id, target_key, move_number, from_region,"
                    " from_option, error_code, error_message, moved_at)"
                    " VALUES ('hist', 'r1', %s, %s, %s, %s, 'CapacityError', 'x', %s)",
                    (row.target_key, number, move.from_region, move.from_option, move.moved_at))


def run_query(cur, params: Params) -> list[dict]:
    cur.execute(load_sql("queries/place_targets.sql"), params.binds())
    cols = [c.name for c in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def as_tuples(rows: list[dict]) -> list[tuple]:
    return [(r["priority"], r["dataset_id"], r["point_id"], r["region_code"], r["purchase_option"],
             r["expected_cost_usd"],
             r["rank"], r["chosen"], r["fits_capacity"], r["fits_budget"], r["left_out_reason"],
             r["cumulative_cost_usd"], r["plan_total_usd"],
             r["recent_failures"], r["failure_probability"], r["risk_usd"]) for r in rows]


def check_invariants(world: World, params: Params, rows: list[dict]) -> None:
    """Checked on the SQL result alone: quota, reservations, budget, one choice each."""
    chosen = [r for r in rows if r["chosen"]]
    n = params.instance_count
    per_region: dict[str, int] = {}
    per_region_reserved: dict[str, int] = {}
    for r in chosen:
        per_region[r["region_code"]] = per_region.get(r["region_code"], 0) + n
        if r["purchase_option"] == "reserved":
            per_region_reserved[r["region_code"]] = per_region_reserved.get(r["region_code"], 0) + n
        assert r["rank"] == 1 and r["left_out_reason"] is None
        assert world.copies[r["copy_id"]][1] == r["region_code"]
        assert world.copies[r["copy_id"]][2] == "available"
    for region, used in per_region.items():
        cap = world.capacity.get((region, TYPE))
        # the plan and the instances already in use there fit the account's quota together
        assert cap is not None and used + params.in_use.get(region, 0) <= cap.quota
    for region, used in per_region_reserved.items():
        assert used <= world.capacity[(region, TYPE)].reserved
    total = sum((r["expected_cost_usd"] for r in chosen), Decimal(0))
    if params.budget_usd is not None:
        assert total <= params.budget_usd
    by_target: dict[int, list[dict]] = {}
    for r in rows:
        by_target.setdefault(r["priority"], []).append(r)
    for group in by_target.values():
        picks = [r for r in group if r["chosen"]]
        assert len(picks) <= 1
        assert (len(picks) == 1) == (group[0]["left_out_reason"] is None)  # never silently dropped
        assert all(r["plan_total_usd"] == total for r in group)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=worlds())
def test_sql_choice_equals_brute_force(pg, case: tuple[World, Params]) -> None:
    world, params = case
    with rolled_back(pg) as cur:
        load(cur, world)
        rows = run_query(cur, params)
    check_invariants(world, params, rows)
    if world.history:
        event("history: " + ("risk > 0" if any(r["risk_usd"] for r in rows) else "no risk"))
        forgetful = World(**{**world.__dict__, "history": []})
        if [r[:5] for r in expected_rows(forgetful, params) if r[7]] != [
                (r["priority"], r["dataset_id"], r["point_id"], r["region_code"], r["purchase_option"])
                for r in rows if r["chosen"]]:
            event("history: changed a choice")
    for r in rows:
        if r["rank"] in (None, 1):
            event(f"target: {r['left_out_reason'] or 'placed ' + r['purchase_option']}")
    n_targets = len(targets(world, params))
    event(f"targets: {min(n_targets, 4)}{'+' if n_targets >= 4 else ''}")
    assert len({r["priority"] for r in rows}) == n_targets
    # exhaustive enumeration where it is small enough, pruned search otherwise
    ts = targets(world, params)
    size = 1
    for t in ts:
        size *= len(t.cands) + 1
    assert as_tuples(rows) == expected_rows(world, params, exhaustive=size <= 5000)
