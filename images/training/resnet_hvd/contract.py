"""The SageMaker side of the entry point: arguments, environment, guards, outputs.

What SageMaker (or the local emulator) provides, and what the job must leave behind:

* hyperparameters arrive as ``--name value`` arguments, every value a string; both
  ``--batch-size`` and ``--batch_size`` spellings work; ``--sagemaker_*`` arguments
  (toolkit settings) are accepted and ignored, any other unknown argument is an error;
* training data at ``SM_CHANNEL_TRAIN``, optional validation data at
  ``SM_CHANNEL_VALIDATION`` (ImageNet-format TFRecords);
* the model goes to ``SM_MODEL_DIR`` as a SavedModel under ``1/`` (TF Serving's
  layout, loadable with ``tf.keras.models.load_model``); rank 0's figures to
  ``SM_OUTPUT_DATA_DIR/training_summary.json``;
* checkpoints under ``/opt/ml/checkpoints`` (``--checkpoint-dir``), which SageMaker syncs
  with ``checkpoint_s3_uri``, so a spot-interrupted job resumes where it stopped;
* hosts from ``SM_HOSTS`` / ``SM_CURRENT_HOST`` (logged; the Horovod world itself comes
  from the launcher), checked against what the launch started (``OMPI_COMM_WORLD_SIZE``,
  hosts x processes per host): a mismatch fails the job instead of training N copies;
* ``SM_NUM_GPUS`` (the toolkit counts the instance's GPUs with ``nvidia-smi``) checked
  against the GPUs TensorFlow sees: a GPU instance whose TensorFlow sees none would
  train on CPU for hours and report success;
* a failure the entry point detects itself is written to ``/opt/ml/output/failure``
  (``SM_OUTPUT_DIR``), whose first 1024 characters SageMaker returns as the job's
  ``FailureReason`` (the toolkit writes that file only when it does not exist yet:
  sagemaker_training/files.py ``write_failure_file``).

TensorFlow and Horovod are not imported here: the parser loads without them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from typing import Any

IMAGENET_TRAIN_EXAMPLES = 1_281_167
IMAGENET_VALIDATION_EXAMPLES = 50_000


def str2bool(value: str | bool) -> bool:
    """SageMaker passes booleans as strings ("True", "false", "1")."""
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "y", "on"):
        return True
    if lowered in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {value!r}")


def auto_bool(value: str | bool) -> str | bool:
    """``auto`` or a boolean."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    return str2bool(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="ResNet-50 data-parallel training with Horovod (SageMaker entry point).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False,  # a misspelt hyperparameter must fail, not match a prefix
    )

    def add(group: Any, name: str, **kwargs: Any) -> None:
        flags = [f"--{name}"]
        if "-" in name:
            flags.append(f"--{name.replace('-', '_')}")
        group.add_argument(*flags, dest=name.replace("-", "_"), **kwargs)

    def flag(group: Any, name: str, default: bool, help: str) -> None:
        add(group, name, type=str2bool, nargs="?", const=True, default=default, help=help)

    env = os.environ.get
    io = parser.add_argument_group("data and paths (SageMaker contract)")
    add(io, "train-dir", default=env("SM_CHANNEL_TRAIN"), help="TFRecords ($SM_CHANNEL_TRAIN)")
    add(io, "validation-dir", default=env("SM_CHANNEL_VALIDATION"),
        help="validation TFRecords ($SM_CHANNEL_VALIDATION); none: no validation")
    add(io, "sm-model-dir", default=env("SM_MODEL_DIR", "/opt/ml/model"),
        help="where the trained model is saved ($SM_MODEL_DIR)")
    add(io, "model_dir", default=None,
        help="accepted and ignored: the S3 path SageMaker's TensorFlow estimator passes")
    add(io, "output-data-dir", default=env("SM_OUTPUT_DATA_DIR"),
        help="where rank 0 writes training_summary.json ($SM_OUTPUT_DATA_DIR)")
    add(io, "checkpoint-dir", default="/opt/ml/checkpoints",
        help="checkpoints; resumed from on start; empty string disables")
    add(io, "checkpoint-every", type=int, default=1000,
        help="checkpoint every N steps (plus at every epoch end); 0: epoch ends only")
    add(io, "keep-checkpoints", type=int, default=3, help="checkpoints kept")
    flag(io, "synthetic", False, "random in-memory data (throughput runs, no input cost)")
    add(io, "num-train-examples", type=int, default=0,
        help="records in the train channel; 0: count them (reads all: pass 1281167 for "
        "ImageNet) or ImageNet's count with --synthetic")
    add(io, "num-validation-examples", type=int, default=0,
        help="records in the validation channel; 0: count them")
    add(io, "label-offset", type=int, default=1,
        help="subtracted from image/class/label (ImageNet TFRecords are 1-based)")
    add(io, "min-crop-area", type=float, default=0.08, help="random crop's smallest area")

    recipe = parser.add_argument_group("recipe")
    add(recipe, "model", default="resnet50", help="resnet50, resnet101, resnet18, resnet_tiny")
    add(recipe, "num-classes", type=int, default=1000)
    add(recipe, "image-size", type=int, default=224, help="training crop side in pixels")
    add(recipe, "epochs", type=int, default=90)
    add(recipe, "max-steps", type=int, default=0,
        help="stop after this many global steps (0: epochs x steps-per-epoch)")
    add(recipe, "steps-per-epoch", type=int, default=0,
        help="0: num-train-examples // global batch")
    add(recipe, "batch-size", type=int, default=256, help="per-GPU (per-rank) batch")
    add(recipe, "learning-rate", type=float, default=0.1,
        help="rate per 256 images; peak = learning-rate x batch-size x ranks / 256")
    add(recipe, "lr-schedule", default="poly", choices=("poly", "cosine", "steps"))
    add(recipe, "warmup-epochs", type=float, default=10.0,
        help="linear warm-up to the peak rate")
    add(recipe, "lr-power", type=float, default=2.0, help="poly decay power")
    add(recipe, "end-learning-rate", type=float, default=1e-4, help="poly/cosine final rate")
    add(recipe, "lr-decay-epochs", default="30,60,80", help="'steps' schedule: x0.1 at these")
    add(recipe, "momentum", type=float, default=0.9)
    add(recipe, "weight-decay", type=float, default=1e-4, help="L2 on conv/dense kernels")
    add(recipe, "label-smoothing", type=float, default=0.1)
    add(recipe, "mixed-precision", type=auto_bool, default="auto",
        help="float16 compute with dynamic loss scaling; auto: on when a GPU is present")
    flag(recipe, "xla", False, "XLA-compile the forward/backward pass")
    flag(recipe, "fp16-allreduce", False, "compress gradients to fp16 for the allreduce")
    add(recipe, "seed", type=int, default=0)

    obs = parser.add_argument_group("observability")
    add(obs, "log-every", type=int, default=100, help="metric line every N steps")
    add(obs, "throughput-warmup-steps", type=int, default=20,
        help="steps after (re)start excluded from images/sec (tracing, compile, cache fill)")
    add(obs, "weights-digest-dir", default=None,
        help="debug: every rank writes rank<N>.json, a sha256 per trainable weight, "
        "at the end (tests compare ranks)")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse; drop ``--sagemaker_*`` settings (and their values); fail on other extras."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    rest: list[str] = []
    i = 0
    while i < len(unknown):
        token = unknown[i]
        i += 1
        if token.startswith(("--sagemaker_", "--sagemaker-")):
            if "=" not in token and i < len(unknown) and not unknown[i].startswith("--"):
                i += 1  # its value
            continue
        rest.append(token)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if not args.synthetic and not args.train_dir:
        parser.error("no training data: set SM_CHANNEL_TRAIN or --train-dir, or --synthetic")
    return args


