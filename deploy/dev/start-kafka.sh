#!/usr/bin/env bash
# start-kafka.sh PORT DATADIR
# start-kafka.sh --fetch      (only download the broker binary into the cache)
#
# Starts a private, throwaway Kafka-protocol broker on 127.0.0.1:PORT with its data in
# DATADIR: noida-db 0.2.3 (a single Rust binary shipped in a PyPI wheel; Apache Kafka
# itself needs a JVM and Maven artifacts, which the test machines do not have). It speaks
# the Kafka wire protocol as librdkafka expects it: topics, keyed produce/consume with
# per-key order, headers, idempotent producer, consumer groups, persistence.
#
# The binary is downloaded once with `pip download` into $ROWSTREAM_CACHE/noida-db-0.2.3/
# (see fetch_noida). Idempotent: when a broker already runs on DATADIR it only prints the
# info. Waits until the broker answers an ApiVersions request (START_TIMEOUT, 30 s).
# Prints sourceable KEY=VALUE info on stdout (BOOTSTRAP, PORT, DATADIR, PID, LOG),
# progress on stderr. Stop it with stop-kafka.sh DATADIR.
# Env: PYTHON (python3).
source "$(dirname "$0")/lib.sh"

[[ $# -eq 2 || ${1:-} == --fetch ]] || die "usage: $0 PORT DATADIR | $0 --fetch"
PORT=${1:-}; DATADIR=${2:-}
PY=${PYTHON:-python3}
NOIDA_SPEC=noida-db==0.2.3
NOIDA_BIN=$ROWSTREAM_CACHE/noida-db-0.2.3/noida-db

# fetch_noida: pip download the wheel (no deps, binary only) and extract the binary, once.
fetch_noida() {
  [[ -x $NOIDA_BIN ]] && return 0
  local dl=$ROWSTREAM_CACHE/wheels t; t=$(now)
  mkdir -p "$dl" "$(dirname "$NOIDA_BIN")"
  log "downloading $NOIDA_SPEC (PyPI wheel) into $ROWSTREAM_CACHE"
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$dl" "$NOIDA_SPEC" >&2 \
    || die "pip download $NOIDA_SPEC failed"
  local whl; whl=$(ls -t "$dl"/noida_db-0.2.3-*.whl | head -1)
  "$PY" - "$whl" noida_db/noida-db "$NOIDA_BIN" <<'EOF' || die "cannot extract noida-db from $whl"
import sys, zipfile, shutil, os
whl, member, dest = sys.argv[1:4]
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(dest + ".tmp", "wb") as out:
    shutil.copyfileobj(src, out)
os.chmod(dest + ".tmp", 0o755)
os.replace(dest + ".tmp", dest)
EOF
  log "noida-db ready in $(elapsed "$t")s: $NOIDA_BIN"
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

# running_broker DATADIR -> the PID of the broker recorded in DATADIR, if it is still it.
running_broker() {
  local d=$1 pid
  [[ -f $d/broker.pid ]] || return 1
  pid=$(cat "$d/broker.pid")
  pid_alive "$pid" || return 1
  local cmd; cmd=" $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) "
  [[ $cmd == *" --data-dir $d/data "* ]] || return 1
  echo "$pid"
}

info() {
  local kv
  for kv in "BOOTSTRAP=127.0.0.1:$PORT" "HOST=127.0.0.1" "PORT=$PORT" "DATADIR=$DATADIR" "PID=$PID" \
            "LOG=$DATADIR/broker.log"; do
    printf '%s=%q\n' "${kv%%=*}" "${kv#*=}"
  done
}

if [[ $PORT == --fetch ]]; then fetch_noida; echo "NOIDA_BIN=$NOIDA_BIN"; exit 0; fi
[[ $PORT =~ ^[0-9]+$ ]] || die "port must be a number: $PORT"
mkdir -p "$DATADIR"; DATADIR=$(readlink -f "$DATADIR")
if PID=$(running_broker "$DATADIR"); then
  log "kafka broker already running (pid $PID) on $DATADIR"
  info; exit 0
fi
check_port "$PORT"
fetch_noida
T0=$(now)
mkdir -p "$DATADIR/data"
# The binary prints a harmless "weak version GLIBC_2.39 not found" warning on Debian 12.
nohup "$NOIDA_BIN" start --only kafka --host 127.0.0.1 --kafka-port "$PORT" \
  --data-dir "$DATADIR/data" >>"$DATADIR/broker.log" 2>&1 </dev/null &
PID=$!
echo "$PID" >"$DATADIR/broker.pid"
deadline=$(( $(date +%s) + ${START_TIMEOUT:-30} ))
until kafka_ready "127.0.0.1:$PORT" 2>/dev/null; do
  if ! pid_alive "$PID"; then
    tail -20 "$DATADIR/broker.log" >&2 || true
    die "kafka broker exited during startup (see $DATADIR/broker.log)"
  fi
  if (( $(date +%s) > deadline )); then
    tail -20 "$DATADIR/broker.log" >&2 || true
    kill -KILL "$PID" 2>/dev/null || true
    die "timeout waiting for the kafka broker on port $PORT"
  fi
  sleep 0.05
done
log "kafka broker (noida-db) ready on 127.0.0.1:$PORT (pid $PID) in $(elapsed "$T0")s"
info
