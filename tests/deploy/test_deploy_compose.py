"""docker-compose.yaml, .env.example and the Airflow image, checked statically.

No Docker engine runs here: the compose file is parsed and its services, healthchecks,
dependencies and profiles asserted; when a Docker Compose v2 binary is available
(scripts/lint.sh fetches one into .local/bin) it also resolves the file for real.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yaml"
DOCKERFILE = REPO / "images" / "airflow" / "Dockerfile"

AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}
ONE_SHOT = {"airflow-init", "campaign-db-init"}
#: One-shots that only run with a profile.
PROFILE_ONE_SHOT = {"local-aws-seed"}
#: What the celery profile adds: what `scripts/run_local.sh --executor celery` runs (issue 32).
CELERY_PROFILE = {"redis", "airflow-worker", "airflow-scheduler-2", "airflow-triggerer-2", "flower"}
PROFILE_SETS = [set(), {"offline"}, {"celery"}, {"offline", "celery"}, {"offline", "celery", "debug"}]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def parse_dotenv(path: Path) -> dict[str, str]:
    """Compose's .env rules for what .env.example uses: KEY=value, '...' literal, # comments."""
    values = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), raw
        if value.startswith("'"):
            assert value.endswith("'") and len(value) > 1, raw
            value = value[1:-1]
        values[key] = value
    return values


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return parse_dotenv(REPO / ".env.example")


def active(services: dict, profiles: set[str]) -> set[str]:
    return {name for name, svc in services.items() if not svc.get("profiles") or set(svc["profiles"]) & profiles}


def test_services_present_and_profiled(services):
    expected = {
        "postgres",
        "campaign-db",
        "campaign-db-init",
        "airflow-init",
        "redis",
        "airflow-worker",
        "airflow-scheduler-2",
        "airflow-triggerer-2",
        "flower",
        "local-aws",
        "local-aws-seed",
        "airflow-cli",
    } | AIRFLOW_SERVICES
    assert expected <= set(services)
    default = active(services, set())
    # Everything the DAG needs runs without any profile; the triggerer resumes the
    # deferred training tasks.
    assert AIRFLOW_SERVICES | ONE_SHOT | {"postgres", "campaign-db"} <= default
    assert "airflow-triggerer" in default and services["airflow-triggerer"]["command"] == "triggerer"
    assert services["local-aws"]["profiles"] == ["offline"]
    assert services["local-aws-seed"]["profiles"] == ["offline"]
    assert services["local-aws-seed"]["depends_on"] == {
        "local-aws": {"condition": "service_healthy"},
        "campaign-db-init": {"condition": "service_completed_successfully"},
    }
    for name in CELERY_PROFILE:
        assert services[name]["profiles"] == ["celery"], name
    assert (CELERY_PROFILE | {"local-aws", "airflow-cli"}).isdisjoint(default)


def test_commands(services):
    assert services["airflow-apiserver"]["command"] == "api-server"
    assert services["airflow-scheduler"]["command"] == "scheduler"
    assert services["airflow-dag-processor"]["command"] == "dag-processor"
    assert services["airflow-worker"]["command"] == "celery worker"
    init = services["campaign-db-init"]
    assert init["entrypoint"] + init["command"] == [
        "python",
        "-m",
        "regional_training.runtime.campaign_db",
        "migrate",
        "--seed",
    ]
    assert "host=campaign-db" in init["environment"]["CAMPAIGN_DB_DSN"]
    script = services["airflow-init"]["command"][-1]
    assert "/entrypoint airflow" in script
    env = services["airflow-init"]["environment"]
    assert env["_AIRFLOW_DB_MIGRATE"] == "true" and env["_AIRFLOW_WWW_USER_CREATE"] == "true"


