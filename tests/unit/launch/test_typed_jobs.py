"""Issue 28: the job is typed (``launch.job.Job``) everywhere past the XCom edge, and the
payloads the tasks push stay what they were, key for key and in order (runs in flight and
stored payloads keep one format); the late recording is its own step and derives the
summary again at most once."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import asdict
from types import SimpleNamespace
from typing import Any

import pytest

from regional_training import tasks
from regional_training.launch import preflight
from regional_training.launch.job import CHECKED_INPUTS, Job
from regional_training.launch.jobs import job_reference
from regional_training.plan import reuse
from regional_training.plan.targets import Target
from regional_training.record import recording, run_summary
from regional_training.run.run_keys import JOBS_TO_LAUNCH, MOVES_KEY, TRAIN


def target(region: str, copy_id: int, dataset: str = "d") -> dict[str, Any]:
    return Target(region, f"s3://data-{region}/datasets/c/{dataset}/", "c", dataset, 1, copy_id,
                  f"out-{region}").to_dict()


def request(name: str, region: str, dataset: str = "d") -> dict[str, Any]:
    return {"TrainingJobName": name, "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 2},
            "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
                "S3Uri": f"s3://data-{region}/datasets/c/{dataset}/"}}}]}


def built(dataset: str = "d") -> dict[str, Any]:
    """A job as ``build_requests`` pushes it (no reuse keys, no checked inputs yet)."""
    return {
        "target": target("us-west-2", 1, dataset), "request": request(f"mrt-{dataset}", "us-west-2", dataset),
        "failover": [{"target": target("us-east-1", 2, dataset),
                      "request": request(f"mrt-{dataset}-b", "us-east-1", dataset)}],
        "max_failovers": 1, "hyperparameters_sha256": "ab" * 32, "training_image": None,
        "entry_point": "train.py", "point_id": None, "point_overrides": None,
    }


@pytest.mark.parametrize("present", [False, True])
def test_a_field_set_on_the_typed_job_reads_back_as_the_dict_update_did(present: bool) -> None:
    payload = {**built(), "reuse_keys": {"old": 1}} if present else built()
    job = Job.from_xcom(payload).with_field("reuse_keys", reuse_keys={"1": {"k": "v"}})
    as_before = {**payload, "reuse_keys": {"1": {"k": "v"}}}
    assert json.dumps(job.to_xcom()) == json.dumps(as_before)


def test_jobs_to_launch_pushes_the_payloads_it_pushed_before(monkeypatch: pytest.MonkeyPatch) -> None:
    """reuse keys, then pre-flight's checked inputs, appended in that order; pre-flight is
    asked about each planned placement only (never an alternative)."""
    versions = {1: "v1"}  # copy 2 (the alternative) has no known version: no key for it
    monkeypatch.setattr(reuse, "dataset_version", lambda conn, copy_id: versions.get(copy_id))
    checked: list[Any] = []
    monkeypatch.setattr(preflight, "preflight", lambda jobs: checked.extend(jobs) or len(jobs))

    @contextlib.contextmanager
    def campaign_db() -> Iterator[None]:
        yield None

    run = SimpleNamespace(params={}, ti=None, as_of=None, dag_id="d", run_id="r", campaign_db=campaign_db,
                          settings=SimpleNamespace(training_image_repository="repo", training_image_tag="tag",
                                                   central_region="us-east-1"))
    jobs = [built("d"), built("e")]
    launched = tasks.jobs_to_launch(run, jobs)  # type: ignore[arg-type]

    def key(job: dict[str, Any]) -> dict[str, Any]:
        return asdict(reuse.ReuseKey(dataset_id=1, copy_id=1, dataset_version="v1",
                                     hyperparameters_sha256="ab" * 32, training_image="repo:tag",
                                     instance_type="ml.g5.xlarge", instance_count=2))

    expected = [{**j, "reuse_keys": {"1": key(j)}, CHECKED_INPUTS: [f"s3://data-us-west-2/datasets/c/{d}/"]}
                for j, d in zip(jobs, ("d", "e"), strict=True)]
    assert json.dumps(launched) == json.dumps(expected)
    assert checked == [{"target": j["target"], "request": j["request"]} for j in jobs]


class FakeTI:
    """The XComs ``record_late`` reads: jobs_to_launch's references and jobs, train's moves."""

    task_id = "record_late"

    def __init__(self, jobs: list[dict[str, Any]]) -> None:
        self.references = [job_reference(j, JOBS_TO_LAUNCH) for j in jobs]
        self.jobs = {r["xcom_key"]: j for r, j in zip(self.references, jobs, strict=True)}

    def xcom_pull(self, *, task_ids: str, key: str | None = None, map_indexes: int | None = None) -> Any:
        if task_ids == TRAIN and key == MOVES_KEY:
            return [{"from_region": "us-west-2", "to_region": "us-east-1"}] if map_indexes == 2 else None
        assert task_ids == JOBS_TO_LAUNCH
        return self.references if key is None else self.jobs[key]


def test_record_late_records_each_unrecorded_target_typed_and_refreshes_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    jobs = [built("d"), built("e"), built("f"), built("g")]
    calls: list[tuple[Job, list[Any], bool]] = []

    def collect_target(run: Any, job: Job, *, moves: list[Any], latest: Any = None, refresh: bool = True) -> Any:
        if job.target.dataset_key == "g":
            raise OSError("database down")
        calls.append((job, moves, refresh))
        return {"target_key": job.target.target_key, "status": "Failed"}

    refreshed: list[str] = []
    monkeypatch.setattr(recording, "collect_target", collect_target)
    monkeypatch.setattr(run_summary, "refresh_after_late_record", lambda run, keys: refreshed.append(keys))
    run = SimpleNamespace(params={}, ti=FakeTI(jobs))
    # d's training task recorded it (its row came with train's output); g cannot be recorded.
    with caplog.at_level(logging.WARNING, logger="regional_training.record.recording"):
        late = tasks.record_late(run, [{"target_key": "d", "status": "Completed"}, None])  # type: ignore[arg-type]
    assert late == [{"target_key": "e", "status": "Failed"}, {"target_key": "f", "status": "Failed"}]
    # Typed at the edge, the payload unchanged; the summary derived again once, not per target.
    assert [(j.to_xcom(), m, r) for j, m, r in calls] == [
        (jobs[1], [], False), (jobs[2], [{"from_region": "us-west-2", "to_region": "us-east-1"}], False)]
    assert refreshed == ["e, f"]
    assert "Target g (train[3]) could not be recorded: OSError: database down" in caplog.text


def test_record_late_in_a_dry_run_records_nothing() -> None:
    run = SimpleNamespace(params={"dry_run": True}, ti=FakeTI([built()]))
    assert tasks.record_late(run, None) == []  # type: ignore[arg-type]
