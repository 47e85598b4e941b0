"""Deployment settings, read at run time from Airflow Variables (or ``AIRFLOW_VAR_*``).

Never read at DAG-parse time: :func:`load_settings` is called inside tasks only.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from regional_training.runtime import identifiers

#: Variable name -> (field, pattern the value must match).
VARIABLES: dict[str, tuple[str, str]] = {
    "mrt_aws_account_id": ("aws_account_id", r"^[0-9]{12}$"),
    "mrt_sagemaker_role_arn": ("sagemaker_role_arn", r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+$"),
    "mrt_training_image_repository": ("training_image_repository", r"^[a-z0-9]+(?:[._/-][a-z0-9]+)*$"),
    "mrt_training_image_tag": ("training_image_tag", r"^[\w][\w.-]{0,127}$"),
    "mrt_central_bucket": ("central_bucket", identifiers.BUCKET_PATTERN),
    "mrt_central_region": ("central_region", identifiers.REGION_PATTERN),
}
#: Extra rules beyond the pattern (S3's full bucket naming rules).
_RULES = {"mrt_central_bucket": identifiers.is_bucket, "mrt_central_region": identifiers.is_region}


class SettingsError(ValueError):
    """A missing or malformed deployment setting (names the Variable)."""


@dataclass(frozen=True)
class Settings:
    aws_account_id: str
    sagemaker_role_arn: str
    training_image_repository: str
    training_image_tag: str
    central_bucket: str
    central_region: str

    def training_image(self, region: str) -> str:
        """The training image URI in ``region``: same repository name everywhere."""
        return (
            f"{self.aws_account_id}.dkr.ecr.{region}.amazonaws.com/"
            f"{self.training_image_repository}:{self.training_image_tag}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def settings_from_mapping(values: dict[str, str | None]) -> Settings:
    """Validate raw Variable values (keyed by Variable name) into :class:`Settings`."""
    fields: dict[str, str] = {}
    for name, (field, pattern) in VARIABLES.items():
        value = values.get(name)
        if value is None or value == "":
            raise SettingsError(f"Airflow Variable {name!r} (or AIRFLOW_VAR_{name.upper()}) is not set")
        if not re.fullmatch(pattern, value) or not _RULES.get(name, bool)(value):
            raise SettingsError(f"Airflow Variable {name!r} = {value!r} does not match {pattern}")
        fields[field] = value
    return Settings(**fields)


def load_settings() -> Settings:
    """Read the Variables through the Task SDK (call inside a task only)."""
    from airflow.sdk import Variable

    return settings_from_mapping({name: Variable.get(name, default=None) for name in VARIABLES})
