"""Which local command stands in for which training image.

SageMaker pulls ``TrainingImage`` and runs its entry point; locally, the image's
repository name (account, region and tag ignored: the same image everywhere) maps to a
command run under the SageMaker container contract. The mapping is JSON:

    {"<repository>": {"command": ["python", "path/to/entry.py", "--checkpoint-dir", "{checkpoint_dir}"],
                      "horovodrun": ["path/to/horovodrun"],   # optional
                      "env": {"PYTHONPATH": "..."}}}          # optional

Placeholders in ``command``, ``horovodrun`` and ``env`` values are filled per job with
the job's own directories (``str.format`` fields; ``{{`` for a literal brace):

* ``{job_dir}``: the job's root (the ``/opt/ml`` tree is ``{job_dir}/opt/ml``);
* ``{ml_dir}``: the job's ``/opt/ml``;
* ``{model_dir}``, ``{output_dir}``, ``{input_dir}``, ``{checkpoint_dir}``: where the
  container's ``/opt/ml/model``, ``/opt/ml/output``, ``/opt/ml/input`` and the request's
  ``CheckpointConfig.LocalPath`` (default ``/opt/ml/checkpoints``) are for this job.

They exist because an entry point that defaults to an absolute container path (the
training image's ``--checkpoint-dir /opt/ml/checkpoints``) must be pointed at the job
directory locally, while the request's hyperparameters stay exactly what SageMaker gets.

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

#: The placeholders a command may use (see the module docstring).
PLACEHOLDERS = ("job_dir", "ml_dir", "model_dir", "output_dir", "input_dir", "checkpoint_dir")


@dataclass(frozen=True)
class LocalImage:
    command: list[str]
    horovodrun: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)

    def validate(self) -> LocalImage:
        """Fail at load time (not in the middle of a job) on a bad command or placeholder."""
        if not self.command or not all(isinstance(part, str) for part in self.command):
            raise ValueError(f"an image's command must be a non-empty list of strings, not {self.command!r}")
        blank = {name: "" for name in PLACEHOLDERS}
        for text in [*self.command, *(self.horovodrun or []), *self.env.values()]:
            _fill(text, blank)
        return self

    def render(self, dirs: dict[str, str]) -> LocalImage:
        """This image with its placeholders filled in from ``dirs``."""

        def fill(text: str) -> str:
            return _fill(text, dirs)

        return LocalImage(
            command=[fill(p) for p in self.command],
            horovodrun=[fill(p) for p in self.horovodrun] if self.horovodrun else None,
            env={k: fill(v) for k, v in self.env.items()},
        )


def _fill(text: str, dirs: dict[str, str]) -> str:
    try:
        return text.format(**dirs)
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(
            f"bad placeholder ({err}) in image map entry {text!r}; known: {', '.join(PLACEHOLDERS)}"
        ) from None


def repository_of(image_uri: str) -> str:
    match = _IMAGE.match(image_uri)
    if not match:
        raise ValueError(f"not an image URI: {image_uri!r}")
    return match.group("repository")


def load_image_map(path: str | os.PathLike[str] | None) -> dict[str, LocalImage]:
    if not path:
        return {}
    data = json.loads(Path(path).read_text())
    return {repo: LocalImage(**spec).validate() for repo, spec in data.items()}
