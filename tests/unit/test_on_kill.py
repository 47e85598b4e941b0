"""``on_kill`` stops the training job for a user's kill, never for a component shutdown (issue 32).

Airflow 3.3 sends the task SIGTERM in both cases; what tells them apart is the task
instance's state on the server (``regional_training.operators.killed_by_user``): still
``running`` when a worker or scheduler shuts down, ``failed`` / ``restarting`` / ... when
a user acted. The end-to-end proof on real services is tests/e2e/test_celery_stack.py.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from regional_training.operators import DurableSageMakerTrainingOperator, killed_by_user


@dataclass
class FakeTi:
    """What ``killed_by_user`` reads of a RuntimeTaskInstance: its keys and ``get_task_states``."""

    state: str | None
    map_index: int = -1
    dag_id: str = "multi_region_training"
    task_id: str = "train"
    run_id: str = "manual__1"
    block: threading.Event | None = None
    asked: list[dict[str, Any]] = field(default_factory=list)

    def get_task_states(self, **query: Any) -> dict[str, Any]:
        self.asked.append(query)
        if self.block is not None:
            self.block.wait()
        key = self.task_id if self.map_index < 0 else f"{self.task_id}_{self.map_index}"
        return {self.run_id: {key: self.state}}


@pytest.mark.parametrize(("state", "expected"), [
    ("running", False),  # the supervisor forwarded its own SIGTERM: a component is stopping
    ("failed", True),  # marked failed
    ("success", True),  # marked success
    ("restarting", True),  # cleared while running
    (None, True),  # cleared
])
def test_the_servers_state_says_who_killed_the_task(state: str | None, expected: bool) -> None:
    ti = FakeTi(state, map_index=3)
    assert killed_by_user(ti) is expected
    assert ti.asked == [{"dag_id": "multi_region_training", "map_index": 3, "task_ids": ["train"],
                         "run_ids": ["manual__1"]}]


def test_no_answer_in_time_is_unknown() -> None:
    block = threading.Event()
    started = time.monotonic()
    try:
        assert killed_by_user(FakeTi("failed", block=block), timeout=0.2) is None
    finally:
        block.set()
    assert time.monotonic() - started < 2


def test_an_unreachable_server_is_unknown() -> None:
    class Unreachable(FakeTi):
        def get_task_states(self, **query: Any) -> dict[str, Any]:
            raise ConnectionError("api-server restarting")

    assert killed_by_user(Unreachable("running")) is None


class RecordingConn:
    def __init__(self) -> None:
        self.stopped: list[str] = []

    def stop_training_job(self, TrainingJobName: str) -> None:
        self.stopped.append(TrainingJobName)


class RecordingHook:
    def __init__(self) -> None:
        self.conn = RecordingConn()


def _operator_in_window(ti: Any) -> tuple[DurableSageMakerTrainingOperator, RecordingConn]:
    """An operator whose try created ``job-a1`` and has not deferred yet."""
    op = DurableSageMakerTrainingOperator(task_id="train", config={"TrainingJobName": "job"}, region_name="eu-west-1")
    hook = RecordingHook()
    op._hooks["eu-west-1"] = hook  # type: ignore[assignment]
    op._current = ("eu-west-1", "job-a1")
    op._ti = ti
    return op, hook.conn


@pytest.mark.parametrize(("ti", "stopped"), [
    (FakeTi("running"), []),  # rolling restart: the job goes on (today's path stopped it)
    (FakeTi("failed"), ["job-a1"]),  # a user's kill stops it, as before
    (FakeTi("restarting"), ["job-a1"]),
    (None, ["job-a1"]),  # called directly, outside a supervised try
])
def test_on_kill_in_the_launch_window(ti: Any, stopped: list[str]) -> None:
    op, conn = _operator_in_window(ti)
    op.on_kill()
    assert conn.stopped == stopped


def test_on_kill_leaves_the_job_when_the_state_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    import regional_training.operators as operators

    monkeypatch.setattr(operators, "STATE_QUERY_SECONDS", 0.2)
    block = threading.Event()
    op, conn = _operator_in_window(FakeTi("failed", block=block))
    try:
        op.on_kill()
    finally:
        block.set()
    assert conn.stopped == []
