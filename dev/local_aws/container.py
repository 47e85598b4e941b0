"""Emulated SageMaker hosts for the container launch: one private /opt/ml per host.

SageMaker runs each instance of a job as a container whose ``/opt/ml`` holds that
host's config, data and model, whose host name is ``algo-<n>``, and which reaches the
other hosts by name over the job's network (the toolkit's multi-host MPI launch is
``mpirun`` over ssh to the other hosts' sshd). Locally, each host is a private mount
and PID namespace (``unshare``, as root) with:

* the host's own directory bound onto ``/opt/ml`` (the toolkit, and its ``LD_PRELOAD``
  gethostname library, read ``/opt/ml/input/config/resourceconfig.json`` whatever
  ``SAGEMAKER_BASE_DIR`` says, so the real path has to be the host's);
* ``/etc/hosts`` naming every host of the job, each at its own loopback address
  (``127.N.N.<host>``, unique per job), so the hosts are distinct addresses;
* ``/etc/ssh`` with an ``sshd_config`` that listens on that host's address only (the
  toolkit starts ``/usr/sbin/sshd -D`` on every host), and ``/root/.ssh`` with the job's
  key pair, as the image bakes in one (images/training/Dockerfile);
* its own ``/tmp`` (the toolkit's MPI status files), ``/etc/environment`` (which the
  toolkit's workers append their environment to) and ``/dev/shm``: OpenMPI's shared
  memory segments are named after the host name and a job id derived from ``mpirun``'s
  PID, which repeat across PID namespaces, so a shared ``/dev/shm`` lets a relaunch (or
  another job) map a dead launch's segments and crash.

The PID namespace makes the host's processes (sshd, mpirun, orted, the ranks) die with
the host's first process, as a container's do when it exits.

**Image launch** (:func:`podman_command`; CI's path when ``MRT_TRAINING_IMAGE`` names the
image ``scripts/build_images.sh`` built): the same host roots, but each host is a real
container of the built training image, started as SageMaker starts it (``<image>
train``): the request's ``/opt/ml/input``, ``/opt/ml/model``, ``/opt/ml/output`` and the
checkpoint directory bound in, the image's own ``/opt/ml/code``, ``/root/.ssh`` (the key
pair its Dockerfile bakes in), toolkit, Python and OpenMPI. Differences from SageMaker,
forced by running without a container network here (*assumed* harmless for the entry
point, which reads only the names): the containers share the machine's network
namespace, so each host's ``/etc/hosts`` and its ``/etc/ssh`` (sshd listening on that
host's own loopback address) are the emulator's, bound over the image's. The namespace
launch above stays as the named fallback where podman is not installed.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

from dev.local_aws.images import LocalImage

#: Runs inside the new namespaces: $1 is the host's root, the rest the container command.
_ENTER = r"""
set -eu
root="$1"; shift
mkdir -p /opt/ml /root/.ssh /run/sshd
mount --bind "$root/opt/ml" /opt/ml
mount --bind "$root/etc/hosts" /etc/hosts
mount --bind "$root/etc/ssh" /etc/ssh
mount --bind "$root/root/.ssh" /root/.ssh
mount --bind "$root/etc/environment" /etc/environment
mount --bind "$root/tmp" /tmp
mount -t tmpfs -o mode=1777 shm /dev/shm
cd /opt/ml/code
exec "$@"
"""

_SSHD_CONFIG = """\
# Emulated host {host}: listens on its own address only, key login for root.
ListenAddress {address}
Port 22
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile .ssh/authorized_keys
# No PAM: what the toolkit's docs have the image do with pam_loginuid (optional), here
# by not running the session stack at all (no login records in a private namespace).
UsePAM no
StrictModes no
PidFile none
AcceptEnv *
Subsystem sftp internal-sftp
"""

_SSH_CONFIG = """\
Host *
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
"""

_job_numbers = itertools.count(1)
_job_numbers_lock = threading.Lock()


class ContainerLaunchUnavailable(RuntimeError):
    """The machine cannot run the container launch (not root, no unshare/mpirun/sshd)."""


def check_launch(image: LocalImage) -> None:
    """Fail with what is missing before a job relies on ``image``'s launch."""
    if image.image:
        check_image(image.image)
    else:
        check_available()


def launch_command(root: Path, image: LocalImage, env: dict[str, str]) -> list[str]:
    """Host ``root``'s command for ``image``: inside the built image (podman) when the map
    names one, else in a namespace here. ``env`` is the container's environment: the
    image launch passes on what SageMaker sets, and keeps the image's own ``PATH``,
    ``HOME`` and ``LANG``."""
    if image.image:
        return podman_command(root, image.image, image.command, sorted(env.keys() - {"PATH", "HOME", "LANG"}))
    return host_command(root, image.command)


def check_available() -> None:
    """Fail with what is missing, before a job relies on it."""
    missing = [tool for tool in ("unshare", "mount", "ssh-keygen", "mpirun") if not shutil.which(tool)]
    if not os.path.exists("/usr/sbin/sshd"):
        missing.append("/usr/sbin/sshd")
    if missing:
        raise ContainerLaunchUnavailable(
            f"container launch needs {', '.join(missing)} (scripts/setup_training_env.sh installs them)"
        )
    if os.geteuid() != 0:
        raise ContainerLaunchUnavailable("container launch needs root (unshare --mount, mount --bind)")


