#!/usr/bin/env bash
# Install the headless browser the report and campaign-view tests drive (tests/report):
# Debian's chromium and its matching chromedriver. A no-op when both are there.
set -euo pipefail

bash "$(dirname "$0")/ensure_debian_packages.sh" "chromium chromedriver" chromium chromium-driver
