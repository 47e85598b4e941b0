"""Live capacity (issue 31): instances already in use per region, counted from SageMaker
before placement, so the plan uses ``quota - in use`` (place_targets.sql's ``in_use``).

SageMaker's training-instance quota is per account and region: jobs of another team,
another DAG or an earlier run still finishing use it. They are read with
``ListTrainingJobs(StatusEquals="InProgress")``, followed through ``NextToken`` (botocore's
paginator for the operation, sagemaker ``paginators-1.json``), then
``DescribeTrainingJob`` for each (the summary has no ``ResourceConfig``). The run's own
jobs (those its budget ledger reserved: a re-planned run's live jobs keep their targets)
are not counted. No import-time I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable
from typing import Any

log = logging.getLogger(__name__)


def instances_of_type(description: dict[str, Any], instance_type: str) -> int:
    """Instances of ``instance_type`` a job holds: its ``ResourceConfig`` (a single
    instance group), or the matching ``InstanceGroups`` of a heterogeneous cluster
    (DescribeTrainingJob's ResourceConfig shape, botocore's sagemaker service-2.json)."""
    config = description.get("ResourceConfig") or {}
    groups = config.get("InstanceGroups") or []
    if groups:
        return sum(int(g.get("InstanceCount", 0)) for g in groups if g.get("InstanceType") == instance_type)
    return int(config.get("InstanceCount", 0)) if config.get("InstanceType") == instance_type else 0


def count_in_use(client: Any, instance_type: str, *, exclude: Collection[str] = ()) -> int:
    """Instances of ``instance_type`` held by the InProgress jobs ``client``'s region has,
    except the jobs named in ``exclude``. A job that ended (or vanished) between the list
    and its describe holds nothing."""
    from botocore.exceptions import ClientError

    total = 0
    for page in client.get_paginator("list_training_jobs").paginate(StatusEquals="InProgress"):
        for summary in page.get("TrainingJobSummaries", []):
            name = summary["TrainingJobName"]
            if name in exclude:
                continue
            try:
                description = client.describe_training_job(TrainingJobName=name)
            except ClientError as err:
                if err.response.get("Error", {}).get("Code") == "ValidationException":
                    continue  # no such job any more
                raise
            if description.get("TrainingJobStatus") == "InProgress":
                total += instances_of_type(description, instance_type)
    return total


def in_use_by_region(regions: Iterable[str], instance_type: str, *, client_for: Callable[[str], Any],
                     exclude: Collection[str] = ()) -> dict[str, int]:
    """``{region: instances in use}`` for each region with any (``client_for(region)``: a
    SageMaker client there)."""
    counts = {}
    for region in sorted(set(regions)):
        n = count_in_use(client_for(region), instance_type, exclude=exclude)
        if n:
            counts[region] = n
    if counts:
        log.info("Instances of %s already in use (taken off the quotas): %s", instance_type,
                 ", ".join(f"{r} {n}" for r, n in counts.items()))
    return counts
