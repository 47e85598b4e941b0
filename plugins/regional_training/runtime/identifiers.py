"""The identifier rules, in one place: region codes, S3 buckets and URIs, dataset keys,
purchase options, job names, tag values.

Targets, settings, the Params' JSON schema, the placement, the array file and the IAM
rendering (``deploy/iam/render.py``) all check against these; the database's own
``CHECK`` constraints (``include/sql/migrations``) repeat the patterns as its last guard,
and ``tests/unit/runtime/test_identifiers.py`` keeps both in step. The patterns are plain
strings too, because JSON schema (the trigger form) and SQL need them as text.
"""

from __future__ import annotations

import functools
import ipaddress
import re

#: AWS region codes such as ``us-east-1``, ``eu-central-1``, ``us-gov-west-1``.
REGION_PATTERN = r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$"
#: The shape of an S3 bucket name (3-63 characters of ``a-z0-9.-``, alphanumeric at both
#: ends); :func:`is_bucket` adds S3's remaining rules.
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
#: Campaign, dataset and target keys.
KEY_PATTERN = r"^[a-z0-9][a-z0-9-]{0,47}$"
#: A scan point's id (``p01``, ``p02``, ...; regional_training.plan.scan numbers them).
POINT_ID_PATTERN = r"^p[0-9]{2,4}$"
#: A target's key in a run: ``dataset`` or, when two selected campaigns share the
#: dataset key, ``campaign.dataset`` (keys never contain ``.``, so it cannot collide);
#: in a parameter scan, ``_<point id>`` follows (keys never contain ``_`` either, and it
#: is valid in tag values, S3 keys and Airflow map indexes): ``dataset_p03``.
TARGET_KEY_PATTERN = r"^([a-z0-9][a-z0-9-]{0,47}\.)?[a-z0-9][a-z0-9-]{0,47}(_p[0-9]{2,4})?$"
#: SageMaker's job-name rule (``CreateTrainingJob``'s ``TrainingJobName``).
JOB_NAME_PATTERN = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"
#: Purchase options, in the order the placement prefers them at equal expected cost.
PURCHASE_OPTIONS: tuple[str, ...] = ("reserved", "on_demand", "spot")
#: The dataset-ready asset's name and URI (``regional_training.run.assets.DATASET_READY``).
#: Here, not in ``assets``, because ``emit_ready`` (the labelling side, no Airflow) needs
#: them too, and not only in ``emit_ready``, so that the DAG's parse need not import it.
READY_ASSET_NAME = "mrt_dataset_ready"
READY_ASSET_URI = "x-mrt://campaign-db/datasets/ready"

#: S3's reserved prefixes and suffixes (general purpose buckets, 2024 rules).
_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
#: A tag value: up to 256 Unicode letters, digits, spaces and ``_ . : / = + - @``.
TAG_VALUE_MAX = 256
_TAG_VALUE = r"^[\w\s.:/=+\-@]*$"
_NOT_TAG_VALUE = r"[^\w\s.:/=+\-@]"
#: SageMaker's limit on an ``S3Uri`` (channels, output, checkpoints): 1,024 characters;
#: S3 itself limits a key to 1,024 bytes.
S3_URI_MAX = 1024
#: An ``s3://bucket[/prefix]`` URI whose key has no separator that would break a CSV
#: line (``,`` ``"``) or an S3 prefix (whitespace).
_S3_URI = r"^s3://([^/]+)(/[^\s,\"]*)?$"


# Compiled on first use, not at import: the DAG's parse imports this module (through
# params) and checks no identifier (bench/dag_benchmarks.py, issue 28).
@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def is_region(value: object) -> bool:
    return isinstance(value, str) and _compiled(REGION_PATTERN).fullmatch(value) is not None


def is_bucket(value: object) -> bool:
    """S3's general-purpose bucket naming rules, all of them."""
    if not isinstance(value, str) or not _compiled(BUCKET_PATTERN).fullmatch(value):
        return False
    if ".." in value or value.startswith(_BUCKET_PREFIXES) or value.endswith(_BUCKET_SUFFIXES):
        return False
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return True
    return False  # formatted as an IP address


def is_key(value: object) -> bool:
    return isinstance(value, str) and _compiled(KEY_PATTERN).fullmatch(value) is not None


def target_key(dataset_key: str, campaign_key: str | None = None, point_id: str | None = None) -> str:
    """The target key: the dataset key, qualified by its campaign when that is needed,
    and by its scan point in a parameter scan (``None``: no scan, the key of today)."""
    key = f"{campaign_key}.{dataset_key}" if campaign_key else dataset_key
    return f"{key}_{point_id}" if point_id else key


def is_point_id(value: object) -> bool:
    return isinstance(value, str) and _compiled(POINT_ID_PATTERN).fullmatch(value) is not None


def is_target_key(value: object) -> bool:
    return isinstance(value, str) and _compiled(TARGET_KEY_PATTERN).fullmatch(value) is not None


def is_s3_uri(value: object) -> bool:
    """``s3://<valid bucket>[/key]`` without commas, quotes or whitespace in the key."""
    if not isinstance(value, str):
        return False
    match = _compiled(_S3_URI).fullmatch(value)
    if match is None or not is_bucket(match.group(1)) or len(value) > S3_URI_MAX:
        return False
    return len((match.group(2) or "").lstrip("/").encode()) <= S3_URI_MAX


def is_s3_prefix(value: object) -> bool:
    """An :func:`is_s3_uri` that names a prefix (ends with ``/``)."""
    return is_s3_uri(value) and str(value).endswith("/")


def is_purchase_option(value: object) -> bool:
    return value in PURCHASE_OPTIONS


def is_job_name(value: object) -> bool:
    return isinstance(value, str) and _compiled(JOB_NAME_PATTERN).fullmatch(value) is not None


def is_tag_value(value: object) -> bool:
    return isinstance(value, str) and len(value) <= TAG_VALUE_MAX and _compiled(_TAG_VALUE).fullmatch(value) is not None


def tag_value(text: str) -> str:
    """``text`` as a SageMaker tag value: characters the tag rule forbids (Airflow allows
    ``~``, ``,`` and more in run ids) become ``_``, and it is cut to 256 characters. The
    tag is for people and cost reports; identity is in the job name's digest."""
    return _compiled(_NOT_TAG_VALUE).sub("_", text)[:TAG_VALUE_MAX]

