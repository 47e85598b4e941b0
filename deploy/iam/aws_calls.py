"""The AWS calls the DAG code makes, and the IAM actions each needs: ONE list.

``tests/deploy/test_deploy_iam.py`` checks every entry against the policy documents in
this folder (each call, with a concrete resource ARN, must be allowed) and checks that
every (service, operation) is a real boto3 operation. When the DAG starts making a new
AWS call, add it here (and, if its IAM action is not ``<service>:<Operation>``, to
``IAM_ACTIONS``); the test then says which request to describe for it.

Entries are ``(boto3 service name, API operation name)`` as botocore spells it
(``client.meta.service_model.operation_names``). ``("iam", "PassRole")`` is an IAM
permission, not an API call: CreateTrainingJob needs it to hand SageMaker the
execution role.
"""

from __future__ import annotations

#: Calls made with the Airflow role (the ``aws_default`` connection).
AIRFLOW_ROLE_CALLS: list[tuple[str, str]] = [
    # SageMakerTrainingOperator (deferrable) and the collectors.
    ("sagemaker", "CreateTrainingJob"),
    ("sagemaker", "DescribeTrainingJob"),
    ("sagemaker", "StopTrainingJob"),
    ("sagemaker", "ListTrainingJobs"),
    ("sagemaker", "AddTags"),
    # The refresh_limits DAG (regional_training.plan.live_limits): quotas and on-demand prices.
    ("service-quotas", "ListServiceQuotas"),
    ("service-quotas", "GetServiceQuota"),
    ("pricing", "GetProducts"),
    ("iam", "PassRole"),
    # Before CreateTrainingJob the provider's hook checks that the train channel's
    # bucket and prefix exist (HeadBucket, ListObjectsV2 on the data bucket).
    ("s3", "HeadBucket"),
    # Array file in the central bucket; artifacts copied server-side into it.
    ("s3", "PutObject"),
    ("s3", "GetObject"),
    ("s3", "HeadObject"),
    ("s3", "ListObjectsV2"),
    ("s3", "CopyObject"),
    # S3Hook.copy (boto3 managed copy) switches to multipart above 8 MiB.
    ("s3", "CreateMultipartUpload"),
    ("s3", "UploadPartCopy"),
    ("s3", "CompleteMultipartUpload"),
    ("s3", "AbortMultipartUpload"),
    # The run report reads each job's metric lines from its CloudWatch log stream.
    ("logs", "DescribeLogStreams"),
    ("logs", "GetLogEvents"),
    # One message per run from the watcher task (regional_training.report.notifications).
    ("sns", "Publish"),
    # launcher=batch_array (regional_training.launch.batch_jobs): the array job, its children.
    ("batch", "SubmitJob"),
    ("batch", "ListJobs"),
    ("batch", "DescribeJobs"),
    ("batch", "TerminateJob"),
    # launcher=batch_service: one service job per target, followed by our trigger.
    ("batch", "SubmitServiceJob"),
    ("batch", "ListServiceJobs"),  # a try finds its attempt's service job by name first
    ("batch", "DescribeServiceJob"),
    ("batch", "TerminateServiceJob"),
]

#: Calls the Batch array children make with the launcher role (regional_training.launch.batch_launcher).
BATCH_LAUNCHER_ROLE_CALLS: list[tuple[str, str]] = [
    ("s3", "GetObject"),  # the run's array file and requests
    ("sagemaker", "CreateTrainingJob"),
    ("sagemaker", "DescribeTrainingJob"),
    ("sagemaker", "StopTrainingJob"),
    ("sagemaker", "AddTags"),  # CreateTrainingJob with Tags needs it
    ("iam", "PassRole"),
]

#: Calls SageMaker makes with the execution role while a training job runs.
SAGEMAKER_EXECUTION_ROLE_CALLS: list[tuple[str, str]] = [
    ("s3", "GetObject"),
    ("s3", "ListObjectsV2"),
    ("s3", "PutObject"),
    ("s3", "CreateMultipartUpload"),
    ("s3", "UploadPart"),
    ("s3", "CompleteMultipartUpload"),
    ("s3", "AbortMultipartUpload"),
    ("ecr", "GetAuthorizationToken"),
    ("ecr", "BatchGetImage"),
    ("ecr", "GetDownloadUrlForLayer"),
    ("ecr", "BatchCheckLayerAvailability"),
    ("logs", "CreateLogGroup"),
    ("logs", "CreateLogStream"),
    ("logs", "PutLogEvents"),
    ("logs", "DescribeLogStreams"),
    ("cloudwatch", "PutMetricData"),
]

#: Entries that are IAM permissions rather than boto3 operations.
PERMISSION_ONLY: set[tuple[str, str]] = {("iam", "PassRole")}

#: Operations whose IAM action(s) differ from ``<service>:<Operation>``.
IAM_ACTIONS: dict[tuple[str, str], list[str]] = {
    ("s3", "HeadObject"): ["s3:GetObject"],
    ("s3", "HeadBucket"): ["s3:ListBucket"],
    ("s3", "ListObjectsV2"): ["s3:ListBucket"],
    # GetObject on the source, PutObject on the destination.
    ("s3", "CopyObject"): ["s3:GetObject", "s3:PutObject"],
    ("s3", "CreateMultipartUpload"): ["s3:PutObject"],
    ("s3", "UploadPart"): ["s3:PutObject"],
    ("s3", "UploadPartCopy"): ["s3:GetObject", "s3:PutObject"],
    ("s3", "CompleteMultipartUpload"): ["s3:PutObject"],
    ("s3", "AbortMultipartUpload"): ["s3:AbortMultipartUpload"],
    # Dependent actions (Service Authorization Reference, "Actions, resources, and condition
    # keys for AWS Batch", https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsbatch.html):
    # SubmitServiceJob tags the job it makes (the DAG always sends tags) and passes the
    # payload's RoleArn (the SageMaker execution role) on.
    ("batch", "SubmitServiceJob"): ["batch:SubmitServiceJob", "batch:TagResource", "iam:PassRole"],
}

#: IAM service prefix when it differs from the boto3 service name.
_IAM_PREFIX = {"cloudwatch": "cloudwatch", "logs": "logs", "service-quotas": "servicequotas"}


def iam_actions(service: str, operation: str) -> list[str]:
    """The IAM actions one call needs."""
    return IAM_ACTIONS.get((service, operation), [f"{_IAM_PREFIX.get(service, service)}:{operation}"])
