"""Airflow as its users run it, on the local stack: real services, a REST client.

:func:`airflow_services` starts, on 127.0.0.1, what a deployment runs (docker-compose.yaml):
a throwaway PostgreSQL metadata database (``dev/local_pg.py``), ``airflow db migrate``,
then ``airflow api-server``, ``scheduler`` (LocalExecutor, its workers preloaded:
``regional_training.runtime.executors``), ``dag-processor`` and ``triggerer``, and the log server
the scheduler and triggerer would each have started on every interface
(``dev/log_server.py``: on 127.0.0.1 only), each in its own process group with its log
under ``<home>/services/``. It waits until the api-server
answers, every service reports healthy and the DAG is parsed, creates the launch pool,
and stops every group on exit (also on Ctrl-C).

``executor="celery"`` runs Airflow's distributed engine instead (docs/services.md,
"Celery"): Redis (Debian's ``redis-server``) as the broker, the metadata DB as Celery's
result backend, **two** schedulers, **two** triggerers, the dag-processor and the
api-server on this machine, and **two** ``airflow celery worker`` processes, each on a
simulated host of its own (``dev/sim_hosts.py``: a network namespace that reaches the
broker, the databases, the emulator and the api-server only through its interface, at
the stack address they all listen on).

Login: the simple auth manager with one admin user whose password is generated per
stack (``secrets``), written to a file in the throwaway home, never committed.

:class:`AirflowApi` is the REST client the README's first command, the tests and the
benchmark share: a JWT from ``POST /auth/token``, then ``/api/v2`` as the UI calls it.
:func:`follow_run` polls a run's task instances until it ends, recording every state
each training task was seen in (``deferred`` included) and calling back on changes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dev.local_pg import temporary_postgres
from dev.local_stack import airflow_env
from dev.processes import background, free_port, kill_group, kill_stack, stop_group
from dev.sim_hosts import Host, SimulatedHosts

DAG_ID = "multi_region_training"
#: What starts at the stack's own priority: the triggerers (whose event loop Airflow
#: warns about when a step waits over 0.2 s: here, for a core), the broker and the log
#: server (both light); everything else starts at ``dev.processes.BACKGROUND_NICENESS``.
FOREGROUND_KINDS = frozenset({"triggerer", "redis", "log-server"})
SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")
#: The local stack's services (:func:`local_commands`): Airflow's four and the log server
#: they share (``dev/log_server.py``), which listens on the stack's address only.
LOCAL_SERVICES = ("log-server", *SERVICES)
#: What the Celery stack runs (:func:`celery_services`): ``redis``, the Airflow services
#: (``<component>-<n>`` when there are several) and ``worker-<n>``, one per simulated host.
CELERY_EXECUTOR = "airflow.providers.celery.executors.celery_executor.CeleryExecutor"
#: Task slots per Celery worker (``--concurrency``): the LocalExecutor's 8 over two workers.
WORKER_CONCURRENCY = 4
#: ``[core] max_map_length``: a run maps one training task per target; 1,024 by default,
#: the benchmark's 1,000 targets plus a scan's would not fit.
MAX_MAP_LENGTH = 4096
#: The pool the training tasks launch from (``MRT_TRAINING_POOL``). It counts running
#: tasks only (``include_deferred`` false): it bounds launches, not jobs waited on.
LAUNCH_POOL = "mrt_training_launches"
LAUNCH_POOL_SLOTS = 16
ADMIN_USER = "admin"
#: Task-instance states in which a training job may be in flight.
IN_FLIGHT = frozenset({"running", "deferred", "queued", "scheduled", "up_for_retry", "restarting"})
FINISHED_RUN_STATES = frozenset({"success", "failed"})
_REGION = re.compile(r"\b[a-z]{2}(?:-gov)?-[a-z]+-\d\b")


class ServiceError(RuntimeError):
    """A service did not start or an API call failed; the message names which."""


class AirflowApi:
    """``/api/v2`` with a bearer token from the simple auth manager's ``/auth/token``."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url
        self._credentials = {"username": username, "password": password}
        self._token: str | None = None

    def call(self, method: str, path: str, body: Any = None, *, expect: tuple[int, ...] = (200,)) -> Any:
        status, payload = self.request(method, path, body)
        if status == 401:  # token expired (24 h by default): log in again once
            self._token = None
            status, payload = self.request(method, path, body)
        if status not in expect:
            raise ServiceError(f"{method} {path} -> HTTP {status}: {json.dumps(payload)[:2000]}")
        return payload

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token()}"}
        return _http(method, f"{self.base_url}{path}", body, headers)

    def token(self) -> str:
        if self._token is None:
            status, payload = _http("POST", f"{self.base_url}/auth/token", self._credentials,
                                    {"Content-Type": "application/json"})
            if status not in (200, 201):
                raise ServiceError(f"login as {self._credentials['username']} failed: HTTP {status} {payload}")
            self._token = str(payload["access_token"])
        return self._token

    # -- what the UI does -------------------------------------------------------------
    def trigger(self, conf: dict[str, Any], dag_id: str = DAG_ID) -> str:
        """``POST .../dagRuns`` as the trigger form does; the new run's id."""
        run = self.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
        return str(run["dag_run_id"])

    def set_paused(self, paused: bool, dag_id: str = DAG_ID) -> None:
        self.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": paused})

    def set_run_state(self, run_id: str, state: str, dag_id: str = DAG_ID) -> None:
        """Mark a run ``success`` or ``failed`` (the grid's "Mark run as").

        Retried on HTTP 5xx: a run the scheduler is creating its task instances for at
        that moment can fail the update with a database error.
        """
        path = f"/api/v2/dags/{dag_id}/dagRuns/{_quote(run_id)}"
        for _ in range(9):
            status, _body = self.request("PATCH", path, {"state": state})
            if status < 500:
                break
            time.sleep(2)
        self.call("PATCH", path, {"state": state})

    def unpause(self, dag_id: str = DAG_ID) -> list[str]:
        """Unpause the DAG; the runs that unpausing created (marked failed).

        Unpausing a DAG whose schedule was due while it was paused may create a
        scheduled run at once, with empty conf (production defaults) and ahead of a
        triggered one (``max_active_runs=1``). If the DAG says its next run is already
        due, we wait for the scheduler to create it and mark it failed; a schedule that
        starts at the next 02:00 costs no wait.
        """
        before = {run["dag_run_id"] for run in self.dag_runs(dag_id)}
        self.set_paused(False, dag_id)
        run_after = self.call("GET", f"/api/v2/dags/{dag_id}").get("next_dagrun_run_after")
        created: list[str] = []
        if run_after and datetime.fromisoformat(run_after.replace("Z", "+00:00")) <= datetime.now(UTC):
            deadline = time.monotonic() + 60
            while not created and time.monotonic() < deadline:
                time.sleep(1)
                created = [r["dag_run_id"] for r in self.dag_runs(dag_id) if r["dag_run_id"] not in before]
            for run_id in created:
                self.set_run_state(run_id, "failed", dag_id)
        return created

    def unpause_then_trigger(self, conf: dict[str, Any], dag_id: str = DAG_ID) -> tuple[str, list[str]]:
        """:meth:`unpause`, then :meth:`trigger`: the new run's id and the runs unpausing created."""
        created = self.unpause(dag_id)
        return self.trigger(conf, dag_id), created

    def dag_runs(self, dag_id: str = DAG_ID) -> list[dict[str, Any]]:
        return self._pages(f"/api/v2/dags/{dag_id}/dagRuns", "dag_runs")

    def dag_run(self, run_id: str, dag_id: str = DAG_ID) -> dict[str, Any]:
        return dict(self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_quote(run_id)}"))

    def task_instances(self, run_id: str, dag_id: str = DAG_ID) -> list[dict[str, Any]]:
        return self._pages(f"/api/v2/dags/{dag_id}/dagRuns/{_quote(run_id)}/taskInstances", "task_instances")

    def task_log(self, run_id: str, task_id: str, map_index: int = -1, try_number: int = 1,
                 dag_id: str = DAG_ID) -> str:
        """One try's log as the UI's log view has it, one line per record."""
        body = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_quote(run_id)}/taskInstances/{task_id}/logs/"
                                f"{try_number}?map_index={map_index}&full_content=true")
        records = body.get("content") or []
        return "\n".join(
            " ".join(str(r.get(k, "")) for k in ("timestamp", "level", "event")) if isinstance(r, dict) else str(r)
            for r in records)

    def _pages(self, path: str, key: str, page: int = 1000) -> list[dict[str, Any]]:
        # Pages as large as the stack's [api] maximum_page_limit (a server with a lower
        # one answers fewer items per page, and the offset follows what came).
        items: list[dict[str, Any]] = []
        while True:
            body = self.call("GET", f"{path}?limit={page}&offset={len(items)}")
            items += body[key]
            if len(items) >= body["total_entries"] or not body[key]:
                return items


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _http(method: str, url: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, method=method, data=data, headers=headers)  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback only
            return int(response.status), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw or b"null")
        except ValueError:
            return err.code, raw.decode(errors="replace")


