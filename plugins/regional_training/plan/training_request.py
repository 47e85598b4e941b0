"""``CreateTrainingJob`` requests, one per target, identical apart from where they run.

The SageMaker Python SDK cannot be installed beside Airflow 3.3, so requests are built
here as plain dicts and checked with botocore's own SageMaker service model, the same
validation boto3 applies before sending, so a malformed request fails the build task
instead of the launch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

from regional_training.plan.metric_format import METRIC_DEFINITIONS
from regional_training.plan.params import GPUS_PER_INSTANCE as GPUS_PER_INSTANCE
from regional_training.run.run_layout import checkpoint_uri, output_path
from regional_training.run.run_layout import run_key as run_key  # re-exported: dev/ and campaign_view use it here

# The instance table (GPUS_PER_INSTANCE) is the instance_type Param's enum, so params owns
# it (the DAG's parse imports params and need not import this module); re-exported here
# for report and other callers.
from regional_training.runtime import identifiers

if TYPE_CHECKING:  # annotations only: the DAG's parse imports this module through params
    from regional_training.plan.targets import Target
    from regional_training.runtime.settings import Settings

#: mpirun options SageMaker appends (the seed's): NCCL warnings only, Horovod tensor
#: fusion at 64 MiB with a 1 ms cycle (Horovod's recommended values for ResNet-50).
CUSTOM_MPI_OPTIONS = "-x NCCL_DEBUG=WARN -x HOROVOD_FUSION_THRESHOLD=67108864 -x HOROVOD_CYCLE_TIME=1"
#: The SageMaker training toolkit runs this file from the image's code directory.
ENTRY_POINT = "train.py"
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
JOB_NAME_MAX = 63
#: Characters kept free at the end of a job name for a retry's attempt suffix.
ATTEMPT_SUFFIX_RESERVE = 4


def job_name(dag_id: str, run_id: str, target: Target) -> str:
    """Deterministic job name, unique per (DAG run, target, placement), within SageMaker's rules.

    The placement (region, copy, purchase option) is part of it so each failover
    candidate of a target has its own name to create or reattach to. A scan point is
    part of the target key (so of the digest) and ends the readable slug.
    """
    placement = f"{target.region_code}\0{target.copy_id}\0{target.purchase_option}"
    identity = f"{dag_id}\0{run_id}\0{target.target_key}\0{placement}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
    budget = JOB_NAME_MAX - ATTEMPT_SUFFIX_RESERVE - len("mrt-") - len(digest) - 1
    point = f"-{target.point_id}" if target.point_id else ""
    slug = re.sub(r"[^a-z0-9-]+", "-", f"{target.region_code}-{target.dataset_key}".lower())
    slug = slug[: budget - len(point)].strip("-") + point
    name = f"mrt-{slug}-{digest}"
    if not identifiers.is_job_name(name):  # pragma: no cover - guarded by construction
        raise ValueError(f"job name {name!r} is not valid for SageMaker")
    return name


def sagemaker_hyperparameters(training: dict[str, Any], *, processes_per_host: int,
                               entry_point: str | None = None) -> dict[str, str]:
    """The job's HyperParameters: the recipe plus SageMaker's MPI settings.

    SageMaker passes every value as a string; keys are sorted so the dict (and its
    hash) is the same in every region. ``entry_point``: a scan point's program
    (``sagemaker_program``; default :data:`ENTRY_POINT`).
    """
    values = {key: hyperparameter_text(value) for key, value in training.items()}
    values.update(
        {
            "sagemaker_program": entry_point or ENTRY_POINT,
            "sagemaker_mpi_enabled": "true",
            "sagemaker_mpi_num_of_processes_per_host": str(processes_per_host),
            "sagemaker_mpi_custom_mpi_options": CUSTOM_MPI_OPTIONS,
        }
    )
    return dict(sorted(values.items()))


def hyperparameter_text(value: Any) -> str:
    """A hyperparameter value as the text SageMaker hands the entry point."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def hyperparameters_sha256(hyperparameters: dict[str, str]) -> str:
    """Hash recorded with every result, proving all regions trained the same recipe."""
    return hashlib.sha256(json.dumps(hyperparameters, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def build_request(
    *,
    target: Target,
    settings: Settings,
    hyperparameters: dict[str, str],
    dag_id: str,
    run_id: str,
    instance_type: str,
    instance_count: int,
    volume_size_gb: int,
    max_runtime_seconds: int,
    spot_extra_wait_seconds: int = 24 * 3600,
    image_tag: str | None = None,
) -> dict[str, Any]:
    """A complete ``CreateTrainingJob`` request for one target.

    Spot targets get managed spot training with ``MaxWaitTimeInSeconds``; SageMaker
    rejects a max wait without spot, so on-demand and reserved requests never carry it.
    ``image_tag``: a scan point's tag of the deployment's image repository.
    """
    name = job_name(dag_id, run_id, target)
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": max_runtime_seconds}
    spot: dict[str, Any] = {}
    if target.is_spot:
        stopping["MaxWaitTimeInSeconds"] = max_runtime_seconds + spot_extra_wait_seconds
        spot = {"EnableManagedSpotTraining": True}
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": training_image(settings, target.region_code, image_tag),
            "TrainingInputMode": "File",
            "MetricDefinitions": [dict(d) for d in METRIC_DEFINITIONS],
            "EnableSageMakerMetricsTimeSeries": True,
        },
        "RoleArn": settings.sagemaker_role_arn,
        "HyperParameters": dict(hyperparameters),
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": target.s3_uri,
                        # Every host gets every shard; Horovod shards per rank.
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "InputMode": "File",
            }
        ],
        "OutputDataConfig": {"S3OutputPath": output_path(target.output_bucket)},
        "ResourceConfig": {
            "InstanceType": instance_type,
            "InstanceCount": instance_count,
            "VolumeSizeInGB": volume_size_gb,
        },
        "StoppingCondition": stopping,
        **spot,
        # Same-region checkpoints, unique per run and target: a retried, resumed or
        # spot-interrupted job continues from the newest one instead of from epoch 0.
        "CheckpointConfig": {
            "S3Uri": checkpoint_uri(target.output_bucket, dag_id, run_id, target.target_key),
            "LocalPath": CHECKPOINT_LOCAL_PATH,
        },
        "Tags": [
            {"Key": "campaign", "Value": target.campaign_key},
            {"Key": "dataset", "Value": target.dataset_key},
            {"Key": "target", "Value": target.target_key},
            {"Key": "purchase_option", "Value": target.purchase_option},
            {"Key": "dag_id", "Value": dag_id},
            {"Key": "dag_run", "Value": identifiers.tag_value(run_id)},
            {"Key": "hyperparameters_sha256", "Value": hyperparameters_sha256(hyperparameters)},
            *([{"Key": "scan_point", "Value": target.point_id}] if target.point_id else []),
        ],
    }


