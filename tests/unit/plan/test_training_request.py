from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regional_training.plan import training_request as tr
from regional_training.plan.metric_format import METRIC_DEFINITIONS, format_metric_line, parse_final_metrics
from regional_training.plan.targets import Target
from regional_training.runtime.settings import SettingsError, settings_from_mapping

SETTINGS = settings_from_mapping(
    {
        "mrt_aws_account_id": "123456789012",
        "mrt_sagemaker_role_arn": "arn:aws:iam::123456789012:role/mrt-sagemaker-execution",
        "mrt_training_image_repository": "multi-region-training/resnet50-horovod",
        "mrt_training_image_tag": "2026.11.1",
        "mrt_central_bucket": "mrt-central-artifacts",
        "mrt_central_region": "us-east-1",
    }
)
REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1"]
SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def target(region: str, dataset: str = "campaign-v1") -> Target:
    return Target(region, f"s3://mrt-campaign-data-{region}/datasets/c/{dataset}/", "c", dataset, 1, 2,
                  f"mrt-output-{region}")


def build(t: Target, run_id: str = "scheduled__2026-11-27T02:00:00+00:00") -> dict:
    hps = tr.sagemaker_hyperparameters({"model": "resnet50", "epochs": 90, "batch_size": 256}, processes_per_host=8)
    return tr.build_request(target=t, settings=SETTINGS, hyperparameters=hps, dag_id="multi_region_training",
                            run_id=run_id, instance_type="ml.p4d.24xlarge", instance_count=2, volume_size_gb=500,
                            max_runtime_seconds=72 * 3600)


@pytest.mark.parametrize("region", REGIONS)
def test_every_request_validates_against_botocore(region: str) -> None:
    request = build(target(region))
    tr.validate_request(request)  # raises on any schema violation
    assert request["AlgorithmSpecification"]["TrainingImage"] == (
        f"123456789012.dkr.ecr.{region}.amazonaws.com/multi-region-training/resnet50-horovod:2026.11.1"
    )
    assert request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == target(region).s3_uri
    assert request["OutputDataConfig"]["S3OutputPath"] == f"s3://mrt-output-{region}/training-jobs/"
    assert request["CheckpointConfig"]["S3Uri"].startswith(f"s3://mrt-output-{region}/checkpoints/")
    tags = {t["Key"]: t["Value"] for t in request["Tags"]}
    assert tags["campaign"] == "c" and tags["dag_run"].startswith("scheduled__")
    assert {d["Name"] for d in request["AlgorithmSpecification"]["MetricDefinitions"]} >= {
        "train:images_per_sec", "train:loss", "train:accuracy"}


def test_validation_rejects_a_malformed_request() -> None:
    request = build(target("eu-west-1"))
    request["ResourceConfig"]["InstanceCount"] = "two"
    del request["RoleArn"]
    pattern = r"(?s)training request .mrt-eu-west-1-.*. is invalid:.*RoleArn.*InstanceCount"
    with pytest.raises(ValueError, match=pattern):
        tr.validate_request(request)


def test_hyperparameters_identical_in_every_region_and_hashed() -> None:
    requests = [build(target(r)) for r in REGIONS]
    hps = [r["HyperParameters"] for r in requests]
    assert all(h == hps[0] for h in hps)
    assert hps[0]["sagemaker_mpi_enabled"] == "true"
    assert hps[0]["sagemaker_mpi_num_of_processes_per_host"] == "8"
    assert "HOROVOD_FUSION_THRESHOLD" in hps[0]["sagemaker_mpi_custom_mpi_options"]
    assert all(isinstance(v, str) for v in hps[0].values())
    digests = {dict((t["Key"], t["Value"]) for t in r["Tags"])["hyperparameters_sha256"] for r in requests}
    assert digests == {tr.hyperparameters_sha256(hps[0])}


@given(
    region=st.sampled_from([*REGIONS, "ap-southeast-2", "us-gov-west-1"]),
    dataset=st.from_regex(r"[a-z0-9][a-z0-9-]{0,47}", fullmatch=True),
    run_id=st.text(min_size=1, max_size=80),
)
def test_job_names_are_valid_deterministic_and_leave_room_for_attempts(region: str, dataset: str, run_id: str) -> None:
    t = target(region, dataset)
    name = tr.job_name("multi_region_training", run_id, t)
    assert SAGEMAKER_NAME.fullmatch(name)
    assert len(name) <= tr.JOB_NAME_MAX - tr.ATTEMPT_SUFFIX_RESERVE
    assert name == tr.job_name("multi_region_training", run_id, t)
    assert name != tr.job_name("multi_region_training", run_id + "x", t)


