#!/usr/bin/env bash
# start-opensearch.sh [--secure] PORT DATADIR
# start-opensearch.sh --fetch      (only download OpenSearch into the cache)
#
# Starts a private, throwaway OpenSearch 2.19.6 node (single-node discovery, HTTP on
# 127.0.0.1:PORT, transport on a free loopback port) with everything in DATADIR (data/,
# opensearch.pid, opensearch.log, port, transport-port). The node is maven/OpenSearchNode.java:
# org.opensearch.node.Node with the netty4 module and analysis-common on the classpath.
# Its data survives a SIGKILL: a DATADIR is restarted as it was.
#
# OpenSearch is fetched once with `mvn dependency:copy-dependencies` on deploy/dev/maven/
# opensearch.pom.xml into $ROWSTREAM_CACHE/opensearch-2.19.6/lib and the node class is
# compiled there (see fetch_opensearch). Idempotent: when the node of DATADIR already runs
# it only prints the info. Waits until `GET /_cluster/health?wait_for_status=yellow`
# answers (START_TIMEOUT, 90 s). When ROWSTREAM_OWNER_PID is set, the node is SIGKILLed
# once that process is gone (owner_watchdog in lib.sh).
#
# --secure: HTTPS and basic authentication on the node's HTTP port (the security plugin
# is not on Maven Central: OpenSearchNode.java's TestSecurityPlugin gives OpenSearch's
# own SecureNetty4HttpServerTransport an SSLEngine and answers 401 to requests without
# the user's `Authorization: Basic`): a CA and a certificate for 127.0.0.1 / localhost
# made here with openssl in DATADIR/tls (ca.pem), one user `rowstream` /
# `rowstream-secret`. A DATADIR started secure restarts secure. The info then has an
# https URL and CA_FILE, USERNAME, PASSWORD.
# Prints sourceable KEY=VALUE info on stdout (URL, PORT, DATADIR, PID, LOG), progress on
# stderr. Stop it with stop-opensearch.sh DATADIR. Env: JAVA (java, 17 or newer),
# OPENSEARCH_HEAP (512m).
source "$(dirname "$0")/lib.sh"

