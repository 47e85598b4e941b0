"""The verdict comes from the plan: a target that vanished downstream still gets an outcome."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from regional_training.report.verdict import (
    IncompleteRunError,
    compute_verdict,
    nothing_to_do_reason,
    raise_if_incomplete,
    states_by_map_index,
)

REGIONS = ("us-east-1", "eu-west-1", "ap-south-1", "us-west-2")


def job(region: str) -> dict:
    return {"target": {"dataset_key": f"{region}-data", "region_code": region}, "request": {}}


def row(region: str, status: str = "Completed", reason: str | None = None, **extra: object) -> dict:
    return {"target_key": f"{region}-data", "region_code": region, "status": status, "failure_reason": reason,
            **extra}


JOBS = [job(r) for r in REGIONS]


def test_a_target_nobody_recorded_fails_the_run_naming_it_and_the_fix() -> None:
    # Four jobs completed; train[eu-west-1] failed recording its row, and so did summarize:
    # three rows arrived.
    rows = [row(r) for r in REGIONS if r != "eu-west-1"]
    verdict = compute_verdict(JOBS, rows, train_states={0: "success", 1: "failed", 2: "success", 3: "success"})
    assert not verdict.ok
    assert verdict.headline() == "3 of 4 planned target(s) completed and recorded"
    (missing,) = verdict.incomplete
    assert (missing.map_index, missing.target_key, missing.outcome, missing.recorded) == (
        1, "eu-west-1-data", "not_recorded", False)
    with pytest.raises(IncompleteRunError) as info:
        raise_if_incomplete(verdict)
    message = str(info.value)
    assert "1 of 4 planned target(s)" in message
    assert "eu-west-1-data (eu-west-1, map index 1): not recorded" in message
    assert "train[1] ended failed; neither it nor record_late recorded the job" in message
    assert "Clearing train[i] collects a job that completed without training it again" in message


def test_every_outcome_is_named_with_its_reason() -> None:
    rows = [
        row("us-east-1"),
        row("eu-west-1", "Failed", "AlgorithmError: argument --epochs: invalid int value: '3.0'"),
        row("ap-south-1", "NotStarted", "the training job was never created; see the train task's log"),
    ]
    verdict = compute_verdict(JOBS, rows, train_states={0: "success", 1: "failed", 2: "failed",
                                                        3: "upstream_failed"})
    outcomes = {t.target_key: (t.outcome, t.recorded) for t in verdict.targets}
    assert outcomes == {
        "us-east-1-data": ("completed", True),
        "eu-west-1-data": ("training_failed", True),
        "ap-south-1-data": ("never_launched", True),
        "us-west-2-data": ("never_launched", False),
    }
    with pytest.raises(IncompleteRunError) as info:
        raise_if_incomplete(verdict)
    message = str(info.value)
    assert "3 of 4" in message
    assert "AlgorithmError: argument --epochs: invalid int value: '3.0'" in message
    assert "train[3] upstream_failed: no job was launched" in message
    assert "Clearing train[i] collects" not in message  # every launched target was recorded


def test_a_missing_row_is_not_recorded_never_completed() -> None:
    verdict = compute_verdict(JOBS, [row("us-east-1")])  # no task states
    assert [t.outcome for t in verdict.targets] == ["completed"] + ["not_recorded"] * 3
    assert verdict.targets[1].reason == ("train[1]'s state is not known; neither it nor record_late recorded the job "
                                         "(see their logs): clear train[1]")
    with pytest.raises(IncompleteRunError, match=r"3 of 4 .*Clearing train\[i\] collects"):
        raise_if_incomplete(verdict)


def test_no_rows_at_all_is_a_failure_not_zero_of_zero() -> None:
    verdict = compute_verdict(JOBS, [], train_states={})
    assert len(verdict.targets) == 4 and not verdict.ok
    assert all(t.outcome == "never_launched" for t in verdict.targets)


def test_a_row_after_failover_counts_for_its_target_and_unplanned_rows_never_count() -> None:
    rows = [row("us-east-1", region_code="us-west-2") | {"region_code": "us-west-2"}, row("sa-east-1")]
    verdict = compute_verdict(JOBS[:1], rows)
    assert verdict.ok
    assert verdict.targets[0].region_code == "us-west-2"  # where it ran
    assert verdict.unplanned == ("sa-east-1-data",)
    assert "UNPLANNED row ignored: sa-east-1-data" in verdict.lines()
    raise_if_incomplete(verdict)


def test_all_completed_passes() -> None:
    verdict = compute_verdict(JOBS, [row(r) for r in reversed(REGIONS)])
    assert verdict.ok and verdict.lines() == ["4 of 4 planned target(s) completed and recorded"]
    raise_if_incomplete(verdict)
    assert verdict.to_dict()["ok"] is True


@pytest.mark.parametrize(
    ("jobs", "dry_run", "left_out", "expected"),
    [
        (JOBS, True, [], "dry run: 4 training request(s) built, nothing launched"),
        ([], False, [], "no target selected: no campaign is 'ready' in the selected regions"),
        ([], False, [{"dataset_key": "big-v1", "reason": "over_budget"}],
         "every selected dataset was left out by placement: big-v1 (over_budget)"),
    ],
)
def test_nothing_to_do_is_a_clean_verdict_with_its_reason(jobs, dry_run, left_out, expected) -> None:
    verdict = compute_verdict(jobs, [], dry_run=dry_run, left_out=left_out)
    assert verdict.ok and verdict.nothing_to_do == expected
    assert verdict.lines() == [f"nothing to do: {expected}"]
    raise_if_incomplete(verdict)
    assert nothing_to_do_reason(planned=len(jobs), dry_run=dry_run, left_out=left_out) == expected
    assert nothing_to_do_reason(planned=2, dry_run=False) is None


def test_the_error_is_not_retried() -> None:
    assert issubclass(IncompleteRunError, AirflowFailException)


def test_states_by_map_index_reads_the_execution_api_keys() -> None:
    states = {"train_0": "success", "train_1": "failed", "train_10": None, "collect_1": "failed",
              "train_extra_2": "success", "train": "success"}
    assert states_by_map_index(states, "train") == {0: "success", 1: "failed", 10: None}
    assert states_by_map_index(states, "collect") == {1: "failed"}


def test_reused_targets_count_as_done_and_the_mapped_indexes_skip_them() -> None:
    # Issue 15: targets 0 and 2 were reused (not launched); the two launched ones are
    # mapped as train[0] (eu-west-1) and train[1] (us-west-2).
    rows = [row("us-east-1", "Reused", reused_from_run_id="last-night"),
            row("ap-south-1", "Reused", reused_from_run_id="last-night"), row("eu-west-1")]
    verdict = compute_verdict(JOBS, rows, train_states={0: "success", 1: "failed"})
    assert [(t.target_key, t.outcome, t.map_index) for t in verdict.targets] == [
        ("us-east-1-data", "reused", None), ("eu-west-1-data", "completed", 0),
        ("ap-south-1-data", "reused", None), ("us-west-2-data", "not_recorded", 1)]
    assert verdict.headline() == ("3 of 4 planned target(s) completed and recorded "
                                  "(2 reused from an identical earlier job, not trained again)")
    (failed,) = verdict.incomplete
    assert "train[1] ended failed" in (failed.reason or "")
    everything_reused = compute_verdict(JOBS, [row(r, "Reused", reused_from_run_id="x") for r in REGIONS])
    assert everything_reused.ok and everything_reused.nothing_to_do is None


@pytest.mark.parametrize(("status", "reason", "expected"), [
    ("Stopped", "MaxWaitTimeExceeded: Training job exceeded MaxWaitTimeInSeconds", "MaxWaitTimeExceeded: Training job"),
    ("Stopped", None, "job ended Stopped; SageMaker gave no reason"),
    ("Failed", "", "job ended Failed; SageMaker gave no reason"),
    ("NotStarted", None, "no job was created"),
])
def test_a_failed_row_is_reported_in_sagemakers_words_or_says_it_gave_none(status: str, reason: str | None,
                                                                             expected: str) -> None:
    # The recorded failure_reason (attempts.ended_reason) is what a person reads; a row
    # without one says SageMaker gave none rather than a bare "job ended Stopped".
    verdict = compute_verdict([job("eu-west-1")], [row("eu-west-1", status, reason)], train_states={0: "failed"})
    (target,) = verdict.targets
    assert target.reason is not None and target.reason.startswith(expected)
    if reason:
        assert target.reason == reason
