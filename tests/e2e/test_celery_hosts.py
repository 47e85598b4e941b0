"""The Celery stack's simulated hosts (``dev/sim_hosts.py``, issue 32): network namespaces
that reach the stack address through their own interface, and only that; removed on exit,
also when the stack fails. Needs root, as the Celery stack does (a few seconds)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from dev.sim_hosts import Host, SimulatedHosts, remove_leftovers, simulated_hosts

pytestmark = [pytest.mark.integration]


def _names() -> str:
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return netns + links


@contextlib.contextmanager
def _listener(address: str) -> Iterator[int]:
    """A TCP server on ``address`` that answers ``ok`` to each connection; its port."""
    server = socket.create_server((address, 0))
    port = server.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"ok")

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield port
    finally:
        server.close()


def _connect_from(host: Host, address: str, port: int) -> str:
    """What a client inside ``host`` gets from ``address:port``: ``ok`` or the error's name."""
    client = ("import socket, sys\n"
              "try:\n"
              "    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)\n"
              "    print(s.recv(2).decode())\n"
              "except OSError as err:\n"
              "    print(type(err).__name__)\n")
    proc = subprocess.run(host.wrap([sys.executable, "-c", client, address, str(port)]), capture_output=True,
                          text=True, timeout=60, check=True)
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def hosts() -> Iterator[SimulatedHosts]:
    with simulated_hosts(2) as made:
        yield made


def test_each_host_reaches_the_stack_address_through_its_own_interface(hosts: SimulatedHosts) -> None:
    with _listener(hosts.address) as port:
        assert [_connect_from(h, hosts.address, port) for h in hosts.hosts] == ["ok", "ok"]
    with _listener("127.0.0.1") as port:
        # The host machine's loopback is not the namespace's: nothing listens there.
        assert _connect_from(hosts.hosts[0], "127.0.0.1", port) == "ConnectionRefusedError"
    routes = subprocess.run(["ip", "-n", hosts.hosts[0].namespace, "route"], capture_output=True, text=True,
                            check=True).stdout
    assert "default" not in routes and "eth0" in routes, routes


def test_each_host_has_its_own_hostname(hosts: SimulatedHosts) -> None:
    names = [subprocess.run(h.wrap(["hostname"]), capture_output=True, text=True, check=True).stdout.strip()
             for h in hosts.hosts]
    assert names == ["mrt-worker-1", "mrt-worker-2"]
    assert socket.gethostname() not in names


def test_everything_is_removed_also_when_the_stack_fails() -> None:
    with pytest.raises(RuntimeError, match="a service failed"), simulated_hosts(1) as made:
        assert made.hosts[0].namespace in _names()
        raise RuntimeError("a service failed")
    assert made.hosts[0].namespace not in _names() and made.bridge not in _names()
    assert remove_leftovers(made.bridge[3:8]) == []
