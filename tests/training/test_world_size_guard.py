"""The entry point refuses to train when Horovod's world is not the launch's.

A Horovod without MPI under SageMaker's ``mpirun`` initialises every rank alone
(``hvd.size() == 1``): N trainings of one rank each, reported as success. Here the rank
runs exactly like that, alone, in the environment the toolkit gives an MPI job with two
processes on one host (``SM_HOSTS``, ``SM_FRAMEWORK_PARAMS``): it must fail, naming why.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from training_support import ENTRY_POINT, TINY_RECIPE, train_env

pytestmark = pytest.mark.training


def _run_alone(train_python: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(train_python), str(ENTRY_POINT), *TINY_RECIPE, "--synthetic", "true", "--num-train-examples", "64",
         "--batch-size", "8", "--max-steps", "2", "--sm-model-dir", str(tmp_path / "model"),
         "--checkpoint-dir", ""],
        env=train_env(**env), capture_output=True, text=True, timeout=180, check=False,
    )


def test_a_lone_rank_of_a_two_process_mpi_job_fails(train_python: Path, tmp_path: Path) -> None:
    proc = _run_alone(
        train_python, tmp_path,
        SM_HOSTS=json.dumps(["algo-1"]), SM_CURRENT_HOST="algo-1",
        SM_FRAMEWORK_PARAMS=json.dumps({"sagemaker_mpi_enabled": True, "sagemaker_mpi_num_of_processes_per_host": 2}),
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "WorldSizeError: Horovod world size 1 differs from the launch's " in out, out[-3000:]
    assert "SM_HOSTS x sagemaker_mpi_num_of_processes_per_host=2" in out
    assert not (tmp_path / "model").exists() or not any((tmp_path / "model").iterdir())


def test_a_lone_rank_that_mpirun_counted_twice_fails(train_python: Path, tmp_path: Path) -> None:
    """``HOROVOD_SIZE`` is what horovodrun gives every rank it starts."""
    proc = _run_alone(train_python, tmp_path, HOROVOD_SIZE="2")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "HOROVOD_SIZE=2" in out and "WorldSizeError" in out


def test_a_single_process_job_trains(train_python: Path, tmp_path: Path) -> None:
    """The guard does not fire when the world is what the launch asked for."""
    proc = _run_alone(
        train_python, tmp_path,
        SM_HOSTS=json.dumps(["algo-1"]), SM_CURRENT_HOST="algo-1",
        SM_FRAMEWORK_PARAMS=json.dumps({"sagemaker_mpi_enabled": True, "sagemaker_mpi_num_of_processes_per_host": 1}),
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "horovod size=1" in proc.stdout + proc.stderr