def host_addresses(hosts: list[str]) -> dict[str, str]:
    """A distinct loopback address per host, unique per job: concurrent jobs, also of
    other emulator processes, never share one (each host's sshd listens on port 22 of
    its address, so a free port 22 on every address of the block is the test)."""
    with _job_numbers_lock:
        for _ in range(4096):
            number = next(_job_numbers) + os.getpid() * 256
            second, third = 10 + (number // 256) % 240, number % 256
            addresses = {host: f"127.{second}.{third}.{index + 1}" for index, host in enumerate(hosts)}
            if all(_port_22_free(address) for address in addresses.values()):
                return addresses
    raise RuntimeError("no free loopback address block for the job's hosts")


def _port_22_free(address: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, 22))
        except OSError:
            return False
    return True


def prepare_hosts(jobdir: Path, hosts: list[str], addresses: dict[str, str]) -> dict[str, Path]:
    """Each host's root (its ``/opt/ml`` is ``<root>/opt/ml``) with the files above."""
    keys = jobdir / "keys"
    keys.mkdir(mode=0o700)
    for name in ("id_ed25519", "ssh_host_ed25519_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{jobdir.name}-{name}", "-f", str(keys / name)],
            check=True, capture_output=True,
        )
    hosts_file = "127.0.0.1 localhost\n" + "".join(f"{addresses[h]} {h}\n" for h in hosts)
    roots = {}
    for host in hosts:
        root = jobdir / host
        (root / "opt" / "ml").mkdir(parents=True)
        (root / "etc" / "ssh").mkdir(parents=True)
        (root / "root" / ".ssh").mkdir(parents=True, mode=0o700)
        (root / "tmp").mkdir()
        (root / "tmp").chmod(0o1777)
        (root / "etc" / "hosts").write_text(hosts_file)
        (root / "etc" / "environment").write_text("")
        ssh_etc, ssh_home = root / "etc" / "ssh", root / "root" / ".ssh"
        (ssh_etc / "sshd_config").write_text(_SSHD_CONFIG.format(host=host, address=addresses[host]))
        (ssh_etc / "ssh_config").write_text(_SSH_CONFIG)
        (ssh_home / "config").write_text(_SSH_CONFIG)
        for source, target in (
            (keys / "ssh_host_ed25519_key", ssh_etc / "ssh_host_ed25519_key"),
            (keys / "ssh_host_ed25519_key.pub", ssh_etc / "ssh_host_ed25519_key.pub"),
            (keys / "id_ed25519", ssh_home / "id_ed25519"),
            (keys / "id_ed25519.pub", ssh_home / "id_ed25519.pub"),
            (keys / "id_ed25519.pub", ssh_home / "authorized_keys"),
        ):
            shutil.copyfile(source, target)
            target.chmod(0o600)
        roots[host] = root
    return roots


#: Runs the host's container: $1 its name, the rest the ``podman run`` command. A
#: SIGTERM (StopTrainingJob, or the end of the master's run) stops the container from a
#: new session, so the SIGKILL that follows the grace period, which reaches only this
#: process group, cannot leave it running (``podman run``'s own process would die, the
#: container would not).
_PODMAN_WRAPPER = r"""
name="$1"; shift
"$@" &
child=$!
trap 'setsid podman stop --time 5 "$name" >/dev/null 2>&1 &' TERM INT
status=0
wait "$child" || status=$?
while kill -0 "$child" 2>/dev/null; do wait "$child" || status=$?; done
exit "$status"
"""

#: podman's settings for this machine (runc, cgroupfs, lowered ulimits): why, in the file.
CONTAINERS_CONF = Path(__file__).resolve().parents[2] / "images" / "podman" / "containers.conf"

#: Paths of a host's root the emulator manages itself (not bound into an image launch).
_HOST_OWN = frozenset({"opt", "etc", "root", "tmp"})


def check_image(image: str) -> None:
    """Fail with what is missing before a job relies on the image launch."""
    if not shutil.which("podman"):
        raise ContainerLaunchUnavailable(f"image launch of {image} needs podman (scripts/build_images.sh installs it)")
    found = subprocess.run(["podman", "image", "exists", image], capture_output=True, check=False,
                           env={**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)})
    if found.returncode != 0:
        raise ContainerLaunchUnavailable(f"image {image} is not built here (scripts/build_images.sh)")


def podman_command(root: Path, image: str, command: list[str], env_names: list[str]) -> list[str]:
    """Host ``root``'s container of ``image`` running ``command``, as SageMaker starts it.

    ``env_names``: variables passed from the launching process's environment (what
    SageMaker sets for every container); the image's own ``ENV`` (``PATH``...) stays.
    """
    host = root.name
    name = f"mrt-{root.parent.name}-{host}"
    ml = root / "opt" / "ml"
    volumes = [f"{root}/etc/hosts:/etc/hosts:ro", f"{root}/etc/ssh:/etc/ssh"]
    # SageMaker mounts the job's directories, not /opt/ml itself: the image's
    # /opt/ml/code (its entry point) stays visible.
    volumes += [f"{child}:/opt/ml/{child.name}" for child in sorted(ml.iterdir()) if child.name != "code"]
    # A CheckpointConfig.LocalPath outside /opt/ml.
    volumes += [f"{child}:/{child.name}" for child in sorted(root.iterdir()) if child.name not in _HOST_OWN]
    run = [
        "env", f"CONTAINERS_CONF={CONTAINERS_CONF}",
        "podman", "run", "--rm", "--init", "--pull", "never", "--name", name,
        "--network", "host", "--hostname", host, "--shm-size", "1g",
        *(f"--volume={volume}" for volume in volumes),
        *(f"--env={variable}" for variable in env_names),
        image, *command,
    ]
    return ["sh", "-c", _PODMAN_WRAPPER, "mrt-podman", name, *run]


def host_command(root: Path, command: list[str]) -> list[str]:
    """``command`` run as host ``root``'s container command, in its own namespaces."""
    return [
        "unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--mount-proc",
        "--", "sh", "-c", _ENTER, "mrt-host", str(root), *command,
    ]