def test_celery_profile_matches_the_local_stack(services, tmp_path):
    """Two schedulers, two triggerers, two workers, a broker that keeps its queue across a
    restart: as dev/airflow_services.py starts them for ``--executor celery``."""
    from dev.airflow_services import celery_commands

    local = celery_commands(broker_port=6379, broker_password="x", host="127.0.0.1", home=tmp_path, log_port=8793)
    kinds = Counter(name.rsplit("-", 1)[0] if name[-1].isdigit() else name for name in local)
    on = active(services, {"celery"})
    schedulers = [n for n in on if services[n].get("command") == "scheduler"]
    triggerers = [n for n in on if services[n].get("command") == "triggerer"]
    assert len(schedulers) == kinds["scheduler"] == 2 and len(triggerers) == kinds["triggerer"] == 2
    assert services["airflow-worker"]["deploy"]["replicas"] == kinds["worker"] == 2
    for name in ("airflow-scheduler-2", "airflow-triggerer-2"):
        assert services[name]["environment"] == services["airflow-scheduler"]["environment"], name
        assert services[name]["healthcheck"] == services[name.removesuffix("-2")]["healthcheck"], name
        assert services[name]["restart"] == "always", name
    assert services["airflow-scheduler-2"]["stop_grace_period"] == services["airflow-scheduler"]["stop_grace_period"]
    redis = services["redis"]["command"]
    assert redis[redis.index("--appendonly") + 1] == "yes"
    assert "appendonly yes" in (Path(local["redis"][1]).read_text())


def test_local_executor_by_default_celery_settings_present(services):
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == (
        "${AIRFLOW_EXECUTOR:-regional_training.runtime.executors.PreloadedLocalExecutor}")
    broker = env["AIRFLOW__CELERY__BROKER_URL"]
    assert broker.startswith("redis://") and "@redis:6379" in broker
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres/airflow")
    assert services["airflow-worker"]["environment"]["DUMB_INIT_SETSID"] == "0"


def test_healthchecks_on_every_long_running_service(services):
    long_running = set(services) - ONE_SHOT - PROFILE_ONE_SHOT - {"airflow-cli"}
    assert long_running >= AIRFLOW_SERVICES | {"postgres", "campaign-db", "redis", "local-aws", "airflow-worker"}
    for name in long_running:
        hc = services[name].get("healthcheck")
        assert hc and hc["test"][0] in ("CMD", "CMD-SHELL") and len(hc["test"]) > 1, name
        assert {"interval", "retries"} <= set(hc), name
    assert services["airflow-apiserver"]["healthcheck"]["test"][-1] == "http://localhost:8080/api/v2/version"
    assert services["airflow-scheduler"]["healthcheck"]["test"][-1] == "http://localhost:8974/health"
    assert "TriggererJob" in services["airflow-triggerer"]["healthcheck"]["test"][-1]
    assert "DagProcessorJob" in services["airflow-dag-processor"]["healthcheck"]["test"][-1]
    assert "pg_isready" in " ".join(services["campaign-db"]["healthcheck"]["test"])


