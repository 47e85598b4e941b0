"""What the project's triggers need of the Amazon provider: loaded in a worker thread.

:mod:`regional_training.launch.triggers` holds the trigger classes and imports nothing heavy,
because Airflow's triggerer imports a trigger's class inside its event loop
(``TriggerRunner.get_trigger_by_classpath``). The provider's hooks and SageMaker trigger
(boto3 and botocore behind them: about 0.12 s of CPU) are imported from here, by
:func:`regional_training.launch.triggers.load_trigger_hooks`, off the loop.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger

from regional_training.runtime.async_clients import SharedClientHookMixin
from regional_training.runtime.aws_hooks import BatchClientHook, SageMakerHook

__all__ = ["SageMakerJobWaiter", "SharedClientBatchHook", "SharedClientSageMakerHook"]


class SharedClientSageMakerHook(SharedClientHookMixin, SageMakerHook):
    """The provider's hook, lending one aiobotocore client to the triggers polling the
    same region at once (building a client blocks the triggerer's loop: async_clients)."""


class SharedClientBatchHook(SharedClientHookMixin, BatchClientHook):
    """The Batch hook of the service-job triggers: one aiobotocore client per region lent to
    every trigger polling it at once, its botocore data loaded outside the event loop
    (:mod:`regional_training.runtime.async_clients`)."""


class SageMakerJobWaiter(SageMakerTrigger):
    """The provider's SageMaker polling (its waiter, its events), on the shared client: what
    :class:`regional_training.launch.triggers.StoppingSageMakerTrigger` runs. Never serialized:
    the trigger Airflow stores is the light one."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    def hook(self) -> SageMakerHook:
        return SharedClientSageMakerHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name,
                                         verify=self.verify, config=self.botocore_config)
