"""Which targets a run trains: placed in the campaign database, validated before launch.

An error names the bad row and field (or Param) before any job exists.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from regional_training.plan import array_file, placement, scan
from regional_training.plan.params import processes_per_host
from regional_training.plan.targets import Target, TargetError, check_row, target_key_of, validate_rows
from regional_training.runtime import campaign_db, identifiers

log = logging.getLogger(__name__)


def select_targets(conn: Any, params: Mapping[str, Any], *, dataset_ids: Sequence[int] | None = None,
                   allow_list: scan.AllowList | None = None,
                   in_use: Callable[[list[str], str], dict[str, int]] | None = None,
                   array_lines: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Place and validate this run's targets (raises naming the bad row or Param).

    ``dataset_ids`` (an asset-triggered run: the datasets its events name) narrows the
    selection to exactly those datasets; ``None``: the Params' campaigns decide.

    Returns ``targets`` (each with its ranked ``alternatives`` for failover),
    ``left_out`` (datasets the plan could not place, with the reason) and the plan's
    expected total.

    With the Param ``scan``, each dataset is one target per scan point (checked here,
    image tags and entry points against ``allow_list``), each placed like any target.

    ``in_use(regions, instance_type)``: the instances already in use per region
    (regional_training.plan.capacity), taken off the quotas by the cheapest placement when
    the Param ``count_instances_in_use`` is on; ``None``: nothing counted.

    ``array_lines`` (the Param ``array_file``, read by
    :func:`regional_training.plan.array_file.read_input`): the file places the targets, one per
    line in the line's region, on-demand, without alternatives (:func:`resolve_array_lines`).
    """
    processes_per_host(params)  # cross-field Param check, before anything else
    alternatives: dict[tuple[int, str | None], list[dict[str, Any]]]
    left_out: list[dict[str, Any]]
    points = scan.points(params.get(scan.PARAM_NAME), allow=allow_list)
    overrides = {p.point_id: p.overrides for p in points}
    campaigns, regions = list(params["campaigns"] or []), list(params["regions"] or [])
    known = {row["region_code"] for row in campaign_db.fetch_dicts(conn, "known_regions.sql", {})}
    if array_lines is not None:
        if dataset_ids is not None:
            raise TargetError(f"param {array_file.PARAM_NAME!r}: an asset-triggered run trains the datasets its "
                              "events name; give an array file to a manual run")
        rows = resolve_array_lines(conn, array_lines, params)
        alternatives, left_out = {}, []
        if points:  # every scan point trains on each line's copy
            rows = [{**r, "point_id": p.point_id} for r in rows for p in points]
    elif params["placement"] == "region_local":
        rows = campaign_db.fetch_dicts(
            conn, "select_targets.sql", {"campaign_keys": campaigns, "region_codes": regions}
        )
        alternatives, left_out = {}, []
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


