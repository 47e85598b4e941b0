"""The array file: one CSV line per training job, ``region,s3_uri[,more fields]``.

This is the format an AWS Batch array job reads (child ``AWS_BATCH_JOB_ARRAY_INDEX``
picks line N). The first two fields are fixed; we append ``target_key``,
``campaign_key`` and ``output_bucket``. Rendering is byte-identical for the same input
(targets sorted, ``\\n`` line ends, no quoting), so a re-run overwrites the stored file
with the same bytes. Values that would need quoting are rejected instead: a consumer
splitting on ``,`` must never see a shifted field.
"""

from __future__ import annotations

from collections.abc import Iterable

from regional_training.targets import FIELD_RULES, Target, TargetError

FIELDS = ("region", "s3_uri", "target_key", "campaign_key", "output_bucket")
_FORBIDDEN = (",", "\n", "\r", '"')


def _line(target: Target) -> tuple[str, ...]:
    return (target.region_code, target.s3_uri, target.target_key, target.campaign_key, target.output_bucket)


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


def render(targets: Iterable[Target]) -> str:
    """Render targets as array-file text, sorted by (region, target key)."""
    lines = []
    for number, target in enumerate(sorted(targets, key=lambda t: (t.region_code, t.target_key)), start=1):
        row = dict(zip(FIELDS, _line(target), strict=True))
        _check_line(number, row)
        lines.append(",".join(row.values()))
    return "".join(f"{line}\n" for line in lines)


def parse(text: str) -> list[dict[str, str]]:
    """Read an array file back; every line must have exactly the rendered fields."""
    rows: list[dict[str, str]] = []
    if text and not text.endswith("\n"):
        raise TargetError("array file: last line is not terminated by a newline")
    for number, line in enumerate(text.split("\n")[:-1] if text else [], start=1):
        values = line.split(",")
        if len(values) != len(FIELDS):
            raise TargetError(
                f"array line {number}: expected {len(FIELDS)} fields ({','.join(FIELDS)}), "
                f"found {len(values)}: {line!r}"
            )
        row = dict(zip(FIELDS, values, strict=True))
        _check_line(number, row)
        rows.append(row)
    return rows
