"""Which targets a run trains: placed in the campaign database, validated before launch.

An error names the bad row and field (or Param) before any job exists.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from regional_training import campaign_db, placement, scan
from regional_training.params import processes_per_host
from regional_training.targets import Target, check_row, target_key_of, validate_rows

log = logging.getLogger(__name__)


def select_targets(conn: Any, params: Mapping[str, Any], *, dataset_ids: Sequence[int] | None = None,
                   allow_list: scan.AllowList | None = None,
                   in_use: Callable[[list[str], str], dict[str, int]] | None = None) -> dict[str, Any]:
    """Place and validate this run's targets (raises naming the bad row or Param).

    ``dataset_ids`` (an asset-triggered run: the datasets its events name) narrows the
    selection to exactly those datasets; ``None``: the Params' campaigns decide.

    Returns ``targets`` (each with its ranked ``alternatives`` for failover),
    ``left_out`` (datasets the plan could not place, with the reason) and the plan's
    expected total.

    With the Param ``scan``, each dataset is one target per scan point (checked here,
    image tags and entry points against ``allow_list``), each placed like any target.

    ``in_use(regions, instance_type)``: the instances already in use per region
    (regional_training.capacity), taken off the quotas by the cheapest placement when
    the Param ``count_instances_in_use`` is on; ``None``: nothing counted.
    """
    processes_per_host(params)  # cross-field Param check, before anything else
    points = scan.points(params.get(scan.PARAM_NAME), allow=allow_list)
    overrides = {p.point_id: p.overrides for p in points}
    campaigns, regions = list(params["campaigns"] or []), list(params["regions"] or [])
    known = {row["region_code"] for row in campaign_db.fetch_dicts(conn, "known_regions.sql", {})}
    if params["placement"] == "region_local":
        rows = campaign_db.fetch_dicts(
            conn, "select_targets.sql", {"campaign_keys": campaigns, "region_codes": regions}
        )
        alternatives: dict[tuple[int, str | None], list[dict[str, Any]]] = {}
        left_out: list[dict[str, Any]] = []
        if dataset_ids is not None:  # region_local places only each ready campaign's newest dataset
            rows = [r for r in rows if r["dataset_id"] in set(dataset_ids)]
        if points:  # every scan point trains on the region-local copy
            rows = [{**r, "point_id": p.point_id} for r in rows for p in points]
    else:
        counted = (in_use(regions or sorted(known), params["instance_type"])
                   if in_use is not None and params.get("count_instances_in_use", True) else {})
        plan = placement.fetch_placement(
            conn,
            instance_type=params["instance_type"],
            instance_count=params["instance_count"],
            estimated_hours=params["estimated_hours"],
            budget_usd=params["budget_usd"],
            allowed_purchase_options=params["purchase_options"] or [],
            campaign_keys=campaigns,
            region_codes=regions,
            dataset_ids=dataset_ids or (),
            point_ids=[p.point_id for p in points],
            in_use=counted,
            learn_from_failures=params.get("learn_from_failures", True),
        )
        rows = [_placement_row(t.chosen) for t in plan.placed if t.chosen]
        alternatives = {
            (t.dataset_id, t.point_id): [_placement_row(a) for a in t.alternatives if a.fits] for t in plan.placed
        }
        left_out = [
            {"dataset_key": t.dataset_key, "campaign_key": t.campaign_key, "reason": t.left_out_reason,
             "explanation": placement.LEFT_OUT_REASONS.get(t.left_out_reason or "", ""),
             **({"point_id": t.point_id} if t.point_id else {})}
            for t in plan.left_out
        ]
        for item in left_out:
            log.warning("Left out %s%s (%s): %s", item["dataset_key"],
                        f" point {item['point_id']}" if "point_id" in item else "", item["reason"],
                        item["explanation"])
    rows = [{**r, "point_overrides": overrides[r["point_id"]]} if r.get("point_id") else r for r in rows]
    requested = [c for c in campaigns if c not in {item["campaign_key"] for item in left_out}]
    targets = validate_rows(rows, requested_campaigns=requested, allowed_regions=regions, known_regions=known,
                            allow_empty=True)  # nothing to train is a clean outcome (verdict)
    out = []
    for target in targets:
        alts = alternatives.get((target.dataset_id, target.point_id), [])
        for rank, alt in enumerate(alts, start=1):
            check_row(f"alternative {rank} of {target.target_key} ({alt['region_code']!r})", alt, regions)
        # An alternative is the same target elsewhere: it keeps the target's key (and point).
        out.append({**target.to_dict(), "alternatives": [
            Target.from_dict({**a, "campaign_qualified": target.campaign_qualified,
                              "point_overrides": target.point_overrides}).to_dict() for a in alts]})
    log.info("Selected %d target(s): %s", len(out), ", ".join(
        f"{target_key_of(t)} -> {t['region_code']} {t['purchase_option']}" for t in out))
    planned = [t["planned_cost_usd"] for t in out if t["planned_cost_usd"] is not None]
    return {"targets": out, "left_out": left_out, "planned_total_usd": sum(planned) if planned else None}


def _placement_row(row: placement.PlacementRow) -> dict[str, Any]:
    """A placement candidate as a target row (JSON-safe numbers for XCom)."""

    def num(value: Any) -> float | None:
        return None if value is None else float(value)

    return {
        "region_code": row.region_code,
        "s3_uri": row.s3_uri,
        "campaign_key": row.campaign_key,
        "dataset_key": row.dataset_key,
        "dataset_id": row.dataset_id,
        "copy_id": row.copy_id,
        "output_bucket": row.output_bucket,
        "purchase_option": row.purchase_option,
        "placement_rank": row.rank,
        "price_per_instance_hour": num(row.price_per_instance_hour),
        "billing_usd_per_hour": num(row.billing_usd_per_hour),
        "planned_cost_usd": num(row.expected_cost_usd),
        "failure_probability": num(row.failure_probability),
        "risk_usd": num(row.risk_usd),
        "point_id": row.point_id,
    }
