"""The parts of the training loop that are not Horovod's: device placement, the step
plan and learning-rate schedule, images/sec accounting, the weights digest and the
model export. :mod:`.train` wires them around Horovod's calls."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from .contract import check_gpus, instance_gpus
from .schedule import WarmupDecay, peak_learning_rate


def place_devices(local_rank: int, local_size: int) -> list[Any]:
    """One GPU per process (local rank i drives GPU i of its host), or on CPU the cores
    shared between this host's ranks instead of oversubscribed. Fails (``GpuError``)
    when the instance has GPUs TensorFlow cannot use. Returns the GPUs seen."""
    gpus = tf.config.list_physical_devices("GPU")
    check_gpus(len(gpus), local_size, instance_gpus())
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    if gpus:
        tf.config.set_visible_devices(gpus[local_rank % len(gpus)], "GPU")
    else:
        threads = max(1, (os.cpu_count() or 1) // local_size)
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    return gpus


@dataclass(frozen=True)
class Plan:
    """Steps and learning rate, identical on every rank."""

    train_examples: int
    global_batch: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    peak_lr: float
    schedule: WarmupDecay


def plan(args: argparse.Namespace, train_examples: int, ranks: int) -> Plan:
    """Steps per epoch from the global batch (per-rank batch x ranks), and the warm-up +
    decay schedule to the peak rate scaled by that batch."""
    global_batch = args.batch_size * ranks
    steps_per_epoch = args.steps_per_epoch or max(1, train_examples // global_batch)
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
    return Plan(
        train_examples=train_examples,
        global_batch=global_batch,
        steps_per_epoch=steps_per_epoch,
        total_steps=args.max_steps or args.epochs * steps_per_epoch,
        warmup_steps=warmup_steps,
        peak_lr=peak,
        schedule=schedule,
    )


class Throughput:
    """images/sec over the timed window: from ``warmup`` steps after the (re)start (the
    first steps trace, compile and fill caches), checkpoint and validation time left out."""

    def __init__(self, start_step: int, warmup: int, global_batch: int) -> None:
        self.timed_from = start_step + warmup  # first step of the timed window
        self.global_batch = global_batch
        self.paused = 0.0  # checkpoint/validation seconds inside the timed window
        self.last_mark, self.last_mark_time, self.last_paused = start_step, time.perf_counter(), 0.0
        self.started: float | None = self.last_mark_time if start_step >= self.timed_from else None

    def stepped(self, current: int, loss: tf.Tensor) -> None:
        if current == self.timed_from:
            loss.numpy()  # wait for the step, so the window starts at a real boundary
            self.started = self.last_mark_time = time.perf_counter()
            self.last_mark, self.last_paused = current, self.paused

    def since_mark(self, current: int) -> float | None:
        """images/sec since the last call (``None`` before the timed window); marks."""
        if self.started is None:
            return None
        now = time.perf_counter()
        rate = None
        if current > self.last_mark:
            elapsed = now - self.last_mark_time - (self.paused - self.last_paused)
            rate = (current - self.last_mark) * self.global_batch / max(elapsed, 1e-9)
        self.last_mark, self.last_mark_time, self.last_paused = current, now, self.paused
        return rate

    @contextlib.contextmanager
    def pause(self) -> Iterator[None]:
        """Time spent inside is not training time."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.paused += time.perf_counter() - t0

    def mean(self, current: int) -> float | None:
        """images/sec over the whole timed window, ``None`` if it never started."""
        if self.started is None or current <= self.timed_from:
            return None
        elapsed = time.perf_counter() - self.started - self.paused
        return (current - self.timed_from) * self.global_batch / max(elapsed, 1e-9)


def write_weights_digest(directory: str, rank: int, step: int, variables: list[Any]) -> None:
    """Debug: a sha256 per trainable weight (tests compare the ranks' files)."""
    os.makedirs(directory, exist_ok=True)
    digest = {v.name: hashlib.sha256(v.numpy().tobytes()).hexdigest() for v in variables}
    with open(os.path.join(directory, f"rank{rank}.json"), "w") as f:
        json.dump({"step": step, "weights": digest}, f, indent=1)


def export_model(model: tf.keras.Model, sm_model_dir: str) -> str:
    """The SavedModel under ``SM_MODEL_DIR/1`` (TF Serving's layout)."""
    export = os.path.join(sm_model_dir, "1")
    model.save(export, include_optimizer=False, save_format="tf")
    return export
