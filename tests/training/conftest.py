"""Fixtures for the training-image tests: the training venv and generated sample data.

These tests run in the Airflow venv (no TensorFlow) and drive the training venv through
subprocesses: its python comes from ``MRT_TRAIN_PYTHON`` (the last line printed by
``scripts/setup_training_env.sh``). Unset, the tests fail rather than skip, so CI can
not pass without having trained anything.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import ModuleType

import pytest

# This directory is on sys.path: pytest's default ("prepend") import mode puts a
# conftest's directory there when no __init__.py makes it part of a package.
from training_support import train_env


@pytest.fixture(scope="session")
def horovodrun(train_python: Path) -> Path:
    path = train_python.parent / "horovodrun"
    assert path.exists(), f"no horovodrun next to {train_python}"
    return path


@pytest.fixture(scope="session")
def sample_data(train_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated ImageNet-format shards: 4 classes, 32x32, 512 train / 128 validation."""
    out = tmp_path_factory.mktemp("sample-data")
    proc = subprocess.run(
        [str(train_python), "-m", "resnet_hvd.generate_data", "--output-dir", str(out),
         "--seed", "7", "--num-classes", "4", "--image-size", "32"],
        env=train_env(), capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def metric_format() -> ModuleType:
    """The shared metric-line module (stdlib only; the package is installed here too)."""
    from regional_training.plan import metric_format

    return metric_format
