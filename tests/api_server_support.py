"""The session's one real ``airflow api-server`` (the ``api_server`` fixture in
tests/conftest.py), shared by every suite that needs one: the campaign view
(tests/report/test_campaign_view.py), the REST API's Param checks
(tests/e2e/test_recovery.py) and ``emit_ready`` (tests/integration/test_emit_ready.py).
Each used to start its own (three start-ups of 20-60 s on the 2-core machine).

It runs on the session's metadata DB with the campaign DB and the AWS emulator
(``local_stack.airflow_env``), with real users and passwords (not "all admins", which
lets anonymous requests in: the campaign view's test checks they are refused), and
serves two DAG bundles: the package's DAG folder and tests/fixtures/api_dags (test-only
DAGs, e.g. a consumer of the dataset-ready asset).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

#: name -> (role, password) of the server's users (test-only passwords).
VIEWER, ADMIN = "night-watch", "mrt-admin"
USERS = {VIEWER: ("viewer", "test-only-password"), ADMIN: ("admin", "test-only-admin-password")}
#: Test-only DAGs the server serves besides the package's, as a bundle of their own.
TEST_DAGS = Path(__file__).resolve().parent / "fixtures" / "api_dags"
TEST_BUNDLE = "mrt-api-test-dags"
BUNDLES = [
    {"name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {}},
    {"name": TEST_BUNDLE, "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
     "kwargs": {"path": str(TEST_DAGS)}},
]


@dataclass(frozen=True)
class ApiServer:
    """A running api-server: its base URL and the environment it was started with."""

    base: str
    env: Mapping[str, str]
    log: Path

    def password(self, user: str) -> str:
        return USERS[user][1]

    def token(self, user: str = ADMIN) -> str:
        """A bearer token for ``user``, as a client logs in (``POST /auth/token``)."""
        body = json.dumps({"username": user, "password": self.password(user)}).encode()
        request = urllib.request.Request(f"{self.base}/auth/token", data=body, method="POST",  # noqa: S310
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback only
                return str(json.loads(response.read())["access_token"])
        except urllib.error.HTTPError as err:
            raise AssertionError(f"POST /auth/token as {user}: HTTP {err.code} {err.read()!r}") from err

    def reserialize(self, *bundles: str) -> None:
        """Parse ``bundles`` (default: both) into the metadata DB, so the server knows
        their DAGs: again where a test's DAG must be current (another test's process may
        have synced the bundles with its own, narrower configuration, which marks ours
        inactive; ``airflow dags reserialize`` syncs every configured bundle first)."""
        reserialize(self.env, *bundles)


def reserialize(env: Mapping[str, str], *bundles: str) -> None:
    """``airflow dags reserialize`` with ``env``'s bundles (only ``bundles``' DAGs parsed)."""
    names = [arg for bundle in bundles for arg in ("--bundle-name", bundle)]
    subprocess.run([sys.executable, "-m", "airflow", "dags", "reserialize", *names], env=dict(env), check=True,
                   capture_output=True)


@contextmanager
def shared_api_server(*, dsn: str, endpoint: str, airflow_home: Path) -> Iterator[ApiServer]:
    """Start the server (see the module's docstring); stop it afterwards."""
    from dev.local_stack import airflow_env
    from dev.processes import api_server, free_port

    port = free_port()
    passwords = airflow_home / "api-server-passwords.json"
    passwords.write_text(json.dumps({user: password for user, (_, password) in USERS.items()}))
    env = {**os.environ, **airflow_env(dsn=dsn, endpoint=endpoint, airflow_home=airflow_home),
           "PYTHONPATH": os.pathsep.join(sys.path),
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{role}" for u, (role, _) in USERS.items()),
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
           "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(BUNDLES),
           # The campaign view's links point at this server (regional_training.report.links).
           "MRT_LINKS_BASE_URL": f"http://127.0.0.1:{port}/campaign"}
    reserialize(env)
    log = airflow_home / "api-server.log"
    with api_server(env, log, port=port) as base:
        yield ApiServer(base, env, log)
