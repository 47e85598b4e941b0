"""IAM documents: they parse, render, and allow exactly the calls the code makes.

Each call in deploy/iam/aws_calls.py is evaluated, with a concrete resource ARN and
request context, against the rendered documents by deploy/iam/policy_eval.py (whose
own behaviour is pinned down at the bottom of this file).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import botocore.session
import pytest

from deploy.iam import aws_calls, render
from deploy.iam.policy_eval import UnsupportedPolicy, arn_match, is_allowed

ACCT = "111122223333"
REGIONS = ["eu-central-1", "eu-west-1", "us-east-1", "us-west-2"]
ROLE = "mrt-sagemaker-execution"
REPO = "multi-region-training/resnet50-horovod"
CENTRAL = "mrt-central-artifacts"
VALUES = {
    "ACCOUNT_ID": ACCT,
    "EXECUTION_ROLE_NAME": ROLE,
    "CENTRAL_BUCKET": CENTRAL,
    "TRAINING_IMAGE_REPOSITORY": REPO,
    "NOTIFICATION_TOPIC_ARN": f"arn:aws:sns:eu-west-1:{ACCT}:mrt-training-runs",
    "REGIONS": REGIONS,
    # What the seed's campaign DB yields (checked in test_values_match_the_seeded_campaign_db).
    "DATA_BUCKETS": [f"mrt-campaign-data-{r}" for r in REGIONS],
    "OUTPUT_BUCKETS": [f"mrt-output-{r}" for r in REGIONS],
}
IAM_DIR = Path(__file__).resolve().parents[2] / "deploy" / "iam"

R = "eu-west-1"
JOB = "mrt-20261127-boston-winter-2026-v1"
RUN = "manual__2026-11-27T09-00-00"
OUTPUT = f"mrt-output-{R}"
DATA = f"mrt-campaign-data-{R}"
MODEL_SRC = f"arn:aws:s3:::{OUTPUT}/training-jobs/{JOB}/output/model.tar.gz"
ARTIFACT_DST = f"arn:aws:s3:::{CENTRAL}/runs/{RUN}/artifacts/{R}/model.tar.gz"
ARRAY_FILE = f"arn:aws:s3:::{CENTRAL}/runs/{RUN}/array.csv"
JOB_ARN = f"arn:aws:sagemaker:{R}:{ACCT}:training-job/{JOB}"
#: The training job Batch makes for a service job: AWSBatch + the payload's name + 32 hex
#: (AWS Batch user guide, "Service job state change events" example).
BATCH_JOB_ARN = f"arn:aws:sagemaker:{R}:{ACCT}:training-job/AWSBatch{JOB}88b610a69aa8380ca5b0a7aba3f81cb8"
#: The tag every Batch job and service job of the DAG carries (its requests' Tags,
#: BatchArrayLaunchOperator's tags): what the Airflow role may terminate.
OUR_TAG = {"aws:ResourceTag/dag_id": "multi_region_training"}
IN_REGION = {"aws:RequestedRegion": R}
LOG_GROUP = f"arn:aws:logs:{R}:{ACCT}:log-group:/aws/sagemaker/TrainingJobs"
BATCH_JOB_ID = "4f0c4c2e-8a4e-4c1e-9a53-1d2a3b4c5d6e"

#: (service, operation) -> requests (IAM action, resource ARN, context) it makes.
#: A checkpoint carried from one region's output bucket to another's (checkpoint_carry).
CARRY_SRC = f"arn:aws:s3:::mrt-output-us-east-1/checkpoints/{RUN}/boston-winter-2026/ckpt-24.index"
CARRY_DST = f"arn:aws:s3:::{OUTPUT}/checkpoints/{RUN}/boston-winter-2026/ckpt-24.index"
AIRFLOW_REQUESTS: dict[tuple[str, str], list[tuple[str, str, dict]]] = {
    ("sagemaker", "CreateTrainingJob"): [("sagemaker:CreateTrainingJob", JOB_ARN, IN_REGION)],
    ("sagemaker", "DescribeTrainingJob"): [("sagemaker:DescribeTrainingJob", JOB_ARN, IN_REGION),
                                           ("sagemaker:DescribeTrainingJob", BATCH_JOB_ARN, IN_REGION)],
    ("sagemaker", "StopTrainingJob"): [("sagemaker:StopTrainingJob", JOB_ARN, IN_REGION),
                                       ("sagemaker:StopTrainingJob", BATCH_JOB_ARN, IN_REGION)],
    ("sagemaker", "ListTrainingJobs"): [("sagemaker:ListTrainingJobs", "*", IN_REGION)],
    ("sagemaker", "AddTags"): [("sagemaker:AddTags", JOB_ARN, IN_REGION)],
    # refresh_limits: quotas in the training regions, prices from the Price List's endpoint
    ("service-quotas", "ListServiceQuotas"): [("servicequotas:ListServiceQuotas", "*", IN_REGION)],
    ("service-quotas", "GetServiceQuota"): [
        ("servicequotas:GetServiceQuota", f"arn:aws:servicequotas:{R}:{ACCT}:sagemaker/L-2F737F8D", IN_REGION)],
    ("pricing", "GetProducts"): [("pricing:GetProducts", "*", {"aws:RequestedRegion": "us-east-1"})],
    ("iam", "PassRole"): [
        ("iam:PassRole", f"arn:aws:iam::{ACCT}:role/{ROLE}", {"iam:PassedToService": "sagemaker.amazonaws.com"})
    ],
    ("s3", "PutObject"): [("s3:PutObject", ARRAY_FILE, {})],
    ("s3", "GetObject"): [("s3:GetObject", ARRAY_FILE, {}), ("s3:GetObject", MODEL_SRC, {}),
                          ("s3:GetObject", CARRY_SRC, {})],  # the checkpoint index a carry reads
    ("s3", "HeadObject"): [("s3:GetObject", MODEL_SRC, {}), ("s3:GetObject", ARTIFACT_DST, {})],
    ("s3", "ListObjectsV2"): [
        ("s3:ListBucket", f"arn:aws:s3:::{CENTRAL}", {"s3:prefix": f"runs/{RUN}/"}),
        ("s3:ListBucket", f"arn:aws:s3:::{OUTPUT}", {"s3:prefix": f"training-jobs/{JOB}/"}),
        ("s3:ListBucket", f"arn:aws:s3:::{OUTPUT}", {"s3:prefix": f"checkpoints/{RUN}/boston-winter-2026/"}),
        ("s3:ListBucket", f"arn:aws:s3:::{DATA}", {"s3:prefix": "datasets/dublin-urban-2026/dublin-urban-2026-v1/"}),
    ],
    ("s3", "HeadBucket"): [("s3:ListBucket", f"arn:aws:s3:::{DATA}", {})],
    # Collection copies artifacts; checkpoint_carry copies a checkpoint to a failover's region.
    ("s3", "CopyObject"): [("s3:GetObject", MODEL_SRC, {}), ("s3:PutObject", ARTIFACT_DST, {}),
                           ("s3:GetObject", CARRY_SRC, {}), ("s3:PutObject", CARRY_DST, {})],
    ("s3", "CreateMultipartUpload"): [("s3:PutObject", ARTIFACT_DST, {})],
    ("s3", "UploadPartCopy"): [("s3:GetObject", MODEL_SRC, {}), ("s3:PutObject", ARTIFACT_DST, {}),
                               ("s3:GetObject", CARRY_SRC, {}), ("s3:PutObject", CARRY_DST, {})],
    ("s3", "CompleteMultipartUpload"): [("s3:PutObject", ARTIFACT_DST, {})],
    ("s3", "AbortMultipartUpload"): [("s3:AbortMultipartUpload", ARTIFACT_DST, {})],
    ("logs", "DescribeLogStreams"): [("logs:DescribeLogStreams", f"{LOG_GROUP}:*", {})],
    ("logs", "GetLogEvents"): [("logs:GetLogEvents", f"{LOG_GROUP}:log-stream:{JOB}/algo-1-1764230400", {})],
    ("sns", "Publish"): [("sns:Publish", f"arn:aws:sns:eu-west-1:{ACCT}:mrt-training-runs", {})],
    # The Batch launchers (regional_training.launch.batch_jobs; queue and definition names are its defaults).
    ("batch", "SubmitJob"): [
        ("batch:SubmitJob", f"arn:aws:batch:us-east-1:{ACCT}:job-queue/mrt-launchers", {}),
        ("batch:SubmitJob", f"arn:aws:batch:us-east-1:{ACCT}:job-definition/mrt-launcher:3", {}),
    ],
    ("batch", "ListJobs"): [("batch:ListJobs", "*", {})],
    ("batch", "DescribeJobs"): [("batch:DescribeJobs", "*", {})],
    ("batch", "TerminateJob"): [
        ("batch:TerminateJob", f"arn:aws:batch:us-east-1:{ACCT}:job/{BATCH_JOB_ID}", OUR_TAG)],
    ("batch", "SubmitServiceJob"): [
        ("batch:SubmitServiceJob", f"arn:aws:batch:{R}:{ACCT}:job-queue/mrt-sagemaker-{R}", {}),
        ("batch:TagResource", f"arn:aws:batch:{R}:{ACCT}:service-job/{BATCH_JOB_ID}",
         {"aws:RequestTag/dag_id": "multi_region_training"}),
        ("iam:PassRole", f"arn:aws:iam::{ACCT}:role/{ROLE}", {"iam:PassedToService": "sagemaker.amazonaws.com"}),
    ],
    ("batch", "ListServiceJobs"): [("batch:ListServiceJobs", "*", {})],
    ("batch", "DescribeServiceJob"): [("batch:DescribeServiceJob", "*", {})],
    ("batch", "TerminateServiceJob"): [
        ("batch:TerminateServiceJob", f"arn:aws:batch:{R}:{ACCT}:service-job/{BATCH_JOB_ID}", OUR_TAG)],
}

#: What a Batch array child does with the launcher role (regional_training.launch.batch_launcher).
LAUNCHER_REQUESTS: dict[tuple[str, str], list[tuple[str, str, dict]]] = {
    ("s3", "GetObject"): [("s3:GetObject", ARRAY_FILE, {}),
                          ("s3:GetObject", f"arn:aws:s3:::{CENTRAL}/runs/{RUN}/requests.json", {})],
    ("sagemaker", "CreateTrainingJob"): [("sagemaker:CreateTrainingJob", JOB_ARN, IN_REGION)],
    ("sagemaker", "DescribeTrainingJob"): [("sagemaker:DescribeTrainingJob", JOB_ARN, IN_REGION)],
    ("sagemaker", "StopTrainingJob"): [("sagemaker:StopTrainingJob", JOB_ARN, IN_REGION)],
    ("sagemaker", "AddTags"): [("sagemaker:AddTags", JOB_ARN, IN_REGION)],
    ("iam", "PassRole"): [
        ("iam:PassRole", f"arn:aws:iam::{ACCT}:role/{ROLE}", {"iam:PassedToService": "sagemaker.amazonaws.com"})
    ],
}

CKPT = f"arn:aws:s3:::{OUTPUT}/checkpoints/{RUN}/boston-winter-2026/ckpt-0001.index"
MODEL_OUT = f"arn:aws:s3:::{OUTPUT}/training-jobs/{JOB}/output/model.tar.gz"
DATASET_OBJ = f"arn:aws:s3:::{DATA}/datasets/dublin-urban-2026/dublin-urban-2026-v1/part-00000.tfrecord"
ECR_REPO = f"arn:aws:ecr:{R}:{ACCT}:repository/{REPO}"

EXECUTION_REQUESTS: dict[tuple[str, str], list[tuple[str, str, dict]]] = {
    ("s3", "GetObject"): [("s3:GetObject", DATASET_OBJ, {}), ("s3:GetObject", CKPT, {})],
    ("s3", "ListObjectsV2"): [
        ("s3:ListBucket", f"arn:aws:s3:::{DATA}", {"s3:prefix": "datasets/dublin-urban-2026/dublin-urban-2026-v1/"}),
        ("s3:ListBucket", f"arn:aws:s3:::{OUTPUT}", {"s3:prefix": f"checkpoints/{RUN}/boston-winter-2026/"}),
    ],
    ("s3", "PutObject"): [("s3:PutObject", MODEL_OUT, {}), ("s3:PutObject", CKPT, {})],
    ("s3", "CreateMultipartUpload"): [("s3:PutObject", MODEL_OUT, {})],
    ("s3", "UploadPart"): [("s3:PutObject", MODEL_OUT, {})],
    ("s3", "CompleteMultipartUpload"): [("s3:PutObject", MODEL_OUT, {})],
    ("s3", "AbortMultipartUpload"): [("s3:AbortMultipartUpload", MODEL_OUT, {})],
    ("ecr", "GetAuthorizationToken"): [("ecr:GetAuthorizationToken", "*", {})],
    ("ecr", "BatchGetImage"): [("ecr:BatchGetImage", ECR_REPO, {})],
    ("ecr", "GetDownloadUrlForLayer"): [("ecr:GetDownloadUrlForLayer", ECR_REPO, {})],
    ("ecr", "BatchCheckLayerAvailability"): [("ecr:BatchCheckLayerAvailability", ECR_REPO, {})],
    ("logs", "CreateLogGroup"): [("logs:CreateLogGroup", LOG_GROUP, {})],
    ("logs", "CreateLogStream"): [("logs:CreateLogStream", f"{LOG_GROUP}:log-stream:{JOB}/algo-1-1764230400", {})],
    ("logs", "PutLogEvents"): [("logs:PutLogEvents", f"{LOG_GROUP}:log-stream:{JOB}/algo-1-1764230400", {})],
    ("logs", "DescribeLogStreams"): [
        ("logs:DescribeLogStreams", f"{LOG_GROUP}:*", {}),
        ("logs:DescribeLogStreams", LOG_GROUP, {}),
    ],
    ("cloudwatch", "PutMetricData"): [
        ("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"})
    ],
}

ROLES = {
    "airflow": ("airflow-role.policy.json", aws_calls.AIRFLOW_ROLE_CALLS, AIRFLOW_REQUESTS),
    "execution": ("sagemaker-execution-role.policy.json", aws_calls.SAGEMAKER_EXECUTION_ROLE_CALLS, EXECUTION_REQUESTS),
    "launcher": ("batch-launcher-role.policy.json", aws_calls.BATCH_LAUNCHER_ROLE_CALLS, LAUNCHER_REQUESTS),
}


@pytest.fixture(scope="module")
def docs() -> dict:
    return render.render_all(VALUES)


def test_templates_are_json_with_only_known_placeholders():
    names = sorted(p.name for p in IAM_DIR.glob("*.json"))
    assert names == sorted(render.TEMPLATES)
    for name in names:
        text = (IAM_DIR / name).read_text()
        doc = json.loads(text)
        assert doc["Version"] == "2012-10-17" and doc["Statement"]
        used = set(render.PLACEHOLDER.findall(text))
        assert used and used <= set(render.SCALARS + render.LISTS), (name, used)
        # Only placeholders: no real account id, no credentials.
        assert "AKIA" not in text and "aws_secret_access_key" not in text.lower()
        assert not re.search(r"\b[0-9]{12}\b", text), f"{name}: an account id must be ${{ACCOUNT_ID}}"
        assert all(
            "${ACCOUNT_ID}" in s
            for s in _strings(doc)
            if s.startswith(("arn:aws:iam:", "arn:aws:sagemaker:", "arn:aws:ecr:", "arn:aws:logs:"))
        )


def _strings(node):
    if isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)
    elif isinstance(node, str):
        yield node


def test_rendered_documents_have_no_placeholders_and_expand_lists(docs):
    for name, doc in docs.items():
        assert "${" not in json.dumps(doc), name
    pull = next(s for s in docs["sagemaker-execution-role.policy.json"]["Statement"] if s["Sid"] == "PullTrainingImage")
    assert pull["Resource"] == [f"arn:aws:ecr:{r}:{ACCT}:repository/{REPO}" for r in REGIONS]
    manage = next(
        s for s in docs["airflow-role.policy.json"]["Statement"] if s["Sid"] == "ManageTrainingJobsInTrainingRegions"
    )
    assert manage["Condition"]["StringEquals"]["aws:RequestedRegion"] == REGIONS


@pytest.mark.parametrize("role", sorted(ROLES))
def test_every_listed_call_is_a_real_boto3_operation(role):
    calls = ROLES[role][1]
    assert calls, "the call list must not be empty"
    assert len(set(calls)) == len(calls), "duplicate entries"
    session = botocore.session.get_session()
    for service, operation in calls:
        if (service, operation) in aws_calls.PERMISSION_ONLY:
            continue
        assert operation in session.get_service_model(service).operation_names, (service, operation)


@pytest.mark.parametrize("role", sorted(ROLES))
def test_every_call_the_code_makes_is_allowed(role, docs):
    policy_file, calls, requests = ROLES[role]
    policy = docs[policy_file]
    missing = [c for c in calls if c not in requests]
    assert not missing, (
        f"describe the IAM request(s) of {missing} in {__file__} "
        f"({'AIRFLOW' if role == 'airflow' else 'EXECUTION'}_REQUESTS)"
    )
    assert set(requests) == set(calls), f"requests described for calls not in aws_calls: {set(requests) - set(calls)}"
    checked = 0
    for call in calls:
        needed = set(aws_calls.iam_actions(*call))
        described = {action for action, _, _ in requests[call]}
        assert described == needed, (call, described, needed)
        for action, resource, context in requests[call]:
            assert is_allowed([policy], action, resource, context), (call, action, resource, context)
            checked += 1
    assert checked >= len(calls)


def test_every_training_region_is_allowed_for_sagemaker_and_ecr(docs):
    airflow = docs["airflow-role.policy.json"]
    execution = docs["sagemaker-execution-role.policy.json"]
    for region in REGIONS:
        arn = f"arn:aws:sagemaker:{region}:{ACCT}:training-job/{JOB}"
        assert is_allowed([airflow], "sagemaker:CreateTrainingJob", arn, {"aws:RequestedRegion": region})
        assert is_allowed([execution], "ecr:BatchGetImage", f"arn:aws:ecr:{region}:{ACCT}:repository/{REPO}")
        model = f"arn:aws:s3:::mrt-output-{region}/training-jobs/j/output/model.tar.gz"
        assert is_allowed([execution], "s3:PutObject", model)
        assert is_allowed([execution], "s3:GetObject", f"arn:aws:s3:::mrt-campaign-data-{region}/datasets/c/d/x")


@pytest.mark.parametrize(
    ("action", "resource", "context"),
    [
        # Other regions, other accounts, other SageMaker resources.
        (
            "sagemaker:CreateTrainingJob",
            f"arn:aws:sagemaker:ap-south-1:{ACCT}:training-job/{JOB}",
            {"aws:RequestedRegion": "ap-south-1"},
        ),
        ("sagemaker:CreateTrainingJob", JOB_ARN, {"aws:RequestedRegion": "ap-south-1"}),
        ("sagemaker:CreateTrainingJob", JOB_ARN, {}),
        ("sagemaker:CreateTrainingJob", f"arn:aws:sagemaker:{R}:999999999999:training-job/{JOB}", IN_REGION),
        ("sagemaker:ListTrainingJobs", "*", {"aws:RequestedRegion": "ap-south-1"}),
        ("servicequotas:ListServiceQuotas", "*", {"aws:RequestedRegion": "ap-south-1"}),
        ("servicequotas:GetServiceQuota", f"arn:aws:servicequotas:{R}:{ACCT}:ec2/L-1216C47A", IN_REGION),
        ("servicequotas:RequestServiceQuotaIncrease", f"arn:aws:servicequotas:{R}:{ACCT}:sagemaker/x", IN_REGION),
        ("pricing:GetProducts", "*", {"aws:RequestedRegion": "eu-west-1"}),
        ("sagemaker:CreateEndpoint", f"arn:aws:sagemaker:{R}:{ACCT}:endpoint/x", IN_REGION),
        ("sagemaker:DeleteModel", f"arn:aws:sagemaker:{R}:{ACCT}:model/x", IN_REGION),
        # PassRole: only the execution role, only to SageMaker.
        ("iam:PassRole", f"arn:aws:iam::{ACCT}:role/admin", {"iam:PassedToService": "sagemaker.amazonaws.com"}),
        ("iam:PassRole", f"arn:aws:iam::{ACCT}:role/{ROLE}", {"iam:PassedToService": "ec2.amazonaws.com"}),
        ("iam:PassRole", f"arn:aws:iam::{ACCT}:role/{ROLE}", {}),
        ("iam:CreateRole", f"arn:aws:iam::{ACCT}:role/x", {}),
        # S3: only runs/ in the central bucket, only reads of training output, nothing else.
        ("s3:PutObject", f"arn:aws:s3:::{CENTRAL}/other/x", {}),
        ("s3:GetObject", f"arn:aws:s3:::{CENTRAL}/other/x", {}),
        ("s3:PutObject", MODEL_SRC, {}),
        ("s3:DeleteObject", ARRAY_FILE, {}),
        ("s3:GetObject", DATASET_OBJ, {}),
        ("s3:PutObject", DATASET_OBJ, {}),
        ("s3:GetObject", "arn:aws:s3:::someone-elses-bucket/runs/x", {}),
        # (Listing the data buckets is allowed: the provider's pre-launch check of the train
        # channel does HeadBucket + ListObjectsV2 there, recorded by tests/e2e/test_aws_calls.py.
        # Reading or writing their objects is not.)
        ("s3:ListBucket", "arn:aws:s3:::someone-elses-bucket", {"s3:prefix": "datasets/"}),
        ("s3:PutBucketPolicy", f"arn:aws:s3:::{CENTRAL}", {}),
        # SNS: publish to the deployment's topic only, nothing else.
        ("sns:Publish", f"arn:aws:sns:eu-west-1:{ACCT}:someone-elses-topic", {}),
        ("sns:Publish", f"arn:aws:sns:us-east-1:{ACCT}:mrt-training-runs", {}),
        ("sns:Subscribe", f"arn:aws:sns:eu-west-1:{ACCT}:mrt-training-runs", {}),
        ("sns:CreateTopic", f"arn:aws:sns:eu-west-1:{ACCT}:mrt-training-runs", {}),
        # Batch: only the launcher queue and definition, only the training regions' service queues.
        ("batch:SubmitJob", f"arn:aws:batch:us-east-1:{ACCT}:job-queue/someone-elses-queue", {}),
        ("batch:SubmitJob", f"arn:aws:batch:us-east-1:{ACCT}:job-definition/admin-shell:1", {}),
        ("batch:SubmitServiceJob", f"arn:aws:batch:ap-south-1:{ACCT}:job-queue/mrt-sagemaker-ap-south-1", {}),
        ("batch:SubmitServiceJob", f"arn:aws:batch:{R}:{ACCT}:job-queue/someone-elses-queue", {}),
        ("batch:RegisterJobDefinition", f"arn:aws:batch:us-east-1:{ACCT}:job-definition/mrt-launcher", {}),
        ("batch:CreateJobQueue", f"arn:aws:batch:us-east-1:{ACCT}:job-queue/mrt-launchers", {}),
        ("batch:TerminateJob", f"arn:aws:batch:us-east-1:999999999999:job/{BATCH_JOB_ID}", OUR_TAG),
        # Narrowed to this project's jobs: another team's Batch jobs and training jobs.
        ("batch:TerminateJob", f"arn:aws:batch:us-east-1:{ACCT}:job/{BATCH_JOB_ID}", {}),
        ("batch:TerminateJob", f"arn:aws:batch:us-east-1:{ACCT}:job/{BATCH_JOB_ID}",
         {"aws:ResourceTag/dag_id": "someone_elses_dag"}),
        ("batch:TerminateServiceJob", f"arn:aws:batch:{R}:{ACCT}:service-job/{BATCH_JOB_ID}", {}),
        ("batch:TagResource", f"arn:aws:batch:{R}:{ACCT}:service-job/{BATCH_JOB_ID}", {}),
        ("batch:TagResource", f"arn:aws:batch:{R}:{ACCT}:job-queue/mrt-sagemaker-{R}",
         {"aws:RequestTag/dag_id": "multi_region_training"}),
        ("sagemaker:StopTrainingJob", f"arn:aws:sagemaker:{R}:{ACCT}:training-job/other-team-job", IN_REGION),
        ("sagemaker:StopTrainingJob", f"arn:aws:sagemaker:{R}:{ACCT}:training-job/AWSBatchother-job0123", IN_REGION),
        ("sagemaker:CreateTrainingJob", f"arn:aws:sagemaker:{R}:{ACCT}:training-job/other-team-job", IN_REGION),
    ],
)
def test_airflow_role_denies_what_the_dag_does_not_do(docs, action, resource, context):
    assert not is_allowed([docs["airflow-role.policy.json"]], action, resource, context)


@pytest.mark.parametrize(
    ("action", "resource", "context"),
    [
        ("s3:PutObject", DATASET_OBJ, {}),
        ("s3:DeleteObject", MODEL_OUT, {}),
        ("s3:GetObject", f"arn:aws:s3:::{DATA}/private/x", {}),
        ("s3:GetObject", f"arn:aws:s3:::{CENTRAL}/runs/{RUN}/array.csv", {}),
        ("s3:GetObject", MODEL_OUT, {}),
        ("s3:PutObject", f"arn:aws:s3:::{OUTPUT}/other/x", {}),
        ("s3:ListBucket", f"arn:aws:s3:::{DATA}", {"s3:prefix": "private/"}),
        ("s3:ListBucket", f"arn:aws:s3:::{DATA}", {}),
        ("ecr:BatchGetImage", f"arn:aws:ecr:{R}:{ACCT}:repository/other-image", {}),
        ("ecr:BatchGetImage", f"arn:aws:ecr:ap-south-1:{ACCT}:repository/{REPO}", {}),
        ("ecr:PutImage", ECR_REPO, {}),
        ("logs:CreateLogStream", f"arn:aws:logs:{R}:{ACCT}:log-group:/aws/lambda/x:log-stream:y", {}),
        ("logs:DeleteLogGroup", LOG_GROUP, {}),
        ("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "Custom/Other"}),
        ("cloudwatch:PutMetricData", "*", {}),
        ("sagemaker:CreateTrainingJob", JOB_ARN, IN_REGION),
        ("iam:PassRole", f"arn:aws:iam::{ACCT}:role/{ROLE}", {"iam:PassedToService": "sagemaker.amazonaws.com"}),
    ],
)
def test_execution_role_denies_what_training_does_not_do(docs, action, resource, context):
    assert not is_allowed([docs["sagemaker-execution-role.policy.json"]], action, resource, context)


@pytest.mark.parametrize(
    ("action", "resource", "context"),
    [
        ("s3:GetObject", f"arn:aws:s3:::{CENTRAL}/runs/{RUN}/summary.json", {}),
        ("s3:PutObject", ARRAY_FILE, {}),
        ("s3:GetObject", DATASET_OBJ, {}),
        ("sagemaker:CreateTrainingJob", f"arn:aws:sagemaker:ap-south-1:{ACCT}:training-job/{JOB}",
         {"aws:RequestedRegion": "ap-south-1"}),
        ("sagemaker:CreateEndpoint", f"arn:aws:sagemaker:{R}:{ACCT}:endpoint/x", IN_REGION),
        ("iam:PassRole", f"arn:aws:iam::{ACCT}:role/admin", {"iam:PassedToService": "sagemaker.amazonaws.com"}),
        ("batch:SubmitJob", f"arn:aws:batch:us-east-1:{ACCT}:job-queue/mrt-launchers", {}),
        ("sns:Publish", f"arn:aws:sns:eu-west-1:{ACCT}:mrt-training-runs", {}),
    ],
)
def test_launcher_role_denies_what_a_child_does_not_do(docs, action, resource, context):
    assert not is_allowed([docs["batch-launcher-role.policy.json"]], action, resource, context)


def _without_action(policy: dict, action: str) -> dict:
    """``policy`` with ``action`` taken out of every statement (a statement left without
    actions is dropped)."""
    statements = []
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        kept = [a for a in actions if a != action]
        if kept:
            statements.append({**statement, "Action": kept})
    return {**policy, "Statement": statements}


@pytest.mark.parametrize("dependent", ["batch:TagResource", "iam:PassRole"])
def test_submit_service_job_is_denied_without_its_dependent_actions(docs, dependent):
    """The Service Authorization Reference lists batch:TagResource and iam:PassRole as
    SubmitServiceJob's dependent actions: the recorded call needs both, so a policy
    without either fails the check of every call the code makes."""
    assert dependent in aws_calls.iam_actions("batch", "SubmitServiceJob")
    policy = _without_action(docs["airflow-role.policy.json"], dependent)
    denied = [(action, resource) for action, resource, context in AIRFLOW_REQUESTS[("batch", "SubmitServiceJob")]
              if not is_allowed([policy], action, resource, context)]
    assert denied and denied[0][0] == dependent



def test_launcher_trust_lets_only_batch_containers_of_this_account_assume(docs):
    trust = docs["batch-launcher-role.trust.json"]
    ecs = {"Service": "ecs-tasks.amazonaws.com"}
    assert is_allowed([trust], "sts:AssumeRole", "*", {"aws:SourceAccount": ACCT}, principal=ecs)
    assert not is_allowed([trust], "sts:AssumeRole", "*", {"aws:SourceAccount": "999999999999"}, principal=ecs)
    assert not is_allowed([trust], "sts:AssumeRole", "*", {"aws:SourceAccount": ACCT},
                          principal={"Service": "ec2.amazonaws.com"})


def test_no_wildcard_actions_and_no_star_resource_for_s3_or_passrole(docs):
    for name in ("airflow-role.policy.json", "sagemaker-execution-role.policy.json", "batch-launcher-role.policy.json"):
        for statement in docs[name]["Statement"]:
            assert statement["Effect"] == "Allow" and statement.get("Sid"), statement
            assert "NotAction" not in statement and "NotResource" not in statement
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            assert all("*" not in a for a in actions), statement
            if any(a.startswith(("s3:", "iam:")) for a in actions):
                assert all(r != "*" and not r.startswith("arn:aws:s3:::*") for r in resources), statement
            if "*" in resources:
                # Only actions that have no resource-level permissions may use "*".
                assert set(actions) <= {
                    "ecr:GetAuthorizationToken",
                    "sagemaker:ListTrainingJobs",
                    "servicequotas:ListServiceQuotas",
                    "pricing:GetProducts",
                    "cloudwatch:PutMetricData",
                    # Batch's Describe/List calls have no resource-level permissions.
                    "batch:DescribeJobs",
                    "batch:ListJobs",
                    "batch:DescribeServiceJob",
                    "batch:ListServiceJobs",
                }, statement


def test_trust_policy_lets_only_sagemaker_for_this_account_assume(docs):
    trust = docs["sagemaker-execution-role.trust.json"]
    ok = {"aws:SourceAccount": ACCT, "aws:SourceArn": JOB_ARN}
    sm = {"Service": "sagemaker.amazonaws.com"}
    assert is_allowed([trust], "sts:AssumeRole", "*", ok, principal=sm)
    assert not is_allowed([trust], "sts:AssumeRole", "*", ok, principal={"Service": "ec2.amazonaws.com"})
    assert not is_allowed([trust], "sts:AssumeRole", "*", {**ok, "aws:SourceAccount": "999999999999"}, principal=sm)
    assert not is_allowed(
        [trust],
        "sts:AssumeRole",
        "*",
        {**ok, "aws:SourceArn": f"arn:aws:sagemaker:ap-south-1:{ACCT}:training-job/x"},
        principal=sm,
    )
    assert not is_allowed([trust], "sts:AssumeRole", "*", {}, principal=sm)
    assert not is_allowed([trust], "sts:AssumeRoleWithWebIdentity", "*", ok, principal=sm)


def test_render_rejects_bad_or_missing_values():
    with pytest.raises(render.RenderError, match="ACCOUNT_ID"):
        render.render_all({**VALUES, "ACCOUNT_ID": "12345"})
    with pytest.raises(render.RenderError, match="REGIONS"):
        render.render_all({**VALUES, "REGIONS": []})
    with pytest.raises(render.RenderError, match="OUTPUT_BUCKETS"):
        render.render_all({k: v for k, v in VALUES.items() if k != "OUTPUT_BUCKETS"})
    with pytest.raises(render.RenderError, match="JSON list"):
        render.render("arn:aws:s3:::${OUTPUT_BUCKETS}", VALUES)
    with pytest.raises(render.RenderError, match="unknown placeholder"):
        render.render(["${NOPE}"], VALUES)


def test_render_cli_writes_the_documents(tmp_path, repo_root):
    cmd = [
        sys.executable,
        "-m",
        "deploy.iam.render",
        "--account-id",
        ACCT,
        "--central-bucket",
        CENTRAL,
        "--notification-topic-arn",
        VALUES["NOTIFICATION_TOPIC_ARN"],
        "--regions",
        ",".join(REGIONS),
        "--data-buckets",
        ",".join(VALUES["DATA_BUCKETS"]),
        "--output-buckets",
        ",".join(VALUES["OUTPUT_BUCKETS"]),
        "--out-dir",
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    written = {p.name: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    assert written == render.render_all(VALUES)


def test_values_match_the_seeded_campaign_db(repo_root):
    """Regions and buckets read from a database migrated and seeded by the project's CLI."""
    import shutil

    if not (shutil.which("initdb") or list(Path("/usr/lib/postgresql").glob("*/bin/initdb"))):
        pytest.skip("PostgreSQL server binaries (initdb) not installed")
    import psycopg2

    from deploy import campaign_targets
    from dev.local_pg import temporary_postgres  # dev/, on sys.path through pytest's `pythonpath`
    from regional_training.runtime import campaign_db

    with temporary_postgres() as dsn:
        conn = psycopg2.connect(dsn)
        try:
            campaign_db.migrate(conn, seed=True)
            assert campaign_targets.regions(conn) == REGIONS
            assert campaign_targets.output_buckets(conn) == sorted(VALUES["OUTPUT_BUCKETS"])
            assert campaign_targets.data_buckets(conn) == sorted(VALUES["DATA_BUCKETS"])
            with conn, conn.cursor() as cur:
                cur.execute("UPDATE regions SET training_enabled = false WHERE region_code = 'us-west-2'")
            assert "us-west-2" not in campaign_targets.regions(conn)
            assert "mrt-output-us-west-2" not in campaign_targets.output_buckets(conn)
        finally:
            conn.close()
        # The publish command's dry run takes its regions from the same database.
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "deploy.publish_training_image",
                "--repository",
                REPO,
                "--tag",
                "0.1.0",
                "--campaign-dsn",
                dsn,
                "--dry-run",
                "--account-id",
                ACCT,
                "--endpoint-url",
                "http://127.0.0.1:9",
            ],
            cwd=repo_root,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            env={
                "PATH": "/usr/bin:/bin",
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_MAX_ATTEMPTS": "1",
                "AWS_CONFIG_FILE": "/dev/null",
                "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            },
        )
        # No AWS endpoint answers on port 9: every region fails, but it tried exactly the DB's regions.
        tried = sorted({line.split(":", 1)[0].removeprefix("[dry run] ") for line in proc.stdout.splitlines()})
        assert tried == ["eu-central-1", "eu-west-1", "us-east-1"], proc.stdout + proc.stderr


