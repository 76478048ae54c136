#!/usr/bin/env bash
# start-kafka.sh [--nodes N] [--sasl-ssl] PORT DATADIR
# start-kafka.sh --fetch      (only download Apache Kafka into the cache)
#
# Starts a private, throwaway Apache Kafka 4.4.0 broker in KRaft mode (one JVM that is
# both broker and controller) on 127.0.0.1:PORT with everything in DATADIR (its
# server.properties, data/, broker.pid, broker.log). With --nodes N (N > 1) it starts an
# N-node cluster instead, node i on PORT+i-1 in DATADIR/node-i (each a DATADIR of its
# own, so `stop-kafka.sh --kill DATADIR/node-2` kills one node and `start-kafka.sh
# PORT DATADIR/node-2` brings it back), with replication factor N and
# min.insync.replicas=2 for every topic.
#
# --sasl-ssl (one node only) adds a SASL_SSL listener on PORT+1 (TLS with a certificate for
# 127.0.0.1 signed by a CA made here with openssl, DATADIR/tls/ca.pem; SASL mechanisms
# SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN, one user `rowstream` / `rowstream-secret`)
# beside the PLAINTEXT one on PORT; the info then also has SECURE_BOOTSTRAP, CA_FILE,
# SASL_USER and SASL_PASSWORD.
#
# Kafka is fetched once with `mvn dependency:copy-dependencies` on deploy/dev/maven/
# kafka.pom.xml into $ROWSTREAM_CACHE/kafka-4.4.0/lib (see fetch_kafka). A DATADIR that
# already has a server.properties is restarted as it was (same ports, cluster id, data):
# that is how the tests bring a SIGKILLed broker back. Idempotent: when the broker of
# DATADIR already runs it only prints the info. Waits until the broker answers an
# ApiVersions request (START_TIMEOUT, 60 s).
#
# When ROWSTREAM_OWNER_PID is set, a watchdog SIGKILLs the broker once that process is
# gone (owner_watchdog in lib.sh): a test binary shares one broker between its tests.
# Prints sourceable KEY=VALUE info on stdout (BOOTSTRAP, PORT, DATADIR, PID, LOG; for a
# cluster PID and LOG are node 1's and PIDS lists every node's), progress on stderr.
# Stop it with stop-kafka.sh DATADIR. Env: JAVA (java: 17 or newer), KAFKA_HEAP (384m).
source "$(dirname "$0")/lib.sh"

NODES=1 SASL_SSL=''
while [[ ${1:-} == --nodes || ${1:-} == --sasl-ssl ]]; do
  case $1 in
    --nodes) NODES=${2:-}; shift 2 ;;
    --sasl-ssl) SASL_SSL=1; shift ;;
  esac