def sagemaker_hosts() -> tuple[list[str], str | None]:
    hosts = json.loads(os.environ.get("SM_HOSTS", "[]") or "[]")
    return hosts, os.environ.get("SM_CURRENT_HOST")


class JobFailure(RuntimeError):
    """A condition the entry point refuses to train under; its text is the job's
    ``FailureReason`` (written to ``/opt/ml/output/failure``)."""


class WorldSizeError(JobFailure):
    """Horovod's world is not the one the launch started: ranks would train alone."""


class GpuError(JobFailure):
    """The instance has GPUs that TensorFlow cannot use (driver/CUDA mismatch, too few
    visible for the ranks, or no XLA toolchain for ``--xla``)."""


def expected_world_sizes() -> dict[str, int]:
    """The world size each launcher in the environment says it started, by source.

    ``mpirun`` (SageMaker's launch, through the toolkit) gives every rank
    ``OMPI_COMM_WORLD_SIZE``; ``horovodrun`` gives ``HOROVOD_SIZE``; the toolkit's
    ``SM_FRAMEWORK_PARAMS`` + ``SM_HOSTS`` say hosts x processes per host for an MPI job.
    """
    found: dict[str, int] = {}
    for var in ("OMPI_COMM_WORLD_SIZE", "HOROVOD_SIZE"):
        if os.environ.get(var, "").strip().isdigit():
            found[var] = int(os.environ[var])
    try:
        framework = json.loads(os.environ.get("SM_FRAMEWORK_PARAMS") or "{}")
    except json.JSONDecodeError:
        framework = {}
    hosts, _ = sagemaker_hosts()
    if hosts and str(framework.get("sagemaker_mpi_enabled", "false")).lower() == "true":
        per_host = int(framework.get("sagemaker_mpi_num_of_processes_per_host") or 1)
        found["SM_HOSTS x sagemaker_mpi_num_of_processes_per_host"] = len(hosts) * per_host
    return found


