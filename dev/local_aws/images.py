"""Which local command stands in for which training image.

SageMaker pulls ``TrainingImage`` and runs its entry point; locally, the image's
repository name (account, region and tag ignored: the same image everywhere) maps to a
command run under the SageMaker container contract. The mapping is JSON:

    {"<repository>": {"command": ["python", "path/to/entry.py"],
                      "horovodrun": ["path/to/horovodrun"],   # optional
                      "env": {"PYTHONPATH": "..."}}}          # optional

An image not in the map fails its job, as SageMaker fails a job whose image it cannot
pull.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

_IMAGE = re.compile(r"^(?P<registry>[^/]+)/(?P<repository>[^:@]+)(?::(?P<tag>[^@]+))?(?:@.+)?$")


@dataclass(frozen=True)
class LocalImage:
    command: list[str]
    horovodrun: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)


def repository_of(image_uri: str) -> str:
    match = _IMAGE.match(image_uri)
    if not match:
        raise ValueError(f"not an image URI: {image_uri!r}")
    return match.group("repository")


def load_image_map(path: str | os.PathLike[str] | None) -> dict[str, LocalImage]:
    if not path:
        return {}
    data = json.loads(Path(path).read_text())
    return {repo: LocalImage(**spec) for repo, spec in data.items()}
