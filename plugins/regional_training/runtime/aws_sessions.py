"""One botocore data loader per process, shared by every boto3 session the hooks make.

Each provider hook makes its own boto3 session, and each new session parses botocore's
endpoint data and the model of every service it makes a client for again. In a fresh
process, an S3 hook's client after a SageMaker hook's took 0.17-0.20 s of CPU; on the
shared loader, 0.07-0.08 s (``docs/services.md``, "Per target"). A task try makes several
sessions (the training task's SageMaker hook per region, the S3 hook the provider's
``create_training_job`` uses to check the request's URIs, collection's SageMaker and
S3 hooks), and so do the long-lived services (the API server's campaign view).

The Amazon provider already shares one loader between its *async* sessions, to save the
triggerer's memory (``base_aws._loader``). :class:`SharedLoaderSessionFactory` does the
same for the synchronous ones, through the provider's documented extension point
``[aws] session_factory`` (``AIRFLOW__AWS__SESSION_FACTORY``; the local stack and
compose set it). The models are read-only data, and the search paths are the same for
every session of a process.
"""

from __future__ import annotations

import copy
import functools
import logging
from typing import Any

import boto3.session
import botocore.loaders
import botocore.session
from airflow.providers.amazon.aws.hooks.base_aws import BaseSessionFactory
from botocore.hooks import HierarchicalEmitter

#: The loader every session of this process shares.
LOADER = botocore.loaders.create_loader()

#: Loggers that say, at INFO, where every new session found its credentials ("Found
#: credentials in environment variables"): one line per session, 1,512 at 500 targets,
#: and in the triggerer each line is written from inside the event loop (about 8 ms).
CREDENTIAL_LOGGERS = ("botocore.credentials", "aiobotocore.credentials")


def quiet_credential_logs() -> None:
    """Log :data:`CREDENTIAL_LOGGERS` from WARNING up (their INFO lines at debug), unless
    a logging configuration already set their level.

    Code, not configuration: Airflow 3.3's ``[logging] namespace_levels`` sets the levels
    of its structlog loggers only, and botocore logs through the standard library's
    (tried on the local stack: the lines stayed). Airflow's ``dictConfig`` leaves the
    level of a logger it does not name as it is, so this holds in every process that
    imports the package's AWS modules (tries, triggerer, API server).
    """
    for name in CREDENTIAL_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


quiet_credential_logs()


# Botocore's built-in event handlers, registered once per process (on first use, not at
# import: the DAG's parse imports this module). Every new botocore session registers the
# same ~200 module-level handlers through its event aliaser: about 5 ms of the 14 ms a
# session and its first client cost (measured: 40 sessions with a SageMaker client each,
# 13.7-14.7 ms before, 7.9-8.7 ms after), and a task try makes several.
@functools.cache
def _builtin_events() -> HierarchicalEmitter:
    """An emitter holding botocore's built-in handlers, registered by botocore itself (a
    session registers them into the emitter given as ``event_hooks``)."""
    emitter = HierarchicalEmitter()
    botocore.session.Session(event_hooks=emitter)
    return emitter


def _session_events() -> HierarchicalEmitter:
    """A copy of :func:`_builtin_events`, for one new botocore session: copied as botocore
    copies a session's emitter for every client it makes. A session given the copy and
    ``include_builtin_handlers=False`` (both documented arguments of
    ``botocore.session.Session``) has the same handlers as one made with neither
    (``tests/unit/runtime/test_aws_sessions.py``)."""
    return copy.copy(_builtin_events())


def shared_boto3_session(**session_kwargs: Any) -> boto3.session.Session:
    """``boto3.session.Session(**session_kwargs)`` on a botocore session that uses :data:`LOADER`
    and a copy of the built-in event handlers (:func:`_session_events`)."""
    core = botocore.session.Session(event_hooks=_session_events(), include_builtin_handlers=False)
    core.register_component("data_loader", LOADER)
    session = boto3.session.Session(botocore_session=core, **session_kwargs)
    # boto3 appends its own data directory to the loader's search paths on every new
    # session: keep each path once (the loader's caches do not depend on the list).
    LOADER.search_paths[:] = list(dict.fromkeys(LOADER.search_paths))
    return session


class SharedLoaderSessionFactory(BaseSessionFactory):
    """The provider's session factory, its basic sessions on :data:`LOADER`.

    Assumed-role sessions, async sessions and everything else are the provider's own.
    """

    def _create_basic_session(self, session_kwargs: dict[str, Any]) -> boto3.session.Session:
        return shared_boto3_session(**session_kwargs)
