"""The array file: one CSV line per training job, ``region,s3_uri[,more fields]``.

This is the format an AWS Batch array job reads (child ``AWS_BATCH_JOB_ARRAY_INDEX``
picks line N). The first two fields are fixed; we append ``target_key``,
``campaign_key`` and ``output_bucket``, and in a parameter scan ``point_id`` and
``overrides`` (``key=value;key=value``, values percent-encoded: regional_training.plan.scan),
so a line without a scan is exactly what it was. Rendering is byte-identical for the same input
(targets sorted, ``\\n`` line ends, no quoting), so a re-run overwrites the stored file
with the same bytes. Values that would need quoting are rejected instead: a consumer
splitting on ``,`` must never see a shifted field.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from regional_training.plan import scan
from regional_training.plan.params import ARRAY_FILE_PARAM
from regional_training.plan.targets import FIELD_RULES, Target, TargetError
from regional_training.runtime import identifiers

FIELDS = ("region", "s3_uri", "target_key", "campaign_key", "output_bucket")
#: The seed's own array file: ``region,s3_uri`` lines, no header (its Batch children
#: read them with ``sed``); the Param ``array_file`` takes it (:func:`read_input`).
SEED_FIELDS = FIELDS[:2]
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
                f"{len(FIELDS) + len(SCAN_FIELDS)} (+ {','.join(SCAN_FIELDS)}), found {len(values)}: {line!r}; "
                + _what_to_add(len(values))
            )
        row = dict(zip(names, values, strict=True))
        _check_line(number, row)
        rows.append(row)
    return rows


def _what_to_add(found: int) -> str:
    """What a line with ``found`` fields lacks (the seed's two-field line above all:
    this file is the one the DAG renders, with the fields it derives)."""
    if found < len(FIELDS):
        missing = ",".join(FIELDS[found:])
        hint = f"add {missing} after its {found} field(s)"
        if found == len(SEED_FIELDS):
            hint += (" (the seed's region,s3_uri form: give that file to the DAG's Param 'array_file', which "
                     "derives these fields from the campaign database and stores the full file for the children)")
        return hint
    return f"remove the field(s) after the {len(FIELDS)}th (or give a scan point's {','.join(SCAN_FIELDS)})"


def overrides_of(row: dict[str, str]) -> dict[str, Any]:
    """A parsed line's scan overrides, typed as the Params (``{}``: not a scan line)."""
    return scan.decode(row["overrides"]) if "overrides" in row else {}


# --- a file the user brings (the Param ``array_file``) -------------------------------

#: The Param that takes a user's array file (an ``s3://`` URI of it, or its text).
PARAM_NAME = ARRAY_FILE_PARAM


def is_uri(value: str) -> bool:
    """Whether the Param's value names a file (one ``s3://`` URI) rather than holding one."""
    stripped = value.strip()
    return stripped.startswith("s3://") and not any(c in stripped for c in ",\n")


def read_input(text: str, *, source: str = f"param {PARAM_NAME!r}") -> list[dict[str, Any]]:
    """A user's array file as lines to resolve: the seed's ``region,s3_uri`` form or this
    project's longer form (:data:`FIELDS`), no header, one target per line.

    Each returned line has ``line`` (1-based), ``region``, ``s3_uri`` and, in the longer
    form, ``target_key``, ``campaign_key``, ``output_bucket`` (checked against the
    campaign database by :func:`regional_training.plan.selection.resolve_array_lines`). Lenient
    where it cannot shift a field (``\\r\\n`` line ends, no final newline, blank lines),
    strict elsewhere: every refusal names the line, the field and what to change or add.
    """
    lines: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        where = f"{source} line {number}"
        row = _input_line(where, number, line)
        if row["s3_uri"] in seen:
            raise TargetError(f"{where}: field 's3_uri' = {row['s3_uri']!r} duplicates line {seen[row['s3_uri']]}; "
                              "remove one of them (one job per dataset copy)")
        seen[row["s3_uri"]] = number
        lines.append({"line": number, **row})
    if not lines:
        raise TargetError(f"{source}: no lines; add one region,s3_uri line per target (no header)")
    return lines


def _input_line(where: str, number: int, line: str) -> dict[str, str]:
    """One line of a user's array file, its fields checked (:func:`read_input`)."""
    values = [v.strip() for v in line.split(",")]
    _check_field_count(where, line, len(values))
    row = dict(zip(FIELDS, values, strict=False))
    if number == 1 and row["region"] == "region":
        raise TargetError(f"{where}: {line!r} is a header; remove it (the file has none: every line is a target)")
    for field, value in row.items():
        if not value:
            raise TargetError(f"{where}: field {field!r} is empty; add its value")
        if '"' in value:
            raise TargetError(f"{where}: field {field!r} = {value!r} is quoted; remove the quotes")
    if not identifiers.is_region(row["region"]):
        raise TargetError(f"{where}: field 'region' = {row['region']!r} is not an AWS region code "
                          "(e.g. us-east-1); each line is region,s3_uri")
    if not identifiers.is_s3_uri(row["s3_uri"]) or not identifiers.is_s3_prefix(row["s3_uri"]):
        raise TargetError(f"{where}: field 's3_uri' = {row['s3_uri']!r} is not an s3:// dataset prefix ending "
                          "in '/'; add the trailing '/' or fix the URI")
    if len(values) == len(FIELDS):
        for field, target_field in (("campaign_key", "campaign_key"), ("output_bucket", "output_bucket")):
            rule, what = FIELD_RULES[target_field]
            if not rule(row[field]):
                raise TargetError(f"{where}: field {field!r} = {row[field]!r} is not {what}")
        if not identifiers.is_target_key(row["target_key"]):
            raise TargetError(f"{where}: field 'target_key' = {row['target_key']!r} is not a target key")
    return row


def _check_field_count(where: str, line: str, found: int) -> None:
    if found == len(FIELDS) + len(SCAN_FIELDS):
        raise TargetError(f"{where}: has the scan fields {','.join(SCAN_FIELDS)}; remove them and give the "
                          f"points in the Param 'scan' (every line then trains once per point)")
    if found in (len(SEED_FIELDS), len(FIELDS)):
        return
    if found < len(SEED_FIELDS):
        raise TargetError(f"{where}: field 's3_uri' is missing in {line!r}; add ',s3://<bucket>/<prefix>/' "
                          "after the region (each line is region,s3_uri)")
    fix = f"add {','.join(FIELDS[found:])}" if found < len(FIELDS) else f"remove the fields after the {len(FIELDS)}th"
    raise TargetError(f"{where}: {found} fields in {line!r}; a line is region,s3_uri (the seed's form) or "
                      f"{','.join(FIELDS)}: {fix}")


def keys_from_uri(s3_uri: str) -> tuple[str, str]:
    """(campaign key, dataset key) as the campaign layout writes them,
    ``s3://<bucket>/.../<campaign>/<dataset>/`` (for a message about a copy the campaign
    database does not know: the database's own keys win otherwise)."""
    parts = [p for p in s3_uri[len("s3://"):].split("/")[1:] if p]
    return (parts[-2] if len(parts) > 1 else "<campaign>"), (parts[-1] if parts else "<dataset>")
