#!/usr/bin/env bash
# A real Kubernetes control plane on 127.0.0.1 for the kubernetes plugin's tests:
# etcd + kube-apiserver + kube-controller-manager + kube-scheduler (no kubelet: the
# tests bring their own node agent, plugins/kubernetes/test-support/node-agent.ts).
# Every binary is built from the Go module proxy once, into a machine-wide cache.
#
# usage: scripts/kube-control-plane.sh build
#        scripts/kube-control-plane.sh start          last stdout line: the kubeconfig path
#        scripts/kube-control-plane.sh stop RUN_DIR   (or the kubeconfig path start printed)
#
# start makes a PRIVATE run dir (mktemp under $TMPDIR) with its own PKI, admin token,
# etcd data and logs, picks free ports for this run, and records the pids it spawned
# there; stop signals only those pids (after checking that each still runs a binary
# from the cache with this run dir on its command line) and removes the run dir.
#
# env: TOPAS_KUBE_CACHE (/var/cache/topas/kube, else ~/.cache/topas/kube when that is not writable)
#      TOPAS_KUBE_COMPONENTS (all | apiserver: etcd + apiserver only, envtest-like)
#      TOPAS_KUBE_READY_TIMEOUT (seconds, 90)  TOPAS_KUBE_KEEP_RUN_DIR=1 (stop keeps logs)
#      K8S_VERSION (v1.37.1)  ETCD_VERSION (v3.6.16)
set -euo pipefail

ACTION=${1:-start}
K8S_VERSION=${K8S_VERSION:-v1.37.1}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
COMPONENTS=${TOPAS_KUBE_COMPONENTS:-all}
READY_TIMEOUT=${TOPAS_KUBE_READY_TIMEOUT:-90}
# k8s.io/kubernetes v1.X.Y publishes its staging modules (client-go, api, ...) as v0.X.Y
STAGING_VERSION=v0.${K8S_VERSION#v1.}

say() { echo "kube-control-plane: $*" >&2; }
die() { say "$*"; exit 1; }
now_ms() { date +%s%3N; }
secs_since() { local d=$(( $(now_ms) - $1 )); printf '%d.%03d' $((d / 1000)) $((d % 1000)); }

cache_dir() {
  local c=${TOPAS_KUBE_CACHE:-/var/cache/topas/kube}
  if ! mkdir -p "$c" 2>/dev/null || [ ! -w "$c" ]; then
    [ -n "${TOPAS_KUBE_CACHE:-}" ] && die "cache dir $c is not writable"
    c=${XDG_CACHE_HOME:-$HOME/.cache}/topas/kube
    mkdir -p "$c"
  fi
  (cd "$c" && pwd)
}
CACHE=$(cache_dir)
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl)

# ------------------------------------------------------------------ build
# `--version` of a binary, or nothing (no pipe: pipefail would see SIGPIPE)
version_line() { if [ -x "$1" ]; then "$1" "${@:2}" 2>/dev/null || true; fi; }

have_binary() { # name -> 0 when the cached binary is the wanted version
  local out want stamp=$CACHE/.verified-$1
  [ -x "$CACHE/$1" ] || return 1
  # asking a 100 MB binary for its version costs ~0.3 s: remember the answer for this very file
  want="$([ "$1" = etcd ] && echo "$ETCD_VERSION" || echo "$K8S_VERSION") $(stat -c '%s %Y' "$CACHE/$1")"
  [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
  case $1 in
    etcd) out=$(version_line "$CACHE/etcd" --version); [[ $out == "etcd Version: ${ETCD_VERSION#v}"* ]] ;;
    kubectl) out=$(version_line "$CACHE/kubectl" version --client); [[ $out == *"Client Version: $K8S_VERSION"* ]] ;;
    *) out=$(version_line "$CACHE/$1" --version); [ "$out" = "Kubernetes $K8S_VERSION" ] ;;
  esac || return 1
  echo "$want" > "$stamp" 2>/dev/null || true
}

