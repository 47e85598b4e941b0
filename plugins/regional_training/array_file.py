"""The array file: one CSV line per training job, ``region,s3_uri[,more fields]``.

This is the format an AWS Batch array job reads (child ``AWS_BATCH_JOB_ARRAY_INDEX``
picks line N). The first two fields are fixed; we append ``target_key``,
``campaign_key`` and ``output_bucket``, and in a parameter scan ``point_id`` and
``overrides`` (``key=value;key=value``, values percent-encoded: regional_training.scan),
so a line without a scan is exactly what it was. Rendering is byte-identical for the same input
(targets sorted, ``\\n`` line ends, no quoting), so a re-run overwrites the stored file
with the same bytes. Values that would need quoting are rejected instead: a consumer
splitting on ``,`` must never see a shifted field.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from regional_training import identifiers, scan
from regional_training.targets import FIELD_RULES, Target, TargetError

FIELDS = ("region", "s3_uri", "target_key", "campaign_key", "output_bucket")
#: The fields a scan point's line adds after :data:`FIELDS`.
SCAN_FIELDS = ("point_id", "overrides")
_FORBIDDEN = (",", "\n", "\r", '"')


def _line(target: Target) -> dict[str, str]:
    line = dict(zip(FIELDS, (target.region_code, target.s3_uri, target.target_key, target.campaign_key,
                             target.output_bucket), strict=True))
    if target.point_id:
        line.update(point_id=target.point_id, overrides=scan.encode(target.point_overrides or {}))
    return line


#: Array-file field -> the target field whose identifier rule it follows.
_RULE_OF = {"region": "region_code", "s3_uri": "s3_uri", "output_bucket": "output_bucket"}


def _check_line(number: int, row: dict[str, str]) -> None:
    """One line's fields: nothing that needs quoting, and each field's identifier rule
    (rendering and parsing both check: the stored file is what the jobs are built from)."""
    for field, value in row.items():
        if not value or any(c in value for c in _FORBIDDEN):
            raise TargetError(f"array line {number}: field {field!r} = {value!r} would break the CSV format")
    for field, target_field in _RULE_OF.items():
        rule, what = FIELD_RULES[target_field]
        if not rule(row[field]):
            raise TargetError(f"array line {number}: field {field!r} = {row[field]!r} is not {what}")
    if not identifiers.is_target_key(row["target_key"]):
        raise TargetError(f"array line {number}: field 'target_key' = {row['target_key']!r} is not a target key")
    if "point_id" in row:
        point = row["point_id"]
        if not identifiers.is_point_id(point) or not row["target_key"].endswith(f"_{point}"):
            raise TargetError(f"array line {number}: field 'point_id' = {point!r} is not the point of target "
                              f"{row['target_key']!r}")
        try:
            scan.decode(row["overrides"], label=f"array line {number} (point {point})")
        except scan.ScanError as err:
            raise TargetError(str(err)) from None


def render(targets: Iterable[Target]) -> str:
    """Render targets as array-file text, sorted by (region, target key)."""
    lines = []
    for number, target in enumerate(sorted(targets, key=lambda t: (t.region_code, t.target_key)), start=1):
        row = _line(target)
        _check_line(number, row)
        lines.append(",".join(row.values()))
    return "".join(f"{line}\n" for line in lines)


def parse(text: str) -> list[dict[str, str]]:
    """Read an array file back; every line must have exactly the rendered fields: the
    five of :data:`FIELDS`, or those and :data:`SCAN_FIELDS` (a scan point, its
    overrides checked against the Params; :func:`overrides_of` gives them typed)."""
    rows: list[dict[str, str]] = []
    if text and not text.endswith("\n"):
        raise TargetError("array file: last line is not terminated by a newline")
    for number, line in enumerate(text.split("\n")[:-1] if text else [], start=1):
        values = line.split(",")
        names = FIELDS + SCAN_FIELDS if len(values) == len(FIELDS) + len(SCAN_FIELDS) else FIELDS
        if len(values) != len(names):
            raise TargetError(
                f"array line {number}: expected {len(FIELDS)} fields ({','.join(FIELDS)}) or "
                f"{len(FIELDS) + len(SCAN_FIELDS)} (+ {','.join(SCAN_FIELDS)}), found {len(values)}: {line!r}"
            )
        row = dict(zip(names, values, strict=True))
        _check_line(number, row)
        rows.append(row)
    return rows


def overrides_of(row: dict[str, str]) -> dict[str, Any]:
    """A parsed line's scan overrides, typed as the Params (``{}``: not a scan line)."""
    return scan.decode(row["overrides"]) if "overrides" in row else {}
