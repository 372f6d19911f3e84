#!/usr/bin/env bash
# Builds topas-runner:<version> (or $TOPAS_RUNNER_IMAGE): the image the kubernetes
# plugin's runner Job runs (`topas kube runner`). It holds the single executable
# made by scripts/build-binary.js from the compiled CLI in dist/ (run `npm run build`
# first), on topas-base/node:18 from scripts/build-fixture-images.sh. No registry.
#
# Cached: skipped when the image exists with the hash of its inputs (sources of
# core and the kubernetes plugin, the build script, package.json, the Dockerfile)
# as its label, and also tagged topas-runner:<version>-<hash>, which it prints on stdout.
# Usage: scripts/build-runner-image.sh [--force]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FORCE=0
[ "${1:-}" = '--force' ] && FORCE=1
export DOCKER_BUILDKIT=0
say() { echo "build-runner-image: $*" >&2; }

VERSION="$(node -p "require('$ROOT/package.json').version")"
TAG="${TOPAS_RUNNER_IMAGE:-topas-runner:$VERSION}"

inputs_hash() {
  (cd "$ROOT" && find src plugins/kubernetes/src plugins/kubernetes/package.json lua-types scripts/build-binary.js package.json docker/runner -type f | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-16)
}
HASH="$(inputs_hash)"
# $TAG is one name for every checkout on this machine; the tag with the inputs' hash
# is this build's own, so tests of two checkouts at once each run their own runner
# (they take it from stdout and pass it as TOPAS_RUNNER_IMAGE)
if [ -n "${TOPAS_RUNNER_IMAGE:-}" ]; then BUILD_TAG="$TAG"; else BUILD_TAG="topas-runner:$VERSION-$HASH"; fi
current() { docker image inspect -f '{{ index .Config.Labels "topas.runner-hash" }}' "$BUILD_TAG" 2>/dev/null || true; }
up_to_date() {
  [ "$FORCE" = 0 ] && [ "$(current)" = "$HASH" ] || return 1
  [ "$BUILD_TAG" = "$TAG" ] || docker tag "$BUILD_TAG" "$TAG"
  say "$BUILD_TAG is up to date"
  echo "$BUILD_TAG"
}
up_to_date && exit 0

# concurrent callers: one builds, the others wait and then find it
exec 9>"${TOPAS_RUNNER_IMAGE_LOCK:-/tmp/topas-runner-image.lock}"
flock -w 1200 9 || { say "could not take the lock"; exit 1; }
up_to_date && exit 0

docker image inspect topas-base/node:18 >/dev/null 2>&1 || bash "$ROOT/scripts/build-fixture-images.sh"
[ -f "$ROOT/dist/src/commands/index.js" ] || { say "no compiled CLI in dist/: run npm run build first"; exit 1; }

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
t0=$(date +%s)
say "building the single executable"
(cd "$ROOT" && node scripts/build-binary.js --out "$ctx/topas") >&2
cp "$ROOT/docker/runner/Dockerfile" "$ctx/Dockerfile"
say "building $TAG"
if ! out="$(docker build -q --label "topas.runner-hash=$HASH" -t "$TAG" -t "$BUILD_TAG" "$ctx" 2>&1)"; then echo "$out" >&2; exit 1; fi
say "$BUILD_TAG built in $(( $(date +%s) - t0 ))s"
echo "$BUILD_TAG"
