"""Operator extra links: the train task's job and logs in the job's own region, following
it after a failover; the summarize task's report link; local equivalents offline."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest

from regional_training.report import links


class FakeTI:
    """Records XCom pushes the way the task runner stores them (last value per key wins)."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


@pytest.fixture()
def pushed(monkeypatch: pytest.MonkeyPatch) -> FakeTI:
    monkeypatch.delenv(links.LINKS_BASE_URL_ENV, raising=False)
    ti = FakeTI()
    # BaseAwsLink reads the value back with XCom.get_value(key=..., ti_key=...).
    monkeypatch.setattr("airflow.providers.amazon.aws.links.base_aws.XCom.get_value",
                        lambda key, ti_key: ti.xcom.get(key))
    return ti


def _links(ti_key: Any) -> tuple[str, str]:
    return (links.SageMakerTrainingJobLink().get_link(mock.Mock(), ti_key=ti_key),
            links.TrainingJobLogsLink().get_link(mock.Mock(), ti_key=ti_key))


def test_train_links_follow_the_job_into_the_region_it_failed_over_to(pushed: FakeTI) -> None:
    operator: Any = SimpleNamespace(do_xcom_push=True)
    context: Any = {"ti": pushed}
    ti_key = SimpleNamespace(dag_id="multi_region_training", run_id="r1", task_id="train", map_index=1)
    assert _links(ti_key) == ("", "")  # nothing launched yet: no link
    links.persist_training_job(context, operator, region_name="eu-west-1", job_name="mrt-dublin-abc", attempt=1)
    job, logs = _links(ti_key)
    assert job == "https://console.aws.amazon.com/sagemaker/home?region=eu-west-1#/jobs/mrt-dublin-abc"
    assert logs.startswith("https://console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logsV2:log-groups/")
    assert "%2Faws%2Fsagemaker%2FTrainingJobs" in logs and logs.endswith("mrt-dublin-abc")
    # capacity error in eu-west-1: the operator moves to us-east-1 and pushes the new job
    links.persist_training_job(context, operator, region_name="us-east-1", job_name="mrt-dublin-def-a2", attempt=2)
    assert pushed.xcom[links.TRAINING_JOB_KEY] == {"region_name": "us-east-1", "aws_domain": "aws.amazon.com",
                                                   "job_name": "mrt-dublin-def-a2", "attempt": 2}
    job, logs = _links(ti_key)
    assert job == "https://console.aws.amazon.com/sagemaker/home?region=us-east-1#/jobs/mrt-dublin-def-a2"
    assert "region=us-east-1" in logs and "eu-west-1" not in job + logs


def test_offline_the_links_open_the_local_stack_through_the_campaign_view(
    pushed: FakeTI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(links.LINKS_BASE_URL_ENV, "http://127.0.0.1:8080/campaign/")
    context: Any = {"ti": pushed}
    operator: Any = SimpleNamespace(do_xcom_push=True)
    links.persist_training_job(context, operator, region_name="us-west-2", job_name="mrt-seattle", attempt=1)
    ti_key = SimpleNamespace(dag_id="d", run_id="r", task_id="train", map_index=0)
    assert _links(ti_key) == ("http://127.0.0.1:8080/campaign/jobs/us-west-2/mrt-seattle",
                              "http://127.0.0.1:8080/campaign/logs/us-west-2/mrt-seattle")
    summarize = SimpleNamespace(dag_id="multi_region_training", run_id="manual__2026-11-28T01:00:00+00:00",
                                task_id="summarize", map_index=-1)
    assert links.RunReportLink().get_link(mock.Mock(), ti_key=summarize) == (
        "http://127.0.0.1:8080/campaign/runs/multi_region_training/manual__2026-11-28T01%3A00%3A00%2B00%3A00/report")


def test_the_report_link_belongs_to_summarize_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(links.LINKS_BASE_URL_ENV, raising=False)
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com")
    link = links.RunReportLink()
    key = SimpleNamespace(dag_id="multi_region_training", run_id="scheduled__x", task_id="summarize", map_index=-1)
    assert link.get_link(mock.Mock(), ti_key=key) == (
        "https://airflow.example.com/campaign/runs/multi_region_training/scheduled__x/report")
    assert link.get_link(mock.Mock(), ti_key=SimpleNamespace(**{**vars(key), "task_id": "collect"})) == ""


def test_report_links_name_each_targets_job_logs_and_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import report_support as rs

    monkeypatch.delenv(links.LINKS_BASE_URL_ENV, raising=False)
    summary, _ = rs.failed_and_moved_run()
    out = links.report_links(summary, dag_id="multi_region_training", api_base_url="http://af")
    assert out[""]["this report"].startswith("http://af/campaign/runs/multi_region_training/")
    moved = out[rs.DATASETS["eu-west-1"]]
    assert "region=us-east-1" in moved["SageMaker job"] and moved["model"].startswith("s3://")
    assert "model" not in out[rs.DATASETS["eu-central-1"]]  # the failed region has no model


def test_the_api_server_gives_summarize_the_report_link(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the API server does: deserialize the DAG with the plugins' links."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    monkeypatch.delenv(links.LINKS_BASE_URL_ENV, raising=False)
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.local:8080")
    dag = DagBag(str(Path(__file__).resolve().parents[2] / "dags")).dags["multi_region_training"]
    served = DagSerialization.from_dict(DagSerialization.to_dict(dag))

    def link_of(task_id: str) -> dict[str, str]:
        task = served.get_task(task_id)
        key: Any = SimpleNamespace(dag_id=dag.dag_id, run_id="manual__2026-11-28", task_id=task_id, map_index=-1)
        return {link.name: link.get_link(task, ti_key=key) for link in task.operator_extra_links}

    assert link_of("summarize") == {
        "Run report": "http://airflow.local:8080/campaign/runs/multi_region_training/manual__2026-11-28/report"}
    assert link_of("select_targets") == {"Run report": ""}
