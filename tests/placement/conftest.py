"""One throwaway PostgreSQL server for the placement tests (session-scoped).

Two databases on it: ``campaigns`` (migrated, empty: the property tests load random
worlds inside a transaction and roll it back) and ``campaigns_seeded`` (migrated with
the sample data, for tests that go through ``fetch_placement``, which commits).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs a throwaway PostgreSQL server (dev/local_pg.py)")
    config.addinivalue_line("markers", "integration: needs the real PostgreSQL server and/or the local AWS emulator")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        names = getattr(item, "fixturenames", ())
        if Path(str(item.fspath)).resolve().parent == here and ("pg" in names or "seeded_pg" in names):
            item.add_marker(pytest.mark.postgres)
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    from dev.local_pg import temporary_postgres

    try:
        ctx = temporary_postgres()
        dsn = ctx.__enter__()
    except FileNotFoundError as exc:  # no PostgreSQL binaries on this machine
        pytest.skip(f"PostgreSQL not available: {exc}")
    try:
        yield dsn
    finally:
        ctx.__exit__(None, None, None)


@pytest.fixture(scope="session")
def pg(pg_dsn: str) -> Iterator[object]:
    """Connection to the migrated, empty database; use inside ``with rolled_back(pg)``."""
    import psycopg2

    from regional_training.runtime import campaign_db

    conn = psycopg2.connect(pg_dsn)
    campaign_db.migrate(conn)
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def seeded_pg(pg_dsn: str) -> Iterator[object]:
    """Connection to a second database, migrated with the sample data."""
    import psycopg2
    from psycopg2 import sql

    from regional_training.runtime import campaign_db

    admin = psycopg2.connect(pg_dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier("campaigns_seeded")))
    admin.close()
    conn = psycopg2.connect(pg_dsn.rsplit("/", 1)[0] + "/campaigns_seeded")
    campaign_db.migrate(conn, seed=True)
    yield conn
    conn.close()
