"""Shared fixtures: a real PostgreSQL server, the local AWS emulator, Airflow's home.

Airflow reads its configuration when first imported, so its home, its metadata DB
(SQLite, per test session) and the DAG folder are set here, before any test imports it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import settings
from xdist_groups import xdist_group_of

if TYPE_CHECKING:
    from api_server_support import ApiServer

REPO = Path(__file__).resolve().parents[1]
#: Property tests check properties, not speed (speed goals live in bench/): hypothesis'
#: default 200 ms deadline per example failed test_array_file_round_trip_with_overrides
#: once with the two CI workers and an end-to-end stack sharing two cores.
settings.register_profile("mrt", deadline=None)
settings.load_profile("mrt")
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="mrt-test-airflow-"))
#: Under ``pytest -n N`` (pytest-xdist; scripts/test.sh runs two workers) each worker is a
#: process of its own with this module's state: its own Airflow home, PostgreSQL server
#: and emulators. The controller runs no test; it made the violations folder below, which
#: the workers inherit through the environment.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER is None:
    os.environ["MRT_TEST_VIOLATIONS_DIR"] = tempfile.mkdtemp(prefix="mrt-test-violations-")
_VIOLATIONS_DIR = Path(os.environ["MRT_TEST_VIOLATIONS_DIR"])
#: Every emulator a test starts (local_stack.local_aws passes the environment on) checks
#: each response against botocore's model and records non-conforming ones here, one file
#: per worker (local_aws.wire; docs/emulator.md); ``_emulator_responses_conform`` fails
#: the test on them, and the run fails on any file's (``pytest_sessionfinish``).
_RESPONSE_VIOLATIONS = _VIOLATIONS_DIR / f"{_WORKER or 'main'}.jsonl"
_RESPONSE_VIOLATIONS.touch()
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
        "MRT_SAGEMAKER_POLL_SECONDS": "1",
        "MRT_RETRY_DELAY_SECONDS": "1",
        # Never real AWS: dummy credentials, and every client gets the emulator endpoint.
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "MRT_CHECK_EMULATOR_RESPONSES": str(_RESPONSE_VIOLATIONS),
    }
)


@pytest.fixture(autouse=True)
def _emulator_responses_conform() -> Iterator[None]:
    """Fail the test during which an emulator sent a response that botocore's model
    rejects (the client saw ``EmulatorResponseInvalid``, or a caller swallowed it)."""
    start = _RESPONSE_VIOLATIONS.stat().st_size
    yield
    with _RESPONSE_VIOLATIONS.open("rb") as violations:
        violations.seek(start)
        new = violations.read().decode(errors="replace").strip()
    if new:
        pytest.fail(f"the emulator sent responses that do not conform to botocore's model:\n{new}", pytrace=False)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's work units: :func:`xdist_group_of` each test's file (the controller asks).

    xdist's own ``--dist loadgroup`` names a test's unit by appending to its node id,
    which pytest 9 no longer reads (``Node.nodeid`` is built from ``_id``): every test
    became a unit of its own. Its ``loadscope`` scheduler with our scope instead."""
    from xdist.scheduler import LoadScopeScheduling

    class FileGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group_of(nodeid.split("::", 1)[0])

    return FileGroupScheduling(config, log)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Also fail the run for violations outside any test (a module fixture's seeding): in
    a serial run, or in the xdist controller once every worker has finished (a worker's
    exit status does not reach the controller's)."""
    if _WORKER is not None:
        return
    recorded = "\n".join(filter(None, (path.read_text(errors="replace").strip()
                                       for path in sorted(_VIOLATIONS_DIR.glob("*.jsonl")))))
    if recorded:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"emulator responses that do not conform to botocore's model:\n{recorded}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def train_python() -> Path:
    """The training venv's python (TensorFlow + Horovod), from ``MRT_TRAIN_PYTHON``.

    Unset, the tests that need it fail rather than skip: CI must not pass without having
    trained anything.
    """
    value = os.environ.get("MRT_TRAIN_PYTHON")
    if not value:
        pytest.fail(
            "MRT_TRAIN_PYTHON is not set: run `export MRT_TRAIN_PYTHON=$(scripts/setup_training_env.sh "
            "| tail -n1)` first (training needs the TensorFlow + Horovod venv)",
            pytrace=False,
        )
    path = Path(value)
    if not os.access(path, os.X_OK):
        pytest.fail(f"MRT_TRAIN_PYTHON={value} is not an executable python", pytrace=False)
    return path


@pytest.fixture(scope="session")
def campaign_dsn() -> Iterator[str]:
    """A fresh PostgreSQL server with the schema and the sample data."""
    import psycopg2

    from dev.local_pg import temporary_postgres
    from regional_training.runtime import campaign_db

    with temporary_postgres() as dsn:
        conn = psycopg2.connect(dsn)
        campaign_db.migrate(conn, seed=True)
        conn.close()
        yield dsn


@pytest.fixture()
def db(campaign_dsn: str) -> Iterator[object]:
    import psycopg2

    conn = psycopg2.connect(campaign_dsn)
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def aws_endpoint(campaign_dsn: str) -> Iterator[str]:
    """The local AWS emulator (stand-in entry point), buckets seeded from the campaign DB."""
    from dev.local_stack import fake_image_map, local_aws, seed_aws

    with local_aws(fake_image_map(), max_concurrent_jobs=4, log_path=_AIRFLOW_HOME / "local-aws.log") as endpoint:
        seed_aws(endpoint, campaign_dsn)
        yield endpoint


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Airflow's metadata DB, migrated once per session."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, env=os.environ)
    return _AIRFLOW_HOME


@pytest.fixture()
def offline_stack(campaign_dsn: str, aws_endpoint: str, airflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Environment for running the DAG in-process against Postgres and the emulator."""
    from dev.local_stack import in_process_env

    for key, value in in_process_env(dsn=campaign_dsn, endpoint=aws_endpoint, airflow_home=airflow_db).items():
        monkeypatch.setenv(key, value)
    return aws_endpoint


@pytest.fixture(scope="session")
def api_server(campaign_dsn: str, aws_endpoint: str, airflow_db: Path) -> Iterator[ApiServer]:
    """The session's one real ``airflow api-server`` (tests/api_server_support.py): started
    when a suite first needs it, shared by every suite after that, stopped at the end."""
    from api_server_support import shared_api_server

    with shared_api_server(dsn=campaign_dsn, endpoint=aws_endpoint, airflow_home=airflow_db) as server:
        yield server
