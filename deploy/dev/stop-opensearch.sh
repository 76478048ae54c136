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
  stop_recorded "$D" opensearch.pid " path.home=$D " "opensearch node" "$KILL" || rc=1
  if [[ -n $PURGE ]]; then rm -rf --one-file-system "$D"; log "$D: purged"; fi
done
exit $rc
