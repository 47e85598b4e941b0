"""Spot-safe checkpoints: model, optimizer (slots, loss scale, iterations) and step.

Only rank 0 writes; on start rank 0 restores the newest checkpoint and the caller then
broadcasts every variable from rank 0, so all ranks resume from the same state even
when each host has its own copy of the checkpoint directory (SageMaker syncs it to and
from ``checkpoint_s3_uri`` per host). TF writes a checkpoint's files before it updates
the ``checkpoint`` index file, so a job killed mid-save resumes from the previous one.
"""

from __future__ import annotations

import logging

import tensorflow as tf

log = logging.getLogger(__name__)


class Checkpointer:
    """Wraps ``tf.train.CheckpointManager``; every method is a no-op off rank 0."""

    def __init__(
        self,
        directory: str | None,
        is_chief: bool,
        keep: int = 3,
        **objects: tf.Module | tf.Variable | tf.keras.Model,
    ) -> None:
        self.directory = directory
        self.is_chief = is_chief
        self.checkpoint = tf.train.Checkpoint(**objects)
        self.manager = (
            tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=keep)
            if directory and is_chief
            else None
        )

    def restore_latest(self) -> str | None:
        """Restore the newest checkpoint (rank 0); return its path, or None."""
        if self.manager is None or not self.manager.latest_checkpoint:
            return None
        path = self.manager.latest_checkpoint
        # Every saved object must match (assert_existing_objects_matched): a checkpoint
        # of another model or optimizer must fail loudly, not half-restore.
        self.checkpoint.restore(path).assert_existing_objects_matched()
        return path

    def save(self, step: int) -> str | None:
        """Write a checkpoint numbered ``step`` (rank 0); return its path."""
        if self.manager is None:
            return None
        return self.manager.save(checkpoint_number=step)
