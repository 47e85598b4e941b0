"""The campaign-metadata database: versioned migrations, sample data and the queries.

SQL lives in ``include/sql/`` (``migrations/V<NNN>__<name>.sql``, ``seed/``,
``queries/``); this module only finds, applies and binds it. Functions take an open
psycopg2 connection so the DAG (through ``PostgresHook``), the CLI and the tests share
them.

CLI: ``python -m regional_training.runtime.campaign_db migrate [--seed] --dsn postgresql://...``
(the DSN may also come from ``CAMPAIGN_DB_DSN``).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from psycopg2.extensions import connection as PgConnection

#: ``include/sql`` next to ``plugins/`` in the repo and in the Airflow image.
SQL_DIR = Path(os.environ.get("MRT_SQL_DIR", Path(__file__).resolve().parents[3] / "include" / "sql"))

_MIGRATION_NAME = re.compile(r"^V(\d{3})__[a-z0-9_]+\.sql$")
# Any constant works; it only has to be the same for every migrating process.
_MIGRATION_LOCK_ID = 7_301_994_012


@cache
def load_sql(relative_path: str) -> str:
    """Text of ``include/sql/<relative_path>``."""
    return (SQL_DIR / relative_path).read_text(encoding="utf-8")


def migration_files() -> list[Path]:
    """Migrations in version order; a misnamed file is an error, not silently skipped."""
    files = sorted((SQL_DIR / "migrations").glob("*.sql"))
    for path in files:
        if not _MIGRATION_NAME.match(path.name):
            raise ValueError(f"migration file {path.name!r} is not named V<NNN>__<name>.sql")
    return files


def migrate(conn: PgConnection, *, seed: bool = False) -> list[str]:
    """Apply pending migrations (and the sample data); return the versions applied.

    Each migration runs in one transaction under an advisory lock, so two processes
    migrating at once serialise. An applied migration whose file changed is refused:
    migrations are append-only.
    """
    applied_now: list[str] = []
    try:
        _migrate(conn, seed, applied_now)
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    return applied_now


def _migrate(conn: PgConnection, seed: bool, applied_now: list[str]) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_ID,))
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, name text NOT NULL, sha256 text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur.execute("SELECT version, sha256 FROM schema_migrations")
        applied = dict(cur.fetchall())
        for path in migration_files():
            version = path.name.split("__", 1)[0]
            text = path.read_text(encoding="utf-8")
            digest = hashlib.sha256(text.encode()).hexdigest()
            if version in applied:
                if applied[version] != digest:
                    raise RuntimeError(
                        f"migration {path.name} changed after it was applied; "
                        "add a new migration instead of editing an applied one"
                    )
                continue
            cur.execute(text)
            cur.execute(
                "INSERT INTO schema_migrations (version, name, sha256) VALUES (%s, %s, %s)",
                (version, path.name, digest),
            )
            applied_now.append(version)
        if seed:
            for path in sorted((SQL_DIR / "seed").glob("*.sql")):
                cur.execute(path.read_text(encoding="utf-8"))


#: The Airflow connection of the campaign-metadata database.
CAMPAIGN_DB_CONN_ID = "campaign_db"


class CampaignDbUnavailableError(RuntimeError):
    """The campaign-metadata database cannot be reached (the task retries with backoff)."""


def airflow_connection() -> Any:
    """A connection through ``PostgresHook``; an unreachable server is a named error."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    try:
        return PostgresHook(postgres_conn_id=CAMPAIGN_DB_CONN_ID).get_conn()
    except Exception as err:
        if type(err).__name__ != "OperationalError":  # psycopg2's or psycopg's
            raise
        raise CampaignDbUnavailableError(
            f"campaign database (connection {CAMPAIGN_DB_CONN_ID!r}) is unavailable: {str(err).strip()}"
        ) from err


def fetch_dicts(conn: PgConnection, query_file: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Run ``queries/<query_file>`` with bound ``params``; rows as dicts."""
    with conn.cursor() as cur:
        cur.execute(load_sql(f"queries/{query_file}"), params)
        columns = [col.name for col in cur.description or ()]
        rows = [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]
    conn.commit()
    return rows


def execute(conn: PgConnection, query_file: str, params: dict[str, Any]) -> int:
    """Run a writing query from ``queries/`` in its own transaction; rows affected.

    Commits explicitly rather than with ``with conn:``, which commits in psycopg2 but
    *closes* the connection in psycopg 3 (``PostgresHook`` may hand out either).
    """
    try:
        with conn.cursor() as cur:
            cur.execute(load_sql(f"queries/{query_file}"), params)
            count = int(cur.rowcount)
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    return count


def main(argv: list[str] | None = None) -> int:
    import argparse  # the command line only: the DAG's parse imports this module (via params)

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    mig = sub.add_parser("migrate", help="apply pending migrations")
    mig.add_argument("--dsn", default=os.environ.get("CAMPAIGN_DB_DSN"), help="libpq DSN/URI")
    mig.add_argument("--seed", action="store_true", help="also load the sample data (idempotent)")
    args = parser.parse_args(argv)
    if not args.dsn:
        parser.error("--dsn or CAMPAIGN_DB_DSN is required")
    import psycopg2

    conn = psycopg2.connect(args.dsn)
    try:
        versions = migrate(conn, seed=args.seed)
    finally:
        conn.close()
    print(f"applied migrations: {', '.join(versions) or 'none pending'}" + (" (+ sample data)" if args.seed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
