"""dev/processes.py: what the local stacks use to leave nothing running behind them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dev.processes import kill_stack

# A process that ignores SIGTERM, in a session of its own: what an Airflow task process
# can look like after its service's process group was stopped.
STUBBORN = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(120)")


def _start(home: Path, *, title: str | None = None, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """A stubborn process of the stack at ``home``: carrying it in its environment, or
    only started in it (``cwd``) and then titled, as Airflow's task processes are."""
    code = STUBBORN if title is None else f"import setproctitle; setproctitle.setproctitle({title!r}); {STUBBORN}"
    env = {**os.environ, "AIRFLOW_HOME": str(home)} if cwd is None else dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            start_new_session=True)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    return proc


def test_kill_stack_ends_only_the_processes_of_that_stack(tmp_path: Path) -> None:
    home, other = tmp_path / "home", tmp_path / "other"
    home.mkdir()
    other.mkdir()
    ours = _start(home)
    # Titled: its environment can no longer be read; its working directory can.
    titled = _start(home, title="airflow task runner: dag_id=multi_region_training", cwd=home)
    theirs = [_start(other), _start(other, title="airflow task runner: other", cwd=other)]
    procs = [ours, titled, *theirs]
    try:
        with open(f"/proc/{titled.pid}/environ", "rb") as environ:
            assert f"AIRFLOW_HOME={home}".encode() not in environ.read()
        ours.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):  # ignored, as such task processes do
            ours.wait(timeout=0.5)
        assert sorted(kill_stack(home)) == sorted([ours.pid, titled.pid])
        assert ours.wait(timeout=10) == -signal.SIGKILL and titled.wait(timeout=10) == -signal.SIGKILL
        assert all(proc.poll() is None for proc in theirs)  # another stack's processes are left alone
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()


# -- the Celery stack's service table (dev/airflow_services.py, issue 32) ----------------


def test_numbered_services_are_of_their_kind() -> None:
    from dev.airflow_services import kind_of

    assert [kind_of(s) for s in ("scheduler-2", "worker-10", "api-server", "dag-processor", "redis")] == [
        "scheduler", "worker", "api-server", "dag-processor", "redis"]


def test_the_celery_stack_runs_two_of_each_and_keeps_the_broker_password_off_the_command_line(
        tmp_path: Path) -> None:
    from dev.airflow_services import celery_commands, kind_of

    commands = celery_commands(broker_port=6390, broker_password="s3cret-for-this-stack", host="10.213.7.1",
                               home=tmp_path, log_port=43123)
    kinds = [kind_of(name) for name in commands]
    assert kinds.count("scheduler") == kinds.count("triggerer") == kinds.count("worker") == 2
    assert kinds[0] == "redis"  # the broker before anything that connects to it
    assert not any("s3cret" in " ".join(argv) for argv in commands.values())
    conf = Path(commands["redis"][1])
    assert conf.stat().st_mode & 0o777 == 0o600
    settings = dict(line.split(" ", 1) for line in conf.read_text().splitlines())
    assert (settings["bind"], settings["port"], settings["requirepass"], settings["appendonly"]) == (
        "10.213.7.1", "6390", "s3cret-for-this-stack", "yes")
    assert commands["worker-1"][-4:] == ["worker", "--concurrency", "4", "--skip-serve-logs"]
    # No Airflow log server on every interface: one on the stack's address serves the
    # triggers' logs (the schedulers run no task).
    assert all(commands[f"{kind}-{n}"][-1] == "--skip-serve-logs" for kind in ("scheduler", "triggerer")
               for n in (1, 2))
    assert commands["log-server"][-4:] == ["--host", "127.0.0.1", "--port", "43123"]


def test_the_stack_starts_all_but_its_triggerers_at_background_priority(tmp_path: Path) -> None:
    """The triggerers' event loop keeps the stack's own priority; the rest (scheduler and
    the task tries it forks, workers, api-server, dag-processor) start ``nice``r, so a
    burst of task start-ups on a busy machine cannot keep the loop from a core."""
    from dev.airflow_services import AirflowApi, AirflowStack
    from dev.processes import BACKGROUND_NICENESS

    (tmp_path / "services").mkdir()
    # Its own niceness, whether it leads its process group, and its session's autogroup
    # niceness (what ranks sessions against each other: processes.background).
    show = [sys.executable, "-c", "import os, pathlib; group = pathlib.Path('/proc/self/autogroup'); "
            "print(os.nice(0), os.getpid() == os.getpgid(0), "
            "group.read_text().split()[-1] if group.exists() else 'none')"]
    names = ("triggerer", "triggerer-2", "scheduler", "scheduler-2", "worker-1", "dag-processor", "redis")
    stack = AirflowStack(base_url="http://127.0.0.1:1", username="u", password="p", env=dict(os.environ),
                         home=tmp_path, api=AirflowApi("http://127.0.0.1:1", "u", "p"),
                         commands={name: show for name in names})
    for name in names:
        stack.start(name)
        assert stack.procs[name].wait(timeout=30) == 0
    own = os.nice(0)
    seen = {name: stack.log_path(name).read_text().split() for name in names}
    autogroups = Path("/proc/self/autogroup").exists()
    # A new session's autogroup starts at niceness 0 (sched(7)); nice caps at 19.
    foreground = [str(own), "True", "0" if autogroups else "none"]
    background = [str(min(own + BACKGROUND_NICENESS, 19)), "True", str(BACKGROUND_NICENESS) if autogroups else "none"]
    # Each still leads its own process group (sh and nice exec the command): stop_group works.
    assert seen == {"triggerer": foreground, "triggerer-2": foreground, "redis": foreground,
                    "scheduler": background, "scheduler-2": background, "worker-1": background,
                    "dag-processor": background}
