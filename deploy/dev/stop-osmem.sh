#!/usr/bin/env bash
# stop-osmem.sh [--kill] [--purge] DATADIR [DATADIR...]
# Stops servers started by start-osmem.sh.
#   default  SIGTERM, wait up to STOP_TIMEOUT (30 s), then SIGKILL.
#   --kill   SIGKILL right away; waits until gone.
#   --purge  delete DATADIR afterwards (implies --kill).
# Only signals the PID recorded in DATADIR, and only while that process still is the
# server of DATADIR (its command line names the port recorded there). Idempotent.
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
  if [[ -f $D/osmem.pid && -f $D/port ]]; then
    p=$(cat "$D/osmem.pid"); port=$(cat "$D/port")
    cmd=" $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null || true) "
    if pid_alive "$p" && [[ $cmd == *" -addr 127.0.0.1:$port "* ]]; then PID=$p; fi
  fi
  if [[ -n $PID ]]; then
    t=$(now)
    if [[ -n $KILL ]]; then kill -KILL "$PID" 2>/dev/null || true; else kill -TERM "$PID" 2>/dev/null || true; fi
    if ! wait_pid_gone "$PID" "${STOP_TIMEOUT:-30}"; then
      log "$D: pid $PID did not stop in time, SIGKILL"; kill -KILL "$PID" 2>/dev/null || true
      wait_pid_gone "$PID" 10 || { log "$D: pid $PID still alive"; rc=1; }
    fi
    log "$D: stopped osmem-server pid $PID ($([[ -n $KILL ]] && echo SIGKILL || echo clean)) in $(elapsed "$t")s"
  elif [[ -f $D/osmem.pid ]]; then
    log "$D: not running"
  fi
  rm -f "$D/osmem.pid"
  if [[ -n $PURGE ]]; then rm -rf --one-file-system "$D"; log "$D: purged"; fi
done
exit $rc
