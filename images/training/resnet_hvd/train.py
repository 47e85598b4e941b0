"""ResNet-50 data-parallel training with Horovod (TF2), shaped like Horovod's TF2 example
(``examples/tensorflow2/tensorflow2_mnist.py``): :func:`train` with ``# Horovod:`` at each
Horovod step; the SageMaker contract (arguments, environment, guards, failure file) is
:mod:`.contract`, the non-Horovod loop parts :mod:`.loop`.

Horovod: one GPU per local rank, learning rate scaled by the global batch with
warm-up, gradients averaged by allreduce, initial state broadcast from rank 0,
metrics averaged over ranks; only rank 0 logs, checkpoints and saves the model.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

# Re-exported: the entry point's parser and guards, as tests and regional_training's
# strict_params reach them through this module.
from .contract import (
    IMAGENET_TRAIN_EXAMPLES,
    IMAGENET_VALIDATION_EXAMPLES,
    GpuError,
    JobFailure,
    WorldSizeError,
    auto_bool,
    build_parser,
    check_world_size,
    expected_world_sizes,
    parse_args,
    sagemaker_hosts,
    str2bool,
    write_failure,
    write_summary,
)

__all__ = [
    "IMAGENET_TRAIN_EXAMPLES", "IMAGENET_VALIDATION_EXAMPLES", "GpuError", "JobFailure", "WorldSizeError",
    "auto_bool", "build_parser", "check_world_size", "expected_world_sizes", "main", "parse_args",
    "sagemaker_hosts", "str2bool", "train",
]

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

log = logging.getLogger("resnet_hvd")


def main(argv: list[str] | None = None) -> int:
    """SageMaker's entry: arguments in, training, a refusal written as ``FailureReason``."""
    args = parse_args(argv)
    try:
        train(args)
    except JobFailure as err:
        write_failure(err)
        raise
    return 0


