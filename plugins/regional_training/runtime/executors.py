"""Airflow's LocalExecutor, its workers started with what every task try of this DAG loads.

A LocalExecutor forks its worker processes from the scheduler when it starts, and each
worker forks one process per task try, which parses the DAG file, imports what it names
(the Amazon provider, boto3, TaskFlow, this package) and builds its AWS clients from
botocore's JSON models. Profiled on the real services (py-spy over a 32-target run,
docs/services.md, "Per target"), parsing the DAG file was about 40 % of all the task
tries' CPU and loading botocore's models about 15 %, the same work in every try.

:class:`PreloadedLocalExecutor` does that work once, in the scheduler, just before the
executor forks its workers; every try then starts with it done (copy-on-write memory,
frozen for the garbage collector by the LocalExecutor itself). The models are loaded
into :data:`regional_training.runtime.aws_sessions.LOADER`, so the tries' clients use them when
``[aws] session_factory`` is :class:`regional_training.runtime.aws_sessions.SharedLoaderSessionFactory`.
Set ``[core] executor = regional_training.runtime.executors.PreloadedLocalExecutor``
(``AIRFLOW__CORE__EXECUTOR``); the local stack and compose do. Nothing else changes: a
module that fails to import is logged and left to the try, as without the preload.
"""

from __future__ import annotations

import importlib
import logging
import warnings

from airflow.executors.local_executor import LocalExecutor

log = logging.getLogger(__name__)

#: What a try of this DAG imports: the DAG file's modules and what the tasks import when
#: they run (collection's database hook and S3 I/O, the training task's attempts and its
#: launch driver and backends). The provider's SageMaker trigger module stays: the
#: triggerer's hooks (trigger_hooks) import it.
PRELOAD_MODULES = (
    "airflow.providers.amazon.aws.hooks.batch_client",
    "airflow.providers.amazon.aws.operators.sagemaker",
    "airflow.providers.amazon.aws.triggers.sagemaker",
    "airflow.providers.postgres.hooks.postgres",
    "airflow.sdk.bases.decorator",
    "regional_training.run",
    "regional_training.run.assets",
    "regional_training.launch.attempts",
    "regional_training.runtime.aws_hooks",
    "regional_training.runtime.aws_io",
    "regional_training.launch.batch_jobs",
    "regional_training.record.collection",
    "regional_training.launch.jobs",
    "regional_training.launch",
    "regional_training.launch.backends",
    "regional_training.launch.batch_array",
    "regional_training.launch.batch_service",
    "regional_training.launch.driver",
    "regional_training.launch.job",
    "regional_training.launch.sagemaker",
    "regional_training.operators",
    "regional_training.plan.params",
    "regional_training.record.recording",
    "regional_training.launch.retry_policy",
    "regional_training.run.run_context",
    "regional_training.run.run_keys",
    "regional_training.runtime.strict_params",
    "regional_training.runtime.taskflow",
    "regional_training.tasks",
)

#: The services whose clients the tries make, each with an operation they page through
#: (asking whether it pages loads the service's paginator model).
PRELOAD_SERVICES = {"sagemaker": "list_training_jobs", "s3": "list_objects_v2"}

#: Warnings every try would log and nobody can act on. Airflow 3.3.2 matches glob
#: ``.airflowignore`` files with pathspec's ``GitWildMatchPattern``, which pathspec 1.1.1
#: (the version Airflow's constraints pin) deprecates; each try reads
#: ``plugins/.airflowignore`` while loading plugins, so each task log got the warning.
QUIET_WARNINGS = (r"GitWildMatchPattern \('gitwildmatch'\) is deprecated",)


def preload() -> list[str]:
    """Import :data:`PRELOAD_MODULES` and load :data:`PRELOAD_SERVICES`' botocore data into
    the shared loader, and ignore :data:`QUIET_WARNINGS` (the tries inherit the filter);
    the names of what failed (logged, not raised)."""
    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=DeprecationWarning)
    failed = []
    for name in PRELOAD_MODULES:
        try:
            importlib.import_module(name)
        except Exception as err:  # the try imports it again, and fails there as it would have
            log.warning("Not preloaded: %s (%s)", name, err)
            failed.append(name)
    try:
        # Each try loads the plugins folder before it runs (the Task SDK's listener
        # manager): the campaign view's plugin imports its FastAPI app. Profiled on the
        # Celery stack at 500 targets, that was 13 % of the workers' samples. The Task
        # SDK caches the plugins it loaded: loaded here, the forked tries find them
        # loaded, as Airflow 2 did for every process with [core] lazy_load_plugins off.
        from airflow.sdk.plugins_manager import integrate_macros_plugins

        integrate_macros_plugins()
    except Exception as err:
        log.warning("Plugins not preloaded (%s)", err)
        failed.append("plugins")
    try:
        from regional_training.runtime.aws_sessions import shared_boto3_session

        # Made offline: a client is built from local data only; the key is a placeholder
        # that never signs a request (the client is dropped at once).
        session = shared_boto3_session(region_name="us-east-1", aws_access_key_id="preload",
                                       aws_secret_access_key="preload")  # noqa: S106
        for service, paged in PRELOAD_SERVICES.items():
            session.client(service).can_paginate(paged)
    except Exception as err:
        log.warning("botocore models not preloaded (%s)", err)
        failed.append("botocore models")
    return failed


class PreloadedLocalExecutor(LocalExecutor):
    """Airflow's LocalExecutor; :func:`preload` runs before it forks its workers."""

    def start(self) -> None:
        preload()
        super().start()
