"""Deployment tooling: publishing the training image to ECR, IAM policy documents."""