go_build() { # module-dir output package [ldflags]
  local t0; t0=$(now_ms)
  say "building $(basename "$2") (nice 19)"
  (cd "$1" && nice -n 19 go build -trimpath -ldflags "${4:--s -w}" -o "$2.tmp" "$3") >&2
  mv "$2.tmp" "$2"
  say "built $(basename "$2") in $(secs_since "$t0")s"
}

build_etcd() {
  have_binary etcd && return 0
  local mod=$CACHE/src/etcd-$ETCD_VERSION
  mkdir -p "$mod"
  # `go install go.etcd.io/etcd/server/v3@…` is refused because that go.mod has
  # replace directives; a module of our own that requires it builds its main package.
  if [ ! -s "$mod/go.sum" ]; then
    printf 'module local/etcdbuild\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > "$mod/go.mod"
    printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > "$mod/tools.go"
    (cd "$mod" && nice -n 19 go mod tidy) >&2
  fi
  go_build "$mod" "$CACHE/etcd" go.etcd.io/etcd/server/v3
}

build_kubernetes() { # names...
  local want=() b
  for b in "$@"; do [ "$b" = etcd ] || have_binary "$b" || want+=("$b"); done
  [ ${#want[@]} -eq 0 ] && return 0
  local mod=$CACHE/src/kubernetes-$K8S_VERSION
  mkdir -p "$mod"
  if [ ! -s "$mod/go.sum" ]; then
    # k8s.io/kubernetes requires its staging modules as v0.0.0 and replaces them with
    # ./staging/…; a dependency's replaces do not apply, so point each at its tag.
    local gomod
    gomod=$(cd "$mod" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
    [ -s "$gomod" ] || die "could not download k8s.io/kubernetes@$K8S_VERSION from the Go module proxy"
    {
      printf 'module local/k8sbuild\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
      awk '/^require \(/ { inreq = 1; next } inreq && /^\)/ { inreq = 0 } inreq && $1 ~ /^k8s\.io\// && $2 == "v0.0.0" { print $1 }' "$gomod" |
        sort -u | while read -r m; do printf '\t%s => %s %s\n' "$m" "$m" "$STAGING_VERSION"; done
      printf ')\n'
    } > "$mod/go.mod"
    # every cmd built must be imported here, or its go.sum entries are missing
    printf '//go:build tools\n\npackage tools\n\nimport (\n' > "$mod/tools.go"
    for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$b" >> "$mod/tools.go"; done
    printf ')\n' >> "$mod/tools.go"
    (cd "$mod" && nice -n 19 go mod tidy) >&2
  fi
  # without these the servers report v0.0.0-master
  local ldflags='-s -w' p minor
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  for b in "${want[@]}"; do go_build "$mod" "$CACHE/$b" "k8s.io/kubernetes/cmd/$b" "$ldflags"; done
}

build_all() { # names... (default: all of them)
  local missing=() b
  [ $# -gt 0 ] || set -- "${BINARIES[@]}"
  for b in "$@"; do have_binary "$b" || missing+=("$b"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v go >/dev/null || die "go is needed to build ${missing[*]} (Go >= 1.26 for Kubernetes ${K8S_VERSION})"
  # one build per machine at a time; a second caller waits, then finds the binaries
  exec 8>"$CACHE/.build.lock"
  flock -w 3600 8 || die "could not take $CACHE/.build.lock"
  local t0; t0=$(now_ms)
  say "building ${missing[*]} into $CACHE (cold: ~8-11 min on 2 cores)"
  [[ " ${missing[*]} " == *" etcd "* ]] && build_etcd
  build_kubernetes "${missing[@]}"
  flock -u 8
  say "build done in $(secs_since "$t0")s"
}

# ------------------------------------------------------------------ stop
run_dir_of() { # RUN_DIR or its kubeconfig
  local d=${1:-}
  [ -n "$d" ] || die "usage: $0 stop RUN_DIR (the directory of the kubeconfig start printed)"
  [ -f "$d" ] && d=$(dirname "$d")
  [ -f "$d/control-plane" ] || die "$d is not a run dir made by $0 start"
  (cd "$d" && pwd)
}

# a pid of ours: it still runs one of our binaries with this run dir on its command line
ours() { # pid run-dir
  local cmd
  cmd=$(tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null) || return 1
  [[ $cmd == "$CACHE/"* && $cmd == *"$2"* ]]
}

stop_run() { # run-dir
  local run=$1 group name pid pids i
  # the components first, then etcd: an apiserver that lost etcd takes ~20 s to exit
  for group in "kube-scheduler kube-controller-manager kube-apiserver" "etcd"; do
    pids=()
    for name in $group; do
      [ -f "$run/$name.pid" ] || continue
      pid=$(cat "$run/$name.pid")
      rm -f "$run/$name.pid"
      if ours "$pid" "$run"; then kill "$pid" 2>/dev/null && pids+=("$pid"); fi
    done
    for pid in "${pids[@]}"; do
      for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null && ours "$pid" "$run"; then say "pid $pid did not stop in 10 s: SIGKILL"; kill -9 "$pid" 2>/dev/null || true; fi
    done
  done
  if [ "${TOPAS_KUBE_KEEP_RUN_DIR:-}" = 1 ]; then say "stopped; logs kept in $run/log"; else rm -rf "$run"; fi
}

# ------------------------------------------------------------------ start
free_ports() { # count -> that many distinct free TCP ports on 127.0.0.1, held together while chosen
  node -e '
    const net = require("node:net");
    const n = Number(process.argv[1]);
    const servers = [];
    const next = () => {
      if (servers.length === n) {
        console.log(servers.map((s) => s.address().port).join(" "));
        for (const s of servers) s.close();
        return;
      }
      const s = net.createServer();
      s.listen(0, "127.0.0.1", () => { servers.push(s); next(); });
    };
    next();' "$1"
}

ready() { # url [curl args...] -> 0 when it answers "ok"
  [ "$(curl -s -m 2 "${@:2}" "$1" 2>/dev/null)" = ok ]
}

wait_ready() { # name url [curl args...]
  local name=$1 t0; t0=$(now_ms)
  until ready "${@:2}"; do
    if ! kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then say "$name exited; its log ends:"; tail -15 "$RUN/log/$name.log" >&2; return 1; fi
    if [ $(( $(now_ms) - t0 )) -gt $(( READY_TIMEOUT * 1000 )) ]; then say "$name not ready after ${READY_TIMEOUT}s; its log ends:"; tail -15 "$RUN/log/$name.log" >&2; return 1; fi
    sleep 0.1
  done
  say "$name ready after $(secs_since "$t0")s"
}

spawn() { # name args...
  local name=$1
  shift
  nohup "$CACHE/$name" "$@" > "$RUN/log/$name.log" 2>&1 < /dev/null &
  echo $! > "$RUN/$name.pid"
}

make_pki() {
  local d=$RUN/pki
  mkdir -p "$d"
  (
    cd "$d"
    umask 077
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key
    openssl req -x509 -new -key ca.key -subj /CN=topas-kube-ca -days 30 -out ca.crt 2>/dev/null
    openssl ecparam -name prime256v1 -genkey -noout -out serving.key
    openssl req -new -key serving.key -subj /CN=kube-apiserver -out serving.csr 2>/dev/null
    # the apiserver's own self-signed cert has no localhost SAN and mixes cert and CA: make ours
    printf 'subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth\n' > serving.ext
    openssl x509 -req -in serving.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -extfile serving.ext -out serving.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    echo "$(openssl rand -hex 24),admin,admin,system:masters" > tokens.csv
  )
}

write_kubeconfig() {
  local token=$1
  (
    umask 077
    cat > "$RUN/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: topas-local
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 "$RUN/pki/ca.crt")
users:
- name: admin
  user:
    token: $token
contexts:
- name: topas-local
  context: {cluster: topas-local, user: admin, namespace: default}
current-context: topas-local
EOF
  )
}

start_once() {
  local ports
  read -r API_PORT ETCD_PORT ETCD_PEER_PORT ETCD_METRICS_PORT KCM_PORT SCHED_PORT <<< "$(free_ports 6)"
  rm -rf "$RUN/etcd" "$RUN/log" "$RUN"/*.pid
  mkdir -p "$RUN/log"
  local token pki=$RUN/pki t0
  token=$(cut -d, -f1 "$pki/tokens.csv")
  write_kubeconfig "$token"
  printf 'api=%s etcd=%s kcm=%s scheduler=%s\n' "$API_PORT" "$ETCD_PORT" "$KCM_PORT" "$SCHED_PORT" > "$RUN/ports"
  t0=$(now_ms)
  spawn etcd --name topas --data-dir "$RUN/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "topas=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls "http://127.0.0.1:$ETCD_METRICS_PORT" \
    --unsafe-no-fsync --snapshot-count 10000 --quota-backend-bytes 1073741824 --log-level warn
  wait_ready etcd "http://127.0.0.1:$ETCD_METRICS_PORT/readyz" || return 1

  local extra=()
  # alone, nothing creates the "default" ServiceAccount, and admission would refuse every Pod
  [ "$COMPONENTS" = apiserver ] && extra=(--disable-admission-plugins=ServiceAccount)
  # --endpoint-reconciler-type=none: 127.0.0.1 may not be advertised with the reconciler on
  spawn kube-apiserver --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
    --endpoint-reconciler-type=none --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --tls-cert-file="$pki/serving.crt" --tls-private-key-file="$pki/serving.key" --client-ca-file="$pki/ca.crt" \
    --service-cluster-ip-range=10.96.0.0/16 --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --token-auth-file="$pki/tokens.csv" --authorization-mode=Node,RBAC --allow-privileged=true "${extra[@]}"
  wait_ready kube-apiserver "https://127.0.0.1:$API_PORT/readyz" --cacert "$pki/ca.crt" -H "Authorization: Bearer $token" || return 1

  if [ "$COMPONENTS" = all ]; then
    spawn kube-controller-manager --kubeconfig="$RUN/kubeconfig" --leader-elect=false \
      --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$pki/kcm" \
      --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" --use-service-account-credentials=false
    spawn kube-scheduler --kubeconfig="$RUN/kubeconfig" --leader-elect=false --bind-address=127.0.0.1 --secure-port="$SCHED_PORT"
    wait_ready kube-controller-manager "https://127.0.0.1:$KCM_PORT/healthz" -k || return 1
    wait_ready kube-scheduler "https://127.0.0.1:$SCHED_PORT/healthz" -k || return 1
    # pods in "default" need its ServiceAccount, which the controller-manager makes
    local i
    for i in $(seq 1 100); do
      curl -sf -o /dev/null --cacert "$pki/ca.crt" -H "Authorization: Bearer $token" \
        "https://127.0.0.1:$API_PORT/api/v1/namespaces/default/serviceaccounts/default" && break
      sleep 0.1
    done
  fi
  say "control plane ($COMPONENTS) up in $(secs_since "$t0")s on port $API_PORT; logs in $RUN/log; stop: $0 stop $RUN"
}

start() {
  if [ "$COMPONENTS" = apiserver ]; then build_all etcd kube-apiserver; else build_all etcd kube-apiserver kube-controller-manager kube-scheduler; fi
  local base=${TMPDIR:-/tmp}
  RUN=$(mktemp -d "$base/topas-kube.XXXXXX")
  echo "$0" > "$RUN/control-plane"
  make_pki
  # a port taken between choosing and binding (another run on the machine): try again
  local attempt
  for attempt in 1 2 3; do
    if start_once; then echo "$RUN/kubeconfig"; return 0; fi
    if grep -qs 'address already in use' "$RUN"/log/*.log; then
      say "a port was taken meanwhile (attempt $attempt); choosing new ones"
      TOPAS_KUBE_KEEP_RUN_DIR=1 stop_run "$RUN" 2>/dev/null
      continue
    fi
    break
  done
  TOPAS_KUBE_KEEP_RUN_DIR=1 stop_run "$RUN"
  die "the control plane did not start; logs in $RUN/log"
}

case "$ACTION" in
  build) build_all ;;
  start) start ;;
  stop) RUN=$(run_dir_of "${2:-}"); stop_run "$RUN" ;;
  *) echo "usage: $0 build | start | stop RUN_DIR" >&2; exit 2 ;;
esac