def test_job_names_unique_per_region_for_the_same_run() -> None:
    names = {tr.job_name("d", "r", target(r)) for r in REGIONS}
    assert len(names) == len(REGIONS)


def test_metric_definitions_parse_the_shared_line_format() -> None:
    log = "\n".join(
        [
            "some unrelated line loss=9",
            format_metric_line(step=10, epoch=1, train_loss=2.5, train_accuracy=0.25, images_per_sec=900.0),
            format_metric_line(step=20, epoch=2, train_loss=1.25, train_accuracy=0.5, images_per_sec=1000.5,
                               val_loss=1.5, val_accuracy=0.45),
        ]
    )
    assert parse_final_metrics(log, METRIC_DEFINITIONS) == {
        "train:loss": 1.25, "train:accuracy": 0.5, "train:images_per_sec": 1000.5,
        "validation:loss": 1.5, "validation:accuracy": 0.45,
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [("mrt_aws_account_id", "12345"), ("mrt_sagemaker_role_arn", "my-role"), ("mrt_central_bucket", None)],
)
def test_settings_name_the_bad_variable(name: str, value: str | None) -> None:
    values = {
        "mrt_aws_account_id": "123456789012",
        "mrt_sagemaker_role_arn": "arn:aws:iam::123456789012:role/r",
        "mrt_training_image_repository": "repo",
        "mrt_training_image_tag": "t",
        "mrt_central_bucket": "central",
        "mrt_central_region": "us-east-1",
        name: value,
    }
    with pytest.raises(SettingsError, match=name):
        settings_from_mapping(values)


def test_spot_request_carries_spot_max_wait_and_a_per_target_checkpoint() -> None:
    from dataclasses import replace

    spot = replace(target("eu-west-1"), purchase_option="spot")
    request = build(spot)
    tr.validate_request(request)
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"]["MaxWaitTimeInSeconds"] == 72 * 3600 + 24 * 3600
    assert request["CheckpointConfig"]["S3Uri"].endswith(f"/{spot.target_key}/")
    other_run = build(spot, run_id="scheduled__2026-11-28T02:00:00+00:00")
    assert other_run["CheckpointConfig"]["S3Uri"] != request["CheckpointConfig"]["S3Uri"]


@pytest.mark.parametrize("option", ["on_demand", "reserved"])
def test_on_demand_and_reserved_requests_never_carry_spot_settings(option: str) -> None:
    from dataclasses import replace

    request = build(replace(target("eu-west-1"), purchase_option=option))
    tr.validate_request(request)
    assert "EnableManagedSpotTraining" not in request
    assert "MaxWaitTimeInSeconds" not in request["StoppingCondition"]


def test_each_failover_candidate_has_its_own_job_name() -> None:
    from dataclasses import replace

    base = target("us-west-2")
    names = {tr.job_name("d", "r", replace(base, purchase_option=o)) for o in ("reserved", "spot", "on_demand")}
    names.add(tr.job_name("d", "r", replace(base, region_code="us-east-1", copy_id=9)))
    assert len(names) == 4


# Airflow accepts almost any run id (manual triggers through the REST API name their own):
# whatever it is, the request must pass SageMaker's rules, not fail at CreateTrainingJob.
# botocore's validation takes ~100 ms: no per-example deadline on a busy machine.
@settings(deadline=None, max_examples=50)
@given(st.text(min_size=1, max_size=250).filter(lambda s: s.strip() == s and "\0" not in s))
def test_any_run_id_airflow_allows_builds_a_valid_request(run_id: str) -> None:
    request = build(target("eu-west-1"), run_id=run_id)
    tr.validate_request(request)
    assert SAGEMAKER_NAME.fullmatch(request["TrainingJobName"])


def test_a_run_id_with_a_tilde_keeps_a_readable_tag() -> None:
    request = build(target("eu-west-1"), run_id="manual__2026-11-28~retry,2")
    tr.validate_request(request)
    assert {t["Key"]: t["Value"] for t in request["Tags"]}["dag_run"] == "manual__2026-11-28_retry_2"
