"""attempts.resolve: which candidate and attempt is a target's job, from describe answers."""

from __future__ import annotations

from typing import Any

import pytest

from regional_training.launch.attempts import Candidate, capacity_signal, resolve

PRIMARY = Candidate({"TrainingJobName": "mrt-a", "Tags": [{"Key": "purchase_option", "Value": "reserved"}]},
                    "us-west-2")
SECOND = Candidate({"TrainingJobName": "mrt-b", "Tags": [{"Key": "purchase_option", "Value": "spot"}]}, "us-east-1")
THIRD = Candidate({"TrainingJobName": "mrt-c"}, "eu-west-1")


def jobs(**by_name: dict[str, Any]) -> Any:
    """A describe(region, name) over a fixed set of jobs, keyed by name (region checked)."""
    regions = {"mrt-a": "us-west-2", "mrt-b": "us-east-1", "mrt-c": "eu-west-1"}

    def describe(region: str, name: str) -> dict[str, Any] | None:
        found = by_name.get(name.replace("-", "_"))
        if found is None:
            return None
        assert region == regions[name[:5]], f"{name} described in {region}"
        return {"TrainingJobName": name, **found}

    return describe


def status(value: str, **extra: Any) -> dict[str, Any]:
    return {"TrainingJobStatus": value, **extra}


def test_no_job_yet_creates_attempt_one_of_the_first_candidate() -> None:
    res = resolve([PRIMARY, SECOND], jobs())
    assert (res.action, res.index, res.attempt.name, res.latest, res.moves) == ("create", 0, "mrt-a", None, ())


def test_a_running_job_is_followed() -> None:
    res = resolve([PRIMARY, SECOND], jobs(mrt_a=status("InProgress")))
    assert (res.action, res.index, res.attempt.name) == ("wait", 0, "mrt-a")


def test_a_completed_attempt_is_done() -> None:
    res = resolve([PRIMARY], jobs(mrt_a=status("Failed", FailureReason="AlgorithmError"), mrt_a_a2=status("Completed")))
    assert (res.action, res.attempt.number, res.attempt.name) == ("done", 2, "mrt-a-a2")


def test_a_failed_job_gets_the_next_attempt_in_the_same_region() -> None:
    res = resolve([PRIMARY, SECOND], jobs(mrt_a=status("Failed", FailureReason="AlgorithmError: exit 1")))
    assert (res.action, res.index, res.attempt.name) == ("create", 0, "mrt-a-a2")
    assert res.latest is not None and res.latest[1].name == "mrt-a"


@pytest.mark.parametrize(
    "ended",
    [
        status("Failed", FailureReason="CapacityError: Unable to provision requested ML compute capacity."),
        status("Stopped", SecondaryStatus="MaxWaitTimeExceeded"),
        status("Failed", FailureReason="InternalServerError", SecondaryStatusTransitions=[
            {"Status": "Starting", "StatusMessage": "Insufficient capacity for ml.p4d.24xlarge"}]),
    ],
    ids=["CapacityError", "MaxWaitTimeExceeded", "transition-message"],
)
def test_a_job_that_ended_for_capacity_moves_to_the_next_candidate(ended: dict[str, Any]) -> None:
    res = resolve([PRIMARY, SECOND], jobs(mrt_a=ended))
    assert (res.action, res.index, res.attempt.name) == ("create", 1, "mrt-b")
    assert [(m.from_region, m.from_option, m.to_region, m.to_option) for m in res.moves] == [
        ("us-west-2", "reserved", "us-east-1", "spot")]
    assert res.ended_for_capacity("mrt-a") and not res.ended_for_capacity("mrt-b")


def test_a_refused_creation_blocks_its_region() -> None:
    res = resolve([PRIMARY, SECOND], jobs(), refused={"us-west-2": ("ResourceLimitExceeded", "quota")})
    assert (res.action, res.index) == ("create", 1)
    assert res.moves[0].error_code == "ResourceLimitExceeded"


def test_resume_after_failover_follows_the_moved_job_and_keeps_the_moves() -> None:
    res = resolve([PRIMARY, SECOND], jobs(mrt_a=status("Stopped", SecondaryStatus="MaxWaitTimeExceeded"),
                                          mrt_b=status("InProgress")))
    assert (res.action, res.index, res.attempt.name) == ("wait", 1, "mrt-b")
    assert [m.error_code for m in res.moves] == ["MaxWaitTimeExceeded"]


def test_a_retry_after_a_refused_creation_follows_the_job_it_moved_to() -> None:
    # The first candidate has no job at all (its creation was refused in an earlier try).
    res = resolve([PRIMARY, SECOND], jobs(mrt_b=status("InProgress")))
    assert (res.action, res.index) == ("wait", 1)


def test_no_candidate_left_is_exhausted() -> None:
    res = resolve([PRIMARY, SECOND], jobs(mrt_a=status("Failed", FailureReason="CapacityError"),
                                          mrt_b=status("Failed", FailureReason="CapacityError")))
    assert (res.action, res.index, res.attempt) == ("exhausted", None, None)
    assert [m.to_region for m in res.moves] == ["us-east-1", None]
    assert res.latest is not None and res.latest[0] == 1  # the collector records the newest job


def test_a_blocked_region_is_skipped_for_later_candidates() -> None:
    same_region = Candidate({"TrainingJobName": "mrt-c"}, "us-west-2")
    res = resolve([PRIMARY, same_region, SECOND], lambda region, name: (
        status("Failed", FailureReason="CapacityError") if name == "mrt-a" else None))
    assert (res.action, res.index) == ("create", 2)


def test_other_failures_are_no_capacity_signal() -> None:
    assert capacity_signal(status("Failed", FailureReason="AlgorithmError: exit code 2")) is None
    assert capacity_signal(status("InProgress", SecondaryStatus="MaxWaitTimeExceeded")) is None
    assert capacity_signal(None) is None


def asked(describe: Any, log: list[tuple[str, str]]) -> Any:
    """``describe``, recording each (region, name) it is asked for."""

    def recording(region: str, name: str) -> dict[str, Any] | None:
        log.append((region, name))
        return describe(region, name)

    return recording


def test_a_completed_job_is_found_without_asking_for_later_names() -> None:
    """A collector's case: the first candidate's job completed. No later attempt or
    candidate can exist (a new one starts only after a failure or a capacity move),
    so neither is asked for: each name that finds no job is an error answer."""
    log: list[tuple[str, str]] = []
    res = resolve([PRIMARY, SECOND, THIRD], asked(jobs(mrt_a=status("Completed")), log))
    assert (res.action, res.index, res.attempt.name, res.latest[1].name) == ("done", 0, "mrt-a", "mrt-a")
    assert log == [("us-west-2", "mrt-a")]
    assert res.newest == (res.attempt,)


def test_every_candidate_is_asked_before_a_create() -> None:
    """No job on the first candidate does not mean none anywhere (an earlier try may
    have moved on after a refused creation, which leaves no job): all are asked."""
    log: list[tuple[str, str]] = []
    res = resolve([PRIMARY, SECOND, THIRD], asked(jobs(mrt_b=status("InProgress")), log))
    assert (res.action, res.index, res.attempt.name) == ("wait", 1, "mrt-b")
    assert log == [("us-west-2", "mrt-a"), ("us-east-1", "mrt-b")]
    log.clear()
    res = resolve([PRIMARY, SECOND, THIRD], asked(jobs(), log))
    assert (res.action, res.index) == ("create", 0)
    assert log == [("us-west-2", "mrt-a"), ("us-east-1", "mrt-b"), ("eu-west-1", "mrt-c")]
