"""Which local command stands in for which training image.

SageMaker pulls ``TrainingImage`` and runs its entry point; locally, the image's
repository name (account and region ignored: the same image everywhere) maps to a
command run under the SageMaker container contract. A key ``<repository>:<tag>`` maps
that one tag (a parameter scan's point may run another tag of the image) and wins over
the plain ``<repository>`` key, which maps every other tag. The mapping is JSON. Two
launches:

**Container launch** (``"container": true``; the production path, what the training
image gets): ``command`` is what SageMaker runs in the container (``docker run <image>
train``: the sagemaker-training toolkit's ``train``), with the image's ``env``. Each
emulated host runs it in a private mount (and PID) namespace where the host's own job
directory is bound onto ``/opt/ml``, and ``code`` (``{"<path in /opt/ml/code>":
"<local file or directory>"}``, the Dockerfile's ``COPY``s) is copied into
``/opt/ml/code``. The toolkit reads the hyperparameters from ``/opt/ml/input/config``
and starts ``mpirun`` itself. Needs root (``unshare``, ``mount``), OpenMPI and sshd:

    {"<repository>": {"container": true,
                      "command": ["/path/to/venv/bin/train"],
                      "code": {"train.py": "images/training/train.py"},
                      "env": {"SAGEMAKER_PROGRAM": "train.py", "PATH": "..."}}}

**Image launch** (``"container": true, "image": "<built image>"``): the container launch,
each host a real container of the image built by ``scripts/build_images.sh`` (podman;
``dev/local_aws/container.py``): ``command`` runs inside it (``["train"]``: the image's
toolkit), with the image's own ``/opt/ml/code`` and ``ENV`` (so no ``code``, no ``env``):

    {"<repository>": {"container": true, "image": "localhost/multi-region-training/training:cpu-<hash>",
                      "command": ["train"]}}

**Direct launch** (the default; for the stand-in entry point, which has no toolkit):
``command`` plus the hyperparameters as ``--name value`` and the ``SM_*`` environment.
``horovodrun`` (optional) is a *fallback* for machines without root: it runs the
command under ``horovodrun --gloo`` instead of the toolkit's ``mpirun``, a launch
SageMaker never uses, so nothing in CI uses it:

    {"<repository>": {"command": ["python", "path/to/entry.py", "--checkpoint-dir", "{checkpoint_dir}"],
                      "horovodrun": ["path/to/horovodrun"],   # optional fallback
                      "env": {"PYTHONPATH": "..."}}}          # optional

Placeholders in ``command``, ``horovodrun`` and ``env`` values are filled per job with
the job's own directories (``str.format`` fields; ``{{`` for a literal brace):

* ``{job_dir}``: the job's root (the ``/opt/ml`` tree is ``{job_dir}/opt/ml``);
* ``{ml_dir}``: the job's ``/opt/ml``;
* ``{model_dir}``, ``{output_dir}``, ``{input_dir}``, ``{checkpoint_dir}``: where the
  container's ``/opt/ml/model``, ``/opt/ml/output``, ``/opt/ml/input`` and the request's
  ``CheckpointConfig.LocalPath`` (default ``/opt/ml/checkpoints``) are for this job.

(Direct launch only: in the container launch the container paths are the real ones.)
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
    #: Run ``command`` as the container's command in a container-like /opt/ml (see above).
    container: bool = False
    #: Container launch: files copied into /opt/ml/code, by their path there.
    code: dict[str, str] = field(default_factory=dict)
    #: Container launch inside this built image (podman) instead of a namespace here.
    image: str | None = None

    def validate(self) -> LocalImage:
        """Fail at load time (not in the middle of a job) on a bad command or placeholder."""
        if not self.command or not all(isinstance(part, str) for part in self.command):
            raise ValueError(f"an image's command must be a non-empty list of strings, not {self.command!r}")
        if self.container and self.horovodrun:
            raise ValueError("a container launch runs the image's own launcher: drop 'horovodrun'")
        if self.image and not self.container:
            raise ValueError("'image' runs the container launch inside that image: set 'container': true")
        if self.image and self.code:
            raise ValueError("an image launch runs the image's own /opt/ml/code: drop 'code'")
        if self.code and not self.container:
            raise ValueError("'code' is copied into /opt/ml/code of a container launch: set 'container': true")
        for dest, source in self.code.items():
            if dest.startswith("/") or ".." in Path(dest).parts:
                raise ValueError(f"'code' key {dest!r} must be a relative path inside /opt/ml/code")
            if not Path(source).exists():
                raise ValueError(f"'code' source {source!r} (for /opt/ml/code/{dest}) does not exist")
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
            container=self.container,
            code=dict(self.code),
            image=self.image,
        )


def toolkit_image(train_python: str | os.PathLike[str], repo: str | os.PathLike[str]) -> dict[str, object]:
    """The training image's map entry: the built image when ``MRT_TRAINING_IMAGE`` names
    it (scripts/test.sh sets it: CI trains inside the image), else its container launch
    from the training venv (the named fallback where podman cannot run).

    What ``images/training/Dockerfile`` puts in the image, locally: the toolkit's ``train``
    (the venv's, from requirements/training-image.txt), the same ``COPY``s into
    ``/opt/ml/code`` and the same ``ENV`` (the venv first on ``PATH``, as ``/opt/venv/bin``
    is in the image); the image's ``pip install`` of the project's package is done to
    the venv too (``scripts/setup_training_env.sh``). Kept here, next to the launch
    that runs it, so the two agree.
    """
    built = os.environ.get("MRT_TRAINING_IMAGE")
    if built:
        # The image itself (scripts/build_images.sh printed its tag): what SageMaker runs.
        return {"container": True, "image": built, "command": ["train"]}
    python = Path(train_python)
    bin_dir = python.parent
    train = bin_dir / "train"
    if not os.access(python, os.X_OK):
        raise FileNotFoundError(f"training python {python} is not executable (scripts/setup_training_env.sh)")
    if not train.exists():
        raise FileNotFoundError(f"no sagemaker-training 'train' next to {python} (scripts/setup_training_env.sh)")
    root = Path(repo)
    return {
        "container": True,
        "command": [str(train)],
        "code": {
            "resnet_hvd": str(root / "images/training/resnet_hvd"),
            "train.py": str(root / "images/training/train.py"),
        },
        "env": {
            "PATH": f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "TF_CPP_MIN_LOG_LEVEL": "1",
            "OMPI_ALLOW_RUN_AS_ROOT": "1",
            "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
            "SAGEMAKER_PROGRAM": "train.py",
            "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/code",
            # A CPU instance: no GPU probing.
            "CUDA_VISIBLE_DEVICES": "",
        },
    }


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


def image_for(images: dict[str, LocalImage], image_uri: str) -> LocalImage:
    """The map's entry for ``image_uri``: its ``repository:tag`` key, else its
    repository's (``KeyError`` when neither is mapped)."""
    match = _IMAGE.match(image_uri)
    if not match:
        raise ValueError(f"not an image URI: {image_uri!r}")
    tagged = f"{match.group('repository')}:{match.group('tag')}" if match.group("tag") else None
    if tagged and tagged in images:
        return images[tagged]
    return images[match.group("repository")]


def load_image_map(path: str | os.PathLike[str] | None) -> dict[str, LocalImage]:
    if not path:
        return {}
    data = json.loads(Path(path).read_text())
    return {repo: LocalImage(**spec).validate() for repo, spec in data.items()}