def test_dependencies(services):
    for name in AIRFLOW_SERVICES | CELERY_PROFILE - {"redis"}:
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy", name
        assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
        assert deps["campaign-db-init"]["condition"] == "service_completed_successfully", name
        # Offline, Airflow waits for the emulator; with real AWS there is none to wait for.
        assert deps["local-aws"] == {"condition": "service_healthy", "required": False}, name
    assert services["airflow-init"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["campaign-db-init"]["depends_on"] == {"campaign-db": {"condition": "service_healthy"}}
    assert services["airflow-worker"]["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"
    for name, svc in services.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in services, (name, dep)
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], (name, dep)
            if spec["condition"] == "service_completed_successfully":
                assert dep in ONE_SHOT | PROFILE_ONE_SHOT and services[dep].get("restart", "no") == "no", (name, dep)


@pytest.mark.parametrize("profiles", PROFILE_SETS, ids=lambda p: "+".join(sorted(p)) or "default")
def test_required_dependencies_are_active_under_each_profile_set(services, profiles):
    on = active(services, profiles)
    for name in on:
        for dep, spec in (services[name].get("depends_on") or {}).items():
            if spec.get("required", True):
                assert dep in on, f"{name} needs {dep}, which profiles {sorted(profiles)} do not start"


def test_connections_and_variables_come_from_env(services, env_example):
    from regional_training.runtime.settings import VARIABLES

    env = services["airflow-triggerer"]["environment"]
    needed = {"AIRFLOW_CONN_CAMPAIGN_DB", "AIRFLOW_CONN_AWS_DEFAULT"} | {f"AIRFLOW_VAR_{v.upper()}" for v in VARIABLES}
    for key in needed:
        assert re.fullmatch(rf"\$\{{{key}:\?[^}}]+\}}", env[key]), (key, env[key])
        assert env_example.get(key), f".env.example lacks {key}"
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in COMPOSE.read_text()
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in DOCKERFILE.read_text()


def test_env_example_connections_and_variables_are_valid(env_example):
    from airflow.models.connection import Connection

    from regional_training.runtime.settings import settings_from_mapping

    aws = Connection.from_json(env_example["AIRFLOW_CONN_AWS_DEFAULT"], conn_id="aws_default")
    assert aws.conn_type == "aws" and aws.login == "testing" and aws.password == "testing"
    assert aws.extra_dejson == {"endpoint_url": "http://local-aws:5000", "region_name": "us-east-1"}
    db = Connection(conn_id="campaign_db", uri=env_example["AIRFLOW_CONN_CAMPAIGN_DB"])
    assert (db.conn_type, db.host, db.port, db.schema) == (
        "postgres",
        "campaign-db",
        5432,
        env_example["CAMPAIGN_DB_NAME"],
    )
    assert (db.login, db.password) == (env_example["CAMPAIGN_DB_USER"], env_example["CAMPAIGN_DB_PASSWORD"])
    settings = settings_from_mapping(
        {k.removeprefix("AIRFLOW_VAR_").lower(): v for k, v in env_example.items() if k.startswith("AIRFLOW_VAR_")}
    )
    assert settings.sagemaker_role_arn.split(":")[4] == settings.aws_account_id
    assert env_example["AIRFLOW_EXECUTOR"] == "regional_training.runtime.executors.PreloadedLocalExecutor"


def test_env_is_ignored_and_example_is_not():
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO, check=False)
    assert ignored.returncode == 0
    example = subprocess.run(["git", "check-ignore", "-q", ".env.example"], cwd=REPO, check=False)
    assert example.returncode == 1


def _dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\s*\\\n\s*", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_airflow_dockerfile(services):
    instructions = _dockerfile_instructions(DOCKERFILE)
    froms = [rest for word, rest in instructions if word == "FROM"]
    assert froms[0].startswith("apache/airflow:3.3.2")
    stages = [f.split(" AS ")[-1] for f in froms if " AS " in f]
    assert stages[-1] == "airflow", "the default (last) stage must be the Airflow image"
    for name in ("airflow-scheduler", "local-aws"):
        build = services[name]["build"]
        assert build["dockerfile"] == "images/airflow/Dockerfile" and build["target"] in stages
        assert (REPO / build["context"] / build["dockerfile"]).is_file()
    runs = " ".join(rest for word, rest in instructions if word == "RUN")
    # The pinned set, exactly: uv picks requirements.txt's part of the full constraint set,
    # and the image's own pip installs that list without resolving again (--no-deps).
    assert re.search(r"uv pip compile .*\S+/requirements\.txt.* -c \S+/constraints\.txt", runs) or re.search(
        r"uv pip compile .* -c \S+/constraints\.txt.*\S+/requirements\.txt", runs
    ), runs
    assert re.search(r"pip install --no-cache-dir --no-deps -r /tmp/locked\.txt", runs), runs
    copies = [rest.split() for word, rest in instructions if word == "COPY"]
    sources = [parts[-2] for parts in copies]
    assert {"requirements.txt", "requirements/constraints.txt", "dags/", "plugins/", "include/"} <= set(sources)
    destinations = {p[-2]: p[-1] for p in copies}
    assert destinations["dags/"] == "/opt/airflow/dags/"
    assert destinations["plugins/"] == "/opt/airflow/plugins/"
    assert destinations["include/"] == "/opt/airflow/include/"
    ignored = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for src in sources:
        assert (REPO / src).exists(), f"COPY source {src} missing from the repo"
        assert not any(Path(src.rstrip("/")).match(pattern.lstrip("*/")) for pattern in ignored), src
    entry = next(json.loads(rest) for word, rest in instructions if word == "ENTRYPOINT")
    cmd = next(json.loads(rest) for word, rest in instructions if word == "CMD")
    assert entry + cmd == [
        "python", "-m", "dev.local_aws.server", "--host", "0.0.0.0", "--port", "5000",  # noqa: S104
        "--images", "/opt/airflow/dev/local_aws/images.offline.json",
    ]
    assert (REPO / "dev" / "local_aws" / "server.py").is_file()


