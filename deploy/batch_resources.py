"""Create the AWS Batch resources the launchers need (docs/batch.md), idempotently.

    python -m deploy.batch_resources --central-region us-east-1 \\
        --regions eu-central-1 eu-west-1 us-east-1 us-west-2 \\
        --image 123456789012.dkr.ecr.us-east-1.amazonaws.com/mrt-airflow:3.3.2 \\
        --job-role-arn arn:aws:iam::123456789012:role/mrt-batch-launcher \\
        --execution-role-arn arn:aws:iam::123456789012:role/mrt-batch-execution \\
        --subnets subnet-0abc subnet-0def --security-groups sg-0123 \\
        [--platform EC2 --service-role-arn ...] [--capacity-wait-seconds 3600]

What it creates is defined once, in :mod:`regional_training.launch.batch_resources` (the local
emulator's seed creates the same): the launcher compute environment, job queue and job
definition in the central region (``launcher=batch_array``), a SageMaker service
environment and job queue in every training region (``launcher=batch_service``).
Credentials come from the environment (the deploying principal's profile or role).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from regional_training.launch.batch_resources import BatchResources, create


def parse(argv: list[str] | None = None) -> BatchResources:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--central-region", required=True)
    parser.add_argument("--regions", nargs="+", required=True, help="the training regions (service-job queues)")
    parser.add_argument("--image", required=True,
                        help="the Airflow image (runs regional_training.launch.batch_launcher)")
    parser.add_argument("--job-role-arn", required=True, help="the launcher role (deploy/iam/batch-launcher-role.*)")
    parser.add_argument("--platform", choices=["FARGATE", "EC2"], default="FARGATE")
    parser.add_argument("--execution-role-arn", help="Fargate: the task execution role")
    parser.add_argument("--subnets", nargs="*", default=[])
    parser.add_argument("--security-groups", nargs="*", default=[])
    parser.add_argument("--service-role-arn", help="EC2: Batch's service role (default: the service-linked role)")
    parser.add_argument("--max-training-instances", type=int, default=16)
    parser.add_argument("--capacity-wait-seconds", type=int, default=None,
                        help="terminate a service job re-queued for capacity after this long (600..86400)")
    args = parser.parse_args(argv)
    try:
        return BatchResources(
            central_region=args.central_region, regions=args.regions, image=args.image,
            job_role_arn=args.job_role_arn, platform=args.platform, execution_role_arn=args.execution_role_arn,
            subnets=args.subnets, security_group_ids=args.security_groups, service_role_arn=args.service_role_arn,
            max_training_instances=args.max_training_instances, capacity_wait_seconds=args.capacity_wait_seconds)
    except ValueError as err:
        parser.error(str(err))
        raise  # parser.error exits


def main(argv: list[str] | None = None) -> int:
    import boto3

    spec = parse(argv)

    def client(region: str) -> Any:
        return boto3.client("batch", region_name=region)

    for line in create(spec, client):
        print(f"created {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
