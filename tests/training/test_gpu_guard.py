"""The entry point refuses a GPU instance whose TensorFlow sees no GPU (or too few).

SageMaker's toolkit counts the instance's GPUs with ``nvidia-smi`` into ``SM_NUM_GPUS``.
If the image's CUDA libraries do not load with the host's driver, TensorFlow lists no
GPU and a job would train on CPU for hours and report success. Here the training venv's
TensorFlow (CPU) really reports no GPU while the environment says the instance has four:
the job must stop before building anything and write the documented reason to
``/opt/ml/output/failure`` (``SM_OUTPUT_DIR``), which SageMaker returns as the job's
``FailureReason``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from training_support import ENTRY_POINT, TINY_RECIPE, TRAINING_DIR, train_env

pytestmark = pytest.mark.training

REASON = "GpuError: the instance has 4 GPU(s) (SM_NUM_GPUS) but TensorFlow sees none"


def _contract() -> ModuleType:
    """resnet_hvd/contract.py alone (standard library only), as a module of its own name."""
    spec = importlib.util.spec_from_file_location("resnet_hvd_contract", TRAINING_DIR / "resnet_hvd" / "contract.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_a_gpu_instance_whose_tensorflow_sees_no_gpu_fails_fast(train_python: Path, tmp_path: Path) -> None:
    output = tmp_path / "output"
    output.mkdir()
    proc = subprocess.run(
        [str(train_python), str(ENTRY_POINT), *TINY_RECIPE, "--synthetic", "true", "--num-train-examples", "64",
         "--batch-size", "8", "--max-steps", "2", "--sm-model-dir", str(tmp_path / "model"), "--checkpoint-dir", ""],
        env=train_env(SM_NUM_GPUS="4", SM_OUTPUT_DIR=str(output), CUDA_VISIBLE_DEVICES=""),
        capture_output=True, text=True, timeout=180, check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    failure = (output / "failure").read_text()
    assert failure.startswith(REASON), failure
    assert "Stopping instead of training on CPU" in failure
    assert "train records=" not in out  # refused before the data, the model or a step
    assert not (tmp_path / "model").exists()


def test_the_guard_counts_gpus_per_process_and_passes_cpu_instances() -> None:
    contract = _contract()
    contract.check_gpus(0, 2, 0)  # a CPU instance: nothing to check
    contract.check_gpus(8, 8, 8)
    with pytest.raises(contract.GpuError, match=r"sees 4 of the instance's 8 GPU\(s\) .* for 8 processes"):
        contract.check_gpus(4, 8, 8)
    with pytest.raises(contract.GpuError, match=r"has 8 GPU\(s\) \(SM_NUM_GPUS\) but TensorFlow sees none"):
        contract.check_gpus(0, 1, 8)


def test_xla_on_gpu_without_ptxas_or_libdevice_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    contract = _contract()
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("XLA_FLAGS", f"--xla_gpu_cuda_data_dir={tmp_path}")
    contract.check_xla(True, 0)  # CPU: XLA's CPU backend needs neither
    contract.check_xla(False, 1)
    with pytest.raises(contract.GpuError, match=r"--xla on GPU needs ptxas and nvvm/libdevice"):
        contract.check_xla(True, 1)
    # The nvcc wheel's layout (the image's XLA_FLAGS point at it): both found.
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "ptxas").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "ptxas").chmod(0o755)
    (tmp_path / "nvvm" / "libdevice").mkdir(parents=True)
    contract.check_xla(True, 1)


def test_the_failure_file_keeps_the_first_reason(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    contract = _contract()
    monkeypatch.setenv("SM_OUTPUT_DIR", str(tmp_path))
    contract.write_failure(contract.GpuError("first"))
    contract.write_failure(RuntimeError("second"))  # another rank, later
    assert (tmp_path / "failure").read_text() == "GpuError: first"
    monkeypatch.setenv("SM_OUTPUT_DIR", str(tmp_path / "absent"))
    contract.write_failure(RuntimeError("outside SageMaker's layout"))
    assert not (tmp_path / "absent").exists()