done
[[ $# -eq 2 || ${1:-} == --fetch ]] || die "usage: $0 [--nodes N] [--sasl-ssl] PORT DATADIR | $0 --fetch"
[[ $NODES =~ ^[1-9]$ ]] || die "--nodes must be 1..9: $NODES"
[[ -z $SASL_SSL || $NODES == 1 ]] || die "--sasl-ssl is for one node only"
SASL_USER=rowstream SASL_PASSWORD=rowstream-secret
PORT=${1:-}; DATADIR=${2:-}
PY=${PYTHON:-python3}
JAVA=${JAVA:-java}
KAFKA_VERSION=4.4.0
KAFKA_LIB=$ROWSTREAM_CACHE/kafka-$KAFKA_VERSION/lib

# fetch_kafka: the broker's jars and their dependencies from Maven Central, once.
fetch_kafka() {
  [[ -f $KAFKA_LIB/.complete ]] && return 0
  command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
  local t; t=$(now)
  log "fetching Apache Kafka $KAFKA_VERSION (Maven Central) into $KAFKA_LIB"
  rm -rf "$KAFKA_LIB.tmp"
  mvn -q -B -f "$DEV_SCRIPTS/maven/kafka.pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIB.tmp" >&2 \
    || die "mvn dependency:copy-dependencies (kafka.pom.xml) failed"
  cp "$DEV_SCRIPTS/maven/kafka-log4j2.xml" "$KAFKA_LIB.tmp/log4j2.xml"
  touch "$KAFKA_LIB.tmp/.complete"
  rm -rf "$KAFKA_LIB"; mv "$KAFKA_LIB.tmp" "$KAFKA_LIB"
  log "Apache Kafka ready in $(elapsed "$t")s: $KAFKA_LIB"
}

# kafka_ready HOST:PORT -> 0 when the broker answers ApiVersions v0 with error 0 (stdlib python).
kafka_ready() {
  "$PY" - "$1" <<'EOF'
import socket, struct, sys
host, port = sys.argv[1].rsplit(":", 1)
def read(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            sys.exit(1)
        b += c
    return b
with socket.create_connection((host, int(port)), timeout=2) as s:
    cid = b"ready"
    body = struct.pack(">hhih", 18, 0, 1, len(cid)) + cid
    s.sendall(struct.pack(">i", len(body)) + body)
    n = struct.unpack(">i", read(s, 4))[0]
    corr, err = struct.unpack(">ih", read(s, n)[:6])
    sys.exit(0 if corr == 1 and err == 0 else 1)
EOF
}

# free_port -> a port nothing listens on now (for the controller listeners).
free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# running_broker DATADIR -> the PID of the broker recorded in DATADIR, if it is still it.
running_broker() {
  local d=$1 pid
  [[ -f $d/broker.pid ]] || return 1
  pid=$(cat "$d/broker.pid")
  pid_alive "$pid" || return 1
  local cmd; cmd=" $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) "
  [[ $cmd == *" $d/server.properties "* ]] || return 1
  echo "$pid"
}

java_cmd() {
  JAVA_CMD=("$JAVA" "-Xmx${KAFKA_HEAP:-384m}" -Xms64m -Xss512k -XX:TieredStopAtLevel=1
    -XX:+UseSerialGC -Xshare:auto -XX:-UsePerfData -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$KAFKA_LIB/log4j2.xml" -cp "$KAFKA_LIB/*")
}

# make_certs DIR: DIR/tls/ca.pem (a CA) and DIR/tls/server.pem (key + certificate for
# 127.0.0.1 and localhost signed by it, a PEM key store as Kafka reads it).
make_certs() {
  local t=$1/tls
  make_test_certs "$t" "$1/broker.log"
  cat "$t/server.key" "$t/server.crt" "$t/ca.pem" >"$t/server.pem"
}

# sasl_ssl_config DIR: the SASL_SSL listener's settings (see --sasl-ssl).
sasl_ssl_config() {
  cat <<CONF
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SASL_USER="$SASL_PASSWORD";
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN
ssl.keystore.type=PEM
ssl.keystore.location=$1/tls/server.pem
ssl.client.auth=none
CONF
}

# write_config DIR NODE_ID PORT VOTERS NODES CONTROLLER_PORT: the server.properties of one node.
write_config() {
  local d=$1 id=$2 port=$3 voters=$4 n=$5 cport=$6 isr=1 extra='' extra_map=''
  (( n > 1 )) && isr=2
  if [[ -n $SASL_SSL ]]; then extra=",SASL_SSL://127.0.0.1:$((port + 1))"; extra_map=,SASL_SSL:SASL_SSL; fi
  cat >"$d/server.properties" <<EOF
# Written by deploy/dev/start-kafka.sh: a throwaway test broker, loopback only.
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport$extra
advertised.listeners=PLAINTEXT://127.0.0.1:$port$extra
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT$extra_map
log.dirs=$d/data
num.partitions=1
default.replication.factor=$n
min.insync.replicas=$isr
offsets.topic.replication.factor=$n
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=$n
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=$n
share.coordinator.state.topic.min.isr=$isr
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
# A restarted (SIGKILLed) node waits for its previous registration to expire.
broker.session.timeout.ms=2000
broker.heartbeat.interval.ms=500
auto.create.topics.enable=true
num.network.threads=2
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
log.cleaner.enable=false
EOF
  if [[ -n $SASL_SSL ]]; then make_certs "$d"; sasl_ssl_config "$d" >>"$d/server.properties"; fi
}

# format_node DIR CLUSTER_ID: the KRaft storage format, once per data dir (with the SCRAM
# credentials of the SASL user under --sasl-ssl).
format_node() {
  local JAVA_CMD scram=() m; java_cmd
  if [[ -n $SASL_SSL ]]; then
    for m in SCRAM-SHA-256 SCRAM-SHA-512; do
      scram+=(--add-scram "$m=[name=$SASL_USER,password=$SASL_PASSWORD]")
    done
  fi
  "${JAVA_CMD[@]}" kafka.tools.StorageTool format --ignore-formatted -t "$2" "${scram[@]}" \
    -c "$1/server.properties" >>"$1/broker.log" 2>&1 || { tail -20 "$1/broker.log" >&2; die "kafka storage format failed in $1"; }
}

# launch_node DIR: starts the JVM of DIR (configured), records its pid (see owner_watchdog).
launch_node() {
  local d=$1 JAVA_CMD pid; java_cmd
  nohup "${JAVA_CMD[@]}" kafka.Kafka "$d/server.properties" >>"$d/broker.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$d/broker.pid"
  owner_watchdog "$pid"
}

# wait_node DIR PORT DEADLINE -> waits for an ApiVersions answer; dies showing the log.
wait_node() {
  local d=$1 port=$2 deadline=$3 pid; pid=$(cat "$d/broker.pid")
  until kafka_ready "127.0.0.1:$port" 2>/dev/null; do
    if ! pid_alive "$pid"; then
      tail -30 "$d/broker.log" >&2 || true
      die "kafka broker exited during startup (see $d/broker.log)"
    fi
    if (( $(date +%s) > deadline )); then
      tail -30 "$d/broker.log" >&2 || true
      kill -KILL "$pid" 2>/dev/null || true
      die "timeout waiting for the kafka broker on port $port"
    fi
    sleep 0.1
  done
}

# configure DIR...: one cluster of the given node dirs (node i on PORT+i-1), formatted.
configure() {
  local dirs=("$@") n=$# i voters='' cports=() cid
  for ((i = 0; i < n; i++)); do
    cports+=("$(free_port)")
    voters+="${voters:+,}$((i + 1))@127.0.0.1:${cports[i]}"
  done
  local JAVA_CMD; java_cmd
  cid=$("${JAVA_CMD[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
  [[ -n $cid ]] || die "kafka-storage random-uuid failed"
  for ((i = 0; i < n; i++)); do
    mkdir -p "${dirs[i]}/data"
    write_config "${dirs[i]}" $((i + 1)) $((PORT + i)) "$voters" "$n" "${cports[i]}"
    format_node "${dirs[i]}" "$cid"
  done
}

info() {
  local kv bootstrap='' pids='' i
  for ((i = 0; i < ${#NODE_DIRS[@]}; i++)); do
    bootstrap+="${bootstrap:+,}127.0.0.1:$((PORT + i))"
    pids+="${pids:+ }$(cat "${NODE_DIRS[i]}/broker.pid")"
  done
  for kv in "BOOTSTRAP=$bootstrap" "HOST=127.0.0.1" "PORT=$PORT" "DATADIR=$DATADIR" \
            "PID=${pids%% *}" "PIDS=$pids" "LOG=${NODE_DIRS[0]}/broker.log"; do
    printf '%s=%q\n' "${kv%%=*}" "${kv#*=}"
  done
  if grep -q '^listeners=.*SASL_SSL://' "${NODE_DIRS[0]}/server.properties"; then
    for kv in "SECURE_BOOTSTRAP=127.0.0.1:$((PORT + 1))" "CA_FILE=${NODE_DIRS[0]}/tls/ca.pem" \
              "SASL_USER=$SASL_USER" "SASL_PASSWORD=$SASL_PASSWORD"; do
      printf '%s=%q\n' "${kv%%=*}" "${kv#*=}"
    done
  fi
}

if [[ $PORT == --fetch ]]; then fetch_kafka; echo "KAFKA_LIB=$KAFKA_LIB"; exit 0; fi
[[ $PORT =~ ^[0-9]+$ ]] || die "port must be a number: $PORT"
mkdir -p "$DATADIR"; DATADIR=$(readlink -f "$DATADIR")
NODE_DIRS=("$DATADIR")
if (( NODES > 1 )); then
  NODE_DIRS=()
  for ((i = 1; i <= NODES; i++)); do NODE_DIRS+=("$DATADIR/node-$i"); done
fi
fetch_kafka
T0=$(now)
[[ -f ${NODE_DIRS[0]}/server.properties ]] || {
  for ((i = 0; i < NODES; i++)); do check_port $((PORT + i)); done
  [[ -z $SASL_SSL ]] || check_port $((PORT + 1))
  configure "${NODE_DIRS[@]}"
}
DEADLINE=$(( $(date +%s) + ${START_TIMEOUT:-60} ))
for ((i = 0; i < NODES; i++)); do
  if running_broker "${NODE_DIRS[i]}" >/dev/null; then continue; fi
  check_port $((PORT + i))
  launch_node "${NODE_DIRS[i]}"
done
# A cluster's nodes wait for each other's votes, so they are started before any is waited for.
for ((i = 0; i < NODES; i++)); do wait_node "${NODE_DIRS[i]}" $((PORT + i)) "$DEADLINE"; done
log "kafka $KAFKA_VERSION ($NODES node(s)) ready on 127.0.0.1:$PORT in $(elapsed "$T0")s"
PID=$(cat "${NODE_DIRS[0]}/broker.pid")
info
