"""Placement that learns (issue 31): the project's own failures push an offer down.

On the sample data, in a transaction that is rolled back (the seeded database is
shared): dublin's eu-central-1 copy is made available, so dublin may train in eu-west-1
(cheapest spot, 299 USD) or eu-central-1 (spot 423, on-demand 843.80).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from regional_training.plan import placement
from regional_training.runtime.campaign_db import load_sql

P4D = {"instance_type": "ml.p4d.24xlarge", "instance_count": 2, "estimated_hours": 10}
NOW = datetime(2026, 12, 7, tzinfo=UTC)  # a day's start: ages in whole days


@contextlib.contextmanager
def dublin_in_two_regions(conn) -> Iterator[object]:
    try:
        with conn.cursor() as cur:
            cur.execute("UPDATE dataset_copies SET status = 'available' WHERE region_code = 'eu-central-1'"
                        " AND dataset_id = (SELECT dataset_id FROM datasets"
                        "                    WHERE dataset_key = 'dublin-urban-2026-v1')")
            yield cur
    finally:
        conn.rollback()


def add_failures(cur, n: int, *, region: str, option: str, age: timedelta, instance_type: str = P4D["instance_type"],
                 code: str = "MaxWaitTimeExceeded") -> None:
    """``n`` earlier targets that left ``region``/``option`` for lack of capacity and
    completed in us-east-1 (each a training_runs row and its placement_moves row)."""
    for i in range(n):
        key = f"learn-{region}-{option}-{age.days}-{i}"
        cur.execute("INSERT INTO training_runs (dag_id, run_id, target_key, region_code, dataset_id,"
                    " training_job_name, status, hyperparameters_sha256, instance_type, instance_count, attempt,"
                    " purchase_option, recorded_at)"
                    " SELECT 'history', 'night', %s, 'us-east-1', min(dataset_id), %s, 'Completed', %s, %s, 2, 1,"
                    " 'on_demand', %s FROM datasets",
                    (key, f"job-{key}", "0" * 64, instance_type, NOW - age))
        cur.execute("INSERT INTO placement_moves (dag_id, run_id, target_key, move_number, from_region, to_region,"
                    " from_option, to_option, error_code, error_message, moved_at)"
                    " VALUES ('history', 'night', %s, 1, %s, 'us-east-1', %s, 'on_demand', %s, 'no capacity', %s)",
                    (key, region, option, code, NOW - age))


def plan_in(cur, **extra) -> placement.TargetPlacement:
    params = placement.placement_params(**{**P4D, "as_of": NOW, "campaign_keys": ["dublin-urban-2026"],
                                           "allowed_purchase_options": ["spot", "on_demand"], **extra})
    cur.execute(load_sql("queries/place_targets.sql"), params)
    cols = [c.name for c in cur.description]
    (target,) = placement.group_rows([dict(zip(cols, r, strict=True)) for r in cur.fetchall()]).targets
    return target


def ranking(target: placement.TargetPlacement) -> list[tuple[str | None, str | None]]:
    assert target.chosen is not None
    return [(r.region_code, r.purchase_option) for r in (target.chosen, *target.alternatives)]


NO_HISTORY = [("eu-west-1", "spot"), ("eu-central-1", "spot"), ("eu-west-1", "on_demand"),
              ("eu-central-1", "on_demand")]


def test_no_history_keeps_the_cost_ranking(seeded_pg) -> None:
    with dublin_in_two_regions(seeded_pg) as cur:
        target = plan_in(cur)
    assert ranking(target) == NO_HISTORY
    for row in (target.chosen, *target.alternatives):
        assert row.recent_failures == 0 and row.failure_probability == 0 and row.risk_usd == 0
        assert row.risk_adjusted_cost_usd == row.expected_cost_usd


def test_repeated_spot_failures_rank_the_spot_offer_below_on_demand_elsewhere(seeded_pg) -> None:
    with dublin_in_two_regions(seeded_pg) as cur:
        add_failures(cur, 10, region="eu-west-1", option="spot", age=timedelta(days=1))
        target = plan_in(cur)
    assert ranking(target) == [("eu-central-1", "spot"), ("eu-west-1", "on_demand"),
                               ("eu-central-1", "on_demand"), ("eu-west-1", "spot")]
    starved = target.alternatives[-1]
    assert starved.recent_failures == 10
    # 10 failures a day old (half-life 14 days): weight 0.5^(1/14) each, no success
    weight = Decimal("0.5") ** (Decimal(1) / 14)
    assert starved.failure_probability == (10 * weight / (10 * weight + 1)).quantize(Decimal("0.000001"))
    # expected cost unchanged (the budget counts it); the ranking adds the risk:
    # p x (2 instances x (10 h + 1 h delay) x 41.457 on-demand - 299 spot)
    assert starved.expected_cost_usd == Decimal("299.00")
    assert starved.risk_usd == (starved.failure_probability * (22 * Decimal("41.457") - 299)).quantize(
        Decimal("0.0001"))
    assert starved.risk_adjusted_cost_usd > target.alternatives[1].risk_adjusted_cost_usd  # > 843.80
    # the chosen offer has no history: its own figures are unchanged
    assert target.chosen.risk_usd == 0 and target.chosen.expected_cost_usd == Decimal("423.00")


def test_failures_decay_and_stay_with_their_own_offer(seeded_pg) -> None:
    with dublin_in_two_regions(seeded_pg) as cur:
        # old failures (60 days, over 4 half-lives) still count a little; those of another
        # instance type, and of on-demand elsewhere, do not touch eu-west-1 spot
        add_failures(cur, 10, region="eu-west-1", option="spot", age=timedelta(days=60))
        add_failures(cur, 5, region="eu-west-1", option="spot", age=timedelta(days=1),
                     instance_type="ml.g5.12xlarge")
        target = plan_in(cur)
        assert ranking(target) == [("eu-central-1", "spot"), ("eu-west-1", "spot"), ("eu-west-1", "on_demand"),
                                   ("eu-central-1", "on_demand")]
        assert target.alternatives[0].recent_failures == 10
        # beyond the horizon (8 half-lives) they are forgotten: the ranking is today's
        assert ranking(plan_in(cur, risk_half_life_days=7)) == NO_HISTORY
        # a success in the region dilutes them
        cur.execute("INSERT INTO training_runs (dag_id, run_id, target_key, region_code, dataset_id,"
                    " training_job_name, status, hyperparameters_sha256, instance_type, instance_count, attempt,"
                    " purchase_option, recorded_at) SELECT 'history', 'night', 'ok', 'eu-west-1', min(dataset_id),"
                    " 'job-ok', 'Completed', %s, %s, 2, 1, 'spot', %s FROM datasets",
                    ("0" * 64, P4D["instance_type"], NOW - timedelta(days=1)))
        diluted = plan_in(cur).alternatives[0]
        assert diluted.failure_probability < target.alternatives[0].failure_probability


@pytest.mark.parametrize("bad", [{"risk_half_life_days": 0}, {"failover_delay_hours": -1},
                                 {"as_of": datetime(2026, 12, 7)}])
def test_bad_risk_parameters_are_refused_before_sql(bad) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        placement.placement_params(**{**P4D, **bad})


def test_the_dry_run_plan_shows_the_risk_of_each_candidate(seeded_pg) -> None:
    """The plan table of a dry run's report: each candidate's failure risk and risk USD,
    through the same row conversion the DAG's selection uses."""
    import re

    from regional_training.plan.selection import _placement_row
    from regional_training.report.report import render_report
    from regional_training.report.summary import summarize

    with dublin_in_two_regions(seeded_pg) as cur:
        add_failures(cur, 10, region="eu-west-1", option="spot", age=timedelta(days=1))
        target = plan_in(cur)
    rows = [_placement_row(r) for r in (target.chosen, *target.alternatives)]
    page = render_report(summarize([], run_id="manual__dry", dry_run=True, planned=1, left_out=[]),
                         plan=[{**rows[0], "alternatives": rows[1:]}])
    assert "<th>failure risk</th><th>risk USD</th>" in page
    last = re.search(r'<tr data-target="dublin-urban-2026-v1" data-rank="3">(.*?)</tr>', page)
    assert last is not None and "eu-west-1" in last.group(1) and "spot" in last.group(1)
    starved = rows[-1]
    assert starved["failure_probability"] > 0.85 and starved["risk_usd"] > 500
    assert f'{starved["failure_probability"]:.1%}' in last.group(1) and f'{starved["risk_usd"]:.2f}' in last.group(1)
    first = re.search(r'data-rank="0">(.*?)</tr>', page)
    assert first is not None and "0.0%" in first.group(1)
