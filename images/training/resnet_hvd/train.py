"""ResNet-50 data-parallel training with Horovod (TF2), under SageMaker's container contract.

Contract (what SageMaker, or the local emulator, provides):

* hyperparameters arrive as ``--name value`` arguments, every value a string; both
  ``--batch-size`` and ``--batch_size`` spellings work; ``--sagemaker_*`` arguments
  (toolkit settings) are accepted and ignored, any other unknown argument is an error;
* training data at ``SM_CHANNEL_TRAIN``, optional validation data at
  ``SM_CHANNEL_VALIDATION`` (ImageNet-format TFRecords);
* the model goes to ``SM_MODEL_DIR`` as a SavedModel under ``1/`` (TF Serving's
  layout, loadable with ``tf.keras.models.load_model``);
* checkpoints under ``/opt/ml/checkpoints`` (``--checkpoint-dir``), which SageMaker syncs
  with ``checkpoint_s3_uri``, so a spot-interrupted job resumes where it stopped;
* hosts from ``SM_HOSTS`` / ``SM_CURRENT_HOST`` (logged; the Horovod world itself comes
  from the launcher: the toolkit's ``mpirun`` under SageMaker and the local emulator),
  checked against what the launch started (``OMPI_COMM_WORLD_SIZE``, hosts x processes
  per host): a mismatch fails the job instead of training N copies alone.

Horovod: one GPU per local rank, learning rate scaled by the global batch with
warm-up, gradients averaged by allreduce, initial state broadcast from rank 0,
metrics averaged over ranks; only rank 0 logs, checkpoints and saves the model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

IMAGENET_TRAIN_EXAMPLES = 1_281_167
IMAGENET_VALIDATION_EXAMPLES = 50_000

log = logging.getLogger("resnet_hvd")


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


class WorldSizeError(RuntimeError):
    """Horovod's world is not the one the launch started: ranks would train alone."""


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    import horovod
    import horovod.tensorflow as hvd
    import tensorflow as tf

    from . import data as data_mod
    from .checkpoint import Checkpointer
    from .metrics import format_metric_line
    from .model import build_model, l2_variables
    from .schedule import WarmupDecay, peak_learning_rate

    hvd.init()
    check_world_size(hvd.size(), hvd.mpi_built())
    rank, size, local_rank = hvd.rank(), hvd.size(), hvd.local_rank()
    chief = rank == 0
    logging.basicConfig(
        stream=sys.stdout,
        level=logging.INFO if chief else logging.WARNING,
        format=f"%(asctime)s rank{rank} %(levelname)s %(message)s",
    )

    # One GPU per process: local rank i drives GPU i of its host.
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    if gpus:
        tf.config.set_visible_devices(gpus[local_rank % len(gpus)], "GPU")
    else:
        # CPU: share the cores between this host's ranks instead of oversubscribing.
        threads = max(1, (os.cpu_count() or 1) // hvd.local_size())
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    # Different per rank on purpose: the broadcast below must make the weights agree.
    tf.random.set_seed(args.seed + rank)

    mixed = bool(gpus) if args.mixed_precision == "auto" else args.mixed_precision
    if mixed:
        tf.keras.mixed_precision.set_global_policy("mixed_float16")
    compute_dtype = tf.float16 if mixed else tf.float32

    hosts, current_host = sagemaker_hosts()
    log.info(
        "horovod size=%d (local %d) hosts=%s current_host=%s gpus_visible=%d "
        "mixed_precision=%s xla=%s tensorflow=%s horovod=%s",
        size, hvd.local_size(), hosts, current_host, len(gpus), mixed, args.xla,
        tf.__version__, horovod.__version__,
    )

    global_batch = args.batch_size * size

    def reduce_sum(values: list[float]) -> list[float]:
        return hvd.allreduce(tf.constant(values, tf.float64), op=hvd.Sum).numpy().tolist()

    def global_record_count(directory: str, given: int | None) -> int:
        """The records of ``directory`` over all ranks (``given`` when set, the same on
        every rank): each rank counts its shard, or only the chief when files are
        shared, and the allreduce makes the sum identical everywhere."""
        if given:
            return given
        mine, shared = data_mod.shard_files(data_mod.list_record_files(directory), rank, size)
        counted = data_mod.count_records(mine) if (not shared or chief) else 0
        return int(reduce_sum([counted])[0])

    # Steps per epoch: from the global record count, identical on every rank.
    if args.synthetic:
        n_train = args.num_train_examples or IMAGENET_TRAIN_EXAMPLES
    else:
        n_train = global_record_count(args.train_dir, args.num_train_examples)
    steps_per_epoch = args.steps_per_epoch or max(1, n_train // global_batch)
    total_steps = args.max_steps or args.epochs * steps_per_epoch
    warmup_steps = round(args.warmup_epochs * steps_per_epoch)
    peak = peak_learning_rate(args.learning_rate, global_batch)
    schedule = WarmupDecay(
        peak,
        total_steps=args.epochs * steps_per_epoch,
        warmup_steps=warmup_steps,
        kind=args.lr_schedule,
        power=args.lr_power,
        end_lr=args.end_learning_rate,
        boundaries=tuple(
            int(float(e) * steps_per_epoch) for e in args.lr_decay_epochs.split(",") if e.strip()
        ),
    )
    log.info(
        "train records=%d global_batch=%d steps_per_epoch=%d total_steps=%d "
        "peak_lr=%.5g warmup_steps=%d schedule=%s",
        n_train, global_batch, steps_per_epoch, total_steps, peak, warmup_steps,
        args.lr_schedule,
    )

    model = build_model(args.model, args.num_classes, args.image_size)
    optimizer: Any = tf.keras.optimizers.SGD(learning_rate=schedule, momentum=args.momentum)
    if mixed:
        optimizer = tf.keras.mixed_precision.LossScaleOptimizer(optimizer)
    # Create the slot variables now, so the checkpoint restores them and the broadcast
    # covers them (Keras would otherwise create them lazily on the first step).
    optimizer.build(model.trainable_variables)
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")

    checkpointer = Checkpointer(
        args.checkpoint_dir or None, chief, keep=args.keep_checkpoints,
        model=model, optimizer=optimizer, step=step,
    )
    restored = checkpointer.restore_latest()

    # Everything a rank's future depends on comes from rank 0: weights, BN statistics,
    # momentum, loss scale, iteration counts and the step.
    optimizer_variables = optimizer.variables
    if callable(optimizer_variables):
        optimizer_variables = optimizer_variables()
    hvd.broadcast_variables(list(model.variables) + list(optimizer_variables) + [step], 0)
    start_step = int(step.numpy())
    if restored:
        log.info("resumed from checkpoint %s at step %d", restored, start_step)
    else:
        log.info("no checkpoint found in %s: starting at step 0", args.checkpoint_dir or "-")

    if args.synthetic:
        train_ds = data_mod.synthetic_dataset(
            args.batch_size, args.image_size, args.num_classes, compute_dtype
        )
    else:
        train_ds = data_mod.tfrecord_dataset(
            args.train_dir, args.batch_size, args.image_size, rank, size, training=True,
            label_offset=args.label_offset, dtype=compute_dtype,
            min_crop_area=args.min_crop_area, seed=args.seed + rank + start_step,
        )
    val_ds, val_steps = None, 0
    if args.validation_dir and not args.synthetic:
        n_val = global_record_count(args.validation_dir, args.num_validation_examples)
        val_steps = max(1, n_val // global_batch)
        val_ds = iter(
            data_mod.tfrecord_dataset(
                args.validation_dir, args.batch_size, args.image_size, rank, size,
                training=False, label_offset=args.label_offset, dtype=compute_dtype,
            )
        )

    loss_fn = tf.keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=args.label_smoothing
    )
    decayed = l2_variables(model)
    trainable = model.trainable_variables
    compression = hvd.Compression.fp16 if args.fp16_allreduce else hvd.Compression.none
    # Per-interval sums on the device: loss (sum of batch means), correct, images, steps.
    totals = tf.Variable(tf.zeros([4], tf.float64), trainable=False)

    def _loss_and_correct(images: tf.Tensor, labels: tf.Tensor, training: bool):
        logits = model(images, training=training)
        loss = loss_fn(tf.one_hot(labels, args.num_classes), logits)
        correct = tf.reduce_sum(
            tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float64)
        )
        return loss, correct

    # XLA compiles the forward/backward pass only: Horovod's collectives stay outside the
    # compiled cluster (they are not XLA ops).
    @tf.function(jit_compile=args.xla)
    def forward_backward(images: tf.Tensor, labels: tf.Tensor):
        with tf.GradientTape() as tape:
            loss, correct = _loss_and_correct(images, labels, True)
            total = loss + args.weight_decay * tf.add_n([tf.nn.l2_loss(v) for v in decayed])
            scaled = optimizer.get_scaled_loss(total) if mixed else total
        return tape.gradient(scaled, trainable), loss, correct

    @tf.function
    def train_step(images: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        grads, loss, correct = forward_backward(images, labels)
        # Average the (still loss-scaled) gradients over ranks: every rank applies the
        # same update, which keeps the replicas identical.
        if size > 1:  # a single process has nothing to average (and skips the op's cost)
            grads = hvd.grouped_allreduce(grads, op=hvd.Average, compression=compression)
        if mixed:
            grads = optimizer.get_unscaled_gradients(grads)
        optimizer.apply_gradients(zip(grads, trainable, strict=False))
        step.assign_add(1)
        batch = tf.cast(tf.shape(labels)[0], tf.float64)
        totals.assign_add(tf.stack([tf.cast(loss, tf.float64), correct, batch, 1.0]))
        return loss

    @tf.function
    def eval_step(images: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        loss, correct = _loss_and_correct(images, labels, False)
        batch = tf.cast(tf.shape(labels)[0], tf.float64)
        return tf.stack([tf.cast(loss, tf.float64), correct, batch, 1.0])

    def read_totals() -> tuple[float, float]:
        """Loss and accuracy over the interval, averaged over all ranks; resets."""
        loss_sum, correct, images, steps = hvd.allreduce(totals, op=hvd.Sum).numpy()
        totals.assign(tf.zeros([4], tf.float64))
        return loss_sum / max(steps, 1.0), correct / max(images, 1.0)

    def validate() -> tuple[float, float]:
        acc = tf.zeros([4], tf.float64)
        for _ in range(val_steps):
            images, labels = next(val_ds)
            acc += eval_step(images, labels)
        loss_sum, correct, images, steps = hvd.allreduce(acc, op=hvd.Sum).numpy()
        return loss_sum / max(steps, 1.0), correct / max(images, 1.0)

    iterator = iter(train_ds)
    current = start_step
    timed_from = start_step + args.throughput_warmup_steps  # first step of the timed window
    timer_start: float | None = None  # wall time when the timed window started
    paused = 0.0  # checkpoint/validation seconds inside the timed window
    last_mark, last_mark_time, last_paused = current, time.perf_counter(), 0.0
    summary: dict[str, Any] = {"start_step": start_step, "resumed_from": restored}
    if current >= timed_from:
        timer_start = last_mark_time

    while current < total_steps:
        images, labels = next(iterator)
        loss = train_step(images, labels)
        current += 1
        if current == timed_from:
            loss.numpy()  # wait for the step, so the window starts at a real boundary
            timer_start = last_mark_time = time.perf_counter()
            last_mark, last_paused = current, paused
        epoch_end = current % steps_per_epoch == 0 or current == total_steps
        if current % args.log_every == 0 or epoch_end:
            train_loss, train_acc = read_totals()  # allreduce: also a sync point
            now = time.perf_counter()
            values: dict[str, Any] = {
                "step": current,
                "epoch": (current - 1) // steps_per_epoch + 1,
                "train_loss": float(train_loss),
                "train_accuracy": float(train_acc),
            }
            if timer_start is not None and current > last_mark:
                elapsed = now - last_mark_time - (paused - last_paused)
                values["images_per_sec"] = (current - last_mark) * global_batch / max(elapsed, 1e-9)
            if timer_start is not None:
                last_mark, last_mark_time, last_paused = current, now, paused
            if epoch_end and val_ds is not None:
                t0 = time.perf_counter()
                values["val_loss"], values["val_accuracy"] = (float(v) for v in validate())
                paused += time.perf_counter() - t0
            if chief:
                print(format_metric_line(**values), flush=True)
            summary.update(values)
        if epoch_end or (args.checkpoint_every and current % args.checkpoint_every == 0):
            t0 = time.perf_counter()
            path = checkpointer.save(current)
            paused += time.perf_counter() - t0
            if path:
                log.info("checkpoint saved at step %d: %s", current, path)

    if timer_start is not None and current > timed_from:
        elapsed = time.perf_counter() - timer_start - paused
        summary["mean_images_per_sec"] = (current - timed_from) * global_batch / max(elapsed, 1e-9)
        log.info(
            "throughput: %.1f images/sec over %d steps (global batch %d, after %d warm-up steps)",
            summary["mean_images_per_sec"], current - timed_from, global_batch,
            args.throughput_warmup_steps,
        )

    if args.weights_digest_dir:
        os.makedirs(args.weights_digest_dir, exist_ok=True)
        digest = {
            v.name: hashlib.sha256(v.numpy().tobytes()).hexdigest() for v in trainable
        }
        with open(os.path.join(args.weights_digest_dir, f"rank{rank}.json"), "w") as f:
            json.dump({"step": current, "weights": digest}, f, indent=1)

    if chief:
        export = os.path.join(args.sm_model_dir, "1")
        model.save(export, include_optimizer=False, save_format="tf")
        log.info("model saved to %s", export)
        if args.output_data_dir:
            os.makedirs(args.output_data_dir, exist_ok=True)
            summary.update({"final_step": current, "global_batch": global_batch, "ranks": size})
            with open(os.path.join(args.output_data_dir, "training_summary.json"), "w") as f:
                json.dump(summary, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
