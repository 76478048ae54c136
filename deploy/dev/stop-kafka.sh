#!/usr/bin/env bash
# stop-kafka.sh [--kill] [--purge] DATADIR [DATADIR...]
# Stops brokers started by start-kafka.sh (a cluster's DATADIR: each of its node-* dirs).
#   default  SIGTERM, wait up to STOP_TIMEOUT (30 s), then SIGKILL.
#   --kill   SIGKILL right away (crash simulation); waits until gone.
#   --purge  delete DATADIR afterwards (implies --kill).
# Only signals the PID recorded in DATADIR, and only while that process still is the
# broker of DATADIR (its command line names DATADIR/server.properties). Idempotent.
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
  NODE_DIRS=("$D"/node-*)
  [[ -d ${NODE_DIRS[0]} ]] || NODE_DIRS=("$D")
  # A cluster's nodes are signalled together so a clean stop does not wait on lost quorum.
  JOBS=()
  for N in "${NODE_DIRS[@]}"; do
    stop_recorded "$N" broker.pid " $N/server.properties " "kafka broker" "$KILL" & JOBS+=($!)
  done
  for J in "${JOBS[@]}"; do wait "$J" || rc=1; done
  if [[ -n $PURGE ]]; then rm -rf --one-file-system "$D"; log "$D: purged"; fi
done
exit $rc
