"""``processes.listening_sockets``: what the services test uses to find a listener of the
stack beyond loopback (issue 33), checked against sockets this process opens."""

from __future__ import annotations

import os
import socket

import pytest

from dev.processes import descendants, is_loopback, listening_sockets


def _listen(family: socket.AddressFamily, address: str) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((address, 0))
    sock.listen()
    return sock


def test_each_listening_socket_is_found_with_its_address() -> None:
    loopback, everywhere = _listen(socket.AF_INET, "127.0.0.1"), _listen(socket.AF_INET, "0.0.0.0")  # noqa: S104
    unused = socket.socket()  # bound, not listening: not a listener
    unused.bind(("127.0.0.1", 0))
    try:
        found = {(address, port) for pid, address, port in listening_sockets([os.getpid()]) if pid == os.getpid()}
        assert ("127.0.0.1", loopback.getsockname()[1]) in found
        assert ("0.0.0.0", everywhere.getsockname()[1]) in found  # noqa: S104
        assert unused.getsockname()[1] not in {port for _address, port in found}
    finally:
        for sock in (loopback, everywhere, unused):
            sock.close()


def test_ipv6_listeners_are_read_too() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        six = _listen(socket.AF_INET6, "::1")
    except OSError:
        pytest.skip("no ::1 on this machine")
    try:
        assert ("::1", six.getsockname()[1]) in {(a, p) for _pid, a, p in listening_sockets([os.getpid()])}
    finally:
        six.close()


@pytest.mark.parametrize(("address", "loopback"), [("127.0.0.1", True), ("127.0.1.1", True), ("::1", True),
                                                   ("::ffff:127.0.0.1", True), ("0.0.0.0", False),  # noqa: S104
                                                   ("::", False), ("10.0.0.5", False)])
def test_loopback_or_not(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_descendants_are_the_processes_below() -> None:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in descendants(os.getpid())
        assert os.getpid() not in descendants(os.getpid())
    finally:
        child.kill()
        child.wait()
