#!/usr/bin/env bash
# make-replica.sh REPLICA_DATADIR PRIMARY_PORT
# Points a running server (started by start-mariadb.sh / start-mysql.sh) at the primary
# on 127.0.0.1:PRIMARY_PORT with GTID auto-positioning, starts replication and waits
# (up to 30 s) until the replica has applied everything the primary had at that moment.
#   MariaDB: CHANGE MASTER TO ... MASTER_USE_GTID=slave_pos
#   MySQL:   CHANGE REPLICATION SOURCE TO ... SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1
# Works for demoting an ex-primary too (its own writes are in its GTID position).
# promote.sh (same dir) turns a replica back into a primary.
source "$(dirname "$0")/lib.sh"
[[ $# -eq 2 ]] || die "usage: $0 REPLICA_DATADIR PRIMARY_PORT"
D=$(readlink -f "$1"); PPORT=$2
[[ -f $D/server.env ]] || die "$D: not a datadir of start-mariadb.sh / start-mysql.sh"
# shellcheck disable=SC1091
source "$D/server.env"
[[ $PPORT =~ ^[0-9]+$ ]] || die "primary port must be numeric: $PPORT"
t=$(now)
if [[ $FLAVOR == mariadb ]]; then
  c()  { mariadb --defaults-file="$D/client.cnf" -N -B "$@"; }
  pc() { mariadb --defaults-file="$D/client.cnf" -P"$PPORT" -N -B "$@"; }
  # log_slave_updates=ON: the binlog position covers everything applied plus own writes.
  c -e "STOP SLAVE; SET GLOBAL gtid_slave_pos = IF(@@gtid_binlog_pos='', @@gtid_slave_pos, @@gtid_binlog_pos)"
  c -e "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$PPORT,
      MASTER_USER='repl', MASTER_PASSWORD='$REPL_PW', MASTER_USE_GTID=slave_pos,
      MASTER_CONNECT_RETRY=1; START SLAVE;"
  P=$(pc -e "SELECT @@gtid_binlog_pos")
  [[ -z $P ]] || r=$(c -e "SELECT MASTER_GTID_WAIT('$P', 30)")
else
  c()  { "$DEV_SCRIPTS/mysql-tool.sh" mysql --defaults-file="$D/client.cnf" --get-server-public-key -N -B "$@"; }
  pc() { "$DEV_SCRIPTS/mysql-tool.sh" mysql --defaults-file="$D/client.cnf" -P"$PPORT" --get-server-public-key -N -B "$@"; }
  c -e "STOP REPLICA; CHANGE REPLICATION SOURCE TO SOURCE_HOST='127.0.0.1', SOURCE_PORT=$PPORT,
      SOURCE_USER='repl', SOURCE_PASSWORD='$REPL_PW', SOURCE_AUTO_POSITION=1,
      GET_SOURCE_PUBLIC_KEY=1, SOURCE_CONNECT_RETRY=1; START REPLICA;"
  P=$(pc -e "SELECT REPLACE(@@gtid_executed, '\n', '')")
  [[ -z $P ]] || r=$(c -e "SELECT WAIT_FOR_EXECUTED_GTID_SET('$P', 30)")
fi
[[ -z $P || $r == 0 ]] || die "replica :$PORT did not reach the primary's position '$P' (result $r)"
log "replica :$PORT follows :$PPORT (caught up to '$P') in $(elapsed "$t")s"
