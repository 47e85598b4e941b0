"""A stand-in training entry point for emulator runs without TensorFlow.

It honours the same contract as the real one (data at ``SM_CHANNEL_TRAIN``, model to
``SM_MODEL_DIR``, hyperparameters as ``--name value``, metric lines in the shared
format), takes a configurable few seconds, and fails if the channel holds no data.
Its "model" is a JSON file describing what it read; its loss falls with the steps.
Shards must start with :data:`SHARD_MAGIC` (as TFRecords have a framing the real entry
point checks): a corrupt shard fails the job, as ``DataLossError`` fails the real one.
On SIGTERM (StopTrainingJob, MaxRuntimeInSeconds) it does what SageMaker's docs ask of an
algorithm in its 120 s grace: saves the model so far (``"stopped": true``) and exits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

from regional_training.plan.metric_format import format_metric_line

SHARD_MAGIC = b"MRT-SAMPLE-SHARD-V1\n"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max_steps", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("MRT_FAKE_TRAINING_SECONDS", "2")))
    args, _ = parser.parse_known_args()

    channel = Path(os.environ["SM_CHANNEL_TRAIN"])
    files = sorted(p for p in channel.rglob("*") if p.is_file())
    if not files:
        print(f"ERROR: no training data in {channel}", file=sys.stderr)
        return 1
    for path in files:
        if not path.read_bytes().startswith(SHARD_MAGIC):
            print(f"DataLossError: corrupted record in {path.name}", file=sys.stderr)
            return 2
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()
    steps = max(1, min(args.max_steps, 20))
    stopped: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopped.append(signum))
    start = time.monotonic()
    done = 0
    for step in range(1, steps + 1):
        time.sleep(args.seconds / steps)
        if stopped:
            break
        done = step
        loss = 2.3 * math.exp(-step / steps)
        elapsed = time.monotonic() - start
        print(
            format_metric_line(
                step=step,
                epoch=1,
                train_loss=loss,
                train_accuracy=1 - loss / 2.3,
                images_per_sec=step * args.batch_size / elapsed,
            ),
            flush=True,
        )
    model_dir = Path(os.environ["SM_MODEL_DIR"])
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "model.json").write_text(json.dumps(
        {"data_sha256": digest, "files": len(files), "steps": done, **({"stopped": True} if stopped else {})},
        sort_keys=True,
    ))
    return 128 + signal.SIGTERM if stopped else 0


if __name__ == "__main__":
    sys.exit(main())
