"""Every AWS call the DAG makes is one the IAM policy grants (deploy/iam/aws_calls.py).

The DAG runs in-process, so wrapping botocore's (and aiobotocore's, for the deferred
triggers) ``_make_api_call`` records exactly the operations the Airflow role performs.
"""

from __future__ import annotations

from typing import Any

import pytest

from dev.local_stack import LOCAL_RUN_CONF

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]


def record_calls(monkeypatch: pytest.MonkeyPatch) -> set[tuple[str, str]]:
    """(service, operation) of every call made from now on, through botocore or aiobotocore.

    Not counted: the one request the triggerer's warm-up prepares and answers itself
    without sending (``async_clients.warm_service_data``: placeholder keys ``warm-up``,
    a ``before-send`` answer), which never reaches AWS and needs no permission.
    """
    import aiobotocore.client
    import botocore.client

    calls: set[tuple[str, str]] = set()
    sync_call = botocore.client.BaseClient._make_api_call
    async_call = aiobotocore.client.AioBaseClient._make_api_call

    def record(client: Any, operation: str) -> None:
        credentials = getattr(client._request_signer, "_credentials", None)
        if getattr(credentials, "access_key", None) != "warm-up":
            calls.add((client.meta.service_model.service_name, operation))

    def sync_wrapper(self: Any, operation: str, params: Any) -> Any:
        record(self, operation)
        return sync_call(self, operation, params)

    async def async_wrapper(self: Any, operation: str, params: Any) -> Any:
        record(self, operation)
        return await async_call(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", sync_wrapper)
    monkeypatch.setattr(aiobotocore.client.AioBaseClient, "_make_api_call", async_wrapper)
    return calls


def test_the_dag_only_makes_calls_the_airflow_role_allows(offline_stack: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from deploy.iam.aws_calls import AIRFLOW_ROLE_CALLS
    from dev.local_stack import REPO

    calls = record_calls(monkeypatch)
    dag = DagBag(dag_folder=str(REPO / "dags" / "multi_region_training.py")).dags["multi_region_training"]
    dag_run = dag.test(run_conf={**LOCAL_RUN_CONF, "regions": ["eu-west-1", "us-west-2"]})
    assert str(dag_run.state) == "success"

    assert ("sagemaker", "CreateTrainingJob") in calls and ("s3", "CopyObject") in calls
    missing = sorted(calls - set(AIRFLOW_ROLE_CALLS))
    assert not missing, f"calls the Airflow role's policy does not list (deploy/iam/aws_calls.py): {missing}"


@pytest.mark.parametrize("launcher", ["batch_array", "batch_service"])
def test_the_batch_launchers_only_make_calls_their_roles_allow(
    offline_stack: str, monkeypatch: pytest.MonkeyPatch, launcher: str
) -> None:
    """The DAG's calls (Airflow role) with each Batch launcher; for ``batch_array`` also a
    child's calls (launcher role), made here by the launcher entry point in-process."""
    from airflow.dag_processing.dagbag import DagBag

    from deploy.iam.aws_calls import AIRFLOW_ROLE_CALLS, BATCH_LAUNCHER_ROLE_CALLS
    from dev.local_stack import REPO, aws_client
    from regional_training.launch import batch_jobs, batch_launcher
    from regional_training.run import run_layout

    calls = record_calls(monkeypatch)
    dag = DagBag(dag_folder=str(REPO / "dags" / "multi_region_training.py")).dags["multi_region_training"]
    dag_run = dag.test(run_conf={**LOCAL_RUN_CONF, "regions": ["eu-west-1", "us-west-2"], "launcher": launcher})
    assert str(dag_run.state) == "success"
    expected = ("batch", "SubmitJob") if launcher == "batch_array" else ("batch", "SubmitServiceJob")
    assert expected in calls
    missing = sorted(calls - set(AIRFLOW_ROLE_CALLS))
    assert not missing, f"calls the Airflow role's policy does not list (deploy/iam/aws_calls.py): {missing}"
    if launcher != "batch_array":
        return

    # A child of the array job, again (it reattaches to its completed job): the launcher role's calls.
    calls.clear()
    prefix = f"s3://mrt-central-artifacts/runs/{run_layout.run_key('multi_region_training', dag_run.run_id)}"
    monkeypatch.setenv("AWS_BATCH_JOB_ARRAY_INDEX", "0")
    monkeypatch.setenv("AWS_ENDPOINT_URL", offline_stack)
    args = ["--array-uri", f"{prefix}/array.csv", "--requests-uri", f"{prefix}/requests.json",
            "--region", "us-east-1", "--poll-seconds", "1"]
    assert batch_launcher.main(args) == 0
    assert ("s3", "GetObject") in calls and ("sagemaker", "DescribeTrainingJob") in calls
    missing = sorted(calls - set(BATCH_LAUNCHER_ROLE_CALLS))
    assert not missing, f"calls the launcher role's policy does not list (deploy/iam/aws_calls.py): {missing}"
    assert aws_client("batch", offline_stack, "us-east-1").list_jobs(
        jobQueue="mrt-launchers", filters=[{"name": "JOB_NAME", "values": [
            batch_jobs.array_job_name("multi_region_training", dag_run.run_id)]}])["jobSummaryList"]
