"""The training entry point, end to end on CPU: Horovod, resume, SageMaker contract.

Each test starts the real entry point (``images/training/train.py``) in the training
venv on generated ImageNet-format TFRecords with the tiny ResNet at 32x32.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path
from types import ModuleType

import pytest
from training_support import ENTRY_POINT, TINY_RECIPE, train_env

pytestmark = pytest.mark.training

CHANCE = 1 / 4  # 4 classes in the sample data


def metric_lines(output: str) -> list[dict[str, float]]:
    """Every ``[metrics] key=value ...`` line of ``output`` as a dict."""
    rows = []
    for line in output.splitlines():
        if "[metrics]" not in line:
            continue
        body = line.split("[metrics]", 1)[1]
        rows.append({k: float(v) for k, v in re.findall(r"([a-z_]+)=(\S+)", body)})
    return rows


def run(cmd: list[str], timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        cmd, env=train_env(**env), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def test_two_horovod_ranks_learn_and_keep_identical_weights(
    train_python: Path, horovodrun: Path, sample_data: Path, tmp_path: Path
) -> None:
    digests = tmp_path / "digests"
    proc = run(
        [str(horovodrun), "-np", "2", "-H", "localhost:2", "--gloo",
         str(train_python), str(ENTRY_POINT), *TINY_RECIPE,
         "--train-dir", str(sample_data / "train"),
         "--validation-dir", str(sample_data / "validation"),
         "--sm-model-dir", str(tmp_path / "model"),
         "--checkpoint-dir", str(tmp_path / "ckpt"),
         "--batch-size", "16", "--epochs", "2", "--log-every", "8",
         "--weights-digest-dir", str(digests)],
        timeout=240,
    )
    out = proc.stdout + proc.stderr
    assert "horovod size=2" in out
    rows = metric_lines(out)
    # Only rank 0 prints metric lines (horovodrun prefixes each line with its rank).
    assert not re.search(r"^\[1\]<std(out|err)>:\[metrics\]", out, re.M)
    # 512 records / global batch 32 = 16 steps per epoch, 2 epochs.
    assert rows[-1]["step"] == 32 and rows[-1]["epoch"] == 2
    assert rows[-1]["train_accuracy"] >= 0.8, rows
    assert rows[-1]["val_accuracy"] >= 2 * CHANCE, rows
    assert rows[-1]["train_loss"] < rows[0]["train_loss"], rows
    # A silently skipped allreduce lets the ranks drift apart (each sees other data):
    # every trainable weight must be bit-identical on both ranks.
    rank0 = json.loads((digests / "rank0.json").read_text())
    rank1 = json.loads((digests / "rank1.json").read_text())
    assert rank0["step"] == rank1["step"] == 32
    assert len(rank0["weights"]) > 10
    assert rank0["weights"] == rank1["weights"]


def test_killed_run_resumes_from_its_last_checkpoint(
    train_python: Path, sample_data: Path, tmp_path: Path
) -> None:
    ckpt = tmp_path / "ckpt"
    common = [str(train_python), str(ENTRY_POINT), *TINY_RECIPE,
              "--train-dir", str(sample_data / "train"),
              "--sm-model-dir", str(tmp_path / "model"),
              "--checkpoint-dir", str(ckpt), "--checkpoint-every", "5",
              "--batch-size", "16", "--log-every", "5"]
    proc = subprocess.Popen(
        [*common, "--max-steps", "100000"], env=train_env(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if re.search(r"checkpoint saved at step 10\b", line):
                break
            assert time.monotonic() < deadline, "no checkpoint at step 10 in time"
        else:
            pytest.fail("run ended before its step-10 checkpoint:\n" + "".join(seen[-40:]))
    finally:
        proc.send_signal(signal.SIGKILL)  # like a reclaimed spot instance: no clean-up
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    index = (ckpt / "checkpoint").read_text()
    saved = int(re.search(r'model_checkpoint_path: "ckpt-(\d+)"', index).group(1))
    assert saved >= 10 and saved % 5 == 0

    resumed = run([*common, "--max-steps", str(saved + 6), "--log-every", "2"])
    out = resumed.stdout + resumed.stderr
    assert re.search(rf"resumed from checkpoint \S+ckpt-{saved} at step {saved}\b", out), out[-3000:]
    steps = [int(row["step"]) for row in metric_lines(out)]
    # It continues after the checkpoint (no step re-run) and stops at the new limit.
    assert steps and min(steps) > saved and max(steps) == saved + 6, steps
    assert (tmp_path / "model" / "1" / "saved_model.pb").is_file()


def test_sagemaker_contract(
    train_python: Path, sample_data: Path, tmp_path: Path, metric_format: ModuleType
) -> None:
    model_dir, output_dir = tmp_path / "opt/ml/model", tmp_path / "opt/ml/output/data"
    # Hyperparameters exactly as SageMaker passes them: strings, underscore names,
    # toolkit settings included (the script must ignore those).
    hyperparameters = {
        "model": "resnet_tiny", "num_classes": "4", "image_size": "32", "batch_size": "32",
        "epochs": "1", "learning_rate": "0.5", "warmup_epochs": "0.5",
        "mixed_precision": "False", "xla": "False", "log_every": "4",
        "throughput_warmup_steps": "2", "checkpoint_dir": str(tmp_path / "opt/ml/checkpoints"),
        "model_dir": "s3://bucket/prefix/model", "sagemaker_program": "train.py",
        "sagemaker_mpi_enabled": "true",
    }
    args = [arg for k, v in hyperparameters.items() for arg in (f"--{k}", v)]
    proc = run(
        [str(train_python), str(ENTRY_POINT), *args],
        SM_CHANNEL_TRAIN=str(sample_data / "train"),
        SM_CHANNEL_VALIDATION=str(sample_data / "validation"),
        SM_MODEL_DIR=str(model_dir),
        SM_OUTPUT_DATA_DIR=str(output_dir),
        SM_HOSTS='["algo-1"]',
        SM_CURRENT_HOST="algo-1",
        SM_NUM_GPUS="0",
    )
    out = proc.stdout + proc.stderr
    assert "hosts=['algo-1'] current_host=algo-1" in out

    # Every metric line matches the regexes the training request carries, and the
    # final values are what SageMaker would report.
    lines = [line for line in out.splitlines() if line.startswith(metric_format.LINE_PREFIX)]
    assert lines
    for line in lines:
        assert re.search(metric_format.METRIC_DEFINITIONS[1]["Regex"], line), line  # train:loss
    final = metric_format.parse_final_metrics(out)
    assert set(final) == set(metric_format.METRIC_KEYS), final
    assert final["train:images_per_sec"] > 0
    assert 0 <= final["validation:accuracy"] <= 1 and final["train:accuracy"] > CHANCE
    summary = json.loads((output_dir / "training_summary.json").read_text())
    assert summary["final_step"] == 512 // 32

    # The model is a SavedModel that tf.keras loads and that predicts 4 logits.
    check = run([str(train_python), "-c", (
        "import sys, numpy as np, tensorflow as tf; "
        "m = tf.keras.models.load_model(sys.argv[1]); "
        "print('shape', m.predict(np.zeros((2, 32, 32, 3), np.float32), verbose=0).shape)"
    ), str(model_dir / "1")])
    assert "shape (2, 4)" in check.stdout


def test_unknown_hyperparameter_is_an_error_but_sagemaker_settings_are_not(
    train_python: Path, sample_data: Path
) -> None:
    proc = subprocess.run(
        [str(train_python), str(ENTRY_POINT), "--train-dir", str(sample_data / "train"),
         "--sagemaker_region", "eu-west-1", "--learning_rat", "0.1"],
        env=train_env(), capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 2
    assert "unrecognized arguments: --learning_rat 0.1" in proc.stderr
    assert "sagemaker_region" not in proc.stderr
