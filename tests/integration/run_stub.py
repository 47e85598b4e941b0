"""A task's run (``run_context.Run``) as the integration tests hand it to the product:
its keys, Params and campaign database, here the test server rather than an Airflow
connection. Each stub is a run of its own (one counter for the whole test session)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg2

DAG_ID = "integration_test"
_runs = itertools.count(1)


@dataclass
class RunStub:
    dsn: str
    params: dict[str, Any]
    dag_id: str = DAG_ID
    run_id: str = field(default_factory=lambda: f"manual__integration-{next(_runs)}")

    @contextlib.contextmanager
    def campaign_db(self) -> Iterator[Any]:
        conn = psycopg2.connect(self.dsn)
        try:
            yield conn
        finally:
            conn.close()
