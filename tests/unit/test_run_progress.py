"""The local runner's progress line (dev/airflow_services.py): per region, and the tasks
that have not run yet (their names, region + target, are rendered when they run)."""

from __future__ import annotations

from dev.airflow_services import NOT_STARTED, RunProgress


def _ti(task_id: str, map_index: int, state: str | None, name: str | None) -> dict:
    return {"task_id": task_id, "map_index": map_index, "state": state, "rendered_map_index": name}


def test_progress_counts_training_tasks_by_region_and_not_started_apart() -> None:
    tis = [
        _ti("train", 0, "success", "eu-west-1 ds-a"),
        _ti("train", 1, "deferred", "eu-west-1 ds-b"),
        _ti("train", 2, "failed", "us-east-1 ds-c"),
        _ti("train", 3, None, None),
        _ti("train", 4, "scheduled", None),
        _ti("collect", 0, "success", "eu-west-1 ds-a"),  # not a training task
        _ti("select_targets", -1, "success", None),
    ]
    progress = RunProgress.of(tis)
    assert progress.counts[NOT_STARTED]["waiting"] == 2
    assert progress.line() == ("2 not started | eu-west-1 1 trained, 1 running, 0 waiting | "
                               "us-east-1 0 trained, 0 running, 0 waiting, 1 failed")


def test_tasks_that_failed_before_starting_are_still_counted_failed() -> None:
    tis = [_ti("train", 0, None, None), _ti("train", 1, "upstream_failed", None)]
    assert RunProgress.of(tis).line() == "1 not started, 1 failed"


def test_no_training_task_yet() -> None:
    assert RunProgress.of([_ti("select_targets", -1, "running", None)]).line() == "no training tasks yet"


def test_unnamed_tasks_that_run_or_ended_are_said_not_dropped() -> None:
    tis = [_ti("train", 0, None, None), _ti("train", 1, "running", None), _ti("train", 2, "success", "target-2")]
    assert RunProgress.of(tis).line() == "1 not started, 1 running, 1 trained"


def test_log_findings_count_errors_credentials_and_the_triggerers_blocked_warnings() -> None:
    from dev.airflow_services import LogFindings

    logged = {
        "scheduler": ["2026-12-07T15:56:22Z [info     ] fine", "2026-12-07T15:56:23Z [error    ] XCom not found"],
        "triggerer-1": ["2026-12-07T15:56:22Z [info     ] Triggerer's async thread was blocked for 0.21 seconds, "
                        "exceeding the configured warning threshold of 0.20 seconds."],
        "triggerer-2": ["Triggerer's async thread was blocked for 0.34 seconds", "Traceback (most recent call last):"],
        # Not a triggerer: its lines of the same words are not the watchdog's.
        "api-server": ["Found credentials in environment variables.", "async thread was blocked for 9.00 seconds"],
    }
    findings = LogFindings.of(logged)
    assert findings.errors == {"scheduler": [logged["scheduler"][1]], "triggerer-1": [],
                               "triggerer-2": ["Traceback (most recent call last):"], "api-server": []}
    assert findings.credential_lines == 1
    assert sorted(findings.blocked_s) == [0.21, 0.34]
    assert findings.line() == ("2 error-level lines, 1 'Found credentials' lines, "
                               "2 triggerer 'blocked' warnings (s: 0.21, 0.34)")
