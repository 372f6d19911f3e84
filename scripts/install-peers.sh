#!/usr/bin/env bash
# Installs the peer load tools that bench/load-throughput.ts compares topas with.
# Idempotent: every tool already present is left alone. Each install is bounded
# in time; a tool that fails to install is reported and skipped (the bench runs
# with whatever peers are available).
#
#   wrk        apt-get (system package)
#   autocannon npm, into .tools/node (never touches package.json / node_modules)
#   k6         go install, binary in .tools/bin
#   toxiproxy  go install (server + cli), binaries in .tools/bin (bench/proxy-overhead.ts)
#   locust     pip, in a venv at .tools/venv (only with --with-locust)
#   artillery  npm, into .tools/artillery (only with --with-artillery)
#
# `--only k6,locust,artillery` installs just those (what the `topas export`
# integration tests need: scripts/install-peers.sh --only k6,locust,artillery).
set -u
repo="$(cd "$(dirname "$0")/.." && pwd)"
tools="$repo/.tools"
mkdir -p "$tools/bin"
with_locust=0
with_artillery=0
only=""
prev=""
for a in "$@"; do
  [ "$a" = "--with-locust" ] && with_locust=1
  [ "$a" = "--with-artillery" ] && with_artillery=1
  case "$a" in --only=*) only="${a#--only=}" ;; esac
  [ "$prev" = "--only" ] && only="$a"
  prev="$a"
done
# wanted TOOL: true when TOOL is to be installed (all by default, the --only list otherwise)
wanted() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }
if [ -n "$only" ]; then
  wanted locust && with_locust=1
  wanted artillery && with_artillery=1
fi

AUTOCANNON_VERSION="${AUTOCANNON_VERSION:-8.0.0}"
# the last Artillery release whose engines field accepts Node 20 (2.0.22+ want Node >= 22.13)
ARTILLERY_VERSION="${ARTILLERY_VERSION:-2.0.21}"
LOCUST_VERSION="${LOCUST_VERSION:-}"
K6_VERSION="${K6_VERSION:-latest}"
K6_TIMEOUT="${K6_TIMEOUT:-900}"
status=0

say() { printf '[install-peers] %s\n' "$*"; }

# .tools/ holds downloaded binaries: keep it out of git (append once).
if ! grep -qxF '.tools/' "$repo/.gitignore" 2>/dev/null; then
  echo '.tools/' >> "$repo/.gitignore"
fi

# --- wrk ---------------------------------------------------------------
if ! wanted wrk; then :
elif command -v wrk >/dev/null 2>&1; then
  say "wrk: present ($(command -v wrk))"
else
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo_cmd="sudo"
  if timeout 300 $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null 2>&1 \
    || { timeout 300 $sudo_cmd apt-get update -q >/dev/null 2>&1 \
         && timeout 300 $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null 2>&1; }; then
    say "wrk: installed"
  else
    say "wrk: install failed (apt-get)"; status=1
  fi
fi

# --- autocannon --------------------------------------------------------
if ! wanted autocannon; then :
elif [ -x "$tools/node/node_modules/.bin/autocannon" ]; then
  say "autocannon: present"
else
  mkdir -p "$tools/node"
  [ -f "$tools/node/package.json" ] || echo '{"name":"topas-peer-tools","private":true}' > "$tools/node/package.json"
  if (cd "$tools/node" && timeout 300 npm install --no-save --no-audit --no-fund --loglevel=error "autocannon@$AUTOCANNON_VERSION" >/dev/null 2>&1); then
    say "autocannon: installed $AUTOCANNON_VERSION"
  else
    say "autocannon: install failed (npm)"; status=1
  fi
fi
wanted autocannon && [ -x "$tools/node/node_modules/.bin/autocannon" ] && ln -sf "$tools/node/node_modules/.bin/autocannon" "$tools/bin/autocannon"

# --- k6 ----------------------------------------------------------------
if ! wanted k6; then :
elif [ -x "$tools/bin/k6" ]; then
  say "k6: present"
elif command -v go >/dev/null 2>&1; then
  say "k6: building go.k6.io/k6@$K6_VERSION (up to ${K6_TIMEOUT}s)"
  if GOBIN="$tools/bin" GOFLAGS=-mod=mod timeout "$K6_TIMEOUT" go install "go.k6.io/k6@$K6_VERSION" >"$tools/k6-install.log" 2>&1; then
    say "k6: installed"
  else
    say "k6: install failed or timed out (see $tools/k6-install.log)"; status=1
  fi
else
  say "k6: skipped (no go toolchain)"; status=1
fi

# --- toxiproxy ----------------------------------------------------------
TOXIPROXY_VERSION="${TOXIPROXY_VERSION:-latest}"
if ! wanted toxiproxy; then :
elif [ -x "$tools/bin/toxiproxy-server" ]; then
  say "toxiproxy: present"
elif command -v go >/dev/null 2>&1; then
  say "toxiproxy: building github.com/Shopify/toxiproxy/v2@$TOXIPROXY_VERSION (up to ${K6_TIMEOUT}s)"
  gobin="$tools/go-toxiproxy"
  if GOBIN="$gobin" GOFLAGS=-mod=mod timeout "$K6_TIMEOUT" go install "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION" >"$tools/toxiproxy-install.log" 2>&1; then
    mv "$gobin/server" "$tools/bin/toxiproxy-server" && rmdir "$gobin" 2>/dev/null
    say "toxiproxy: installed"
  else
    say "toxiproxy: install failed or timed out (see $tools/toxiproxy-install.log)"; status=1
  fi
else
  say "toxiproxy: skipped (no go toolchain)"; status=1
fi

# --- locust (optional) -------------------------------------------------
if [ "$with_locust" = 1 ]; then
  if [ -x "$tools/venv/bin/locust" ]; then
    say "locust: present"
  elif timeout 120 python3 -m venv "$tools/venv" >/dev/null 2>&1 \
    && timeout 900 "$tools/venv/bin/pip" install -q "locust${LOCUST_VERSION:+==$LOCUST_VERSION}" >"$tools/locust-install.log" 2>&1; then
    ln -sf "$tools/venv/bin/locust" "$tools/bin/locust"
    say "locust: installed"
  else
    say "locust: install failed (pip, see $tools/locust-install.log)"; status=1
  fi
  [ -x "$tools/venv/bin/locust" ] && ln -sf "$tools/venv/bin/locust" "$tools/bin/locust"
fi

# --- artillery (optional) ----------------------------------------------
if [ "$with_artillery" = 1 ]; then
  if [ -x "$tools/artillery/node_modules/.bin/artillery" ]; then
    say "artillery: present"
  else
    mkdir -p "$tools/artillery"
    [ -f "$tools/artillery/package.json" ] || echo '{"name":"topas-peer-artillery","private":true}' > "$tools/artillery/package.json"
    if (cd "$tools/artillery" && timeout "${ARTILLERY_TIMEOUT:-1800}" npm install --no-save --no-audit --no-fund --ignore-scripts --loglevel=error "artillery@$ARTILLERY_VERSION" >"$tools/artillery-install.log" 2>&1); then
      say "artillery: installed $ARTILLERY_VERSION"
    else
      say "artillery: install failed (npm, see $tools/artillery-install.log)"; status=1
    fi
  fi
  [ -x "$tools/artillery/node_modules/.bin/artillery" ] && ln -sf "$tools/artillery/node_modules/.bin/artillery" "$tools/bin/artillery"
fi

exit $status
