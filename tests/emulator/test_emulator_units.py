"""Unit tests of the emulator's pure parts: image map placeholders, FailureReason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dev.local_aws.images import PLACEHOLDERS, LocalImage, image_for, load_image_map, repository_of
from dev.local_aws.training_jobs import _error_tail, _in_job

DIRS = {name: f"/jobs/j1/{name}" for name in PLACEHOLDERS}


def test_placeholders_are_filled_per_job(tmp_path: Path) -> None:
    path = tmp_path / "images.json"
    path.write_text(json.dumps({"multi-region-training/resnet50-horovod": {
        "command": ["py", "train.py", "--checkpoint-dir", "{checkpoint_dir}"],
        "horovodrun": ["hvdrun"], "env": {"OUT": "{output_dir}/x", "LITERAL": "{{not}}"},
    }}))
    image = load_image_map(path)["multi-region-training/resnet50-horovod"].render(DIRS)
    assert image.command == ["py", "train.py", "--checkpoint-dir", "/jobs/j1/checkpoint_dir"]
    assert image.horovodrun == ["hvdrun"]
    assert image.env == {"OUT": "/jobs/j1/output_dir/x", "LITERAL": "{not}"}


def test_unknown_placeholder_fails_when_the_map_is_loaded(tmp_path: Path) -> None:
    path = tmp_path / "images.json"
    path.write_text(json.dumps({"repo": {"command": ["py", "--x", "{checkpoints}"]}}))
    with pytest.raises(ValueError, match="bad placeholder"):
        load_image_map(path)
    with pytest.raises(ValueError, match="non-empty list"):
        LocalImage(command=[]).validate()


def test_repository_ignores_registry_region_and_tag() -> None:
    uri = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/multi-region-training/resnet50-horovod:local"
    assert repository_of(uri) == "multi-region-training/resnet50-horovod"
    with pytest.raises(ValueError):
        repository_of("no-registry")


def test_a_repository_tag_key_maps_that_tag_only() -> None:
    plain, tagged = LocalImage(command=["plain"]), LocalImage(command=["tagged"])
    images = {"repo/x": plain, "repo/x:v2": tagged}
    assert image_for(images, "1.dkr.ecr.eu-west-1.amazonaws.com/repo/x:v2") is tagged
    assert image_for(images, "1.dkr.ecr.us-east-1.amazonaws.com/repo/x:v1") is plain
    assert image_for(images, "1.dkr.ecr.us-east-1.amazonaws.com/repo/x") is plain
    with pytest.raises(KeyError):
        image_for({"repo/x:v2": tagged}, "1.dkr.ecr.us-east-1.amazonaws.com/repo/x:v1")


def test_checkpoint_local_path_maps_into_the_job_dir() -> None:
    assert _in_job(Path("/w/j"), "/opt/ml/checkpoints") == Path("/w/j/opt/ml/checkpoints")


def test_failure_reason_is_the_failing_ranks_exception_not_horovods_echo() -> None:
    log = "\n".join([
        "[0]<stdout>:[metrics] step=8 train_loss=1.2",
        "[0]<stderr>:Traceback (most recent call last):",
        "[0]<stderr>:tensorflow.python.framework.errors_impl.DataLossError: {{function_node __wrapped__X}} "
        "corrupted record at 0 [Op:ReduceDataset]",
        "[1]<stderr>:tensorflow.python.framework.errors_impl.UnknownError: Horovod has been shut down. This was",
        "RuntimeError: Horovod detected that one or more processes exited with non-zero status",
        "Exit code: 1",
    ])
    assert _error_tail(log) == "DataLossError: corrupted record at 0 [Op:ReduceDataset]"


def test_failure_reason_without_an_exception_line() -> None:
    assert _error_tail("ERROR: no training data in /x\n") == "ERROR: no training data in /x"
    assert _error_tail("starting\nsegfault here\nbye\n") == "starting | segfault here | bye"
