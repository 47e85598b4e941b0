"""Celery workers started with what every task try of this DAG loads, as the LocalExecutor's.

An Airflow Celery worker runs each try in a process forked from one of its pool's
processes, which Celery's prefork pool forks from the worker's main process. Without a
preload each try imports the Amazon provider, this package and botocore's models itself,
about half of a try's CPU (docs/services.md, "Per target"): the same work
:class:`regional_training.runtime.executors.PreloadedLocalExecutor` does once in the scheduler.

:data:`CELERY_CONFIG` is the provider's own configuration, unchanged; importing it
connects :func:`preload_in_worker` to Celery's ``worker_init`` signal, which the worker's
main process sends before it starts the pool, so every pool process and every try forked
from one starts with :func:`regional_training.runtime.executors.preload` done (copy-on-write
memory, then frozen for the garbage collector as the LocalExecutor does for its workers).
Other processes that create the Celery app (the scheduler sending tries) never send
``worker_init``: for them this module costs its import only.

Set ``[celery] celery_config_options = regional_training.runtime.celery_config.CELERY_CONFIG``
(``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS``); the local Celery stack and compose's
``celery`` profile do.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import worker_init

log = logging.getLogger(__name__)

#: The provider's configuration, as ``[celery]`` options build it (broker, result backend,
#: concurrency): nothing of Celery's behaviour changes.
CELERY_CONFIG: dict[str, Any] = dict(DEFAULT_CELERY_CONFIG)


@worker_init.connect
def preload_in_worker(**_kwargs: Any) -> None:
    """In the worker's main process, before its pool forks: the tries' imports and
    botocore's models (``executors.preload``), then ``gc.freeze()`` so the collector of
    each forked process skips them (and does not touch their copy-on-write pages)."""
    from regional_training.runtime.executors import preload

    failed = preload()
    gc.freeze()
    log.info("Preloaded the tries' modules in the Celery worker%s",
             f" (not preloaded: {', '.join(failed)})" if failed else "")
