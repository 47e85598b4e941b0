"""The DAG's Params: the trigger form's fields, with JSON-schema bounds and help text.

Airflow validates a triggered run's conf against these before the run exists (the UI
form and the REST API both), so a value outside its schema never reaches a task.

This module owns every Param's schema, the ``scan`` and ``reuse_completed_within`` ones
included, and imports no feature module: the features (``scan``, ``reuse``) import their
Param's name and schema constants from here, never the other way (issue 28; the DAG's
parse imports this module, and tests/unit/test_import_graph.py fails on a cycle).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from regional_training.plan.metric_format import METRIC_KEYS
from regional_training.runtime import identifiers

#: GPUs per instance: Horovod runs one process per GPU. The ``instance_type`` Param's
#: enum and :func:`processes_per_host`; ``report`` reads it too (``training_request``
#: passes it on).
GPUS_PER_INSTANCE: dict[str, int] = {
    "ml.p3.8xlarge": 4,
    "ml.p3.16xlarge": 8,
    "ml.p3dn.24xlarge": 8,
    "ml.p4d.24xlarge": 8,
    "ml.p4de.24xlarge": 8,
    "ml.p5.48xlarge": 8,
    "ml.g5.12xlarge": 4,
    "ml.g5.24xlarge": 4,
    "ml.g5.48xlarge": 8,
    "ml.g6.12xlarge": 4,
    "ml.g6.48xlarge": 8,
}

#: Model choices of the training entry point (``resnet50`` is the production recipe;
#: the small one trains on CPU in seconds for local runs and tests).
MODELS = ("resnet50", "resnet_tiny")
LR_SCHEDULES = ("poly", "cosine", "steps")
#: How the training jobs are launched (the ``launcher`` Param; docs/batch.md).
LAUNCHERS = ("airflow", "batch_array", "batch_service")

#: The parameter-scan Param (regional_training.plan.scan: its points and their checks).
SCAN_PARAM = "scan"
#: Scan point keys that are not hyperparameters: they pick the image and its program.
SCAN_IMAGE_TAG = "image_tag"
SCAN_ENTRY_POINT = "entry_point"
#: Most points in one scan (each is a job per dataset; limits.py bounds the total).
SCAN_MAX_POINTS = 256
SCAN_DEFAULT_METRIC = "validation:accuracy"

#: The Param taking a user's array file (regional_training.plan.array_file.read_input).
ARRAY_FILE_PARAM = "array_file"

#: The trigger form's sections (Airflow's Param ``section``), in the form's order, and
#: the Params of each. A Param listed nowhere lands in "Advanced" (tests/unit/plan/test_params.py
#: fails on it, so a new Param is placed on purpose).
SECTIONS: dict[str, tuple[str, ...]] = {
    "What to train": ("campaigns", "regions", "array_file", "dry_run"),
    "Training": ("instance_type", "instance_count", "processes_per_host", "model", "num_classes", "epochs",
                 "max_steps", "batch_size", "learning_rate", "lr_schedule", "warmup_epochs", "image_size",
                 "max_runtime_hours", "volume_size_gb"),
    "Placement and cost": ("placement", "estimated_hours", "budget_usd", "budget_hard_cap_usd", "purchase_options",
                           "max_failovers", "spot_extra_wait_hours"),
    "Launcher": ("launcher", "batch_capacity_wait_minutes", "batch_scheduling_priority", "batch_share_identifier"),
    "Scans": ("scan",),
    "Advanced": ("reuse_completed_within", "learn_from_failures", "count_instances_in_use", "carry_checkpoints",
                 "log_every"),
}
FALLBACK_SECTION = "Advanced"

#: The reuse-window Param (regional_training.plan.reuse: what "identical" is, and why it is off).
REUSE_PARAM = "reuse_completed_within"
#: ISO-8601 duration without calendar units (Y, M before T): weeks, days, h, min, s.
REUSE_DURATION_PATTERN = r"^P(?!$)(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$"


def param_specs() -> dict[str, dict[str, Any]]:
    """Param name -> keyword arguments of ``airflow.sdk.Param`` (default first), each with
    its form ``section`` (:data:`SECTIONS`), ordered section by section: the form draws
    one accordion per section, in the order it first meets each."""
    specs = unsectioned_specs()
    order = [name for names in SECTIONS.values() for name in names if name in specs]
    order += [name for name in specs if name not in order]
    section_of = {name: section for section, names in SECTIONS.items() for name in names}
    return {name: {**specs[name], "section": section_of.get(name, FALLBACK_SECTION)} for name in order}


def unsectioned_specs() -> dict[str, dict[str, Any]]:
    """Param name -> keyword arguments of ``airflow.sdk.Param`` (default first), before
    :func:`param_specs` gives each its section.

    A list whose help says "Empty: every ..." allows ``null`` too: Airflow's trigger
    form marks a field required (red asterisk) when its type does not include null.
    """
    return {
        "campaigns": {
            "default": [],
            "type": ["null", "array"],
            "items": {"type": "string", "pattern": identifiers.KEY_PATTERN},
            "uniqueItems": True,
            "title": "Campaigns",
            "description": "Campaign keys to train on. Empty: every campaign whose status is 'ready'.",
        },
        "regions": {
            "default": [],
            "type": ["null", "array"],
            "items": {"type": "string", "pattern": identifiers.REGION_PATTERN},
            "uniqueItems": True,
            "title": "Region allow-list",
            "description": "Train only in these AWS regions. Empty: every training-enabled region.",
        },
        "instance_type": {
            "default": "ml.p4d.24xlarge",
            "type": "string",
            "enum": sorted(GPUS_PER_INSTANCE),
            "title": "Instance type",
            "description": "Multi-GPU SageMaker instance type; Horovod runs one process per GPU.",
        },
        "instance_count": {
            "default": 1,
            "type": "integer",
            "minimum": 1,
            "maximum": 16,
            "title": "Instances per region",
            "description": "Instances of each training job (Horovod spans them); each counts against the region's "
            "quota.",
        },
        "processes_per_host": {
            "default": None,
            "type": ["null", "integer"],
            "minimum": 1,
            "maximum": 8,
            "title": "Horovod processes per host",
            "description": "Empty: one per GPU of the instance type.",
        },
        "model": {"default": "resnet50", "type": "string", "enum": list(MODELS), "title": "Model",
                  "description": "resnet50: the production recipe (ResNet-50, ImageNet format). resnet_tiny: a small "
                  "model that trains on CPU in seconds, for smoke runs."},
        "num_classes": {
            "default": 1000,
            "type": "integer",
            "minimum": 2,
            "maximum": 100000,
            "title": "Classes",
            "description": "Label classes in the datasets (ImageNet format: 1000).",
        },
        "epochs": {"default": 90, "type": "integer", "minimum": 1, "maximum": 200, "title": "Epochs",
                   "description": "Passes over each dataset (the learning-rate schedule spans them)."},
        "max_steps": {
            "default": None,
            "type": ["null", "integer"],
            "minimum": 1,
            "maximum": 10_000_000,
            "title": "Stop after this many steps",
            "description": "Empty: train all epochs. Set for smoke runs.",
        },
        "batch_size": {
            "default": 256,
            "type": "integer",
            "minimum": 1,
            "maximum": 1024,
            "title": "Batch size per GPU",
            "description": "Images per GPU per step; the global batch is this times the Horovod processes.",
        },
        "learning_rate": {
            "default": 0.1,
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 10,
            "title": "Base learning rate",
            "description": "For a global batch of 256; scaled linearly with the global batch.",
        },
        "lr_schedule": {"default": "poly", "type": "string", "enum": list(LR_SCHEDULES), "title": "LR schedule",
                        "description": "How the learning rate decays after warm-up: poly(nomial), cosine or steps."},
        "warmup_epochs": {"default": 10, "type": "integer", "minimum": 0, "maximum": 50, "title": "Warm-up epochs",
                          "description": "Epochs of linear warm-up from 0 to the scaled learning rate."},
        "image_size": {"default": 224, "type": "integer", "minimum": 16, "maximum": 512, "title": "Image size",
                       "description": "Side in pixels of the square crops the model trains on."},
        "log_every": {
            "default": 100,
            "type": "integer",
            "minimum": 1,
            "maximum": 100000,
            "title": "Metric line every N steps",
            "description": "How often the entry point prints the metric line SageMaker parses (loss, accuracy, "
            "images/sec).",
        },
        "max_runtime_hours": {
            "default": 72,
            "type": "integer",
            "minimum": 1,
            "maximum": 120,
            "title": "Max runtime per job (hours)",
            "description": "SageMaker stops a job running longer than this (MaxRuntimeInSeconds).",
        },
        "volume_size_gb": {"default": 500, "type": "integer", "minimum": 1, "maximum": 16384, "title": "Volume (GB)",
                           "description": "Storage attached to each instance (the dataset is streamed, checkpoints "
                           "are written here)."},
        "placement": {
            "default": "cheapest",
            "type": "string",
            "enum": ["cheapest", "region_local"],
            "title": "Placement",
            "description": "cheapest: per dataset, the copy and purchase option (reserved, spot, on-demand) "
            "with the lowest expected cost within quotas and budget, with ranked alternatives for failover. "
            "region_local: the copy in the region where the campaign was recorded, on-demand.",
        },
        "estimated_hours": {
            "default": 24,
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 720,
            "title": "Estimated hours per job",
            "description": "Used to compare expected costs and check the budget.",
        },
        "budget_usd": {
            "default": None,
            "type": ["null", "number"],
            "minimum": 0,
            "title": "Budget (USD) for the run",
            "description": "Empty: no budget. Targets that do not fit are left out and listed.",
        },
        "budget_hard_cap_usd": {
            "default": None,
            "type": ["null", "number"],
            "minimum": 0,
            "title": "Hard cap (USD) on actual spend",
            "description": "Empty: none. The budget guard (every 5 minutes) stops the run's newest running jobs "
            "when its actual spend would cross this before it looks again; the run then launches nothing more.",
        },
        "purchase_options": {
            "default": [],
            "type": ["null", "array"],
            "items": {"type": "string", "enum": list(identifiers.PURCHASE_OPTIONS)},
            "uniqueItems": True,
            "title": "Allowed purchase options",
            "description": "Empty: all of reserved, spot, on_demand.",
        },
        "learn_from_failures": {
            "default": True,
            "type": "boolean",
            "title": "Learn from capacity failures",
            "description": "Cheapest placement: rank offers by expected cost plus the risk their "
            "own recent capacity failures and spot starvation add (docs/placement.md).",
        },
        "count_instances_in_use": {
            "default": True,
            "type": "boolean",
            "title": "Count instances already in use",
            "description": "Cheapest placement: take the instances other jobs (other DAGs, other runs) "
            "already run in each region off its quota (SageMaker's InProgress jobs).",
        },
        "carry_checkpoints": {
            "default": True,
            "type": "boolean",
            "title": "Carry checkpoints to a failover's region",
            "description": "Before a target's job is created in another region than its previous job "
            "(a failover, a new attempt), copy that job's checkpoints there server-side so it resumes "
            "instead of starting at step 0; a checkpoint of another image, model or hyperparameters is "
            "never used (docs/placement.md).",
        },
        "max_failovers": {
            "default": 2,
            "type": "integer",
            "minimum": 0,
            "maximum": 5,
            "title": "Failovers per target",
            "description": "Moves to the next-ranked copy/region on a capacity or quota error.",
        },
        "spot_extra_wait_hours": {
            "default": 24,
            "type": "integer",
            "minimum": 1,
            "maximum": 168,
            "title": "Extra wait for spot capacity (hours)",
            "description": "Spot jobs: MaxWaitTimeInSeconds = max runtime + this.",
        },
        # A file in the seed's own format places the targets (regional_training.plan.array_file).
        ARRAY_FILE_PARAM: {
            "default": None,
            "type": ["null", "string"],
            "format": "multiline",
            "maxLength": 1_000_000,
            "title": "Array file",
            "description": "Train exactly these dataset copies: an s3:// URI of an array file, or its text. One line "
            "per target, no header: region,s3_uri (the seed's AWS Batch form) or this project's longer "
            "region,s3_uri,target_key,campaign_key,output_bucket. Each line trains in its own region, on-demand; "
            "dataset and campaign come from the campaign database's copy, the output bucket from the region's row, "
            "the rest from these Params. Empty: the campaign database places the targets.",
        },
        "dry_run": {
            "default": False,
            "type": "boolean",
            "title": "Dry run",
            "description": "Select targets, write the array file and build the requests; launch nothing.",
        },
        # Cached identical work: off by default (regional_training.plan.reuse says why).
        REUSE_PARAM: reuse_window_spec(),
        # Parameter scans: every dataset trains once per point (regional_training.plan.scan).
        SCAN_PARAM: scan_spec(),
        # The AWS Batch launchers (regional_training.launch.batch_launcher, .batch_jobs; docs/batch.md).
        "launcher": {
            "default": "airflow",
            "type": "string",
            "enum": list(LAUNCHERS),
            "title": "Launcher",
            "description": "airflow: one deferred task per target creates and follows its job. batch_array: one "
            "AWS Batch array job reads the array file, child N launching line N. batch_service: one Batch "
            "service job per target in its region's queue, waiting there for capacity.",
        },
        "batch_capacity_wait_minutes": {
            "default": 60,
            "type": "integer",
            "minimum": 0,
            "maximum": 10080,
            "title": "batch_service: wait for capacity (minutes)",
            "description": "A service job waiting for capacity longer than this is cancelled and its target "
            "moves to its next candidate.",
        },
        "batch_scheduling_priority": {
            "default": 0,
            "type": "integer",
            "minimum": 0,
            "maximum": 9999,
            "title": "batch_service: scheduling priority",
            "description": "Higher runs first among the queue's waiting service jobs (queues with a scheduling "
            "policy).",
        },
        "batch_share_identifier": {
            "default": None,
            "type": ["null", "string"],
            "pattern": r"^[A-Za-z0-9]{1,255}\*?$",
            "title": "batch_service: fair-share identifier",
            "description": "Empty: none (queues without a fair-share policy).",
        },
    }


#: Params that become training hyperparameters (identical in every region).
HYPERPARAMETER_PARAMS = (
    "model", "num_classes", "epochs", "max_steps", "batch_size", "learning_rate", "lr_schedule", "warmup_epochs",
    "image_size", "log_every",
)


def scannable_keys() -> list[str]:
    """The keys a scan point may set: the hyperparameter Params, the image tag, the program."""
    return [*HYPERPARAMETER_PARAMS, SCAN_IMAGE_TAG, SCAN_ENTRY_POINT]


def scan_spec() -> dict[str, Any]:
    """The ``scan`` Param (``airflow.sdk.Param`` keyword arguments)."""
    keys = scannable_keys()
    return {
        "default": None,
        "type": ["null", "object"],
        "title": "Parameter scan",
        "description": "Empty: one job per dataset with the hyperparameters above. A grid "
        '{"grid": {"learning_rate": [0.1, 0.2], "batch_size": [32, 64]}} or a list of points '
        '{"points": [{"learning_rate": 0.1, "image_tag": "v2"}, ...]}: every dataset trains once per point, '
        "placed like any job. Keys: the hyperparameter Params, image_tag and entry_point (allow-listed). "
        f"Optional \"metric\" ranks the points (default {SCAN_DEFAULT_METRIC}).",
        "properties": {
            "grid": {
                "type": "object",
                "propertyNames": {"enum": keys},
                "additionalProperties": {"type": "array", "minItems": 1, "maxItems": SCAN_MAX_POINTS},
                "minProperties": 1,
            },
            "points": {
                "type": "array",
                "minItems": 1,
                "maxItems": SCAN_MAX_POINTS,
                "items": {"type": "object", "propertyNames": {"enum": keys}, "minProperties": 1},
            },
            "metric": {"type": "string", "enum": sorted(METRIC_KEYS)},
        },
        "additionalProperties": False,
    }


def reuse_window_spec() -> dict[str, Any]:
    """Keyword arguments of ``airflow.sdk.Param`` for ``reuse_completed_within``."""
    return {
        "default": None,
        "type": ["null", "string"],
        "pattern": REUSE_DURATION_PATTERN,
        "title": "Reuse completed jobs within",
        "description": (
            "ISO-8601 duration, e.g. PT12H or P7D (weeks, days, hours, minutes, seconds; at most P90D). "
            "A target whose dataset copy and version, hyperparameters, image and instance recipe match a "
            "completed job that ended within this window is not trained again: the earlier model is copied "
            "and the target is recorded as Reused at no cost. Empty: off (always train)."
        ),
    }


def training_hyperparameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe part of the Params (unset optional values are left out)."""
    return {name: params[name] for name in HYPERPARAMETER_PARAMS if params.get(name) is not None}


def processes_per_host(params: Mapping[str, Any]) -> int:
    """Horovod processes per host; more than the instance's GPUs is a named error."""
    gpus = GPUS_PER_INSTANCE[params["instance_type"]]
    wanted = params.get("processes_per_host") or gpus
    if wanted > gpus:
        raise ValueError(
            f"param 'processes_per_host' = {wanted} exceeds the {gpus} GPUs of {params['instance_type']}"
        )
    return int(wanted)
