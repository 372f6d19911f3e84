#!/usr/bin/env bash
# Build the images the docker backend's tests and benches use, without any
# registry: Debian root filesystems made by mmdebstrap (from the mirror apt is
# configured with) are imported as base images, thin Dockerfiles in docker/
# build on them.
#
#   topas-base/postgres:15   Debian bookworm minbase + postgresql-15
#   topas-base/node:18       Debian bookworm minbase + nodejs (18)
#   local/postgres:15        docker/postgres (official-image-like entrypoint)
#   local/mock-app:1.0.0     fixtures/apps/mock-app bundled by esbuild
#   local/mock-app:1.1.0     same, APP_VERSION=1.1.0
#
# Cached: an image that exists is skipped. The mock-app and postgres images
# carry a label with the hash of their inputs and are rebuilt when it changes.
# Usage: scripts/build-fixture-images.sh [--force]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FORCE=0
[ "${1:-}" = '--force' ] && FORCE=1
LOCK="${TOPAS_FIXTURE_LOCK:-/tmp/topas-fixture-images.lock}"
# The docker CLI here may be newer than the engine and have no buildx plugin;
# the classic builder works with both.
export DOCKER_BUILDKIT=0

say() { echo "build-fixture-images: $*" >&2; }
has_image() { docker image inspect "$1" >/dev/null 2>&1; }
image_label() { docker image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true; }

"$ROOT/scripts/ensure-docker.sh"

# Concurrent test files call this; one builds, the others wait and then skip.
exec 9>"$LOCK"
flock -w 1200 9 || { say "could not take $LOCK"; exit 1; }

ensure_mmdebstrap() {
  command -v mmdebstrap >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] || { say "mmdebstrap is missing and installing it needs root"; exit 1; }
  say "installing mmdebstrap (apt)"
  if ! apt-cache show mmdebstrap >/dev/null 2>&1; then
    flock /tmp/topas-apt.lock apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive flock /tmp/topas-apt.lock apt-get install -y -qq mmdebstrap >/dev/null
}

# The Debian mirror this machine's apt uses (deb822 or one-line format).
debian_mirror() {
  local m=''
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    m="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)"
  fi
  if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
    m="$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list)"
  fi
  echo "${m:-http://deb.debian.org/debian}"
}

# base_image TAG PACKAGES...: Debian bookworm minbase rootfs -> docker import
base_image() {
  local tag="$1"; shift
  if [ "$FORCE" = 0 ] && has_image "$tag"; then return 0; fi
  ensure_mmdebstrap
  local includes mirror
  includes="$(IFS=,; echo "$*")"
  mirror="$(debian_mirror)"
  say "building $tag from $mirror (mmdebstrap minbase + $includes)"
  # --dpkgopt/--aptopt keep the rootfs small; no docs, no man pages.
  # </dev/null: mmdebstrap reads a sources list from stdin when it is not a tty.
  mmdebstrap --quiet --variant=minbase --include="$includes" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    bookworm - "$mirror" </dev/null \
    | docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null
}

# docker build, quiet: only errors (not the classic builder's deprecation note)
quiet_build() {
  local out
  if ! out="$(docker build -q "$@" 2>&1)"; then
    echo "$out" >&2
    return 1
  fi
}

# hash of files (and the Dockerfile) so a changed input rebuilds the image
inputs_hash() { cat "$@" | sha256sum | cut -c1-16; }

build_postgres() {
  local tag='local/postgres:15' hash
  hash="$(inputs_hash "$ROOT/docker/postgres/Dockerfile" "$ROOT/docker/postgres/docker-entrypoint.sh")"
  if [ "$FORCE" = 0 ] && [ "$(image_label "$tag" topas.fixture-hash)" = "$hash" ]; then return 0; fi
  base_image topas-base/postgres:15 postgresql-15
  say "building $tag"
  quiet_build --label "topas.fixture-hash=$hash" -t "$tag" "$ROOT/docker/postgres"
}

build_mock_app() {
  local src="$ROOT/fixtures/apps/mock-app"
  if [ ! -f "$src/server.js" ]; then
    say "missing $src/server.js"; exit 1
  fi
  local hash
  hash="$(inputs_hash "$ROOT/docker/mock-app/"* "${BASH_SOURCE[0]}" $(find "$src" -type f -not -path '*/node_modules/*' | sort))"
  local need=0 v
  for v in 1.0.0 1.1.0; do
    [ "$FORCE" = 0 ] && [ "$(image_label "local/mock-app:$v" topas.fixture-hash)" = "$hash" ] || need=1
  done
  [ "$need" = 1 ] || return 0
  base_image topas-base/node:18 nodejs ca-certificates
  local ctx
  ctx="$(mktemp -d)"
  trap 'rm -rf "$ctx"' RETURN
  say "bundling mock-app with esbuild"
  (cd "$ROOT" && node_modules/.bin/esbuild "$src/server.js" --bundle --platform=node --target=node18 \
    --log-level=warning --outfile="$ctx/app/server.js")
  find "$src" -maxdepth 1 -name '*.proto' -exec cp {} "$ctx/app/" \;
  cp -r "$ROOT/node_modules/@grpc/reflection/build/proto" "$ctx/proto"
  for v in 1.0.0 1.1.0; do
    say "building local/mock-app:$v"
    quiet_build --label "topas.fixture-hash=$hash" --build-arg "APP_VERSION=$v" \
      -f "$ROOT/docker/mock-app/Dockerfile" -t "local/mock-app:$v" "$ctx"
  done
}

start_s=$(date +%s)
build_postgres
build_mock_app
say "images ready in $(( $(date +%s) - start_s ))s"