@dataclass
class AirflowStack:
    """The running services: their URL, login, environment and process groups."""

    base_url: str
    username: str
    password: str
    env: dict[str, str]
    home: Path
    api: AirflowApi
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: Each service's command line, when it is not ``airflow <service>`` (Redis, a second
    #: scheduler, a Celery worker); and the simulated host it runs on, if any.
    commands: dict[str, list[str]] = field(default_factory=dict)
    hosts: dict[str, Host] = field(default_factory=dict)
    executor: str = "local"
    #: Each Celery worker's log size when it was last started (:meth:`wait_healthy`).
    _started_at: dict[str, int] = field(default_factory=dict)

    def log_path(self, service: str) -> Path:
        return self.home / "services" / f"{service}.log"

    def services(self) -> list[str]:
        """Every service this stack runs, in start order (``log-server`` included)."""
        return list(self.commands) or list(SERVICES)

    def start(self, service: str) -> None:
        """Start one service (``airflow <service>``) in its own process group."""
        cmd = self.commands.get(service) or [sys.executable, "-m", "airflow", service]
        if service == "api-server":
            url = urllib.parse.urlsplit(self.base_url)
            cmd = [*cmd, "--host", str(url.hostname), "--port", str(url.port)]
        if service in self.hosts:
            cmd = self.hosts[service].wrap(cmd)
        if kind_of(service) not in FOREGROUND_KINDS:
            cmd = background(cmd)
        log = self.log_path(service).open("ab")
        self._started_at[service] = log.tell()
        try:
            # In the home: every process the service starts runs there, which is how
            # stop_all finds the ones outside the service's process group.
            self.procs[service] = subprocess.Popen(
                cmd, env=self.env, cwd=self.home, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        finally:
            log.close()

    def stop(self, service: str, *, crash: bool = False) -> None:
        """Stop one service and everything it forked (``crash``: SIGKILL, no clean-up)."""
        proc = self.procs.pop(service)
        (kill_group if crash else stop_group)(proc)

    def restart(self, service: str, *, crash: bool = False, wait: bool = True) -> None:
        """Stop and start ``service``; ``wait``: until every service reports healthy again."""
        self.stop(service, crash=crash)
        self.start(service)
        if wait:
            self.wait_healthy(timeout=180)

    def stop_all(self) -> None:
        # Schedulers first: no new task starts while the others go down; the broker last.
        order = ("scheduler", "worker", "triggerer", "dag-processor", "api-server", "log-server", "redis")
        for service in sorted(self.procs, key=lambda s: order.index(kind_of(s)) if kind_of(s) in order else 0):
            self.stop(service)
        # Task processes run in sessions of their own, outside the services' groups. The
        # home is this stack's own throwaway directory (callers make it with mkdtemp), so
        # only this stack's processes run in it or carry it (processes.stack_pids).
        kill_stack(self.home)

    def wait_healthy(self, timeout: float = 240) -> None:
        """Until the api-server answers and reports scheduler, triggerer and dag-processor healthy."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise ServiceError(f"airflow {name} exited ({proc.returncode}); log:\n{self.tail(name)}")
            waiting = [w for w in self.procs if w.startswith("worker") and not self._worker_ready(w)]
            try:
                status, last = _http("GET", f"{self.base_url}/api/v2/monitor/health", None, {})
                if status == 200 and not waiting and all(
                    (last.get(part) or {}).get("status") == "healthy"
                    for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
                ):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ServiceError(f"Airflow services not healthy after {timeout:.0f}s: {last}; "
                                   f"Celery workers not ready: {waiting}")
            time.sleep(1)

    def _worker_ready(self, worker: str) -> bool:
        """Celery prints ``celery@<host> ready.`` once it consumes from the broker."""
        try:
            with self.log_path(worker).open("rb") as log:
                log.seek(self._started_at.get(worker, 0))
                return b" ready." in log.read()
        except OSError:
            return False

    def wait_for_dag(self, dag_id: str = DAG_ID, timeout: float = 180) -> dict[str, Any]:
        """Until the dag-processor has parsed ``dag_id`` (no import errors)."""
        deadline = time.monotonic() + timeout
        while True:
            status, body = self.api.request("GET", f"/api/v2/dags/{dag_id}")
            if status == 200:
                return dict(body)
            errors = self.api.call("GET", "/api/v2/importErrors")
            if errors.get("total_entries"):
                raise ServiceError(f"DAG import errors: {json.dumps(errors['import_errors'])[:4000]}")
            if time.monotonic() > deadline:
                raise ServiceError(f"{dag_id} not parsed after {timeout:.0f}s; dag-processor log:\n"
                                   f"{self.tail('dag-processor')}")
            time.sleep(1)

    def tail(self, service: str, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path(service).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


#: A record at error level or above, in each form the services write: Airflow's console
#: renderer (``[error    ]``), a JSON record, Python's default format, a bare traceback.
ERROR_RECORD = re.compile(r"\[\s*(error|critical|exception)\s*\]|\"level\":\s*\"(error|critical)\"|"
                          r"^(ERROR|CRITICAL):|^Traceback \(most recent call last\)", re.IGNORECASE)
#: Airflow's triggerer watchdog (``TriggerRunner.block_watchdog``): a loop step over
#: ``[triggerer] blocked_main_thread_warning_threshold`` (0.2 s).
TRIGGERER_BLOCKED = re.compile(r"async thread was blocked for ([0-9.]+) seconds")


@dataclass(frozen=True)
class LogFindings:
    """What the services' logs say of a run: error-level records (per service), the
    botocore "Found credentials" lines, and the triggerers' "blocked" warnings (seconds)."""

    errors: dict[str, list[str]]
    credential_lines: int
    blocked_s: list[float]

    @classmethod
    def of(cls, logged: dict[str, list[str]]) -> LogFindings:
        return cls(
            errors={service: [line[:400] for line in lines if ERROR_RECORD.search(line)]
                    for service, lines in logged.items()},
            credential_lines=sum("Found credentials" in line for lines in logged.values() for line in lines),
            blocked_s=[float(m.group(1)) for service, lines in logged.items() if kind_of(service) == "triggerer"
                       for line in lines if (m := TRIGGERER_BLOCKED.search(line))],
        )

    def line(self) -> str:
        errors = sum(map(len, self.errors.values()))
        blocked = ", ".join(f"{s:.2f}" for s in sorted(self.blocked_s)) or "none"
        return (f"{errors} error-level lines, {self.credential_lines} 'Found credentials' lines, "
                f"{len(self.blocked_s)} triggerer 'blocked' warnings (s: {blocked})")


def kind_of(service: str) -> str:
    """``scheduler-2`` -> ``scheduler``: what a numbered service instance is."""
    stem, _, number = service.rpartition("-")
    return stem if stem and number.isdigit() else service


def services_env(
    *, campaign_dsn: str, endpoint: str, home: Path, metadata_dsn: str, port: int, password_file: Path,
    parallelism: int, host: str = "127.0.0.1", broker_url: str | None = None,
) -> dict[str, str]:
    """The services' environment: the local stack's connections and Variables plus the
    settings docker-compose.yaml gives a deployment (LocalExecutor, Postgres metadata DB,
    one JWT secret for every component), with secrets generated for this stack only.
    With ``broker_url``, the CeleryExecutor on that broker, its results in the metadata DB.
    ``host``: the address every service listens on and is reached at."""
    base = f"http://{host}:{port}"
    env = {**os.environ, **airflow_env(dsn=campaign_dsn, endpoint=endpoint, airflow_home=home)}
    env.update({
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_dsn.replace("postgresql://", "postgresql+psycopg2://", 1),
        # Airflow's LocalExecutor, its workers forked with a try's imports and botocore
        # models already loaded (regional_training.runtime.executors; compose's default too).
        "AIRFLOW__CORE__EXECUTOR": "regional_training.runtime.executors.PreloadedLocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__AUTH_MANAGER":
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
        "AIRFLOW__API__BASE_URL": base,
        "AIRFLOW__API__HOST": host,
        "AIRFLOW__CORE__MAX_MAP_LENGTH": str(MAX_MAP_LENGTH),
        "AIRFLOW__API__PORT": str(port),
        # One worker: two cores; the UI and a few REST calls need no more.
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__MAXIMUM_PAGE_LIMIT": "1000",
        # The supervisor of a try waits for the try's process to exit in a select() of up
        # to this many seconds (5 by default). A try that closes its sockets just before
        # its interpreter exits waits the whole interval: its executor slot stays taken,
        # and a try that deferred is still reported "success" by the executor after its
        # trigger fired and the scheduler queued it again (the scheduler then logs
        # "finished with state success, but the task instance's state attribute is
        # queued" at error level and sets the try up for retry: seen in a 4-target
        # run with 3 s stand-in jobs). 1 s: at most one heartbeat a second per running
        # try, and the task instance heartbeat timeout (300 s) is not affected.
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        # The launch pool (created below); see LAUNCH_POOL.
        "MRT_TRAINING_POOL": LAUNCH_POOL,
        # Task links (job, logs) open the campaign view's local pages, not the AWS console.
        "MRT_LINKS_BASE_URL": f"{base}/campaign",
        "PYTHONUNBUFFERED": "1",
    })
    if broker_url is not None:
        env.update({
            "AIRFLOW__CORE__EXECUTOR": CELERY_EXECUTOR,
            "AIRFLOW__CELERY__BROKER_URL": broker_url,
            # Task state in the metadata DB (the provider's recommended backend), not Redis:
            # a broker restart then loses no result.
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata_dsn,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
            # The workers preload what every try imports (regional_training.runtime.celery_config).
            "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "regional_training.runtime.celery_config.CELERY_CONFIG",
        })
    return env


def log_server_command(*, host: str, log_port: int) -> list[str]:
    """The stack's one log server (``dev/log_server.py``) on ``host`` and ``log_port``: the
    scheduler and the triggerer serve no logs themselves (Airflow binds their log servers
    to every interface); the port :func:`airflow_services` sets for both kinds of logs."""
    return [sys.executable, str(Path(__file__).resolve().parent / "log_server.py"), "--host", host,
            "--port", str(log_port)]


def local_commands(*, host: str, log_port: int) -> dict[str, list[str]]:
    """The local stack's services and their command lines, in start order."""
    airflow = [sys.executable, "-m", "airflow"]
    return {
        "log-server": log_server_command(host=host, log_port=log_port),
        "api-server": [*airflow, "api-server"],
        "scheduler": [*airflow, "scheduler", "--skip-serve-logs"],
        "dag-processor": [*airflow, "dag-processor"],
        "triggerer": [*airflow, "triggerer", "--skip-serve-logs"],
    }


def celery_commands(*, broker_port: int, broker_password: str, host: str, home: Path, log_port: int,
                    schedulers: int = 2, triggerers: int = 2, workers: int = 2) -> dict[str, list[str]]:
    """The Celery stack's services and their command lines, in start order. The triggerers
    write their triggers' logs under the shared home, which the one log server serves (as
    in :func:`local_commands`, on loopback); the schedulers run no task."""
    airflow = [sys.executable, "-m", "airflow"]
    redis_dir = home / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    # A config file, not arguments: the password stays out of the process list. Redis
    # refuses clients from other hosts unless it has a password (protected mode).
    conf = redis_dir / "redis.conf"
    conf.write_text(f"bind {host}\nport {broker_port}\ndir {redis_dir}\nrequirepass {broker_password}\n"
                    # Append-only file: a restarted broker still holds the queued task messages.
                    'save ""\nappendonly yes\nappendfsync everysec\n')
    conf.chmod(0o600)
    commands: dict[str, list[str]] = {
        "redis": ["redis-server", str(conf)],
        # On loopback: its readers (the api-server, asking the triggerers' host name, which
        # resolves to 127.0.0.1 here) run on this machine; the workers serve no logs.
        "log-server": log_server_command(host="127.0.0.1", log_port=log_port),
        "api-server": [*airflow, "api-server"],
        "dag-processor": [*airflow, "dag-processor"],
    }
    commands.update({f"scheduler-{n}": [*airflow, "scheduler", "--skip-serve-logs"] for n in range(1, schedulers + 1)})
    commands.update({f"triggerer-{n}": [*airflow, "triggerer", "--skip-serve-logs"] for n in range(1, triggerers + 1)})
    # Logs go to the shared home (each task's file), read from there: no log server.
    commands.update({f"worker-{n}": [*airflow, "celery", "worker", "--concurrency", str(WORKER_CONCURRENCY),
                                     "--skip-serve-logs"] for n in range(1, workers + 1)})
    return commands


@contextlib.contextmanager
def airflow_services(
    *, campaign_dsn: str, endpoint: str, home: Path, parallelism: int = 8, extra_env: dict[str, str] | None = None,
    progress: Callable[[str], None] = lambda _msg: None, dag_id: str = DAG_ID,
    hosts: SimulatedHosts | None = None, schedulers: int = 2, triggerers: int = 2,
) -> Iterator[AirflowStack]:
    """Start the metadata DB and the four Airflow services; yield the stack; stop it all.

    With ``hosts`` (:func:`dev.sim_hosts.simulated_hosts`): the Celery stack instead, one
    worker on each host, ``schedulers`` schedulers and ``triggerers`` triggerers, every
    service listening on the hosts' bridge address (the campaign DB and the emulator
    must too: ``temporary_postgres(host=...)``, ``local_aws(host=...)``)."""
    (home / "services").mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(16)
    password_file = home / "simple_auth_manager_passwords.json"
    password_file.write_text(json.dumps({ADMIN_USER: password}) + "\n")
    password_file.chmod(0o600)
    host = hosts.address if hosts else "127.0.0.1"
    with temporary_postgres("airflow", host=host) as metadata_dsn:
        port = free_port()
        broker_port, broker_password = free_port(), secrets.token_urlsafe(24)
        env = services_env(campaign_dsn=campaign_dsn, endpoint=endpoint, home=home, metadata_dsn=metadata_dsn,
                           port=port, password_file=password_file, parallelism=parallelism, host=host,
                           broker_url=f"redis://:{broker_password}@{host}:{broker_port}/0" if hosts else None)
        log_port = free_port()
        # One log server for the tries' and the triggers' logs (log_server_command); a
        # free port, not 8793/8794: several stacks (and triggerers) on one machine do
        # not collide.
        env.update({"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_port),
                    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(log_port)})
        env.update(extra_env or {})
        progress("migrating Airflow's metadata DB (PostgreSQL)")
        migrate = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env,
                                 capture_output=True, text=True, check=False)
        if migrate.returncode != 0:
            raise ServiceError(f"airflow db migrate failed:\n{migrate.stdout[-3000:]}\n{migrate.stderr[-3000:]}")
        base = f"http://{host}:{port}"
        stack = AirflowStack(base_url=base, username=ADMIN_USER, password=password, env=env, home=home,
                             api=AirflowApi(base, ADMIN_USER, password))
        if not hosts:
            stack.commands = local_commands(host=host, log_port=log_port)
        if hosts:
            stack.executor = "celery"
            stack.commands = celery_commands(broker_port=broker_port, broker_password=broker_password, host=host,
                                             home=home, log_port=log_port, schedulers=schedulers,
                                             triggerers=triggerers, workers=len(hosts.hosts))
            stack.hosts = {f"worker-{n}": h for n, h in enumerate(hosts.hosts, start=1)}
        try:
            progress("starting " + ", ".join(
                f"{s} on {stack.hosts[s].hostname} ({stack.hosts[s].address})" if s in stack.hosts else s
                for s in stack.services()))
            for service in stack.services():
                stack.start(service)
            stack.wait_healthy()
            stack.api.call("POST", "/api/v2/pools", {
                "name": LAUNCH_POOL, "slots": LAUNCH_POOL_SLOTS, "include_deferred": False,
                "description": "Training launches (running tasks only; deferred jobs are not counted)",
            }, expect=(200, 201))
            stack.wait_for_dag(dag_id)
            yield stack
        finally:
            stack.stop_all()


