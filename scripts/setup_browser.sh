#!/usr/bin/env bash
# Install the headless browser the report and campaign-view tests drive (tests/report):
# Debian's chromium and its matching chromedriver, from the distribution's own archive
# (browser downloads from other hosts are not reachable). A no-op when both are there.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "setup_browser.sh: chromium/chromedriver missing; run as root: apt-get install -y chromium chromium-driver" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
chromium --version >&2
