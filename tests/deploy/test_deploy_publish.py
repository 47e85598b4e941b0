"""deploy/publish_training_image.py against a moto server (never real AWS)."""

from __future__ import annotations

import base64
import io
import subprocess
import sys

import boto3
import pytest

from deploy import publish_training_image as pub

SEED_REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1"]
REPO = "multi-region-training/resnet50-horovod"
TAG = "0.1.0"
ACCOUNT = "123456789012"  # moto's default account


def _repo(region: str) -> dict:
    ecr = boto3.client("ecr", region_name=region)
    return ecr.describe_repositories(repositoryNames=[REPO])["repositories"][0]


def _tags(region: str) -> list[str]:
    ecr = boto3.client("ecr", region_name=region)
    images = ecr.describe_images(repositoryName=REPO)["imageDetails"]
    return sorted(t for image in images for t in image.get("imageTags", []))


def _publish(fake_docker, regions=SEED_REGIONS, **kw):
    out = io.StringIO()
    results = pub.publish(regions, repository=REPO, tag=TAG, docker=pub.Docker(str(fake_docker.path)), out=out, **kw)
    return results, out.getvalue()


def test_creates_repositories_in_every_region_and_pushes(aws, fake_docker):
    results, out = _publish(fake_docker)

    assert [r.region for r in results] == SEED_REGIONS
    assert all(r.error is None for r in results), out
    for region, res in zip(SEED_REGIONS, results, strict=True):
        repo = _repo(region)
        assert repo["imageTagMutability"] == "IMMUTABLE"
        assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
        assert repo["repositoryUri"] == f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{REPO}"
        assert (res.repository, res.image) == ("created", "pushed")
        assert res.image_digest and res.image_digest.startswith("sha256:")
        assert _tags(region) == [TAG]
    # Only the target regions got a repository.
    assert boto3.client("ecr", region_name="ap-south-1").describe_repositories()["repositories"] == []

    # docker: log in to each regional registry with the ECR token, tag, push.
    token = boto3.client("ecr", region_name="us-east-1").get_authorization_token()
    password = base64.b64decode(token["authorizationData"][0]["authorizationToken"]).decode().split(":", 1)[1]
    logins = [c for c in fake_docker.calls() if c["args"][0] == "login"]
    assert [c["args"][-1] for c in logins] == [f"{ACCOUNT}.dkr.ecr.{r}.amazonaws.com" for r in SEED_REGIONS]
    assert all(c["args"][1:3] == ["--username", "AWS"] and c["stdin"] == password for c in logins)
    targets = [f"{ACCOUNT}.dkr.ecr.{r}.amazonaws.com/{REPO}:{TAG}" for r in SEED_REGIONS]
    assert fake_docker.commands("tag") == [["tag", f"{REPO}:{TAG}", t] for t in targets]
    assert fake_docker.commands("push") == [["push", t] for t in targets]
    # The password never appears on a command line.
    assert all(password not in " ".join(c["args"]) for c in fake_docker.calls())


def test_second_run_is_idempotent(aws, fake_docker):
    first, _ = _publish(fake_docker)
    digests = {r.region: r.image_digest for r in first}
    pushes_before = len(fake_docker.commands("push"))

    second, out = _publish(fake_docker)

    assert all(r.error is None for r in second), out
    assert [(r.repository, r.image) for r in second] == [("unchanged", "present")] * len(SEED_REGIONS)
    assert {r.region: r.image_digest for r in second} == digests
    assert len(fake_docker.commands("push")) == pushes_before  # nothing pushed again
    assert fake_docker.commands("login") == fake_docker.commands("login")[: len(SEED_REGIONS)]
    for region in SEED_REGIONS:
        assert _tags(region) == [TAG]
        assert len(boto3.client("ecr", region_name=region).describe_repositories()["repositories"]) == 1


