"""dev/processes.py: what the local stacks use to leave nothing running behind them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from processes import kill_stack

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