def check_world_size(size: int, mpi_built: bool) -> None:
    """Fail (every rank) when ``hvd.size()`` differs from what the launch started.

    A Horovod built without MPI, run under ``mpirun``, initialises each rank alone
    (size 1): N independent trainings, one model overwritten N times, reported as
    success. This turns that into the job's failure, with the reason.
    """
    wrong = {source: n for source, n in expected_world_sizes().items() if n != size}
    if wrong:
        said = ", ".join(f"{source}={n}" for source, n in wrong.items())
        raise WorldSizeError(
            f"Horovod world size {size} differs from the launch's ({said}); Horovod "
            f"{'is' if mpi_built else 'is not'} built with MPI. Each rank would train on its own: "
            "stopping instead (the image needs Horovod with MPI, and mpi4py)."
        )


def instance_gpus() -> int:
    """The instance's GPUs as the toolkit counted them (``SM_NUM_GPUS``; 0 when unset)."""
    value = os.environ.get("SM_NUM_GPUS", "").strip()
    return int(value) if value.isdigit() else 0


def check_gpus(visible: int, local_processes: int, on_instance: int) -> None:
    """Fail when the instance has GPUs (``on_instance``) but TensorFlow sees none, or
    fewer than this host's ranks (one GPU per rank). A CPU instance (0) passes."""
    if on_instance <= 0:
        return
    if visible == 0:
        raise GpuError(
            f"the instance has {on_instance} GPU(s) (SM_NUM_GPUS) but TensorFlow sees none: "
            "the image's CUDA libraries do not load with this host's NVIDIA driver (or the "
            "CPU variant of the image was deployed). Stopping instead of training on CPU."
        )
    if visible < local_processes:
        raise GpuError(
            f"TensorFlow sees {visible} of the instance's {on_instance} GPU(s) (SM_NUM_GPUS) "
            f"for {local_processes} processes on this host: one GPU per process is needed "
            "(sagemaker_mpi_num_of_processes_per_host must not exceed the GPUs TensorFlow sees)."
        )


def xla_gpu_toolchain() -> list[str]:
    """What XLA on a GPU needs but cannot find: ``ptxas`` (on ``PATH`` or in the CUDA data
    dir's ``bin``) and ``nvvm/libdevice`` under ``--xla_gpu_cuda_data_dir`` (the image sets
    it to the nvcc wheel's directory). Empty when both are there."""
    data_dir = ""
    for flag in os.environ.get("XLA_FLAGS", "").split():
        if flag.startswith("--xla_gpu_cuda_data_dir="):
            data_dir = flag.split("=", 1)[1]
    missing = []
    if not shutil.which("ptxas") and not (data_dir and os.access(os.path.join(data_dir, "bin", "ptxas"), os.X_OK)):
        missing.append("ptxas")
    if not (data_dir and os.path.isdir(os.path.join(data_dir, "nvvm", "libdevice"))):
        missing.append("nvvm/libdevice (XLA_FLAGS=--xla_gpu_cuda_data_dir=<CUDA dir>)")
    return missing


def check_xla(xla: bool, gpus_visible: int) -> None:
    """Refuse ``--xla`` on GPUs without XLA's CUDA toolchain (it would fail at the first
    compiled step, after the job has been paid for its start-up)."""
    if xla and gpus_visible and (missing := xla_gpu_toolchain()):
        raise GpuError(f"--xla on GPU needs {' and '.join(missing)}, which this image lacks: drop --xla")


def write_failure(error: BaseException) -> None:
    """The job's ``FailureReason``: ``/opt/ml/output/failure`` (``SM_OUTPUT_DIR``), the
    first writer wins, as the toolkit does. Nothing when that directory does not exist
    (a run outside SageMaker's layout)."""
    directory = os.environ.get("SM_OUTPUT_DIR") or "/opt/ml/output"
    if not os.path.isdir(directory):
        return
    try:
        with open(os.path.join(directory, "failure"), "x") as f:
            f.write(f"{type(error).__name__}: {error}")
    except FileExistsError:
        pass  # another rank, or the launcher, said it first


def write_summary(output_data_dir: str | None, summary: dict[str, Any]) -> None:
    """Rank 0's figures to ``SM_OUTPUT_DATA_DIR/training_summary.json``."""
    if output_data_dir:
        os.makedirs(output_data_dir, exist_ok=True)
        with open(os.path.join(output_data_dir, "training_summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
