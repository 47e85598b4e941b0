"""Every AWS call the DAG makes is one the IAM policy grants (deploy/iam/aws_calls.py).

The DAG runs in-process, so wrapping botocore's (and aiobotocore's, for the deferred
triggers) ``_make_api_call`` records exactly the operations the Airflow role performs.
"""

from __future__ import annotations

from typing import Any

import pytest

from local_stack import LOCAL_RUN_CONF

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]


def test_the_dag_only_makes_calls_the_airflow_role_allows(offline_stack: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import aiobotocore.client
    import botocore.client
    from airflow.dag_processing.dagbag import DagBag

    from deploy.iam.aws_calls import AIRFLOW_ROLE_CALLS
    from local_stack import REPO

    calls: set[tuple[str, str]] = set()
    sync_call = botocore.client.BaseClient._make_api_call
    async_call = aiobotocore.client.AioBaseClient._make_api_call

    def record(client: Any, operation: str) -> None:
        calls.add((client.meta.service_model.service_name, operation))

    def sync_wrapper(self: Any, operation: str, params: Any) -> Any:
        record(self, operation)
        return sync_call(self, operation, params)

    async def async_wrapper(self: Any, operation: str, params: Any) -> Any:
        record(self, operation)
        return await async_call(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", sync_wrapper)
    monkeypatch.setattr(aiobotocore.client.AioBaseClient, "_make_api_call", async_wrapper)
    dag = DagBag(dag_folder=str(REPO / "dags" / "multi_region_training.py")).dags["multi_region_training"]
    dag_run = dag.test(run_conf={**LOCAL_RUN_CONF, "regions": ["eu-west-1", "us-west-2"]})
    assert str(dag_run.state) == "success"

    assert ("sagemaker", "CreateTrainingJob") in calls and ("s3", "CopyObject") in calls
    missing = sorted(calls - set(AIRFLOW_ROLE_CALLS))
    assert not missing, f"calls the Airflow role's policy does not list (deploy/iam/aws_calls.py): {missing}"