def test_existing_mutable_repository_is_converged(aws, fake_docker):
    ecr = boto3.client("ecr", region_name="eu-west-1")
    ecr.create_repository(
        repositoryName=REPO, imageTagMutability="MUTABLE", imageScanningConfiguration={"scanOnPush": False}
    )

    results, out = _publish(fake_docker, regions=["eu-west-1"])

    assert results[0].repository == "updated", out
    assert set(results[0].changes) == {"set imageTagMutability=IMMUTABLE", "enable scan-on-push"}
    repo = _repo("eu-west-1")
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}


def test_dry_run_changes_nothing_and_runs_no_docker(aws, fake_docker):
    boto3.client("ecr", region_name="us-west-2").create_repository(
        repositoryName=REPO, imageTagMutability="IMMUTABLE", imageScanningConfiguration={"scanOnPush": True}
    )

    results, out = _publish(fake_docker, dry_run=True)

    assert fake_docker.calls() == []
    by_region = {r.region: r for r in results}
    assert (by_region["us-west-2"].repository, by_region["us-west-2"].image) == ("unchanged", "would push")
    for region in ("us-east-1", "eu-west-1", "eu-central-1"):
        assert (by_region[region].repository, by_region[region].image) == ("would create", "would push")
        assert by_region[region].repository_uri == f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{REPO}"
        assert boto3.client("ecr", region_name=region).describe_repositories()["repositories"] == []
        assert f"[dry run] {region}: repository {REPO} would create" in out
    assert _tags("us-west-2") == []


def test_missing_local_image_fails_before_any_aws_change(aws, fake_docker, monkeypatch):
    monkeypatch.setenv("FAKE_DOCKER_MISSING", f"{REPO}:{TAG}")
    with pytest.raises(pub.PublishError, match="not found"):
        _publish(fake_docker)
    assert boto3.client("ecr", region_name="us-east-1").describe_repositories()["repositories"] == []


def test_failing_region_is_reported_and_others_still_published(aws, fake_docker, monkeypatch):
    monkeypatch.setenv("FAKE_DOCKER_FAIL_PUSH", "eu-west-1")
    results, out = _publish(fake_docker, regions=["us-east-1", "eu-west-1", "eu-central-1"])
    errors = {r.region: r.error for r in results}
    assert errors["us-east-1"] is None and errors["eu-central-1"] is None
    assert errors["eu-west-1"] and "docker push failed" in errors["eu-west-1"]
    assert "eu-west-1: FAILED" in out
    assert _tags("us-east-1") == [TAG] and _tags("eu-central-1") == [TAG] and _tags("eu-west-1") == []
    # The CLI exits non-zero when a region failed.
    real_docker = pub.Docker
    monkeypatch.setattr(pub, "Docker", lambda binary: real_docker(str(fake_docker.path)))
    code = pub.main(["--repository", REPO, "--tag", TAG, "--regions", "eu-west-1,us-east-1"])
    assert code == 1


def test_cli_end_to_end_with_regions_flag(aws, fake_docker, repo_root):
    cmd = [
        sys.executable,
        "-m",
        "deploy.publish_training_image",
        "--repository",
        REPO,
        "--tag",
        TAG,
        "--regions",
        "us-east-1,eu-central-1",
        "--docker",
        str(fake_docker.path),
        "--endpoint-url",
        aws,
        "--json",
    ]
    first = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, check=False, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "us-east-1: image" in first.stdout and "pushed" in first.stdout
    second = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, check=False, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "pushed" not in second.stdout and second.stdout.count(": present") == 2
    assert _tags("eu-central-1") == [TAG]


def test_cli_requires_a_region_source(monkeypatch):
    monkeypatch.delenv("CAMPAIGN_DB_DSN", raising=False)
    with pytest.raises(SystemExit) as exc:
        pub.main(["--repository", REPO, "--tag", TAG, "--dry-run"])
    assert exc.value.code == 2


def test_parse_regions_dedups_and_splits():
    assert pub.parse_regions(["us-east-1, us-west-2", "us-east-1", "eu-west-1"]) == [
        "us-east-1",
        "us-west-2",
        "eu-west-1",
    ]
