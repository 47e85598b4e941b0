"""Publish the training image to ECR in every training region.

For each region: create the ECR repository if it is missing (same name everywhere,
scan-on-push, immutable tags; an existing repository is brought to those settings),
then push ``<repository>:<tag>`` unless that tag is already there. Tags are immutable,
so a present tag is never pushed again: publishing is idempotent, and a new image
needs a new tag. boto3 does the ECR calls, the docker CLI the login/tag/push.

Regions come from ``--regions`` or from the campaign-metadata database
(``--campaign-dsn``, or ``CAMPAIGN_DB_DSN``: every region with training enabled).

Examples (from the repository root, where ``deploy`` is a package)::

    python -m deploy.publish_training_image \\
        --repository multi-region-training/resnet50-horovod --tag 0.1.0 \\
        --regions us-east-1,us-west-2,eu-west-1,eu-central-1 --dry-run

    python -m deploy.publish_training_image \\
        --repository multi-region-training/resnet50-horovod --tag 0.1.0 \\
        --campaign-dsn postgresql://user:pass@host:5432/campaigns

``--dry-run`` makes only read-only calls (DescribeRepositories, DescribeImages,
sts GetCallerIdentity) and runs no docker command; it prints what it would do.
AWS credentials and endpoint come from the usual boto3 sources (``AWS_PROFILE``,
``AWS_ENDPOINT_URL`` ...); ``--endpoint-url`` overrides the endpoint (e.g. a moto
server).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from deploy import campaign_targets

REPOSITORY_SETTINGS = {
    "imageTagMutability": "IMMUTABLE",
    "imageScanningConfiguration": {"scanOnPush": True},
}


class PublishError(RuntimeError):
    """A region could not be published."""


@dataclass
class RegionResult:
    region: str
    repository_uri: str | None = None
    repository: str = ""  # created | updated | unchanged | would create | would update
    image: str = ""  # pushed | present | would push | present (dry run)
    image_digest: str | None = None
    changes: list[str] = field(default_factory=list)
    error: str | None = None


class Docker:
    """The docker CLI (only login, tag, push and image inspect)."""

    def __init__(self, binary: str = "docker") -> None:
        self.binary = binary

    def run(self, *args: str, stdin: str | None = None) -> str:
        proc = subprocess.run([self.binary, *args], input=stdin, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise PublishError(
                f"docker {args[0]} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
            )
        return proc.stdout

    def image_exists(self, image: str) -> bool:
        try:
            self.run("image", "inspect", "--format", "{{.Id}}", image)
        except PublishError:
            return False
        return True

    def repo_digests(self, image: str) -> list[str]:
        out = self.run("image", "inspect", "--format", "{{json .RepoDigests}}", image).strip()
        return list(json.loads(out or "[]") or [])

    def login(self, registry: str, username: str, password: str) -> None:
        self.run("login", "--username", username, "--password-stdin", registry, stdin=password)

    def tag(self, source: str, target: str) -> None:
        self.run("tag", source, target)

    def push(self, target: str) -> None:
        self.run("push", target)


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def ensure_repository(ecr: Any, name: str, *, dry_run: bool) -> tuple[str, str | None, list[str]]:
    """Create or converge the repository; (action, repositoryUri or None, changes)."""
    try:
        repo = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    except Exception as exc:  # botocore ClientError
        if _error_code(exc) != "RepositoryNotFoundException":
            raise
        if dry_run:
            return "would create", None, ["create (scan-on-push, immutable tags)"]
        repo = ecr.create_repository(
            repositoryName=name,
            encryptionConfiguration={"encryptionType": "AES256"},
            **REPOSITORY_SETTINGS,
        )["repository"]
        return "created", repo["repositoryUri"], ["create (scan-on-push, immutable tags)"]

    changes: list[str] = []
    if repo.get("imageTagMutability") != "IMMUTABLE":
        changes.append("set imageTagMutability=IMMUTABLE")
        if not dry_run:
            ecr.put_image_tag_mutability(repositoryName=name, imageTagMutability="IMMUTABLE")
    if not repo.get("imageScanningConfiguration", {}).get("scanOnPush"):
        changes.append("enable scan-on-push")
        if not dry_run:
            ecr.put_image_scanning_configuration(repositoryName=name, imageScanningConfiguration={"scanOnPush": True})
    if not changes:
        return "unchanged", repo["repositoryUri"], changes
    return ("would update" if dry_run else "updated"), repo["repositoryUri"], changes


def remote_digest(ecr: Any, name: str, tag: str) -> str | None:
    """The image digest under ``tag``, or None when the tag (or repository) is absent."""
    try:
        details = ecr.describe_images(repositoryName=name, imageIds=[{"imageTag": tag}])["imageDetails"]
    except Exception as exc:
        if _error_code(exc) in {"ImageNotFoundException", "RepositoryNotFoundException"}:
            return None
        raise
    return details[0]["imageDigest"] if details else None


def registry_credentials(ecr: Any) -> tuple[str, str]:
    """(username, password) for ``docker login`` from GetAuthorizationToken."""
    data = ecr.get_authorization_token()["authorizationData"][0]
    username, password = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
    return username, password


def publish_region(
    session: Any,
    region: str,
    *,
    repository: str,
    tag: str,
    source_image: str,
    docker: Docker,
    dry_run: bool,
    endpoint_url: str | None = None,
    account_id: str | None = None,
) -> RegionResult:
    ecr = session.client("ecr", region_name=region, endpoint_url=endpoint_url)
    result = RegionResult(region=region)
    result.repository, uri, result.changes = ensure_repository(ecr, repository, dry_run=dry_run)
    if uri is None:  # dry run, repository missing: the URI it will have
        if account_id is None:
            sts = session.client("sts", region_name=region, endpoint_url=endpoint_url)
            account_id = sts.get_caller_identity()["Account"]
        uri = f"{account_id}.dkr.ecr.{region}.amazonaws.com/{repository}"
    result.repository_uri = uri
    target = f"{uri}:{tag}"

    digest = None if result.repository == "would create" else remote_digest(ecr, repository, tag)
    if digest is not None:
        result.image, result.image_digest = ("present (dry run)" if dry_run else "present"), digest
        if not dry_run:
            # If this host pushed the source before, its RepoDigests name the digest it
            # has in this repository: a different one means the tag holds another image.
            local = [d.split("@", 1)[1] for d in docker.repo_digests(source_image) if d.startswith(f"{uri}@")]
            if local and digest not in local:
                raise PublishError(
                    f"{target} already holds {digest}, not {source_image} ({', '.join(local)}); "
                    "tags are immutable: publish under a new tag"
                )
        return result
    if dry_run:
        result.image = "would push"
        return result

    registry = uri.split("/", 1)[0]
    username, password = registry_credentials(ecr)
    docker.login(registry, username, password)
    docker.tag(source_image, target)
    docker.push(target)
    result.image = "pushed"
    result.image_digest = remote_digest(ecr, repository, tag)
    if result.image_digest is None:
        raise PublishError(f"pushed {target} but DescribeImages does not list tag {tag!r}")
    return result


def publish(
    regions: list[str],
    *,
    repository: str,
    tag: str,
    source_image: str | None = None,
    dry_run: bool = False,
    docker: Docker | None = None,
    session: Any = None,
    endpoint_url: str | None = None,
    account_id: str | None = None,
    out: TextIO = sys.stdout,
) -> list[RegionResult]:
    """Publish to every region; results in region order (``error`` set on failure)."""
    if not regions:
        raise PublishError("no target regions")
    if session is None:
        import boto3

        session = boto3.session.Session()
    docker = docker or Docker()
    source_image = source_image or f"{repository}:{tag}"
    prefix = "[dry run] " if dry_run else ""
    if not dry_run and not docker.image_exists(source_image):
        raise PublishError(f"local image {source_image!r} not found: build it first (images/training/)")

    results = []
    for region in regions:
        try:
            res = publish_region(
                session,
                region,
                repository=repository,
                tag=tag,
                source_image=source_image,
                docker=docker,
                dry_run=dry_run,
                endpoint_url=endpoint_url,
                account_id=account_id,
            )
        except Exception as exc:  # report and go on with the other regions
            res = RegionResult(region=region, error=f"{type(exc).__name__}: {exc}")
            print(f"{prefix}{region}: FAILED: {res.error}", file=out)
        else:
            detail = f" ({'; '.join(res.changes)})" if res.changes else ""
            print(f"{prefix}{region}: repository {repository} {res.repository}{detail}", file=out)
            print(
                f"{prefix}{region}: image {source_image} -> {res.repository_uri}:{tag}: {res.image}"
                + (f" {res.image_digest}" if res.image_digest else ""),
                file=out,
            )
        results.append(res)
    return results


def parse_regions(values: list[str]) -> list[str]:
    regions: list[str] = []
    for value in values:
        for region in value.split(","):
            region = region.strip()
            if region and region not in regions:
                regions.append(region)
    return regions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="deploy.publish_training_image",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--repository",
        required=True,
        help="ECR repository name, the same in every region (mrt_training_image_repository)",
    )
    parser.add_argument("--tag", required=True, help="image tag (mrt_training_image_tag); immutable once pushed")
    parser.add_argument("--source-image", help="local image to push (default: <repository>:<tag>)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--regions", action="append", default=[], help="comma-separated regions (repeatable)")
    where.add_argument(
        "--campaign-dsn",
        default=None,
        help="campaign-metadata DSN: publish to its training-enabled regions "
        "(default: $CAMPAIGN_DB_DSN when --regions is not given)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print what would be done; change nothing")
    parser.add_argument("--docker", default="docker", help="docker CLI to use (default: docker)")
    parser.add_argument("--endpoint-url", default=None, help="AWS endpoint override (e.g. a moto server)")
    parser.add_argument(
        "--account-id", default=None, help="account id for URIs of repositories not created yet (dry run); default: STS"
    )
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args(argv)

    regions = parse_regions(args.regions)
    if not regions:
        dsn = args.campaign_dsn or os.environ.get("CAMPAIGN_DB_DSN")
        if not dsn:
            parser.error("give --regions or --campaign-dsn (or set CAMPAIGN_DB_DSN)")
        conn = campaign_targets.connect(dsn)
        try:
            regions = campaign_targets.regions(conn)
        finally:
            conn.close()
        if not regions:
            parser.error("the campaign database lists no training-enabled region")

    try:
        results = publish(
            regions,
            repository=args.repository,
            tag=args.tag,
            source_image=args.source_image,
            dry_run=args.dry_run,
            docker=Docker(args.docker),
            endpoint_url=args.endpoint_url,
            account_id=args.account_id,
        )
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    failed = [r.region for r in results if r.error]
    if failed:
        print(f"error: publishing failed in {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
