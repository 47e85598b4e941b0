"""Child processes of the local stack: free ports, and stopping a process with its children.

Every long-running part (the emulator, each Airflow service) starts in its own session
(``start_new_session=True``), so it is the leader of a process group holding everything
it forks: LocalExecutor workers, task supervisors, training jobs. :func:`stop_group`
signals that whole group, so nothing it started outlives it (a SIGKILLed scheduler
must not leave workers holding database locks behind; see docs/services.md).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path

#: The niceness the local stack starts its CPU-heavy parts at (every Airflow service but
#: the triggerers, the emulator). A deployment runs the triggerer in a container or pod of
#: its own, so a worker's burst of task start-ups never keeps its event loop from a core;
#: on one machine the stack gives it that priority instead (docs/services.md, "The
#: triggerer's loop on a busy machine").
BACKGROUND_NICENESS = 5


def background(cmd: list[str], niceness: int = BACKGROUND_NICENESS) -> list[str]:
    """``cmd`` started at ``niceness``, for a command that leads a session of its own
    (``start_new_session``): both the session's autogroup niceness and the process's own.

    With the kernel's autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled``,
    on in Debian's kernels), CPU is shared out between sessions first and a process's own
    nice value ranks it only inside its session (sched(7), "The autogroup feature"): each
    service being a session, ``nice`` alone changed nothing against the triggerer
    (measured: the same 11 "blocked" warnings at 500 targets). The session's niceness is
    written to ``/proc/self/autogroup`` (ignored where the kernel has no autogroups), then
    ``nice`` execs the command, which keeps the pid and process group."""
    if not niceness:
        return list(cmd)
    script = f'{{ echo {int(niceness)} > /proc/self/autogroup; }} 2>/dev/null; exec nice -n {int(niceness)} "$@"'
    return ["sh", "-c", script, "sh", *cmd]


def unwind_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every ``finally`` stops what it started (Python's
    default for SIGTERM is to die at once, leaving the services and databases behind)."""

    def handler(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_group(proc: subprocess.Popen[bytes], *, timeout: float = 30.0) -> None:
    """SIGTERM ``proc``'s process group, wait ``timeout`` seconds, then SIGKILL what is left.

    ``proc`` must have been started with ``start_new_session=True`` (its pid is its
    group id); a process that already exited is only reaped.
    """
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    # The leader is gone; children that ignored SIGTERM (or outlived a crash) still hold
    # the group id: kill them too.
    _signal_group(proc.pid, signal.SIGKILL)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``proc``'s process group at once (a crash, as a test needs it)."""
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def kill_stack(home: Path) -> list[int]:
    """SIGKILL every process of the local stack whose throwaway home is ``home``
    (:func:`stack_pids`); returns their PIDs.

    Airflow's task supervisor starts each task in a session of its own, so stopping a
    service's process group misses a task process that was running then, and such a
    process can ignore SIGTERM and outlive the stack (PPID 1).
    """
    killed = []
    for pid in stack_pids(home):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


def stack_pids(home: Path) -> Iterator[int]:
    """Every process of the stack whose home is ``home`` (Linux ``/proc``), but this one
    and its parent: those whose working directory is ``home`` or whose environment holds
    ``AIRFLOW_HOME=home``.

    Both, because neither alone finds them all: a process that sets its title (Airflow's
    workers, supervisors and task runners, with ``setproctitle``) overwrites the memory
    ``/proc/<pid>/environ`` reads, but keeps the working directory its service started
    in (the stack starts every service in its home, and Airflow does not change it); a
    process that changes directory keeps its environment.
    """
    home_path = os.path.realpath(home)
    wanted = f"AIRFLOW_HOME={home}".encode()
    spared = {os.getpid(), os.getppid()}
    for pid in all_pids():
        if pid in spared:
            continue
        try:
            if os.readlink(f"/proc/{pid}/cwd") == home_path:
                yield pid
                continue
            with open(f"/proc/{pid}/environ", "rb") as environ:
                if wanted in environ.read().split(b"\0"):
                    yield pid
        except OSError:  # gone, or not ours to read
            continue


def descendants(root: int) -> list[int]:
    """Every living process below ``root`` (``/proc/<pid>/stat``'s parent PIDs)."""
    children: dict[int, list[int]] = {}
    for pid in all_pids():
        try:
            with open(f"/proc/{pid}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _tcp_address(hex_address: str) -> str:
    """``/proc/net/tcp{,6}``'s ``ADDR:PORT`` (hex, each 32-bit word in host order) as an IP."""
    import ipaddress
    import struct

    raw = bytes.fromhex(hex_address)
    words = struct.unpack(f"={len(raw) // 4}I", raw)  # the kernel's words, in this machine's order
    packed = b"".join(struct.pack(">I", w) for w in words)
    return str(ipaddress.ip_address(packed))


def listening_sockets(pids: Iterable[int]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every TCP socket in LISTEN state that one of ``pids`` holds
    (Linux: the socket inodes among ``/proc/<pid>/fd``, looked up in ``/proc/net/tcp``
    and ``tcp6`` of this network namespace)."""
    owner: dict[str, int] = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    owner.setdefault(target[8:-1], pid)
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            next(rows)  # header
            for row in rows:
                fields = row.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and inode in owner:  # 0A: TCP_LISTEN
                    address, _, port = local.partition(":")
                    found.append((owner[inode], _tcp_address(address), int(port, 16)))
    return sorted(found)


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1, or an IPv4-mapped loopback address."""
    import ipaddress

    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def all_pids() -> Iterator[int]:
    """Every process's PID (Linux ``/proc``)."""
    return (int(entry.name) for entry in os.scandir("/proc") if entry.name.isdigit())


def cpu_seconds_by_command(pids: Iterator[int]) -> dict[str, float]:
    """CPU seconds each process used, its reaped children's included (``/proc/<pid>/stat``:
    utime, stime, cutime, cstime), summed by command line up to the first ``--`` or
    ``:`` (Airflow's process titles, e.g. ``airflow worker -- LocalExecutor: ...``), with
    a leading ``python [-m]`` dropped."""
    ticks = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        # Fields 14-17 of stat; after "(comm)" the first is field 3, the state.
        used = sum(int(f) for f in fields[11:15]) / ticks
        words = command.split()
        if words and os.path.basename(words[0]).startswith("python"):  # ".../python -m airflow x": "airflow x"
            words = words[2:] if words[1:2] == ["-m"] else words[1:]
        label = " ".join(words).split(" -- ")[0].split(":")[0].strip()[:60] or "?"
        totals[label] = totals.get(label, 0.0) + used
    return totals


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy (``/proc/stat``: all but idle and iowait)."""
    with open("/proc/stat") as stat:
        fields = [int(f) for f in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def wait_until_answers(url: str, proc: subprocess.Popen[bytes], *, timeout: float, what: str,
                       poll: float = 0.2) -> None:
    """Until ``url`` answers an HTTP GET; raises naming ``what`` if ``proc`` exits first
    or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 - loopback only
            return
        except OSError as err:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start") from err
            time.sleep(poll)


@contextlib.contextmanager
def api_server(env: dict[str, str], log_path: Path, *, port: int | None = None, timeout: float = 180
               ) -> Iterator[str]:
    """A real ``airflow api-server`` on a free loopback port, with ``env`` (its home, its
    metadata DB, its auth manager settings); yields its base URL once
    ``/api/v2/monitor/health`` answers, and stops its whole process group afterwards.

    ``AIRFLOW__API__BASE_URL`` is set to the server's URL (links and the UI need it).
    """
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port",
                                 str(port)], env={**env, "AIRFLOW__API__BASE_URL": base}, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until_answers(f"{base}/api/v2/monitor/health", proc, timeout=timeout, poll=1,
                               what=f"airflow api-server (see {log_path})")
            yield base
        finally:
            stop_group(proc)