def train(args: argparse.Namespace) -> dict[str, Any]:
    import horovod
    import horovod.tensorflow as hvd
    import tensorflow as tf

    from . import loop
    from .checkpoint import Checkpointer
    from .contract import check_xla
    from .metrics import format_metric_line
    from .model import build_model

    # Horovod: initialize Horovod, and refuse a world the launch did not start.
    hvd.init()
    check_world_size(hvd.size(), hvd.mpi_built())
    rank, size = hvd.rank(), hvd.size()
    chief = rank == 0
    logging.basicConfig(
        stream=sys.stdout,
        level=logging.INFO if chief else logging.WARNING,
        format=f"%(asctime)s rank{rank} %(levelname)s %(message)s",
    )

    # Horovod: pin the GPU used by this process to its local rank (checks the GPUs).
    gpus = loop.place_devices(hvd.local_rank(), hvd.local_size())
    check_xla(args.xla, len(gpus))
    # Different per rank on purpose: the broadcast below must make the weights agree.
    tf.random.set_seed(args.seed + rank)
    mixed = bool(gpus) if args.mixed_precision == "auto" else args.mixed_precision
    if mixed:
        tf.keras.mixed_precision.set_global_policy("mixed_float16")
    dtype = tf.float16 if mixed else tf.float32
    hosts, current_host = sagemaker_hosts()
    log.info(
        "horovod size=%d (local %d) hosts=%s current_host=%s gpus_visible=%d "
        "mixed_precision=%s xla=%s tensorflow=%s horovod=%s",
        size, hvd.local_size(), hosts, current_host, len(gpus), mixed, args.xla,
        tf.__version__, horovod.__version__,
    )

    # Horovod: steps per epoch from the global batch; peak learning rate scaled by it.
    n_train = _record_count(args.train_dir, args.num_train_examples, args.synthetic)
    plan = loop.plan(args, n_train, size)
    log.info(
        "train records=%d global_batch=%d steps_per_epoch=%d total_steps=%d "
        "peak_lr=%.5g warmup_steps=%d schedule=%s",
        n_train, plan.global_batch, plan.steps_per_epoch, plan.total_steps, plan.peak_lr,
        plan.warmup_steps, args.lr_schedule,
    )

    model = build_model(args.model, args.num_classes, args.image_size)
    optimizer: Any = tf.keras.optimizers.SGD(learning_rate=plan.schedule, momentum=args.momentum)
    if mixed:
        optimizer = tf.keras.mixed_precision.LossScaleOptimizer(optimizer)
    # Slot variables now, so the checkpoint restores them and the broadcast covers them.
    optimizer.build(model.trainable_variables)
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")

    # Horovod: only rank 0 reads and writes checkpoints...
    checkpointer = Checkpointer(
        args.checkpoint_dir or None, chief, keep=args.keep_checkpoints,
        model=model, optimizer=optimizer, step=step,
    )
    restored = checkpointer.restore_latest()
    # Horovod: ...and broadcasts every variable (weights, BN statistics, momentum, loss
    # scale, iterations, the step) from rank 0, so all ranks start from the same state.
    hvd.broadcast_variables(list(model.variables) + _variables(optimizer) + [step], root_rank=0)
    start = int(step.numpy())
    if restored:
        log.info("resumed from checkpoint %s at step %d", restored, start)
    else:
        log.info("no checkpoint found in %s: starting at step 0", args.checkpoint_dir or "-")

    # Horovod: each rank reads its own shard of the files (data.py).
    train_ds = _dataset(args, args.train_dir, True, dtype, seed=args.seed + rank + start)
    val_ds: Any = None
    val_steps = 0
    if args.validation_dir and not args.synthetic:
        val_steps = max(1, _record_count(args.validation_dir, args.num_validation_examples) // plan.global_batch)
        val_ds = iter(_dataset(args, args.validation_dir, False, dtype))

    train_step, eval_step, totals = _steps(args, model, optimizer, step, mixed)

    def interval_metrics() -> tuple[float, float]:
        """Loss and accuracy since the last call, averaged over all ranks; resets."""
        # Horovod: sum the per-rank totals (also a sync point for the timing).
        loss_sum, correct, images, steps = hvd.allreduce(totals, op=hvd.Sum).numpy()
        totals.assign(tf.zeros([4], tf.float64))
        return loss_sum / max(steps, 1.0), correct / max(images, 1.0)

    def validate() -> tuple[float, float]:
        acc = tf.zeros([4], tf.float64)
        for _ in range(val_steps):
            acc += eval_step(*next(val_ds))
        # Horovod: the validation figures over every rank's shard.
        loss_sum, correct, images, steps = hvd.allreduce(acc, op=hvd.Sum).numpy()
        return loss_sum / max(steps, 1.0), correct / max(images, 1.0)

    iterator = iter(train_ds)
    clock = loop.Throughput(start, args.throughput_warmup_steps, plan.global_batch)
    summary: dict[str, Any] = {"start_step": start, "resumed_from": restored}
    current = start
    while current < plan.total_steps:
        loss = train_step(*next(iterator))
        current += 1
        clock.stepped(current, loss)
        epoch_end = current % plan.steps_per_epoch == 0 or current == plan.total_steps
        if current % args.log_every == 0 or epoch_end:
            train_loss, train_acc = interval_metrics()
            values: dict[str, Any] = {
                "step": current,
                "epoch": (current - 1) // plan.steps_per_epoch + 1,
                "train_loss": float(train_loss),
                "train_accuracy": float(train_acc),
            }
            if (rate := clock.since_mark(current)) is not None:
                values["images_per_sec"] = rate
            if epoch_end and val_ds is not None:
                with clock.pause():
                    values["val_loss"], values["val_accuracy"] = (float(v) for v in validate())
            # Horovod: only rank 0 prints the metric line.
            if chief:
                # One write, newline included: with unbuffered stdout (the image sets
                # PYTHONUNBUFFERED) print() writes the line and its end separately, and
                # mpirun tags each chunk it reads, so the newline came out as its own
                # "[1,0]<stdout>:" line glued to the metric line's last value.
                sys.stdout.write(format_metric_line(**values) + "\n")
                sys.stdout.flush()
            summary.update(values)
        if epoch_end or (args.checkpoint_every and current % args.checkpoint_every == 0):
            # Horovod: checkpoints on rank 0 only (a no-op on the others).
            with clock.pause():
                path = checkpointer.save(current)
            if path:
                log.info("checkpoint saved at step %d: %s", current, path)

    if (mean := clock.mean(current)) is not None:
        summary["mean_images_per_sec"] = mean
        log.info(
            "throughput: %.1f images/sec over %d steps (global batch %d, after %d warm-up steps)",
            mean, current - clock.timed_from, plan.global_batch, args.throughput_warmup_steps,
        )
    if args.weights_digest_dir:
        loop.write_weights_digest(args.weights_digest_dir, rank, current, model.trainable_variables)
    # Horovod: save the model only on rank 0, so other ranks cannot corrupt it.
    if chief:
        log.info("model saved to %s", loop.export_model(model, args.sm_model_dir))
        summary.update({"final_step": current, "global_batch": plan.global_batch, "ranks": size})
        write_summary(args.output_data_dir, summary)
    return summary


def _steps(args: argparse.Namespace, model: Any, optimizer: Any, step: Any, mixed: bool) -> tuple[Any, Any, Any]:
    """The compiled train and eval steps, and the per-interval device totals they add
    to (loss as a sum of batch means, correct, images, steps)."""
    import horovod.tensorflow as hvd
    import tensorflow as tf

    from .model import l2_variables

    loss_fn = tf.keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=args.label_smoothing)
    decayed = l2_variables(model)
    trainable = model.trainable_variables
    compression = hvd.Compression.fp16 if args.fp16_allreduce else hvd.Compression.none
    totals = tf.Variable(tf.zeros([4], tf.float64), trainable=False)

    def loss_and_correct(images: tf.Tensor, labels: tf.Tensor, training: bool) -> tuple[tf.Tensor, tf.Tensor]:
        logits = model(images, training=training)
        loss = loss_fn(tf.one_hot(labels, args.num_classes), logits)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float64))
        return loss, correct

    # XLA compiles the forward/backward pass only: Horovod's collectives stay outside the
    # compiled cluster (they are not XLA ops).
    @tf.function(jit_compile=args.xla)
    def forward_backward(images: tf.Tensor, labels: tf.Tensor) -> tuple[Any, tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            loss, correct = loss_and_correct(images, labels, True)
            total = loss + args.weight_decay * tf.add_n([tf.nn.l2_loss(v) for v in decayed])
            scaled = optimizer.get_scaled_loss(total) if mixed else total
        return tape.gradient(scaled, trainable), loss, correct

    @tf.function
    def train_step(images: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        grads, loss, correct = forward_backward(images, labels)
        # Horovod: average the (still loss-scaled) gradients over ranks, so every rank
        # applies the same update; a single process has nothing to average.
        if hvd.size() > 1:
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
        loss, correct = loss_and_correct(images, labels, False)
        batch = tf.cast(tf.shape(labels)[0], tf.float64)
        return tf.stack([tf.cast(loss, tf.float64), correct, batch, 1.0])

    return train_step, eval_step, totals


def _record_count(directory: str | None, given: int, synthetic: bool = False) -> int:
    """The records of ``directory`` over all ranks (``given`` when set, the same on every
    rank; ImageNet's count for synthetic data): each rank counts its shard, or only rank
    0 when files are shared, and the allreduce makes the sum identical everywhere."""
    if given:
        return given
    if synthetic:
        return IMAGENET_TRAIN_EXAMPLES
    import horovod.tensorflow as hvd
    import tensorflow as tf

    from . import data

    assert directory is not None  # parse_args: no --train-dir without --synthetic
    mine, shared = data.shard_files(data.list_record_files(directory), hvd.rank(), hvd.size())
    counted = data.count_records(mine) if (not shared or hvd.rank() == 0) else 0
    return int(hvd.allreduce(tf.constant([counted], tf.float64), op=hvd.Sum).numpy()[0])


def _dataset(args: argparse.Namespace, directory: str | None, training: bool, dtype: Any, seed: int = 0) -> Any:
    """Synthetic batches, or this rank's shard of ``directory``'s TFRecords."""
    import horovod.tensorflow as hvd

    from . import data

    if args.synthetic:
        return data.synthetic_dataset(args.batch_size, args.image_size, args.num_classes, dtype)
    assert directory is not None
    if training:
        return data.tfrecord_dataset(
            directory, args.batch_size, args.image_size, hvd.rank(), hvd.size(), training=True,
            label_offset=args.label_offset, dtype=dtype, min_crop_area=args.min_crop_area, seed=seed,
        )
    return data.tfrecord_dataset(
        directory, args.batch_size, args.image_size, hvd.rank(), hvd.size(),
        training=False, label_offset=args.label_offset, dtype=dtype,
    )


def _variables(optimizer: Any) -> list[Any]:
    """The optimizer's variables (a property in Keras 2.15's new optimizers, a method in
    older ones)."""
    variables = optimizer.variables
    return list(variables() if callable(variables) else variables)


if __name__ == "__main__":
    sys.exit(main())
