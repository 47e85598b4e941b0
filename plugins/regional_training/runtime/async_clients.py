"""aiobotocore clients shared by the triggers of one event loop (the triggerer's).

The Amazon provider's triggers open a new aiobotocore client per trigger
(``async with await hook.get_async_conn() as client``). Building a client builds its
class: one Python method per API operation, 400 of them for SageMaker. That work is
synchronous and runs *in* the triggerer's event loop: measured with
``bench/trigger_startup.py``, 64 training-job triggers starting together blocked the loop
for 16 s in all (longest block 4.3 s), which is the triggerer's "async thread was
blocked" warning and, at hundreds of targets, every other trigger's polls delayed.

:class:`SharedClientHookMixin` makes ``get_async_conn()`` lend one client per (loop,
connection, region, endpoint) to every trigger that asks while another one holds it.
The client is closed when its last borrower is done, so a lone trigger (``dag.test()``
runs one at a time, each in its own loop) opens and closes its own exactly as before;
only concurrent triggers share. Clients are safe to share between tasks of one loop
(aiobotocore's HTTP session is a connection pool).

What remained of the blocking was the first client of each service in a triggerer: it
reads and decodes botocore's data (the service's model, SageMaker's is large, the
endpoint rules, partitions, retry settings), about 0.2 s of CPU, in the loop; the
triggerer logged it as "async thread was blocked" twice in a 4-target run on the local
services, 16 times at 500 targets. :func:`warm_service_data` loads the same data into
the provider's loader of async sessions once per process and service, in a worker
thread, before the first client is built; with it cached, building an aiobotocore
SageMaker client takes about 11 ms (``docs/services.md``, "The triggerer's event loop").
It also signs one request offline (Python's first ABC check of the request's headers
walks every ``Mapping`` subclass, 0.46 s) and freezes the process's long-lived objects
out of the garbage collector's full collections (0.2-0.6 s each, in the loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
from collections.abc import Hashable, Iterator
from types import TracebackType
from typing import Any


class _Entry:
    def __init__(self) -> None:
        self.ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.context: Any = None
        self.borrowers = 0
        self.closer: asyncio.Task[None] | None = None


class _Lease:
    """``async with`` one shared client; the last borrower out closes it (after the
    pool's ``idle_seconds``)."""

    def __init__(self, pool: ClientPool, key: Hashable, open_context: Any) -> None:
        self._pool, self._key, self._open = pool, key, open_context

    async def __aenter__(self) -> Any:
        return await self._pool.acquire(self._key, self._open)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._pool.release(self._key)


class ClientPool:
    """Reference-counted clients by key (the running loop is part of every key).

    :param idle_seconds: how long a client nobody borrows stays open for the next
        borrower (0: closed by the last one out). Triggers come and go: in a run, a
        region's triggers often all end at once before the next one starts, and every
        new client was built again in the loop. A client still idle then is closed; so is
        one whose loop is shutting down (``asyncio.run`` cancels the waiting close, which
        closes it at once), so a loop never ends with a client open.
    """

    def __init__(self, idle_seconds: float = 0.0) -> None:
        self._entries: dict[tuple[Any, Hashable], _Entry] = {}
        self.idle_seconds = idle_seconds

    def lease(self, key: Hashable, open_context: Any) -> _Lease:
        """``open_context``: an async callable returning the client's context manager
        (``hook.get_async_conn`` of the provider), called only when no client is open."""
        return _Lease(self, key, open_context)

    async def acquire(self, key: Hashable, open_context: Any) -> Any:
        full_key = (asyncio.get_running_loop(), key)
        entry = self._entries.get(full_key)
        if entry is None:
            entry = self._entries[full_key] = _Entry()
            entry.borrowers += 1
            try:
                entry.context = await open_context()
                entry.ready.set_result(await entry.context.__aenter__())
            except BaseException as err:
                del self._entries[full_key]
                entry.ready.set_exception(err)
                entry.ready.exception()  # retrieved: waiters re-raise it, nobody logs it unretrieved
                raise
            return entry.ready.result()
        entry.borrowers += 1
        try:
            return await asyncio.shield(entry.ready)
        except BaseException:
            entry.borrowers -= 1
            raise

    async def release(self, key: Hashable) -> None:
        full_key = (asyncio.get_running_loop(), key)
        entry = self._entries[full_key]
        entry.borrowers -= 1
        if entry.borrowers > 0:
            return
        if self.idle_seconds <= 0:
            del self._entries[full_key]
            await entry.context.__aexit__(None, None, None)
        elif entry.closer is None or entry.closer.done():
            entry.closer = asyncio.get_running_loop().create_task(self._close_when_idle(full_key, entry))

    async def _close_when_idle(self, full_key: tuple[Any, Hashable], entry: _Entry) -> None:
        try:
            while True:
                await asyncio.sleep(self.idle_seconds)
                if entry.borrowers == 0:
                    break
        finally:  # idle, or the loop is shutting down (cancelled): close it now
            if entry.borrowers == 0 and self._entries.get(full_key) is entry:
                del self._entries[full_key]
                await entry.context.__aexit__(None, None, None)

    def open_count(self) -> int:
        return len(self._entries)


#: How long an idle client waits for its next borrower in :data:`POOL`: longer than the
#: poll interval of production (60 s) and of the local stack (2 s).
IDLE_SECONDS = 120.0

#: One pool per process (the triggerer's, a worker's).
POOL = ClientPool(idle_seconds=IDLE_SECONDS)


_GC_LOCK = threading.Lock()


@contextlib.contextmanager
def loading_then_frozen() -> Iterator[None]:
    """Around a worker thread's one-time loading (modules, botocore data): no cyclic garbage
    collection while it runs, and what the process holds frozen out of later collections.

    What is loaded lives as long as the process (Airflow, the provider, botocore's models:
    about 300,000 objects in a triggerer). A full collection scans all of it, 0.2-0.6 s
    holding the GIL in whichever thread allocated at the time: the event loop's mostly,
    or the loading thread itself, which is no better (the loop waits for the GIL: a
    "blocked" warning of 0.5 s at a 64-target run's first triggers, seen in a sampled
    triggerer). Paused, the loading allocates without collecting; frozen afterwards,
    collections skip those objects (as Airflow's LocalExecutor does for its workers), and
    unreachable objects still go by reference counting. The collector is process-wide:
    the lock keeps two loading threads from re-enabling it under each other.
    """
    with _GC_LOCK:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            yield
        finally:
            gc.freeze()
            if was_enabled:
                gc.enable()


_WARM_LOCK = threading.Lock()
#: Services whose botocore data this process has loaded (:func:`warm_service_data`).
WARMED: set[str] = set()


def warm_service_data(service: str) -> None:
    """Load ``service``'s botocore data into the loader the provider's async sessions share
    (``base_aws._loader``), by building a synchronous client on it: call in a thread.

    The client is built offline from local files and dropped (its keys are placeholders
    and it never sends a request); what stays is the loader's cache, which the triggers'
    aiobotocore clients then read instead of the files. Sessions of an assumed role make
    a loader of their own (the provider's), which this does not reach.
    """
    with _WARM_LOCK:  # one thread loads; the others wait here, not in the event loop
        if service in WARMED:
            return
        with loading_then_frozen():
            import botocore.session
            from airflow.providers.amazon.aws.hooks import base_aws

            loader = getattr(base_aws, "_loader", None)
            if loader is not None:
                session = botocore.session.get_session()
                session.register_component("data_loader", loader)
                client = session.create_client(service, region_name="us-east-1", aws_access_key_id="warm-up",
                                               aws_secret_access_key="warm-up")  # noqa: S106 - placeholders
                _prepare_one_request(client)
        WARMED.add(service)


class _EmptyBody:
    def stream(self, **_kwargs: Any) -> Any:
        yield b"{}"


def _prepare_one_request(client: Any) -> None:
    """Prepare and sign one request of ``client`` without sending it (a ``before-send``
    handler answers it), then drop the answer.

    The first request a process signs checks its headers mapping against
    ``collections.abc.Mapping``; with Airflow's thousands of classes loaded, Python's ABC
    check walks Mapping's subclasses once per type before caching the answer: 0.46 s of
    CPU in a profiled triggerer-like process, in the event loop, at the first poll. Done
    here, in the warm-up's thread, the triggers find it cached. Best effort: whatever
    fails here, the triggers do as before.
    """
    from botocore import xform_name
    from botocore.awsrequest import AWSResponse

    def answer(request: Any, **_kwargs: Any) -> AWSResponse:
        return AWSResponse(request.url, 200, {}, _EmptyBody())

    model = client.meta.service_model
    for name in model.operation_names:  # one that takes no required input
        shape = model.operation_model(name).input_shape
        if shape is None or not shape.required_members:
            client.meta.events.register_first("before-send", answer)
            with contextlib.suppress(Exception):
                getattr(client, xform_name(name))()
            return


class SharedClientHookMixin:
    """Mix into a provider hook: ``get_async_conn()`` lends the shared client, its
    service's botocore data loaded outside the event loop first (:func:`warm_service_data`)."""

    aws_conn_id: str | None
    region_name: str | None
    client_type: str | None

    async def get_async_conn(self) -> Any:
        if self.client_type and self.client_type not in WARMED:
            await asyncio.to_thread(warm_service_data, self.client_type)
        parent = super().get_async_conn  # type: ignore[misc]
        key = (type(self).__name__, self.aws_conn_id, self.region_name)
        return POOL.lease(key, parent)
