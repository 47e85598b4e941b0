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
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from types import TracebackType
from typing import Any


class _Entry:
    def __init__(self) -> None:
        self.ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.context: Any = None
        self.borrowers = 0


class _Lease:
    """``async with`` one shared client; the last borrower out closes it."""

    def __init__(self, pool: ClientPool, key: Hashable, open_context: Any) -> None:
        self._pool, self._key, self._open = pool, key, open_context

    async def __aenter__(self) -> Any:
        return await self._pool.acquire(self._key, self._open)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._pool.release(self._key)


class ClientPool:
    """Reference-counted clients by key (the running loop is part of every key)."""

    def __init__(self) -> None:
        self._entries: dict[tuple[Any, Hashable], _Entry] = {}

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
        if entry.borrowers == 0:
            del self._entries[full_key]
            await entry.context.__aexit__(None, None, None)

    def open_count(self) -> int:
        return len(self._entries)


#: One pool per process (the triggerer's, a worker's).
POOL = ClientPool()


class SharedClientHookMixin:
    """Mix into a provider hook: ``get_async_conn()`` lends the shared client."""

    aws_conn_id: str | None
    region_name: str | None

    async def get_async_conn(self) -> Any:
        parent = super().get_async_conn  # type: ignore[misc]
        key = (type(self).__name__, self.aws_conn_id, self.region_name)
        return POOL.lease(key, parent)