def training_image(settings: Settings, region: str, image_tag: str | None = None) -> str:
    """The image URI in ``region``: the deployment's, or its repository at ``image_tag``."""
    image = settings.training_image(region)
    return f"{image.rsplit(':', 1)[0]}:{image_tag}" if image_tag else image


@functools.cache
def _create_training_job_shape() -> Any:
    """``CreateTrainingJob``'s input shape in botocore's SageMaker model, loaded once per
    process: a new botocore session parses the (large) model again, 0.16 CPU-s a request,
    which made ``build_requests`` take 162 s at 500 targets (docs/services.md)."""
    import botocore.session

    return botocore.session.get_session().get_service_model("sagemaker").operation_model(
        "CreateTrainingJob").input_shape


def validate_request(request: dict[str, Any]) -> None:
    """Validate against botocore's SageMaker model; raise naming the job and the fields."""
    from botocore.exceptions import ParamValidationError
    from botocore.validate import validate_parameters

    bad_tags = [t["Key"] for t in request.get("Tags", []) if not identifiers.is_tag_value(t.get("Value"))]
    if bad_tags:
        raise ValueError(f"training request {request.get('TrainingJobName')!r}: tag value(s) of {bad_tags} "
                         "break SageMaker's tag rules")
    try:
        validate_parameters(request, _create_training_job_shape())
    except ParamValidationError as err:
        raise ValueError(f"training request {request.get('TrainingJobName')!r} is invalid: {err}") from err
