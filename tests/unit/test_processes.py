"""dev/processes.py: what the local stacks use to leave nothing running behind them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import pytest

from processes import kill_by_environment

# A process that ignores SIGTERM, in a session of its own: what an Airflow task process
# can look like after its service's process group was stopped.
STUBBORN = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(120)")


def _start(mark: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", STUBBORN], env={**os.environ, "MRT_TEST_STACK": mark},
                            stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    return proc


def test_kill_by_environment_ends_only_the_processes_of_that_stack() -> None:
    mark, other = f"home-{uuid.uuid4()}", f"home-{uuid.uuid4()}"
    ours, theirs = _start(mark), _start(other)
    try:
        ours.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):  # ignored, as such task processes do
            ours.wait(timeout=0.5)
        assert kill_by_environment("MRT_TEST_STACK", mark) == [ours.pid]
        assert ours.wait(timeout=10) == -signal.SIGKILL
        assert theirs.poll() is None  # another stack's process is left alone
    finally:
        for proc in (ours, theirs):
            proc.kill()
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()
