"""A throwaway PostgreSQL server for the local stack and the tests.

``initdb`` refuses to run as root, so when we are root every server command runs as
the ``postgres`` system user through ``runuser``. The cluster lives in a temporary
directory and listens on 127.0.0.1 only, on a free port.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from dev.processes import free_port

PG_USER = "postgres"


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", PG_USER, "--", *cmd] if os.geteuid() == 0 else cmd


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise FileNotFoundError(f"PostgreSQL binary {name!r} not found on PATH or in /usr/lib/postgresql")


def _start(datadir: str | Path, options: str, log: str | Path, *, check: bool = True) -> None:
    subprocess.run(_as_postgres([_pg_bin("pg_ctl"), "-D", str(datadir), "-o", options, "-l", str(log), "-w",
                                 "start"]), check=check, capture_output=True)


def _stop(datadir: str | Path, *, check: bool = True) -> None:
    subprocess.run(_as_postgres([_pg_bin("pg_ctl"), "-D", str(datadir), "-m", "fast", "-w", "stop"]),
                   check=check, capture_output=True)


@contextlib.contextmanager
def temporary_postgres(dbname: str = "campaigns", host: str = "127.0.0.1") -> Iterator[str]:
    """Start a fresh server, create ``dbname``, yield its DSN; stop and delete on exit.

    ``host``: an address of this machine the server listens on too and the DSN names
    (the Celery stack's bridge address, which its simulated hosts reach: dev/sim_hosts.py).
    """
    workdir = Path(tempfile.mkdtemp(prefix="mrt-pg-"))
    datadir, sockdir = workdir / "data", workdir / "sock"
    sockdir.mkdir()
    if os.geteuid() == 0:
        shutil.chown(workdir, PG_USER)
        shutil.chown(sockdir, PG_USER)
    port = free_port()
    subprocess.run(
        _as_postgres([_pg_bin("initdb"), "-D", str(datadir), "-U", PG_USER, "-A", "trust",
                      "-E", "UTF8", "--no-sync"]),
        check=True, capture_output=True,
    )
    listen = "127.0.0.1" if host == "127.0.0.1" else f"127.0.0.1,{host}"
    if host != "127.0.0.1":  # initdb trusts loopback only; samenet: the host's own subnets
        with (datadir / "pg_hba.conf").open("a") as hba:
            hba.write("host all all samenet trust\n")
    _start(datadir, _options(listen, port, sockdir), workdir / "server.log")
    try:
        dsn = f"postgresql://{PG_USER}@{host}:{port}/{dbname}"
        _create_database(port, dbname)
        yield dsn
    finally:
        _stop(datadir, check=False)
        shutil.rmtree(workdir, ignore_errors=True)


def _options(listen: str, port: int | str, sockdir: str | Path) -> str:
    return f"-c listen_addresses={listen} -p {port} -k {sockdir} -c fsync=off"


def stop_postgres(dsn: str) -> Callable[[], None]:
    """Stop the server behind ``dsn`` (a :func:`temporary_postgres`; ``pg_ctl stop -m
    fast``: every session cut, as when the server goes away); return what starts it again
    on the same data directory, addresses and port, so the DSN works again."""
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting('data_directory'), current_setting('listen_addresses'),"
                        " current_setting('port'), current_setting('unix_socket_directories')")
            datadir, listen, port, sockdir = cur.fetchone()
    finally:
        conn.close()
    _stop(datadir)
    return lambda: _start(datadir, _options(listen, port, sockdir), Path(datadir).parent / "server.log")


def _create_database(port: int, dbname: str) -> None:
    import psycopg2

    deadline = time.monotonic() + 30
    while True:
        try:
            conn = psycopg2.connect(host="127.0.0.1", port=port, user=PG_USER, dbname="postgres")
            break
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    conn.autocommit = True  # CREATE DATABASE cannot run in a transaction block
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
        if cur.fetchone() is None:
            # Identifiers cannot be bound parameters; psycopg2.sql quotes it safely.
            from psycopg2 import sql

            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    conn.close()