# -- following a run -------------------------------------------------------------------


def is_training_task(task_id: str) -> bool:
    """``train``, or ``<group>.train`` once the DAG maps a task group per target."""
    return task_id == "train" or task_id.endswith(".train")


#: :func:`region_of` for a task that has not run yet: its name is rendered when it runs.
NOT_STARTED = "not started"


def region_of(ti: dict[str, Any]) -> str:
    """A mapped task's region, from its rendered name (``map_index_template``)."""
    found = _REGION.search(str(ti.get("rendered_map_index") or ""))
    return found.group(0) if found else NOT_STARTED


@dataclass
class RunProgress:
    """Per region: training tasks trained / failed / running (incl. deferred) / waiting."""

    counts: dict[str, dict[str, int]]

    @classmethod
    def of(cls, tis: list[dict[str, Any]]) -> RunProgress:
        counts: dict[str, dict[str, int]] = {}
        for ti in tis:
            if not is_training_task(ti["task_id"]) or ti.get("map_index", -1) < 0:
                continue
            row = counts.setdefault(region_of(ti), {"trained": 0, "failed": 0, "running": 0, "waiting": 0})
            state = ti.get("state")
            if state == "success":
                row["trained"] += 1
            elif state in ("failed", "upstream_failed", "skipped"):
                row["failed"] += 1
            elif state in ("running", "deferred"):
                row["running"] += 1
            else:
                row["waiting"] += 1
        return cls(counts)

    def line(self) -> str:
        if not self.counts:
            return "no training tasks yet"
        # Unnamed tasks mostly never ran (a task gets its name when it runs): waiting, or
        # failed before they started (upstream_failed), which stays said. One that runs
        # before its name is rendered, or whose name holds no region (the benchmark's
        # floor DAGs), is said too, not dropped.
        parts = []
        if unnamed := self.counts.get(NOT_STARTED):
            others = "".join(f", {unnamed[k]} {k}" for k in ("running", "trained", "failed") if unnamed[k])
            parts.append(f"{unnamed['waiting']} {NOT_STARTED}{others}")
        for region, c in sorted(self.counts.items()):
            if region == NOT_STARTED:
                continue
            text = f"{region} {c['trained']} trained, {c['running']} running, {c['waiting']} waiting"
            parts.append(text + (f", {c['failed']} failed" if c["failed"] else ""))
        return " | ".join(parts)


