#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine: install docker.io when
# dockerd is missing, start dockerd in the background when it is not running,
# then wait (bounded) until `docker info` answers. Idempotent: every step is
# skipped when its result is already there. Safe to run concurrently (flock).
set -euo pipefail

WAIT_S="${TOPAS_DOCKER_WAIT_S:-60}"
LOG="${TOPAS_DOCKERD_LOG:-/var/log/topas-dockerd.log}"
LOCK="${TOPAS_DOCKER_LOCK:-/tmp/topas-ensure-docker.lock}"

say() { echo "ensure-docker: $*" >&2; }

if docker info >/dev/null 2>&1; then
  exit 0
fi

# Several test files may call this at once; one installs/starts, the others wait.
exec 9>"$LOCK"
flock -w 600 9 || { say "could not take $LOCK"; exit 1; }

if docker info >/dev/null 2>&1; then
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { say "dockerd is missing and installing it needs root"; exit 1; }
  say "installing docker.io (apt)"
  # apt-get update once: only when the package index has no docker.io yet.
  if ! apt-cache show docker.io >/dev/null 2>&1; then
    flock /tmp/topas-apt.lock apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive flock /tmp/topas-apt.lock apt-get install -y -qq docker.io >/dev/null
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { say "dockerd is not running and starting it needs root"; exit 1; }
  say "starting dockerd (log: $LOG)"
  # containerd comes with docker.io; dockerd starts its own when none runs.
  nohup setsid dockerd >>"$LOG" 2>&1 </dev/null &
fi

for _ in $(seq 1 "$WAIT_S"); do
  if docker info >/dev/null 2>&1; then
    say "docker engine is up"
    exit 0
  fi
  sleep 1
done
say "docker engine did not answer within ${WAIT_S}s; last lines of $LOG:"
tail -n 20 "$LOG" >&2 || true
exit 1
