#!/usr/bin/env bash
# Make sure Debian's chromium is installed (/usr/bin/chromium), for the tests
# that open HTML reports in a real headless browser (playwright-core drives it;
# playwright's own browser download is not used). Idempotent: nothing happens
# when /usr/bin/chromium is there. Safe to run concurrently (flock).
set -euo pipefail

LOCK="${TOPAS_CHROMIUM_LOCK:-/tmp/topas-ensure-chromium.lock}"
say() { echo "ensure-chromium: $*" >&2; }

[ -x /usr/bin/chromium ] && exit 0

exec 9>"$LOCK"
flock -w 900 9 || { say "could not take $LOCK"; exit 1; }
[ -x /usr/bin/chromium ] && exit 0

[ "$(id -u)" = 0 ] || { say "chromium is missing and installing it needs root"; exit 1; }
say "installing chromium (apt)"
if ! apt-cache show chromium >/dev/null 2>&1; then
  apt-get update -qq
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
[ -x /usr/bin/chromium ] || { say "apt installed chromium but /usr/bin/chromium is missing"; exit 1; }
