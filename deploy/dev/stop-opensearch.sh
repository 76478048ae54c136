#!/usr/bin/env bash
# stop-opensearch.sh [--kill] [--purge] DATADIR [DATADIR...]
# Stops servers started by start-opensearch.sh.
#   default  SIGTERM, wait up to STOP_TIMEOUT (30 s), then SIGKILL.
#   --kill   SIGKILL right away; waits until gone.
#   --purge  delete DATADIR afterwards (implies --kill).
# Only signals the PID recorded in DATADIR, and only while that process still is the
# node of DATADIR (its command line names path.home=DATADIR). Idempotent.
source "$(dirname "$0")/lib.sh"

PURGE='' KILL=''
while [[ ${1:-} == --* ]]; do
  case $1 in
    --purge) PURGE=1; KILL=1 ;;
    --kill) KILL=1 ;;
    --) shift; break ;;
    *) die "unknown option $1" ;;
  esac; shift
done
[[ $# -ge 1 ]] || die "usage: $0 [--kill] [--purge] DATADIR..."

rc=0
for D in "$@"; do
  [[ -d $D ]] || { log "$D: no such dir (nothing to stop)"; continue; }
  D=$(readlink -f "$D")
  PID=''
  if [[ -f $D/opensearch.pid ]]; then
    p=$(cat "$D/opensearch.pid")
    cmd=" $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null || true) "
    if pid_alive "$p" && [[ $cmd == *" path.home=$D "* ]]; then PID=$p; fi
  fi
  if [[ -n $PID ]]; then
    t=$(now)
    if [[ -n $KILL ]]; then kill -KILL "$PID" 2>/dev/null || true; else kill -TERM "$PID" 2>/dev/null || true; fi
    if ! wait_pid_gone "$PID" "${STOP_TIMEOUT:-30}"; then
      log "$D: pid $PID did not stop in time, SIGKILL"; kill -KILL "$PID" 2>/dev/null || true
      wait_pid_gone "$PID" 10 || { log "$D: pid $PID still alive"; rc=1; }
    fi
    log "$D: stopped opensearch node pid $PID ($([[ -n $KILL ]] && echo SIGKILL || echo clean)) in $(elapsed "$t")s"
  elif [[ -f $D/opensearch.pid ]]; then
    log "$D: not running"
  fi
  rm -f "$D/opensearch.pid"
  if [[ -n $PURGE ]]; then rm -rf --one-file-system "$D"; log "$D: purged"; fi
done
exit $rc
