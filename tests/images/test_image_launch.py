"""The emulator's image launch, as a command: what each host's container gets.

The launch itself (real containers, the toolkit, mpirun over two containers) is
tests/emulator/test_toolkit_launch.py under scripts/test.sh; these check the mapping
from a job's host root to ``podman run`` and the image map's rules, without podman.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dev.local_aws import container
from dev.local_aws.images import LocalImage, toolkit_image

IMAGE = "localhost/multi-region-training/training:cpu-0123456789ab"


def _host_root(tmp_path: Path) -> Path:
    root = tmp_path / "job-abc" / "algo-2"
    for sub in ("input/config", "input/data/train", "model", "output/data", "checkpoints", "code"):
        (root / "opt" / "ml" / sub).mkdir(parents=True)
    for sub in ("etc/ssh", "root/.ssh", "tmp", "spot-checkpoints"):
        (root / sub).mkdir(parents=True)
    (root / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    return root


def test_a_host_runs_the_image_with_the_jobs_directories_bound_in(tmp_path: Path) -> None:
    root = _host_root(tmp_path)
    env = {"PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8", "TRAINING_JOB_NAME": "job", "AWS_REGION": "x"}
    command = container.launch_command(root, LocalImage(command=["train"], container=True, image=IMAGE), env)
    run = command[command.index("podman"):]
    assert run[-2:] == [IMAGE, "train"]  # SageMaker's `docker run <image> train`
    assert run[run.index("--hostname") + 1] == "algo-2"
    assert run[run.index("--name") + 1] == "mrt-job-abc-algo-2"
    assert {"--rm", "--init", "--pull"} <= set(run)
    volumes = {v.split("=", 1)[1] for v in run if v.startswith("--volume=")}
    ml = root / "opt" / "ml"
    assert volumes == {
        f"{root}/etc/hosts:/etc/hosts:ro", f"{root}/etc/ssh:/etc/ssh",
        f"{ml}/checkpoints:/opt/ml/checkpoints", f"{ml}/input:/opt/ml/input", f"{ml}/model:/opt/ml/model",
        f"{ml}/output:/opt/ml/output", f"{root}/spot-checkpoints:/spot-checkpoints",
    }  # not /opt/ml/code (the image's entry point) nor /root/.ssh (the image's keys)
    # What SageMaker sets passes through; the image keeps its own PATH, HOME and LANG.
    assert sorted(v for v in run if v.startswith("--env=")) == ["--env=AWS_REGION", "--env=TRAINING_JOB_NAME"]
    assert f"CONTAINERS_CONF={container.CONTAINERS_CONF}" in command
    assert container.CONTAINERS_CONF.is_file()


def test_without_an_image_the_namespace_launch_stays(tmp_path: Path) -> None:
    root = _host_root(tmp_path)
    command = container.launch_command(root, LocalImage(command=["/venv/bin/train"], container=True), {})
    assert command[0] == "unshare" and command[-1] == "/venv/bin/train"


def test_the_image_map_rules(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="set 'container': true"):
        LocalImage(command=["train"], image=IMAGE).validate()
    with pytest.raises(ValueError, match="drop 'code'"):
        LocalImage(command=["train"], container=True, image=IMAGE, code={"train.py": str(tmp_path)}).validate()
    monkeypatch.setenv("MRT_TRAINING_IMAGE", IMAGE)
    assert toolkit_image("/no/such/python", "/repo") == {"container": True, "image": IMAGE, "command": ["train"]}
    monkeypatch.delenv("MRT_TRAINING_IMAGE")
    with pytest.raises(FileNotFoundError):
        toolkit_image("/no/such/python", "/repo")
