#!/usr/bin/env bash
# Installs Debian's chromium and chromium-driver when missing (the report tests drive them).
# Without root or apt it says so and returns 0: the browser tests then skip with that reason.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure_chromium: chromium missing and apt-get unavailable as root; browser tests will skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
