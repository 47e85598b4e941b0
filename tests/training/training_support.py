"""Constants and helpers shared by the training tests (imported by conftest and tests).

A module of its own, not ``conftest``: other test directories have a ``conftest`` too,
and ``from conftest import ...`` could pick up theirs.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRAINING_DIR = ROOT / "images" / "training"
ENTRY_POINT = TRAINING_DIR / "train.py"

#: Tiny recipe: trains on 2 CPU cores in seconds (fp32: float16 is slow on CPUs).
TINY_RECIPE = [
    "--model", "resnet_tiny",
    "--num-classes", "4",
    "--image-size", "32",
    "--learning-rate", "0.5",
    "--warmup-epochs", "0.5",
    "--label-smoothing", "0.0",
    "--mixed-precision", "false",
    "--throughput-warmup-steps", "2",
]


def train_env(**extra: str) -> dict[str, str]:
    """Environment for a training subprocess: unbuffered, quiet TF, the package importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env.update(
        PYTHONUNBUFFERED="1",
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONPATH=str(TRAINING_DIR),
    )
    env.update(extra)
    return env
