"""Fixtures for the deployment tests: repo paths, a moto server, a fake docker CLI.

Never real AWS: every test that talks to AWS goes to a moto server on 127.0.0.1 with
dummy credentials.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture()
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Dummy credentials and a clean moto server; yields its endpoint URL."""
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    req = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")  # noqa: S310
    urllib.request.urlopen(req, timeout=10).close()  # noqa: S310 (our local moto server)
    return moto_endpoint


FAKE_DOCKER = r'''#!{python}
"""Stands in for the docker CLI: logs each call; `push` stores the image in (moto) ECR."""
import hashlib, json, os, re, sys

args = sys.argv[1:]
stdin = sys.stdin.read() if "--password-stdin" in args else None
with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
    log.write(json.dumps({{"args": args, "stdin": stdin}}) + "\n")

missing = set(filter(None, os.environ.get("FAKE_DOCKER_MISSING", "").split(",")))
if args[:2] == ["image", "inspect"]:
    image = args[-1]
    if image in missing:
        sys.stderr.write("Error: No such image: %s\n" % image)
        sys.exit(1)
    fmt = args[args.index("--format") + 1]
    print("[]" if "RepoDigests" in fmt else "sha256:" + hashlib.sha256(image.encode()).hexdigest())
elif args[0] == "push":
    m = re.fullmatch(r"(\d+)\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com/(.+):([^:/]+)", args[1])
    if not m:
        sys.stderr.write("fake docker: unexpected push target %s\n" % args[1])
        sys.exit(2)
    _, region, repo, tag = m.groups()
    if region in os.environ.get("FAKE_DOCKER_FAIL_PUSH", "").split(","):
        sys.stderr.write("denied: requested access to the resource is denied\n")
        sys.exit(1)
    import boto3
    manifest = json.dumps({{
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {{"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7,
                    "digest": "sha256:" + hashlib.sha256(b"config").hexdigest()}},
        "layers": [],
    }})
    boto3.client("ecr", region_name=region).put_image(
        repositoryName=repo, imageManifest=manifest, imageTag=tag)
'''


class FakeDocker:
    def __init__(self, path: Path, log: Path) -> None:
        self.path, self.log = path, log

    def calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def commands(self, name: str) -> list[list[str]]:
        return [c["args"] for c in self.calls() if c["args"][0] == name]


@pytest.fixture()
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDocker:
    path = tmp_path / "docker"
    path.write_text(FAKE_DOCKER.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "docker-calls.jsonl"
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(log))
    return FakeDocker(path, log)
