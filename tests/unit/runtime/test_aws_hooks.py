"""aws_hooks: the provider's hooks, naming their caller without ``inspect.stack()``."""

from __future__ import annotations

import inspect
import json
from typing import Any
from unittest import mock

import pytest
from airflow.exceptions import AirflowException
from airflow.providers.amazon.aws.hooks.s3 import S3Hook as ProviderS3Hook
from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook as ProviderSageMakerHook

from regional_training import operators
from regional_training.launch import batch_jobs
from regional_training.runtime import aws_hooks, aws_io

CONN = json.dumps({"conn_type": "aws", "login": "AKIDEXAMPLE", "password": "secret-example",
                   "extra": {"endpoint_url": "http://127.0.0.1:9"}})


@pytest.fixture(autouse=True)
def _aws_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", CONN)


class FakeTrainingOperator:
    """Stands where an operator's ``execute`` calls a hook."""

    def __init__(self, hook_cls: type) -> None:
        self.hook_cls = hook_cls

    def execute(self) -> str:
        return self._client_config()

    def _client_config(self) -> str:
        hook = self.hook_cls(aws_conn_id="aws_default", region_name="eu-west-1")
        return str(hook._get_config().user_agent_extra)


class BaseSensorOperator:
    """Named as the provider's sensor base: the provider then looks for ``poke``."""

    def execute(self) -> str:
        return FakeSensor().poke()


class FakeSensor:
    def poke(self) -> str:
        return str(aws_hooks.S3Hook(aws_conn_id="aws_default")._get_config().user_agent_extra)


def _caller(user_agent: str) -> str:
    return next(part for part in user_agent.split() if part.startswith("Caller/"))


def test_the_user_agent_is_the_providers() -> None:
    ours = FakeTrainingOperator(aws_hooks.SageMakerHook).execute()
    theirs = FakeTrainingOperator(ProviderSageMakerHook).execute()
    assert ours == theirs
    assert _caller(ours) == "Caller/FakeTrainingOperator"


def test_a_sensor_is_named_by_what_called_poke() -> None:
    assert _caller(BaseSensorOperator().execute()) == "Caller/FakeSensor"


def test_no_execute_on_the_stack_is_unknown() -> None:
    hook = aws_hooks.S3Hook(aws_conn_id="aws_default")
    assert _caller(str(hook._get_config().user_agent_extra)) == "Caller/Unknown"


def test_the_caller_is_found_without_inspect_stack() -> None:
    """The provider's way reads every frame's source; ours must not call it at all."""
    with mock.patch.object(inspect, "stack", side_effect=AssertionError("inspect.stack() called")):
        assert _caller(FakeTrainingOperator(aws_hooks.SageMakerHook).execute()) == "Caller/FakeTrainingOperator"
        with pytest.raises(AssertionError, match=r"inspect\.stack"):
            ProviderS3Hook(aws_conn_id="aws_default")._find_operator_class_name("execute")


def test_every_hook_the_project_makes_is_ours() -> None:
    """aws_io's hooks, the operator's, the SageMaker hook's own S3 and logs hooks, the
    triggers' and the Batch launcher's: each one names its caller cheaply."""
    hooks: list[Any] = [aws_io._hook("s3", "eu-west-1"), aws_io._hook("sagemaker", "eu-west-1")]
    op = operators.DurableSageMakerTrainingOperator(task_id="t", config={"TrainingJobName": "x"},
                                                    region_name="eu-west-1", aws_conn_id="aws_default")
    sagemaker = op._hook("eu-west-1")
    hooks += [sagemaker, sagemaker.s3_hook, sagemaker.logs_hook]
    trigger = operators.StoppingSageMakerTrigger(job_name="x", job_type="Training", region_name="eu-west-1",
                                                 aws_conn_id="aws_default")
    hooks.append(trigger.hook())
    service = batch_jobs.BatchServiceJobTrigger(service_job_id="j", job_name="x", region_name="eu-west-1",
                                                capacity_wait_seconds=0, poll_seconds=1, aws_conn_id="aws_default",
                                                botocore_config=None)
    hooks.append(service.hook())
    launch = batch_jobs.BatchArrayLaunchOperator(task_id="launch", array_uri="s3://b/k", jobs=[],
                                                 aws_conn_id="aws_default", region_name="eu-west-1")
    hooks.append(launch.hook)
    assert [type(h).__name__ for h in hooks if not isinstance(h, aws_hooks.QuickCallerMixin)] == []


def _channel(uri: str) -> dict[str, Any]:
    return {"ChannelName": "train", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri}}}


def test_inputs_pre_flight_found_are_not_checked_again() -> None:
    """The provider's ``create_training_job`` checks each input channel with its S3 hook;
    a URI pre-flight found is skipped, any other is checked as the provider does."""
    hook = aws_hooks.SageMakerHook(aws_conn_id="aws_default", region_name="eu-west-1",
                                   checked_s3_urls=["s3://data-eu/drive-1/"])
    with mock.patch.object(hook.s3_hook, "check_for_bucket", return_value=False) as check_for_bucket:
        hook.check_training_config({"InputDataConfig": [_channel("s3://data-eu/drive-1/")]})
        check_for_bucket.assert_not_called()
        with pytest.raises(AirflowException, match="The input S3 Bucket data-other does not exist"):
            hook.check_training_config({"InputDataConfig": [_channel("s3://data-eu/drive-1/"),
                                                            _channel("s3://data-other/drive-1/")]})
        check_for_bucket.assert_called_once_with(bucket_name="data-other")