# ---- the evaluator itself ----------------------------------------------------------


def _policy(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


def test_evaluator_wildcards_and_case():
    p = _policy({"Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/runs/*"})
    assert is_allowed([p], "s3:GetObject", "arn:aws:s3:::b/runs/x/y")
    assert is_allowed([p], "S3:getobject", "arn:aws:s3:::b/runs/x")  # actions: case-insensitive
    assert not is_allowed([p], "s3:GetObject", "arn:aws:s3:::b/Runs/x")  # ARNs: case-sensitive
    assert not is_allowed([p], "s3:PutObject", "arn:aws:s3:::b/runs/x")
    assert not is_allowed([p], "s3:GetObject", "arn:aws:s3:::b2/runs/x")
    assert arn_match("arn:aws:logs:*:1:log-group:g:*", "arn:aws:logs:eu-west-1:1:log-group:g:log-stream:s")
    assert not arn_match("arn:aws:sagemaker:*:1:training-job/*", "arn:aws:sagemaker:eu-west-1:2:training-job/x")
    assert not arn_match("arn:aws:s3:::b?", "arn:aws:s3:::b")


def test_evaluator_deny_wins_and_not_action():
    allow = _policy({"Effect": "Allow", "Action": "s3:*", "Resource": "*"})
    deny = _policy({"Effect": "Deny", "NotAction": "s3:GetObject", "Resource": "*"})
    assert is_allowed([allow], "s3:PutObject", "arn:aws:s3:::b/k")
    assert not is_allowed([allow, deny], "s3:PutObject", "arn:aws:s3:::b/k")
    assert is_allowed([allow, deny], "s3:GetObject", "arn:aws:s3:::b/k")
    assert not is_allowed([], "s3:GetObject", "arn:aws:s3:::b/k")


def test_evaluator_conditions():
    p = _policy(
        {
            "Effect": "Allow",
            "Action": "x:Y",
            "Resource": "*",
            "Condition": {
                "StringEquals": {"aws:RequestedRegion": ["eu-west-1", "us-east-1"]},
                "StringLike": {"s3:prefix": "runs/*"},
            },
        }
    )
    assert is_allowed([p], "x:Y", "*", {"aws:RequestedRegion": "us-east-1", "s3:prefix": "runs/a"})
    assert not is_allowed([p], "x:Y", "*", {"aws:RequestedRegion": "us-west-2", "s3:prefix": "runs/a"})
    assert not is_allowed([p], "x:Y", "*", {"aws:RequestedRegion": "us-east-1"})  # missing key
    neg = _policy(
        {
            "Effect": "Allow",
            "Action": "x:Y",
            "Resource": "*",
            "Condition": {"StringNotEquals": {"k": "v"}, "BoolIfExists": {"aws:SecureTransport": "true"}},
        }
    )
    assert is_allowed([neg], "x:Y", "*", {})
    assert not is_allowed([neg], "x:Y", "*", {"k": "v"})
    assert not is_allowed([neg], "x:Y", "*", {"aws:SecureTransport": "false"})
    with pytest.raises(UnsupportedPolicy):
        is_allowed(
            [
                _policy(
                    {"Effect": "Allow", "Action": "x:Y", "Resource": "*", "Condition": {"NumericLessThan": {"k": "1"}}}
                )
            ],
            "x:Y",
            "*",
            {"k": "0"},
        )