def _compose_env(tmp_path: Path) -> dict[str, str]:
    """Only .env files may feed interpolation: none of this process's variables leak in."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)}


def _compose_binary() -> list[str] | None:
    local = REPO / ".local" / "bin" / "docker-compose"
    if local.is_file():
        return [str(local)]
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0
    ):
        return ["docker", "compose"]
    return None


@pytest.mark.parametrize("profiles", PROFILE_SETS, ids=lambda p: "+".join(sorted(p)) or "default")
def test_docker_compose_config_resolves(profiles, tmp_path):
    binary = _compose_binary()
    if binary is None:
        pytest.skip("no Docker Compose v2 binary (run scripts/lint.sh once to fetch it into .local/bin)")
    args = [a for p in sorted(profiles) for a in ("--profile", p)]
    proc = subprocess.run(
        [
            *binary,
            "--project-directory",
            str(REPO),
            "-f",
            str(COMPOSE),
            "--env-file",
            str(REPO / ".env.example"),
            *args,
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=tmp_path,
        env=_compose_env(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    resolved = json.loads(proc.stdout)["services"]
    raw = yaml.safe_load(COMPOSE.read_text())["services"]
    assert set(resolved) == active(raw, profiles)
    aws = json.loads(resolved["airflow-scheduler"]["environment"]["AIRFLOW_CONN_AWS_DEFAULT"])
    assert aws["extra"]["endpoint_url"] == "http://local-aws:5000"
    executor = resolved["airflow-scheduler"]["environment"]["AIRFLOW__CORE__EXECUTOR"]
    assert executor == "regional_training.runtime.executors.PreloadedLocalExecutor"


def test_docker_compose_config_fails_without_env(tmp_path):
    binary = _compose_binary()
    if binary is None:
        pytest.skip("no Docker Compose v2 binary (run scripts/lint.sh once to fetch it into .local/bin)")
    empty = tmp_path / "empty.env"
    empty.write_text("")
    proc = subprocess.run(
        [*binary, "--project-directory", str(REPO), "-f", str(COMPOSE), "--env-file", str(empty), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=tmp_path,
        env=_compose_env(tmp_path),
    )
    assert proc.returncode != 0 and "is missing a value" in proc.stderr and "in .env" in proc.stderr


#: Services that only run offline (the emulator): outside them, no password may have a default.
OFFLINE_ONLY = {"local-aws", "local-aws-seed"}
_REQUIRED = r"\$\{(\w+):\?[^}]+\}"


def _secrets_in(key: str, value: str) -> list[str]:
    """Every password-like part of one environment entry: a *PASSWORD variable, a URL's
    ``user:secret@`` or a libpq ``password=`` field."""
    found = []
    if "PASSWORD" in key.upper():
        found.append(value)
    found += re.findall(r"://[^:/@\s]+:(\$\{[^}]*\}|[^@\s]*)@", value)
    found += re.findall(r"password=(\$\{[^}]*\}|\S*)", value)
    return found


def test_every_password_outside_offline_comes_from_env_without_default(services):
    """Issue 12, item 8: no default password anywhere a deployment runs."""
    checked = 0
    for name, svc in services.items():
        if name in OFFLINE_ONLY:
            continue
        for key, value in (svc.get("environment") or {}).items():
            for secret in _secrets_in(key, str(value)):
                checked += 1
                assert re.fullmatch(_REQUIRED, secret), f"{name}: {key} has a password not from .env: {secret}"
    # The metadata DB, its URLs, the campaign DB and its DSN, the admin user.
    assert checked >= 6
    text = COMPOSE.read_text()
    assert not re.search(r"PASSWORD:-", text), "a password with a default"
    assert "airflow:airflow@" not in text


def test_env_example_has_every_required_setting(env_example):
    """.env.example names every ${VAR:?} the compose file requires."""
    required = set(re.findall(_REQUIRED, COMPOSE.read_text()))
    assert {"AIRFLOW_DB_PASSWORD", "CAMPAIGN_DB_PASSWORD", "_AIRFLOW_WWW_USER_PASSWORD"} <= required
    assert required <= set(env_example), required - set(env_example)
    db = re.search(r"://(\w+):([^@]+)@", env_example["AIRFLOW_CONN_CAMPAIGN_DB"])
    assert db and db.group(2) == env_example["CAMPAIGN_DB_PASSWORD"]


def test_host_ports_bind_to_loopback_unless_configured(services, env_example):
    """Issue 12, item 8: every published port binds to HOST_BIND_ADDRESS, default 127.0.0.1."""
    published = {name: svc["ports"] for name, svc in services.items() if svc.get("ports")}
    assert {"campaign-db", "local-aws", "airflow-apiserver", "flower"} <= set(published)
    for name, ports in published.items():
        for port in ports:
            assert isinstance(port, str) and port.startswith("${HOST_BIND_ADDRESS:-127.0.0.1}:"), (name, port)
    assert env_example["HOST_BIND_ADDRESS"] == "127.0.0.1"


def test_a_killed_scheduler_leaves_no_worker_holding_locks(services):
    """Issue 12, item 7 (docs/services.md): the scheduler's workers die with it; orphaned
    transactions on the metadata DB are ended by Postgres."""
    scheduler = services["airflow-scheduler"]
    assert scheduler["stop_signal"] == "SIGTERM" and scheduler["stop_grace_period"] == "60s"
    assert scheduler["restart"] == "always" and "/health" in scheduler["healthcheck"]["test"][-1]
    # No entrypoint override: the base image's dumb-init stays PID 1.
    assert "entrypoint" not in scheduler
    instructions = _dockerfile_instructions(DOCKERFILE)
    airflow_stage = next(i for i, (w, r) in enumerate(instructions) if w == "FROM" and r.endswith("AS airflow"))
    assert "ENTRYPOINT" not in [word for word, _ in instructions[airflow_stage:]]
    command = services["postgres"]["command"]
    timeout = next(c.split("=", 1)[1] for c in command if c.startswith("idle_in_transaction_session_timeout="))
    assert 0 < int(timeout) <= 600_000


@pytest.mark.parametrize("profiles", [set(), {"offline", "celery"}], ids=["default", "offline+celery"])
def test_docker_compose_publishes_on_loopback(profiles, tmp_path):
    binary = _compose_binary()
    if binary is None:
        pytest.skip("no Docker Compose v2 binary (run scripts/lint.sh once to fetch it into .local/bin)")
    args = [a for p in sorted(profiles) for a in ("--profile", p)]
    proc = subprocess.run(
        [*binary, "--project-directory", str(REPO), "-f", str(COMPOSE), "--env-file", str(REPO / ".env.example"),
         *args, "config", "--format", "json"],
        capture_output=True, text=True, check=False, timeout=60, cwd=tmp_path, env=_compose_env(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    resolved = json.loads(proc.stdout)["services"]
    ports = [p for svc in resolved.values() for p in svc.get("ports", [])]
    assert ports and all(p["host_ip"] == "127.0.0.1" for p in ports), ports