def regions_to_check(params: Mapping[str, Any], targets: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Every region the plan may create a job in, labelled for
    :func:`regional_training.plan.limits.check_regions` (SageMaker's regions): the Param
    ``regions``, each target's first choice and each of its failover alternatives (a
    move to a region SageMaker lacks would otherwise fail only at failover time, after
    the first choice already failed)."""
    return ([(f"param 'regions' item {i}", r) for i, r in enumerate(params.get("regions") or [], 1)]
            + [(f"target row {i} ({target_key_of(t)!r})", t["region_code"]) for i, t in enumerate(targets, 1)]
            + [(f"alternative {rank} of target row {i} ({target_key_of(t)!r})", a["region_code"])
               for i, t in enumerate(targets, 1) for rank, a in enumerate(t.get("alternatives") or [], 1)])


def resolve_array_lines(conn: Any, lines: Sequence[Mapping[str, Any]], params: Mapping[str, Any], *,
                        source: str = f"param {array_file.PARAM_NAME!r}") -> list[dict[str, Any]]:
    """A user's array-file lines as target rows, each checked against the campaign
    database: its region's row (known, training, allowed by the Param ``regions``; the
    output bucket comes from it), its copy (known, in that region, available; campaign and
    dataset from it) and, in the longer form, its own keys and bucket against those.
    Every refusal names the line, the field and what to add or change."""
    regions = {r["region_code"]: r for r in campaign_db.fetch_dicts(conn, "array_file_regions.sql", {})}
    copies = {r["s3_uri"]: r for r in campaign_db.fetch_dicts(
        conn, "array_file_copies.sql", {"s3_uris": [line["s3_uri"] for line in lines]})}
    allowed, campaigns = list(params.get("regions") or []), list(params.get("campaigns") or [])
    options = list(params.get("purchase_options") or [])
    if options and "on_demand" not in options:
        raise TargetError(f"param 'purchase_options' = {options}: the lines of {source} train on-demand in their "
                          "own region; add 'on_demand' or leave the Param empty")
    rows = [_resolve_line(line, f"{source} line {line['line']}", regions, copies, allowed, campaigns)
            for line in lines]
    log.info("Array file: %d line(s) from %s, each trained in its own region.", len(rows), source)
    return rows


def _region_row(where: str, code: str, regions: Mapping[str, Mapping[str, Any]],
                allowed: list[str]) -> Mapping[str, Any]:
    """The campaign database's row of a line's region: known, training, allowed."""
    region = regions.get(code)
    if region is None:
        raise TargetError(f"{where}: field 'region' = {code!r} is not a region of the campaign database (known: "
                          f"{', '.join(sorted(regions))}); add its row to the table regions (region_code, "
                          "display_name, output_bucket) or fix the line")
    if not region["training_enabled"]:
        raise TargetError(f"{where}: field 'region' = {code!r} has training disabled in the campaign database "
                          "(regions.training_enabled); enable it or remove the line")
    if allowed and code not in allowed:
        raise TargetError(f"{where}: field 'region' = {code!r} is not in the Param 'regions' "
                          f"({', '.join(allowed)}); add it there or remove the line")
    return region


def _resolve_line(line: Mapping[str, Any], where: str, regions: Mapping[str, Mapping[str, Any]],
                  copies: Mapping[str, Mapping[str, Any]], allowed: list[str], campaigns: list[str]) -> dict[str, Any]:
    """One line of :func:`resolve_array_lines` as a target row (or the refusal naming it)."""
    code, uri = str(line["region"]), str(line["s3_uri"])
    region = _region_row(where, code, regions, allowed)
    copy = copies.get(uri)
    if copy is None:
        bucket, buckets = uri[len("s3://"):].split("/")[0], list(region["data_buckets"] or [])
        if buckets and bucket not in buckets:
            raise TargetError(f"{where}: field 's3_uri' = {uri!r} is not in a bucket of region {code!r} "
                              f"({', '.join(sorted(buckets))}); fix the region or the URI")
        campaign, dataset = array_file.keys_from_uri(uri)
        raise TargetError(f"{where}: field 's3_uri' = {uri!r} is not a dataset copy of the campaign database; "
                          f"add its row to dataset_copies (dataset {dataset!r} of campaign {campaign!r}, "
                          f"region_code {code!r}, status 'available') or fix the URI")
    if copy["region_code"] != code:
        raise TargetError(f"{where}: field 'region' = {code!r}, but {uri!r} is the copy in {copy['region_code']!r}; "
                          f"write {copy['region_code']!r} or the URI of the copy in {code!r}")
    if copy["copy_status"] != "available":
        raise TargetError(f"{where}: field 's3_uri' = {uri!r} is a copy with status {copy['copy_status']!r}, not "
                          "'available'; wait until it is synced or remove the line")
    if campaigns and copy["campaign_key"] not in campaigns:
        raise TargetError(f"{where}: the copy {uri!r} belongs to campaign {copy['campaign_key']!r}, which is not "
                          f"in the Param 'campaigns'; add it there or remove the line")
    if "target_key" in line:  # the longer form: its own fields must agree with the database
        keys = {copy["dataset_key"], identifiers.target_key(copy["dataset_key"], copy["campaign_key"])}
        for field, value, want in (("campaign_key", line["campaign_key"], {copy["campaign_key"]}),
                                   ("output_bucket", line["output_bucket"], {region["output_bucket"]}),
                                   ("target_key", line["target_key"], keys)):
            if value not in want:
                raise TargetError(f"{where}: field {field!r} = {value!r}, but the campaign database says "
                                  f"{' or '.join(repr(w) for w in sorted(want))}; write that (or give only "
                                  "region,s3_uri: the rest is derived)")
    return {"region_code": code, "s3_uri": uri, "campaign_key": copy["campaign_key"],
            "dataset_key": copy["dataset_key"], "dataset_id": int(copy["dataset_id"]),
            "copy_id": int(copy["copy_id"]), "output_bucket": region["output_bucket"],
            "purchase_option": "on_demand", "placement_rank": 1}


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
