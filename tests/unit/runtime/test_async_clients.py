"""The shared-client pool behind the training-job trigger (regional_training.runtime.async_clients)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from regional_training.runtime.async_clients import ClientPool


class Opened:
    """Counts the clients opened and closed (what ``hook.get_async_conn()`` returns)."""

    def __init__(self, fail: bool = False) -> None:
        self.opened = self.closed = 0
        self.fail = fail

    async def open(self) -> Any:
        outer = self

        class Context:
            async def __aenter__(self) -> str:
                await asyncio.sleep(0.01)  # a slow open: others arrive meanwhile
                if outer.fail:
                    raise ConnectionError("no endpoint")
                outer.opened += 1
                return f"client-{outer.opened}"

            async def __aexit__(self, *exc: object) -> None:
                outer.closed += 1

        return Context()


def test_concurrent_borrowers_share_one_client_closed_by_the_last() -> None:
    pool, counter = ClientPool(), Opened()

    async def borrow(delay: float) -> str:
        async with pool.lease("sagemaker/us-west-2", counter.open) as client:
            await asyncio.sleep(delay)
            return str(client)

    async def main() -> list[str]:
        return await asyncio.gather(*(borrow(0.05 * i) for i in range(8)))

    assert asyncio.run(main()) == ["client-1"] * 8
    assert (counter.opened, counter.closed, pool.open_count()) == (1, 1, 0)


def test_a_lone_borrower_opens_and_closes_its_own_as_before() -> None:
    pool, counter = ClientPool(), Opened()

    async def once() -> str:
        async with pool.lease("k", counter.open) as client:
            return str(client)

    assert [asyncio.run(once()) for _ in range(3)] == ["client-1", "client-2", "client-3"]
    assert (counter.opened, counter.closed, pool.open_count()) == (3, 3, 0)


def test_keys_do_not_share() -> None:
    pool, counter = ClientPool(), Opened()

    async def main() -> set[str]:
        async def borrow(key: str) -> str:
            async with pool.lease(key, counter.open) as client:
                await asyncio.sleep(0.02)
                return str(client)
        return set(await asyncio.gather(borrow("us-east-1"), borrow("eu-west-1")))

    assert len(asyncio.run(main())) == 2 and counter.closed == 2


def test_a_failed_open_reaches_every_waiting_borrower_and_leaves_nothing_open() -> None:
    pool, counter = ClientPool(), Opened(fail=True)

    async def borrow() -> None:
        async with pool.lease("k", counter.open):
            pass

    async def main() -> list[Any]:
        return await asyncio.gather(borrow(), borrow(), borrow(), return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, ConnectionError) for r in results)
    assert pool.open_count() == 0
    with pytest.raises(ConnectionError):  # a later borrower tries afresh
        asyncio.run(borrow())


# -- issue 33: an idle client waits for the next trigger instead of being built again ----


def test_an_idle_client_serves_the_next_borrower_within_idle_seconds() -> None:
    pool, counter = ClientPool(idle_seconds=0.3), Opened()

    async def borrow() -> str:
        async with pool.lease("sagemaker/eu-west-1", counter.open) as client:
            return str(client)

    async def main() -> list[str]:
        first = await borrow()
        await asyncio.sleep(0.1)  # all borrowers gone; the next trigger comes soon after
        second = await borrow()
        assert (counter.opened, counter.closed, pool.open_count()) == (1, 0, 1)
        await asyncio.sleep(0.6)  # idle longer than idle_seconds: closed
        assert (counter.closed, pool.open_count()) == (1, 0)
        return [first, second, await borrow()]

    assert asyncio.run(main()) == ["client-1", "client-1", "client-2"]
    assert (counter.opened, counter.closed, pool.open_count()) == (2, 2, 0)


def test_a_loop_that_ends_closes_its_idle_client() -> None:
    """``dag.test()`` runs each trigger in a loop of its own: the idle wait must not
    leave the client open when that loop ends (aiohttp would report it unclosed)."""
    pool, counter = ClientPool(idle_seconds=60), Opened()

    async def once() -> str:
        async with pool.lease("k", counter.open) as client:
            return str(client)

    assert [asyncio.run(once()) for _ in range(2)] == ["client-1", "client-2"]
    assert (counter.opened, counter.closed, pool.open_count()) == (2, 2, 0)


def test_after_the_warm_up_a_triggers_client_reads_no_botocore_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """``warm_service_data`` (run in a thread by the triggers' hooks) leaves the service's
    data in the loader the provider's async sessions share: building a client in the
    event loop then reads and decodes no file, and a first request is prepared already."""
    import gc

    import botocore.loaders
    from aiobotocore.session import get_session
    from airflow.providers.amazon.aws.hooks import base_aws

    from regional_training.runtime import async_clients

    monkeypatch.setattr(async_clients, "WARMED", set())
    async_clients.warm_service_data("sagemaker")
    assert "sagemaker" in async_clients.WARMED and gc.get_freeze_count() > 0

    def no_file(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("botocore data read in the event loop")

    monkeypatch.setattr(botocore.loaders.JSONFileLoader, "load_file", no_file)

    async def build() -> list[str]:
        session = get_session()
        session.register_component("data_loader", base_aws._loader)
        async with session.create_client("sagemaker", region_name="eu-west-1", aws_access_key_id="k",
                                         aws_secret_access_key="s", endpoint_url="http://127.0.0.1:9") as client:
            return list(client.meta.service_model.operation_names)

    assert "DescribeTrainingJob" in asyncio.run(build())


def test_loading_pauses_the_collector_then_freezes_what_was_loaded() -> None:
    """A full collection during a thread's loading held the GIL 0.5 s (the triggerer's
    loop waited): none runs while loading; afterwards what was loaded is frozen out of
    collections and the collector is back as it was."""
    import gc

    from regional_training.runtime.async_clients import loading_then_frozen

    assert gc.isenabled()
    with loading_then_frozen():
        assert not gc.isenabled()
        loaded = [[i] for i in range(1000)]  # long-lived containers, as a module's
        frozen_before = gc.get_freeze_count()
    assert gc.isenabled() and gc.get_freeze_count() >= frozen_before + len(loaded)

    gc.disable()  # a caller that had turned it off keeps it off
    try:
        with loading_then_frozen():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_loading_re_enables_the_collector_when_the_load_fails() -> None:
    import gc

    from regional_training.runtime.async_clients import loading_then_frozen

    with pytest.raises(ImportError), loading_then_frozen():
        raise ImportError("no such module")
    assert gc.isenabled()
