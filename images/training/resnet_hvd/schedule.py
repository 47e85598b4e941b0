"""Learning-rate schedules: linear warm-up, then poly, cosine or step decay.

The peak rate follows the linear scaling rule: ``learning_rate`` is the rate for a
global batch of 256 and is multiplied by ``global_batch / 256``, so adding GPUs (a
larger global batch) scales the rate with the world size; the warm-up ramps from
zero to that peak so the first steps with a large rate do not diverge.
"""

from __future__ import annotations

import math

import tensorflow as tf

SCHEDULES = ("poly", "cosine", "steps")


def peak_learning_rate(learning_rate: float, global_batch: int) -> float:
    """``learning_rate`` is per 256 images; scale it to ``global_batch``."""
    return learning_rate * global_batch / 256.0


class WarmupDecay(tf.keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up over ``warmup_steps``, then the chosen decay until ``total_steps``.

    ``poly``: ``peak * (1 - progress) ** power`` down to ``end_lr`` (the seed recipe,
    power 2). ``cosine``: half cosine down to ``end_lr``. ``steps``: multiply by 0.1
    at each step in ``boundaries`` (default: epochs 30, 60, 80 of 90).
    """

    def __init__(
        self,
        peak: float,
        total_steps: int,
        warmup_steps: int,
        kind: str = "poly",
        power: float = 2.0,
        end_lr: float = 1e-4,
        boundaries: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        if kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {kind!r}; choose from {SCHEDULES}")
        self.peak = float(peak)
        self.total_steps = max(int(total_steps), 1)
        self.warmup_steps = max(int(warmup_steps), 0)
        self.kind = kind
        self.power = float(power)
        self.end_lr = min(float(end_lr), self.peak)
        self.boundaries = tuple(int(b) for b in boundaries)

    def __call__(self, step: tf.Tensor) -> tf.Tensor:
        step = tf.cast(step, tf.float32)
        warm = tf.cast(self.warmup_steps, tf.float32)
        decay_len = tf.cast(max(self.total_steps - self.warmup_steps, 1), tf.float32)
        progress = tf.clip_by_value((step - warm) / decay_len, 0.0, 1.0)
        if self.kind == "poly":
            decayed = (self.peak - self.end_lr) * (1.0 - progress) ** self.power + self.end_lr
        elif self.kind == "cosine":
            cos = 0.5 * (1.0 + tf.cos(math.pi * progress))
            decayed = (self.peak - self.end_lr) * cos + self.end_lr
        else:
            decayed = tf.constant(self.peak, tf.float32)
            for boundary in self.boundaries:
                decayed = tf.where(step >= boundary, decayed * 0.1, decayed)
        # Ramp from peak/warmup_steps (not 0: step 0 would otherwise learn nothing).
        warmup = self.peak * (step + 1.0) / tf.maximum(warm, 1.0)
        return tf.where(step < warm, warmup, decayed)

    def get_config(self) -> dict:
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "kind": self.kind,
            "power": self.power,
            "end_lr": self.end_lr,
            "boundaries": self.boundaries,
        }
