"""Limits checked up front, in ``select_targets``, each refusal naming what to change.

=========================  ================================================  ===================================
limit                      source (never a constant of ours)                 refused with
=========================  ================================================  ===================================
targets per run            Airflow's ``[core] max_map_length`` (default      :class:`TooManyTargetsError`: the
                           1024); beyond it the mapped tasks fail with       count, the limit, the Params to
                           "pushed value is too large to map"                narrow (``campaigns``, ``regions``)
region codes               botocore's partition/endpoint data:               :class:`UnknownRegionError` naming
                           ``get_available_regions("sagemaker", p)`` for     the row (or Param) and the region
                           every partition ``p`` (no network)
=========================  ================================================  ===================================

Both errors are ``AirflowFailException``: no retry, the input must change.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from airflow.sdk.exceptions import AirflowFailException


class TooManyTargetsError(AirflowFailException):
    """More targets than Airflow can map (no retry: the selection must be narrowed)."""


class UnknownRegionError(AirflowFailException):
    """A region code SageMaker does not serve in any partition botocore knows (no retry)."""


def max_map_length() -> int:
    """Airflow's ``[core] max_map_length``: the most mapped task instances per task.

    Read from the task's own Airflow configuration; scheduler and workers must share
    it (they do: one image, one ``AIRFLOW__CORE__MAX_MAP_LENGTH``).
    """
    from airflow.sdk.configuration import conf

    return conf.getint("core", "max_map_length")


def check_target_count(count: int, *, limit: int | None = None) -> None:
    """Refuse more targets than the mapped ``train``/``collect`` tasks can expand to."""
    limit = max_map_length() if limit is None else limit
    if count > limit:
        raise TooManyTargetsError(
            f"{count} targets selected, more than Airflow's [core] max_map_length = {limit} allows per run; "
            "narrow the selection with the Params 'campaigns' and/or 'regions' (or split it across runs)"
        )


@lru_cache(maxsize=1)
def known_sagemaker_regions() -> frozenset[str]:
    """Every region with a SageMaker endpoint, in every partition (aws, aws-cn, aws-us-gov ...)."""
    import botocore.session

    session = botocore.session.get_session()
    return frozenset(
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("sagemaker", partition_name=partition)
    )


def check_region(label: str, region: str) -> None:
    """Refuse ``region`` unless SageMaker serves it; ``label`` names the row or Param."""
    known = known_sagemaker_regions()
    if region not in known:
        raise UnknownRegionError(
            f"{label}: region {region!r} is not a region SageMaker serves "
            f"(botocore's endpoint data lists {len(known)} in all partitions)"
        )


def check_regions(labelled: Iterable[tuple[str, str]]) -> None:
    """:func:`check_region` for each ``(label, region)``, e.g. ``("target row 3", "us-east-9")``."""
    for label, region in labelled:
        check_region(label, region)
