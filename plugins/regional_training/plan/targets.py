"""Training targets: which dataset copy each job trains on, validated before launch.

A target is one dataset of a selected campaign, trained in the region that holds the
copy chosen by the target query. Everything here is checked before any job starts:
an error names the row (its region and dataset) and the offending field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from regional_training.runtime import identifiers


class TargetError(ValueError):
    """A target row that must not be launched; the message names the row and field."""


@dataclass(frozen=True)
class Target:
    """One training job's worth of work, placed on one copy (small: travels via XCom).

    The placement fields say how it was placed: purchase option, prices, planned cost
    and rank among the dataset's candidates (region-local placement: on-demand, rank 1,
    prices unknown).
    """

    region_code: str
    s3_uri: str
    campaign_key: str
    dataset_key: str
    dataset_id: int
    copy_id: int
    output_bucket: str
    purchase_option: str = "on_demand"
    placement_rank: int = 1
    price_per_instance_hour: float | None = None
    billing_usd_per_hour: float | None = None
    planned_cost_usd: float | None = None
    #: The placement's failure model (issue 31): this region x option's decayed failure
    #: probability and the expected extra dollars it added to the ranking (``None``:
    #: region-local placement, no model).
    failure_probability: float | None = None
    risk_usd: float | None = None
    #: Set when another selected campaign has a dataset with the same key (the schema
    #: makes dataset keys unique per campaign only): the target key then names both.
    campaign_qualified: bool = False
    #: The parameter-scan point this job trains (``None``: no scan, one job per dataset
    #: with the run's hyperparameters) and its overrides of the recipe: hyperparameters,
    #: ``image_tag``, ``entry_point`` (regional_training.plan.scan owns both).
    point_id: str | None = None
    point_overrides: dict[str, Any] | None = None

    @property
    def target_key(self) -> str:
        """Stable identity of the work within a run (a failover moves the same target to
        another region, it does not make a new one): the dataset key, or
        ``campaign.dataset`` when the dataset key alone is ambiguous in this run, with
        ``_<point>`` in a parameter scan (:func:`identifiers.target_key`)."""
        # Straight from the fields: asdict() would deep-copy the whole target on every
        # access (keys are read in sorts and loops).
        return identifiers.target_key(self.dataset_key, self.campaign_key if self.campaign_qualified else None,
                                      self.point_id)

    @property
    def is_spot(self) -> bool:
        return self.purchase_option == "spot"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Target:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


def target_key_of(target: Mapping[str, Any]) -> str:
    """:attr:`Target.target_key` of a target as it travels (``Target.to_dict()``)."""
    campaign = target.get("campaign_key") if target.get("campaign_qualified") else None
    return identifiers.target_key(str(target["dataset_key"]), campaign, target.get("point_id"))


def left_out_name(item: Mapping[str, Any]) -> str:
    """How a left-out item is named wherever a dataset is (summary, verdict, report): its
    dataset and, in a scan, its point, since each point of a dataset is placed (and left
    out) on its own (issue 33)."""
    point = item.get("point_id")
    return f"{item['dataset_key']} point {point}" if point else str(item["dataset_key"])


#: Row field -> (identifier rule, what it must be).
FIELD_RULES: dict[str, tuple[Callable[[object], bool], str]] = {
    "region_code": (identifiers.is_region, "an AWS region code"),
    "s3_uri": (identifiers.is_s3_uri, "an s3:// URI without commas or spaces"),
    "campaign_key": (identifiers.is_key, "a campaign key"),
    "dataset_key": (identifiers.is_key, "a dataset key"),
    "output_bucket": (identifiers.is_bucket, "an S3 bucket name"),
}


def check_row(label: str, row: dict[str, Any], allowed_regions: list[str]) -> None:
    """Field-level checks of one candidate row (a target or one of its alternatives)."""
    for field, (rule, what) in FIELD_RULES.items():
        if not rule(row.get(field)):
            raise TargetError(f"{label}: field {field!r} = {row.get(field)!r} is not {what}")
    if allowed_regions and row["region_code"] not in allowed_regions:
        raise TargetError(f"{label}: region {row['region_code']!r} is not in the allowed regions")
    if not identifiers.is_s3_prefix(row["s3_uri"]):
        raise TargetError(f"{label}: field 's3_uri' must be a prefix ending in '/'")
    if not identifiers.is_purchase_option(row.get("purchase_option", "on_demand")):
        raise TargetError(f"{label}: field 'purchase_option' = {row.get('purchase_option')!r} is unknown")
    if row.get("point_id") is not None and not identifiers.is_point_id(row["point_id"]):
        raise TargetError(f"{label}: field 'point_id' = {row['point_id']!r} is not a scan point id")


def ambiguous_dataset_keys(rows: list[dict[str, Any]]) -> set[str]:
    """Dataset keys that more than one campaign of these rows uses: their targets are
    keyed ``campaign.dataset`` so both train (a key unique alone keeps its plain key, so
    existing runs' keys, job names and S3 paths do not change)."""
    campaigns: dict[str, set[str]] = {}
    for row in rows:
        campaigns.setdefault(str(row.get("dataset_key")), set()).add(str(row.get("campaign_key")))
    return {key for key, owners in campaigns.items() if len(owners) > 1}


def validate_rows(
    rows: list[dict[str, Any]],
    *,
    requested_campaigns: list[str],
    allowed_regions: list[str],
    known_regions: set[str] | None = None,
    allow_empty: bool = False,
) -> list[Target]:
    """Turn query rows into targets, or raise :class:`TargetError` naming the bad row.

    Checks each field's format, that regions are known and allowed, that no copy URI
    or target appears twice, and that every explicitly requested campaign has data.
    """
    for region in allowed_regions:
        if not identifiers.is_region(region):
            raise TargetError(f"param 'regions': {region!r} is not an AWS region code")
        if known_regions is not None and region not in known_regions:
            raise TargetError(
                f"param 'regions': {region!r} is not a region of the campaign database "
                f"(known: {', '.join(sorted(known_regions))})"
            )
    targets: list[Target] = []
    seen_uris: dict[tuple[str, str | None], str] = {}
    seen_keys: set[str] = set()
    ambiguous = ambiguous_dataset_keys(rows)
    for index, row in enumerate(rows, start=1):
        point = row.get("point_id")
        label = f"target row {index} ({row.get('region_code')!r}, {row.get('dataset_key')!r}" + (
            f", point {point!r})" if point else ")")
        check_row(label, row, allowed_regions)
        # One job per copy and scan point: every point of a scan may train on the same copy.
        if (row["s3_uri"], point) in seen_uris:
            raise TargetError(
                f"{label}: field 's3_uri' {row['s3_uri']!r} duplicates {seen_uris[(row['s3_uri'], point)]}"
            )
        target = Target.from_dict({**row, "campaign_qualified": row["dataset_key"] in ambiguous})
        if target.target_key in seen_keys:
            raise TargetError(f"{label}: target {target.target_key!r} appears twice")
        seen_uris[(target.s3_uri, point)] = label
        seen_keys.add(target.target_key)
        targets.append(target)

    found = {t.campaign_key for t in targets}
    missing = [key for key in requested_campaigns if key not in found]
    if missing:
        raise TargetError(
            f"param 'campaigns': no available dataset copy in an allowed region for "
            f"{', '.join(repr(k) for k in missing)}"
        )
    if not targets and not allow_empty:
        raise TargetError("no training targets: no 'ready' campaign has a dataset copy in an allowed region")
    return targets
