#!/usr/bin/env bash
# Install Debian packages when the commands they provide are missing, from the
# distribution's own archive (other download hosts are not reachable here). A no-op when
# every command is there; as non-root, names what to install and fails.
#   ensure_debian_packages.sh "COMMAND [COMMAND...]" PACKAGE [PACKAGE...]
set -euo pipefail

commands=$1
shift
missing=0
for command in $commands; do
    command -v "$command" >/dev/null 2>&1 || missing=1
done
[ "$missing" -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "$(basename "$0"): $commands missing; run as root: apt-get install -y $*" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
