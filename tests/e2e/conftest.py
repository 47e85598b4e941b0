"""Fixtures for the real-training end-to-end tests: the emulator running the real image.

The shared session fixture ``aws_endpoint`` (tests/conftest.py) runs the stand-in entry
point for the fast tests; the tests marked ``training`` get their own emulator here,
whose image map runs ``images/training/train.py`` in the training venv
(``MRT_TRAIN_PYTHON``) under ``horovodrun``, and whose buckets hold generated TFRecords.
Without ``MRT_TRAIN_PYTHON`` these tests fail (they never skip): CI cannot pass them
without having trained anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import TRAINING_REGIONS


@pytest.fixture(scope="module")
def real_aws_endpoint(campaign_dsn: str, train_python: Path, airflow_db: Path) -> Iterator[str]:
    """An emulator whose jobs train for real; TFRecords in the training regions' copies.

    The other regions' copies get the stand-in's placeholder shards (no job reads them
    in these tests; generating TFRecords costs a TensorFlow start-up per copy).
    """
    from dev.local_stack import local_aws, placeholder_samples, real_image_map, seed_aws, tfrecord_samples

    tfrecords = tfrecord_samples(train_python)

    def samples(region: str, dataset_key: str, directory: Path) -> None:
        writer = tfrecords if region in TRAINING_REGIONS else placeholder_samples
        writer(region, dataset_key, directory)

    with local_aws(
        real_image_map(train_python),
        max_concurrent_jobs=2,
        max_processes_per_job=2,
        stop_grace_seconds=5,
        log_path=airflow_db / "local-aws-real-training.log",
    ) as endpoint:
        seed_aws(endpoint, campaign_dsn, samples)
        yield endpoint


@pytest.fixture()
def real_stack(
    campaign_dsn: str, real_aws_endpoint: str, airflow_db: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Environment for running the DAG in-process against Postgres and the real-training emulator."""
    from dev.local_stack import in_process_env

    for key, value in in_process_env(dsn=campaign_dsn, endpoint=real_aws_endpoint, airflow_home=airflow_db).items():
        monkeypatch.setenv(key, value)
    return real_aws_endpoint