SECURE=''
if [[ ${1:-} == --secure ]]; then SECURE=1; shift; fi
[[ $# -eq 2 || ${1:-} == --fetch ]] || die "usage: $0 [--secure] PORT DATADIR | $0 --fetch"
PORT=${1:-}; DATADIR=${2:-}
OS_USER=rowstream OS_PASSWORD=rowstream-secret
PY=${PYTHON:-python3}
JAVA=${JAVA:-java}
OS_VERSION=2.19.6
OS_HOME=$ROWSTREAM_CACHE/opensearch-$OS_VERSION

# fetch_opensearch: the node's jars from Maven Central, once, and the node class, compiled
# into $OS_HOME/classes-<sha of the source> (an edit recompiles it); sets CLASSES.
fetch_opensearch() {
  if [[ ! -f $OS_HOME/.complete ]]; then
    command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
    local t; t=$(now)
    log "fetching OpenSearch $OS_VERSION (Maven Central) into $OS_HOME"
    rm -rf "$OS_HOME.tmp"; mkdir -p "$OS_HOME.tmp"
    mvn -q -B -f "$DEV_SCRIPTS/maven/opensearch.pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$OS_HOME.tmp/lib" >&2 \
      || die "mvn dependency:copy-dependencies (opensearch.pom.xml) failed"
    touch "$OS_HOME.tmp/.complete"
    rm -rf "$OS_HOME"; mv "$OS_HOME.tmp" "$OS_HOME"
    log "OpenSearch ready in $(elapsed "$t")s: $OS_HOME"
  fi
  compile_java "${JAVA%java}javac" "$DEV_SCRIPTS/maven/OpenSearchNode.java" "$OS_HOME/lib" "$OS_HOME"
}

# running_node DATADIR -> the PID recorded in DATADIR, if that process still is its node.
running_node() {
  local d=$1 pid
  [[ -f $d/opensearch.pid ]] || return 1
  pid=$(cat "$d/opensearch.pid")
  pid_alive "$pid" || return 1
  local cmd; cmd=" $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) "
  [[ $cmd == *" path.home=$d "* ]] || return 1
  echo "$pid"
}

info() {
  local kv scheme=http extra=()
  if [[ -f $DATADIR/tls/server.p12 ]]; then
    scheme=https
    extra=("CA_FILE=$DATADIR/tls/ca.pem" "USERNAME=$OS_USER" "PASSWORD=$OS_PASSWORD")
  fi
  for kv in "URL=$scheme://127.0.0.1:$PORT" "HOST=127.0.0.1" "PORT=$PORT" "DATADIR=$DATADIR" "PID=$PID" \
            "LOG=$DATADIR/opensearch.log" "${extra[@]}"; do
    printf '%s=%q\n' "${kv%%=*}" "${kv#*=}"
  done
}

if [[ $PORT == --fetch ]]; then fetch_opensearch; echo "OPENSEARCH_HOME=$OS_HOME"; exit 0; fi
[[ $PORT =~ ^[0-9]+$ ]] || die "port must be a number: $PORT"
mkdir -p "$DATADIR"; DATADIR=$(readlink -f "$DATADIR")
if PID=$(running_node "$DATADIR"); then
  log "opensearch node already running (pid $PID) for $DATADIR"
  info; exit 0
fi
check_port "$PORT"
fetch_opensearch
T0=$(now)
echo "$PORT" >"$DATADIR/port"
[[ -f $DATADIR/transport-port ]] \
  || "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' \
       >"$DATADIR/transport-port"
mkdir -p "$DATADIR/data" "$DATADIR/logs"
SECURE_ARGS=() HTTP_TYPE=netty4 CURL_ARGS=() SCHEME=http
if [[ -n $SECURE && ! -f $DATADIR/tls/server.p12 ]]; then
  make_test_certs "$DATADIR/tls" "$DATADIR/opensearch.log"
  openssl pkcs12 -export -in "$DATADIR/tls/server.crt" -inkey "$DATADIR/tls/server.key" \
    -name node -passout pass:rowstream-test -out "$DATADIR/tls/server.p12.tmp" \
    >>"$DATADIR/opensearch.log" 2>&1 || die "openssl pkcs12 failed (see $DATADIR/opensearch.log)"
  printf '%s:%s\n' "$OS_USER" "$OS_PASSWORD" >"$DATADIR/tls/basic-auth"
  mv "$DATADIR/tls/server.p12.tmp" "$DATADIR/tls/server.p12"
fi
if [[ -f $DATADIR/tls/server.p12 ]]; then
  SECURE_ARGS=("-Drowstream.test.tls.keystore=$DATADIR/tls/server.p12"
    -Drowstream.test.tls.password=rowstream-test "-Drowstream.test.basic.auth=$DATADIR/tls/basic-auth")
  HTTP_TYPE=netty4-secure SCHEME=https
  CURL_ARGS=(--cacert "$DATADIR/tls/ca.pem" -u "$OS_USER:$OS_PASSWORD")
fi
# C1 only and the serial collector: a small, quickly started JVM on a shared 2-core machine.
nohup "$JAVA" "-Xmx${OPENSEARCH_HEAP:-512m}" "-Xms${OPENSEARCH_HEAP:-512m}" -Xss1m \
  -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xshare:auto -XX:-UsePerfData \
  -Djava.awt.headless=true -Dfile.encoding=UTF-8 -Dio.netty.noUnsafe=true \
  -Dio.netty.recycler.maxCapacityPerThread=0 -Dlog4j2.disable.jmx=true "${SECURE_ARGS[@]}" \
  -cp "$CLASSES:$OS_HOME/lib/*" OpenSearchNode \
  "path.home=$DATADIR" "path.data=$DATADIR/data" "path.logs=$DATADIR/logs" \
  cluster.name=rowstream-test node.name=node-1 network.host=127.0.0.1 \
  "http.port=$PORT" "transport.port=$(cat "$DATADIR/transport-port")" \
  discovery.type=single-node "http.type=$HTTP_TYPE" transport.type=netty4 \
  cluster.routing.allocation.disk.threshold_enabled=false \
  node.processors=2 thread_pool.write.queue_size=1000 \
  >>"$DATADIR/opensearch.log" 2>&1 </dev/null &
PID=$!
echo "$PID" >"$DATADIR/opensearch.pid"
owner_watchdog "$PID"
deadline=$(( $(date +%s) + ${START_TIMEOUT:-90} ))
until curl -sf -o /dev/null "${CURL_ARGS[@]}" "$SCHEME://127.0.0.1:$PORT/_cluster/health?wait_for_status=yellow&timeout=1s" 2>/dev/null; do
  if ! pid_alive "$PID"; then
    tail -30 "$DATADIR/opensearch.log" >&2 || true
    die "opensearch exited during startup (see $DATADIR/opensearch.log)"
  fi
  if (( $(date +%s) > deadline )); then
    tail -30 "$DATADIR/opensearch.log" >&2 || true
    kill -KILL "$PID" 2>/dev/null || true
    die "timeout waiting for opensearch on port $PORT"
  fi
  sleep 0.1
done
log "opensearch $OS_VERSION ready on $SCHEME://127.0.0.1:$PORT (pid $PID) in $(elapsed "$T0")s"
info
