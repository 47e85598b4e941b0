"""``launch_batch_array``'s links read no XCom (issue 33, item 5).

The task SDK's ``finalize`` resolves every ``operator_extra_links`` entry at the end of
each try; the provider's Batch links read an XCom each, and the task SDK's client logs
every missing one as an error ("XCom not found"). A skipped launch (every run whose
launcher is not ``batch_array``) persisted none of the four, a launch that does not wait
persisted one. The operator's one link is formatted from the job it holds.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from unittest import mock

import pytest
from airflow.providers.amazon.aws.links.base_aws import BaseAwsLink
from airflow.providers.amazon.aws.links.batch import BatchJobDetailsLink
from airflow.sdk.exceptions import AirflowSkipException

from regional_training.launch import batch_jobs
from regional_training.report.links import BatchArrayJobLink

KEY = SimpleNamespace(dag_id="multi_region_training", task_id="launch_batch_array", run_id="r", map_index=-1,
                      try_number=1)


def _launch() -> batch_jobs.BatchArrayLaunchOperator:
    return batch_jobs.BatchArrayLaunchOperator(task_id="launch_batch_array", array_uri="s3://b/k", jobs=[],
                                               aws_conn_id="aws_default", region_name="us-east-1")


def _links(operator: batch_jobs.BatchArrayLaunchOperator) -> dict[str, str]:
    """What ``finalize`` stores, with any XCom read failing the test."""
    with mock.patch("airflow.providers.amazon.aws.links.base_aws.XCom") as xcom:
        xcom.get_value.side_effect = AssertionError("a link read an XCom")
        links = {link.name: link.get_link(operator, ti_key=KEY) for link in operator.operator_extra_links}
        assert not xcom.mock_calls
    return links


@pytest.mark.parametrize(("params", "reason"), [({"launcher": "airflow"}, "no array job"),
                                                ({"launcher": "batch_service"}, "no array job"),
                                                ({"launcher": "batch_array"}, "nothing to launch")])
def test_a_skipped_launch_has_no_link_and_reads_no_xcom(
    params: dict[str, str], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    launch = _launch()
    run = SimpleNamespace(params=params)
    with mock.patch("regional_training.run.run_context.current_run", return_value=run), \
            pytest.raises(AirflowSkipException, match=reason):
        launch.execute({})
    with caplog.at_level(logging.DEBUG):
        assert _links(launch) == {"Batch Job Details": ""}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_a_launch_links_the_job_it_holds_without_xcom() -> None:
    launch = _launch()
    launch.job_id, launch.region_name = "6f1c-42", "us-west-2"
    assert _links(launch) == {
        "Batch Job Details": "https://console.aws.amazon.com/batch/home?region=us-west-2#jobs/detail/6f1c-42"}
    launch.region_name = "cn-north-1"
    assert _links(launch)["Batch Job Details"].startswith("https://console.amazonaws.cn/batch/")


def test_no_provider_link_that_reads_xcom_is_left() -> None:
    links = batch_jobs.BatchArrayLaunchOperator.operator_extra_links
    assert [type(link) for link in links] == [BatchArrayJobLink]
    # The same name and key as the provider's job link (the UI shows the same link) and
    # its get_link is ours: BaseAwsLink's reads the XCom.
    assert (BatchArrayJobLink.name, BatchArrayJobLink.key) == (BatchJobDetailsLink.name, BatchJobDetailsLink.key)
    assert BatchArrayJobLink.get_link is not BaseAwsLink.get_link