@dataclass
class FollowedRun:
    """What :func:`follow_run` saw: the final run, its task instances, and every state
    each (task, map index) was observed in, in order."""

    run: dict[str, Any]
    task_instances: list[dict[str, Any]]
    seen: dict[tuple[str, int], list[str]]


def _spaced(poll: float, took: float, *, cap: float) -> float:
    """Seconds until the next ask of a request that took ``took``: twenty times that, so
    following a run keeps to about a twentieth of the API server's time, at least ``poll``.
    Capped: the time an answer took is a busy server's queue as much as its work."""
    return min(max(poll, 20 * took), cap)


def follow_run(
    api: AirflowApi, run_id: str, *, timeout: float = 3600, poll: float = 1.0,
    on_change: Callable[[RunProgress], None] = lambda _p: None,
    while_running: Callable[[FollowedRun], bool] | None = None, dag_id: str = DAG_ID,
) -> FollowedRun:
    """Poll ``run_id`` until it succeeds or fails; ``while_running`` (if given) is called
    each poll and unset once it returns True (a test's mid-run action)."""
    deadline = time.monotonic() + timeout
    seen: dict[tuple[str, int], list[str]] = {}
    last_line = None
    tis: list[dict[str, Any]] = []
    next_listing = 0.0
    while True:
        asked = time.monotonic()
        # The run's answer holds its DAG versions, which the API server reads through
        # every task instance of the run: at a thousand targets, ask at most once per
        # twenty times what the last answer took (the run's end_date is its own, so the
        # end is measured exactly however late it is seen).
        run = api.dag_run(run_id, dag_id)
        wait = _spaced(poll, time.monotonic() - asked, cap=15.0) if while_running is None else poll
        finished = run["state"] in FINISHED_RUN_STATES
        if finished or while_running is not None or time.monotonic() >= next_listing:
            asked = time.monotonic()
            tis = api.task_instances(run_id, dag_id)
            took = time.monotonic() - asked
            # The task-instance list at a thousand targets is seconds of the API server's
            # CPU, the server the run's own tries and triggers call: list again only after
            # twenty times what the last listing took, so following a run keeps to about
            # a twentieth of the server's time. A small run (tens of tasks, tens of ms)
            # is still listed every poll.
            next_listing = time.monotonic() + _spaced(poll, took, cap=60.0)
        for ti in tis:
            states = seen.setdefault((ti["task_id"], ti.get("map_index", -1)), [])
            state = str(ti.get("state"))
            if not states or states[-1] != state:
                states.append(state)
        progress = RunProgress.of(tis)
        if progress.line() != last_line:
            last_line = progress.line()
            on_change(progress)
        followed = FollowedRun(run, tis, seen)
        if finished:
            return followed
        if while_running is not None and while_running(followed):
            while_running = None
        if time.monotonic() > deadline:
            raise ServiceError(f"run {run_id} still {run['state']} after {timeout:.0f}s: {last_line}")
        time.sleep(wait)
