"""The run's training jobs: one validated ``CreateTrainingJob`` request per target and
per failover alternative, and the mapped training operator's kwargs.

A job (one XCom entry, JSON) holds ``target`` and ``request`` (the planned placement),
``failover`` (the ranked alternatives, each ``target`` and ``request``),
``max_failovers`` and ``hyperparameters_sha256``, and what the job runs:
``training_image`` (``<repository>:<tag>``, region-independent), ``entry_point``,
``point_id`` and ``point_overrides`` (a parameter scan's point; ``None`` without one);
once pre-flight passed, ``preflight_checked_inputs`` (the planned request's input URIs it
found, :func:`regional_training.launch.preflight.with_checked_inputs`);
:class:`regional_training.launch.job.Job` is its typed view (``Job.from_xcom``), which
the launch path uses; this payload stays the XCom format.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from regional_training.launch.job import Job
from regional_training.plan import array_file, scan, training_request
from regional_training.plan.params import processes_per_host, training_hyperparameters
from regional_training.plan.targets import Target, target_key_of
from regional_training.runtime.settings import Settings

log = logging.getLogger(__name__)

#: The prefix of the XCom key under which a job to launch is stored (:func:`job_reference`).
JOB_XCOM_PREFIX = "job "


def build_jobs(
    *,
    array_text: str,
    targets: list[dict[str, Any]],
    params: Mapping[str, Any],
    settings: Settings,
    dag_id: str,
    run_id: str,
) -> list[dict[str, Any]]:
    """One validated request per array-file line, plus what collection needs.

    Built from the stored array file (the record of what this run trains), cross-checked
    against the selected targets. Each job holds its target and request, a request per
    ranked failover alternative (built and validated now, so a failover never needs the
    database), the failover limit and the hyperparameter hash. A scan point's line
    carries its overrides: its request is the recipe with those hyperparameters, image
    tag and entry point (each job then has its own hash).
    """
    by_key = {target_key_of(t): t for t in targets}
    lines = array_file.parse(array_text)
    if sorted(line["target_key"] for line in lines) != sorted(by_key):
        raise ValueError("the array file's targets differ from the selected targets; re-run select_targets")
    base = training_hyperparameters(params)
    ppn = processes_per_host(params)

    def request_for(target: Target, hyperparameters: dict[str, str], image_tag: str | None) -> dict[str, Any]:
        request = training_request.build_request(
            target=target,
            settings=settings,
            hyperparameters=hyperparameters,
            image_tag=image_tag,
            dag_id=dag_id,
            run_id=run_id,
            instance_type=params["instance_type"],
            instance_count=params["instance_count"],
            volume_size_gb=params["volume_size_gb"],
            max_runtime_seconds=params["max_runtime_hours"] * 3600,
            spot_extra_wait_seconds=params["spot_extra_wait_hours"] * 3600,
        )
        training_request.validate_request(request)
        return request

    jobs = []
    for line in lines:
        data = by_key[line["target_key"]]
        target = Target.from_dict(data)
        # The line's overrides, not the XCom copy: the stored file is what the run trains.
        overrides = array_file.overrides_of(line)
        if overrides != (target.point_overrides or {}):
            raise ValueError(f"array line of {line['target_key']!r}: its overrides differ from the selected "
                             "target's; re-run select_targets")
        scanned, image_tag, entry_point = scan.split_overrides(overrides)
        hyperparameters = training_request.sagemaker_hyperparameters(
            {**base, **scanned}, processes_per_host=ppn, entry_point=entry_point)
        digest = training_request.hyperparameters_sha256(hyperparameters)
        request = request_for(target, hyperparameters, image_tag)
        jobs.append(
            {
                "target": target.to_dict(),
                "request": request,
                "failover": [
                    {"target": alt, "request": request_for(Target.from_dict(alt), hyperparameters, image_tag)}
                    for alt in data.get("alternatives", [])
                ],
                "max_failovers": params["max_failovers"],
                "hyperparameters_sha256": digest,
                "training_image": f"{settings.training_image_repository}:{image_tag or settings.training_image_tag}",
                "entry_point": hyperparameters["sagemaker_program"],
                "point_id": target.point_id,
                "point_overrides": target.point_overrides,
            }
        )
    digests = sorted({j["hyperparameters_sha256"] for j in jobs})
    log.info("Built %d request(s); hyperparameters sha256 %s", len(jobs), ", ".join(digests))
    return jobs


def training_operator_kwargs(job: Job) -> dict[str, Any]:
    """Per-job kwargs of the mapped training operator: the request, in its own region,
    and the ranked failover requests."""
    if job.max_failovers is None:
        raise KeyError(f"job {job.base_name}: no max_failovers")
    return {
        "config": job.request,
        "region_name": job.target.region_code,
        "failover": [c.to_dict() for c in job.candidates[1:]],
        "max_failovers": job.max_failovers,
        "checked_inputs": list(job.checked_inputs),
    }


def job_reference(job: Mapping[str, Any], task_id: str) -> dict[str, Any]:
    """What the mapped task group expands over: where ``task_id`` stored ``job`` as its own
    XCom (key ``job <target>``), and the target it trains.

    Why not the job itself: a mapped group's argument resolves by pulling its upstream's
    *whole* return value, on every try of every mapped task (Airflow's ``PlainXComArg.resolve``
    for an unmapped upstream). With whole jobs (about 7 KB each, their failover requests
    included) each try pulled every target's requests: 3.4 MB, 3.2 s on the API server, at
    500 targets (bench/services_scale.py). A reference is about 150 bytes, and each try
    then pulls only its own job (:func:`resolve_job`).
    """
    key = target_key_of(job["target"])
    return {"task_id": task_id, "xcom_key": f"{JOB_XCOM_PREFIX}{key}", "target_key": key,
            "region": job["target"]["region_code"]}


def resolve_job(ti: Any, item: Mapping[str, Any]) -> dict[str, Any]:
    """The job an item of the expansion stands for: the item itself when it is a whole job
    (a direct call, a unit test), else the XCom its :func:`job_reference` names."""
    if "request" in item:
        return dict(item)
    job = ti.xcom_pull(task_ids=item["task_id"], key=item["xcom_key"])
    if not job:
        raise ValueError(f"target {item['target_key']}: no XCom {item['xcom_key']!r} of task {item['task_id']!r}; "
                         f"clear {item['task_id']!r} with its downstream tasks, not the training task alone")
    return dict(job)
