"""After a refusal in ``select_targets`` (or a step after it) ``summarize`` gets no plan
(``jobs`` is ``None``): it must skip cleanly, not crash with ``TypeError: len(None)``
three times before the watcher fails the run with the right message (issue 33)."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowSkipException

from regional_training import tasks
from regional_training.report.verdict import IncompleteRunError
from regional_training.run.run_context import Run


@pytest.mark.parametrize("left_out", [None, []])
def test_summarize_without_a_plan_skips_and_names_why(left_out: list | None) -> None:
    run = Run(dag_id="d", run_id="r", params={})
    with pytest.raises(AirflowSkipException, match="no plan: select_targets"):
        tasks.summarize_run(run, None, left_out)


@pytest.mark.parametrize("rows", [None, []])
def test_record_late_without_a_plan_records_nothing(rows: list | None) -> None:
    # Outside a task (no task instance) there is no jobs_to_launch XCom to read: nothing.
    assert tasks.record_late(Run(dag_id="d", run_id="r", params={}), rows) == []


def test_the_watcher_then_fails_the_run_naming_the_missing_plan() -> None:
    run = Run(dag_id="d", run_id="r", params={})
    with pytest.raises(IncompleteRunError, match="no plan: select_targets"):
        tasks.check_regions(run, None, None, None, None)
