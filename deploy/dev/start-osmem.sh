#!/usr/bin/env bash
# start-osmem.sh PORT DATADIR
# start-osmem.sh --fetch      (only download the server binary into the cache)
#
# Starts a private, throwaway server speaking the Elasticsearch / OpenSearch REST API on
# 127.0.0.1:PORT, with its pid file and log in DATADIR: osmem-server 0.1.6 (a Go binary
# shipped in a PyPI wheel; Elasticsearch and OpenSearch themselves need a JVM, which the
# test machines do not have). It implements index creation with mappings, `_bulk` with
# per-item statuses, `version_type=external` (an older or equal version answers 409, also
# after a delete), `_search`, `_count`, `_refresh`, and Elasticsearch-shaped errors. It
# keeps everything in memory: a restart loses the indices.
#
# The binary is downloaded once with `pip download` into $ROWSTREAM_CACHE/osmem-server-0.1.6/
# (see fetch_osmem). Idempotent: when a server already runs for DATADIR it only prints the
# info. Waits until `GET /` answers (START_TIMEOUT, 30 s).
# Prints sourceable KEY=VALUE info on stdout (URL, PORT, DATADIR, PID, LOG), progress on
# stderr. Stop it with stop-osmem.sh DATADIR.
# Env: PYTHON (python3).
source "$(dirname "$0")/lib.sh"

[[ $# -eq 2 || ${1:-} == --fetch ]] || die "usage: $0 PORT DATADIR | $0 --fetch"
PORT=${1:-}; DATADIR=${2:-}
PY=${PYTHON:-python3}
OSMEM_SPEC=osmem-server==0.1.6
OSMEM_BIN=$ROWSTREAM_CACHE/osmem-server-0.1.6/osmem-server

# fetch_osmem: pip download the wheel (no deps, binary only) and extract the binary, once.
fetch_osmem() {
  [[ -x $OSMEM_BIN ]] && return 0
  local dl=$ROWSTREAM_CACHE/wheels t; t=$(now)
  mkdir -p "$dl" "$(dirname "$OSMEM_BIN")"
  log "downloading $OSMEM_SPEC (PyPI wheel) into $ROWSTREAM_CACHE"
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$dl" "$OSMEM_SPEC" >&2 \
    || die "pip download $OSMEM_SPEC failed"
  local whl; whl=$(ls -t "$dl"/osmem_server-0.1.6-*.whl | head -1)
  "$PY" - "$whl" osmem_server/bin/osmem-server "$OSMEM_BIN" <<'PYEOF' || die "cannot extract osmem-server from $whl"
import sys, zipfile, shutil, os
whl, member, dest = sys.argv[1:4]
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(dest + ".tmp", "wb") as out:
    shutil.copyfileobj(src, out)
os.chmod(dest + ".tmp", 0o755)
os.replace(dest + ".tmp", dest)
PYEOF
  log "osmem-server ready in $(elapsed "$t")s: $OSMEM_BIN"
}

# running_server DATADIR -> the PID recorded in DATADIR, if that process still is its server.
running_server() {
  local d=$1 pid port
  [[ -f $d/osmem.pid && -f $d/port ]] || return 1
  pid=$(cat "$d/osmem.pid"); port=$(cat "$d/port")
  pid_alive "$pid" || return 1
  local cmd; cmd=" $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) "
  [[ $cmd == *" -addr 127.0.0.1:$port "* ]] || return 1
  echo "$pid"
}

info() {
  local kv
  for kv in "URL=http://127.0.0.1:$PORT" "HOST=127.0.0.1" "PORT=$PORT" "DATADIR=$DATADIR" "PID=$PID" \
            "LOG=$DATADIR/osmem.log"; do
    printf '%s=%q\n' "${kv%%=*}" "${kv#*=}"
  done
}

if [[ $PORT == --fetch ]]; then fetch_osmem; echo "OSMEM_BIN=$OSMEM_BIN"; exit 0; fi
[[ $PORT =~ ^[0-9]+$ ]] || die "port must be a number: $PORT"
mkdir -p "$DATADIR"; DATADIR=$(readlink -f "$DATADIR")
if PID=$(running_server "$DATADIR"); then
  log "osmem-server already running (pid $PID) for $DATADIR"
  info; exit 0
fi
check_port "$PORT"
fetch_osmem
T0=$(now)
echo "$PORT" >"$DATADIR/port"
# -no-stdin-watch: without it the server exits as soon as its stdin is closed.
(cd "$DATADIR" && exec nohup "$OSMEM_BIN" -addr "127.0.0.1:$PORT" -no-stdin-watch \
  >>"$DATADIR/osmem.log" 2>&1 </dev/null) &
PID=$!
echo "$PID" >"$DATADIR/osmem.pid"
deadline=$(( $(date +%s) + ${START_TIMEOUT:-30} ))
until curl -sf -o /dev/null "http://127.0.0.1:$PORT/" 2>/dev/null; do
  if ! pid_alive "$PID"; then
    tail -20 "$DATADIR/osmem.log" >&2 || true
    die "osmem-server exited during startup (see $DATADIR/osmem.log)"
  fi
  if (( $(date +%s) > deadline )); then
    tail -20 "$DATADIR/osmem.log" >&2 || true
    kill -KILL "$PID" 2>/dev/null || true
    die "timeout waiting for osmem-server on port $PORT"
  fi
  sleep 0.05
done
log "osmem-server ready on http://127.0.0.1:$PORT (pid $PID) in $(elapsed "$T0")s"
info
