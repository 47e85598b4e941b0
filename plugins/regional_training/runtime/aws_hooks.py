"""The Amazon provider's hooks as this project makes them: the same classes, minus one
expensive way of naming their caller.

Every time a provider hook makes a client (``conn``, ``get_client_type``,
``get_async_conn``), ``AwsGenericHook._get_config`` puts the calling operator's class
in the user agent (``Caller/<class>``). It finds it with ``inspect.stack()``, which reads
the source line of every frame on the stack, and for that maps every frame's file to a
module by scanning all of ``sys.modules`` (``inspect.getmodule``). In a task try of this
DAG that is about 2,000 modules, once per client: a quarter of all the CPU the task
tries used in a profiled 32-target run on the real services (py-spy; docs/services.md,
"Per target"), more than loading botocore's models. In the triggerer it runs inside the
event loop, for each client a trigger opens.

:class:`QuickCallerMixin` finds the same class by walking the frames themselves, without
their source: the innermost frame running ``execute`` (``poke`` under a sensor), its
``self``'s class name. The user agent is otherwise the provider's. The provider's last
resort, an executor class on the stack, is never ours (our hooks run in operators,
triggers, tasks and the API server), so the mixin says ``Unknown`` where it would look.

Use these classes wherever the project makes a hook, and :class:`SageMakerHook` gives
the S3 and logs hooks it makes for itself (``create_training_job`` checks the request's
S3 URIs with one) the mixin too.
"""

from __future__ import annotations

import sys
from collections.abc import Collection
from types import FrameType
from typing import Any

from airflow.providers.amazon.aws.hooks import batch_client, logs, s3, sagemaker

from regional_training.runtime.aws_sessions import quiet_credential_logs

quiet_credential_logs()  # every process making the project's hooks (aws_sessions)

__all__ = ["AwsLogsHook", "BatchClientHook", "QuickCallerMixin", "S3Hook", "SageMakerHook", "calling_class"]


def calling_class(function_name: str) -> str | None:
    """The class of ``self`` in the innermost frame, above the caller's, running
    ``function_name``, or None: what the provider's ``_find_operator_class_name``
    returns, without ``inspect.stack()``."""
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == function_name:
            owner = frame.f_locals.get("self")
            return type(owner).__name__ if owner is not None else None
        frame = frame.f_back
    return None


class QuickCallerMixin:
    """Mix in before a provider hook: names the caller by :func:`calling_class`."""

    def _get_caller(self, target_function_name: str = "execute") -> str:
        caller = calling_class(target_function_name)
        if caller == "BaseSensorOperator":  # as the provider: whatever last called poke
            caller = calling_class("poke")
        return caller or "Unknown"


class S3Hook(QuickCallerMixin, s3.S3Hook):
    """The provider's S3 hook (:mod:`regional_training.runtime.aws_hooks`)."""


class AwsLogsHook(QuickCallerMixin, logs.AwsLogsHook):
    """The provider's CloudWatch Logs hook (:mod:`regional_training.runtime.aws_hooks`)."""


class BatchClientHook(QuickCallerMixin, batch_client.BatchClientHook):
    """The provider's AWS Batch hook (:mod:`regional_training.runtime.aws_hooks`)."""


class SageMakerHook(QuickCallerMixin, sagemaker.SageMakerHook):
    """The provider's SageMaker hook (:mod:`regional_training.runtime.aws_hooks`), its own S3 and
    logs hooks of this module too.

    :param checked_s3_urls: input URIs this run's pre-flight already found, in this
        hook's region (:mod:`regional_training.launch.preflight`): ``create_training_job`` does
        not check them again. The provider's check makes its own S3 client and up to
        three calls per channel (``HeadBucket``, a ``HeadObject`` that fails for a
        prefix, a listing): 11 % of the task tries' CPU in a profiled run
        (docs/services.md, "Per target"). Any other URI is checked as the provider does.
    """

    def __init__(self, *args: Any, checked_s3_urls: Collection[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The provider makes them here, with the connection only (no region), as we do.
        self.s3_hook = S3Hook(aws_conn_id=self.aws_conn_id)
        self.logs_hook = AwsLogsHook(aws_conn_id=self.aws_conn_id)
        self.checked_s3_urls = frozenset(checked_s3_urls)

    def check_s3_url(self, s3url: str) -> bool:
        if s3url in self.checked_s3_urls:
            return True
        return bool(super().check_s3_url(s3url))
