"""Simulated hosts for the local stack: Linux network namespaces on a private bridge.

The Celery stack (``scripts/run_local.sh --executor celery``, docs/services.md) runs each
Celery worker as if on a machine of its own: a network namespace (``ip netns``) whose
only interfaces are its loopback and one end of a veth pair, the other end on a bridge
that this stack creates. The bridge holds the *stack address* (``10.213.N.1``): the
broker, both PostgreSQL servers, the emulator and the api-server listen on it, so a
worker reaches each of them through its own interface and nothing else (no default
route, no other network). Its hostname is its own too (``unshare --uts``): Airflow
records it on each task instance it runs.

Needs root (``ip netns add``, ``ip link add``): :func:`simulated_hosts` says so before
creating anything. Everything it creates carries the stack's tag in its name and is
removed on exit, also after Ctrl-C or a failure, and :func:`remove_leftovers` removes
what a SIGKILLed stack left behind.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

#: Namespaces and links this module creates start with this (``mrt<tag>...``): the
#: kernel caps interface names at 15 characters.
PREFIX = "mrt"
#: The private range the bridges' subnets come from (RFC 1918, /24 each).
SUBNETS = ipaddress.IPv4Network("10.213.0.0/16")


class HostsError(RuntimeError):
    """Simulated hosts cannot be made here (not root, no ``ip``); the message says why."""


@dataclass(frozen=True)
class Host:
    """One simulated machine: its namespace, hostname and address on the bridge."""

    namespace: str
    hostname: str
    address: str

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this host: its namespace, its own hostname (UTS namespace)."""
        return ["ip", "netns", "exec", self.namespace, "unshare", "--uts", "sh", "-c",
                'hostname "$0" && exec "$@"', self.hostname, *argv]


@dataclass(frozen=True)
class SimulatedHosts:
    """The bridge (its address is the stack address) and the hosts on it."""

    bridge: str
    address: str
    hosts: tuple[Host, ...]


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise HostsError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


def _used_subnets() -> set[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=False).stdout
    used: set[ipaddress.IPv4Network | ipaddress.IPv6Network] = set()
    for line in out.splitlines():
        words = line.split()
        if "inet" in words:
            used.add(ipaddress.ip_interface(words[words.index("inet") + 1]).network)
    return used


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 of :data:`SUBNETS` that no interface here uses (several stacks may run)."""
    used = _used_subnets()
    start = os.getpid() % 256
    subnets: list[ipaddress.IPv4Network] = list(SUBNETS.subnets(new_prefix=24))
    for offset in range(len(subnets)):
        subnet = subnets[(start + offset) % len(subnets)]
        if not any(subnet.overlaps(u) for u in used):
            return subnet
    raise HostsError(f"no free /24 left in {SUBNETS}")


def _free_tag() -> str:
    """Five digits no namespace or link of this module carries yet (one process may hold
    several stacks' hosts at once)."""
    taken = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout + \
        subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=False).stdout
    for offset in range(100000):
        tag = f"{(os.getpid() + offset) % 100000:05d}"
        if PREFIX + tag not in taken:
            return tag
    raise HostsError("no free namespace tag")


def check_can_create() -> None:
    """Raise :class:`HostsError` unless this process can create namespaces and links."""
    if os.geteuid() != 0:
        raise HostsError("simulated hosts (network namespaces) need root: run as root, or use --executor local")
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            raise HostsError(f"{tool!r} is not installed (Debian: iproute2, util-linux)")


@contextlib.contextmanager
def simulated_hosts(count: int, *, role: str = "worker") -> Iterator[SimulatedHosts]:
    """Create a bridge and ``count`` namespaces on it; yield them; remove all on exit."""
    check_can_create()
    subnet = free_subnet()
    tag = _free_tag()
    bridge = f"{PREFIX}{tag}br"
    gateway = str(subnet.network_address + 1)
    hosts = tuple(
        Host(namespace=f"{PREFIX}{tag}-{role}{n}", hostname=f"mrt-{role}-{n}",
             address=str(subnet.network_address + 10 + n))
        for n in range(1, count + 1)
    )
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{gateway}/{subnet.prefixlen}", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for n, host in enumerate(hosts, start=1):
            _ip("netns", "add", host.namespace)
            outer = f"{PREFIX}{tag}v{n}"
            # The inner end is created in the namespace directly, as eth0.
            _ip("link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", host.namespace)
            _ip("link", "set", outer, "master", bridge, "up")
            _ip("-n", host.namespace, "addr", "add", f"{host.address}/{subnet.prefixlen}", "dev", "eth0")
            _ip("-n", host.namespace, "link", "set", "eth0", "up")
            _ip("-n", host.namespace, "link", "set", "lo", "up")
        yield SimulatedHosts(bridge=bridge, address=gateway, hosts=hosts)
    finally:
        remove_leftovers(tag)


def remove_leftovers(tag: str | None = None) -> list[str]:
    """Delete this module's namespaces and links (``tag``'s only, when given); their names.

    Deleting a namespace deletes the veth end in it and so the pair; the bridge goes last.
    """
    stem = PREFIX + (tag or "")
    removed = []
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    for line in listed.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(stem) and (tag or _is_ours(name)):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
            removed.append(name)
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=False).stdout
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith(stem) and (tag or _is_ours(name)):
            subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)
            removed.append(name)
    return removed


def _is_ours(name: str) -> bool:
    """A name this module makes: ``mrt`` + five digits, then ``br``, ``v<n>`` or ``-<role><n>``."""
    rest = name[len(PREFIX):]
    return len(rest) > 5 and rest[:5].isdigit() and rest[5] in "bv-"
