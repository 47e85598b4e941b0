"""``launch_batch_array`` skipped (launcher other than batch_array, or nothing to launch)
persisted none of the Batch operator's links, so the end of its try must not look for
them: the task SDK's ``finalize`` reads each ``operator_extra_links`` entry's XCom, and
its client logs every missing one as an error ("XCom not found"), four per clean run."""

from __future__ import annotations

from types import SimpleNamespace
from unittest import mock

import pytest
from airflow.providers.amazon.aws.operators.batch import BatchOperator
from airflow.sdk.exceptions import AirflowSkipException

from regional_training import batch_jobs


def _launch() -> batch_jobs.BatchArrayLaunchOperator:
    return batch_jobs.BatchArrayLaunchOperator(task_id="launch_batch_array", array_uri="s3://b/k", jobs=[],
                                               aws_conn_id="aws_default", region_name="us-east-1")


@pytest.mark.parametrize(("params", "reason"), [({"launcher": "airflow"}, "no array job"),
                                                ({"launcher": "batch_service"}, "no array job"),
                                                ({"launcher": "batch_array"}, "nothing to launch")])
def test_a_skipped_launch_reads_no_batch_link(params: dict[str, str], reason: str) -> None:
    launch = _launch()
    assert len(launch.operator_extra_links) == 4  # BatchOperator's, for a try that submits
    run = SimpleNamespace(params=params)
    with mock.patch("regional_training.run_context.current_run", return_value=run), \
            pytest.raises(AirflowSkipException, match=reason):
        launch.execute({})
    assert tuple(launch.operator_extra_links) == ()
    # Only that try's instance: the class (and so every other try) keeps the links.
    assert BatchOperator.operator_extra_links == batch_jobs.BatchArrayLaunchOperator.operator_extra_links
    assert len(_launch().operator_extra_links) == 4
