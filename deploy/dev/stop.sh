#!/usr/bin/env bash
# stop.sh [--kill] [--purge] DATADIR [DATADIR...]
# Stops servers started by start-mariadb.sh / start-mysql.sh (either flavour).
#   default  clean shutdown: on MySQL first kill lingering "Binlog Dump" threads (MySQL
#            keeps the dump thread of a vanished replica alive and then needs ~10 s to shut
#            down), SIGTERM, wait up to STOP_TIMEOUT (60 s), then SIGKILL.
#   --kill   SIGKILL right away (crash simulation, fastest teardown); waits until gone.
#   --purge  delete DATADIR afterwards (implies --kill unless CLEAN_STOP=1).
# Only signals the PID recorded in DATADIR, and only while that process still is the
# server of DATADIR (its command line names DATADIR). Idempotent: stopping a stopped
# server, or a DATADIR that does not exist, is fine.
source "$(dirname "$0")/lib.sh"

PURGE='' KILL=''
while [[ ${1:-} == --* ]]; do
  case $1 in
    --purge) PURGE=1; [[ -z ${CLEAN_STOP:-} ]] && KILL=1 ;;
    --kill) KILL=1 ;;
    --) shift; break ;;
    *) die "unknown option $1" ;;
  esac; shift
done
[[ $# -ge 1 ]] || die "usage: $0 [--kill] [--purge] DATADIR..."

kill_dump_threads() {   # best effort, MySQL only
  local ids i
  ids=$(timeout 5 "$DEV_SCRIPTS/mysql-tool.sh" mysql --defaults-file="$1/client.cnf" --connect-timeout=2 \
        --get-server-public-key -N -B -e "SELECT GROUP_CONCAT(id) FROM information_schema.processlist
        WHERE command LIKE 'Binlog Dump%'" 2>/dev/null) || return 0
  for i in ${ids//,/ }; do
    [[ $i =~ ^[0-9]+$ ]] && timeout 5 "$DEV_SCRIPTS/mysql-tool.sh" mysql --defaults-file="$1/client.cnf" \
      --get-server-public-key -e "KILL $i" >/dev/null 2>&1 || true
  done
}

rc=0
for D in "$@"; do
  [[ -d $D ]] || { log "$D: no such dir (nothing to stop)"; continue; }
  D=$(readlink -f "$D")
  FLAVOR='?'
  # shellcheck disable=SC1091
  [[ -f $D/server.env ]] && source "$D/server.env"
  if PID=$(running_server "$D"); then
    t=$(now)
    if [[ -n $KILL ]]; then
      kill -KILL "$PID" 2>/dev/null || true
    else
      [[ $FLAVOR == mysql ]] && kill_dump_threads "$D"
      kill -TERM "$PID" 2>/dev/null || true
    fi
    if ! wait_pid_gone "$PID" "${STOP_TIMEOUT:-60}"; then
      log "$D: pid $PID did not stop in time, SIGKILL"; kill -KILL "$PID" 2>/dev/null || true
      wait_pid_gone "$PID" 10 || { log "$D: pid $PID still alive"; rc=1; }
    fi
    log "$D: stopped $FLAVOR pid $PID ($([[ -n $KILL ]] && echo SIGKILL || echo clean)) in $(elapsed "$t")s"
  elif [[ -f $D/server.pid ]]; then
    log "$D: not running"
  fi
  rm -f "$D/server.pid"
  # a fallback socket outside DATADIR (see socket_path) is removed with the server's data
  if [[ -n $PURGE ]]; then
    S=$(socket_path "$D"); [[ $S == /tmp/* ]] && rm -f "$S" "$S.lock"
    rm -rf --one-file-system "$D"; log "$D: purged"
  fi
done
exit $rc
