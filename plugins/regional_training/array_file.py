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

from regional_training.targets import BUCKET, REGION_CODE, S3_URI, Target, TargetError

FIELDS = ("region", "s3_uri", "target_key", "campaign_key", "output_bucket")
_FORBIDDEN = (",", "\n", "\r", '"')


def _line(target: Target) -> tuple[str, ...]:
    return (target.region_code, target.s3_uri, target.target_key, target.campaign_key, target.output_bucket)


def render(targets: Iterable[Target]) -> str:
    """Render targets as array-file text, sorted by (region, target key)."""
    lines = []
    for index, target in enumerate(sorted(targets, key=lambda t: (t.region_code, t.target_key)), start=1):
        values = _line(target)
        for field, value in zip(FIELDS, values, strict=True):
            bad = [c for c in _FORBIDDEN if c in value]
            if bad or not value:
                raise TargetError(f"array line {index}: field {field!r} = {value!r} would break the CSV format")
        if not REGION_CODE.fullmatch(target.region_code):
            raise TargetError(f"array line {index}: field 'region' = {target.region_code!r} is not a region code")
        if not S3_URI.fullmatch(target.s3_uri):
            raise TargetError(f"array line {index}: field 's3_uri' = {target.s3_uri!r} is not an s3:// URI")
        lines.append(",".join(values))
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
        if not REGION_CODE.fullmatch(row["region"]):
            raise TargetError(f"array line {number}: field 'region' = {row['region']!r} is not a region code")
        if not S3_URI.fullmatch(row["s3_uri"]):
            raise TargetError(f"array line {number}: field 's3_uri' = {row['s3_uri']!r} is not an s3:// URI")
        if not BUCKET.fullmatch(row["output_bucket"]):
            raise TargetError(f"array line {number}: field 'output_bucket' = {row['output_bucket']!r} is not a bucket")
        rows.append(row)
    return rows
