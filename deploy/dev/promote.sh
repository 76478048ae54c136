#!/usr/bin/env bash
# promote.sh DATADIR
# Turns a replica (started by start-*.sh, set up by make-replica.sh) into a standalone
# primary: stops the receiver, waits (up to 30 s) until the applier has executed all
# it received, stops replication, forgets the source, makes the server writable.
# Prints its GTID position (MySQL @@gtid_executed / MariaDB @@gtid_binlog_pos) on stdout.
# To demote the old primary afterwards: make-replica.sh OLD_DATADIR NEW_PRIMARY_PORT.
source "$(dirname "$0")/lib.sh"
[[ $# -eq 1 ]] || die "usage: $0 DATADIR"
D=$(readlink -f "$1")
[[ -f $D/server.env ]] || die "$D: not a datadir of start-mariadb.sh / start-mysql.sh"
# shellcheck disable=SC1091
source "$D/server.env"
t=$(now)
if [[ $FLAVOR == mariadb ]]; then
  c() { mariadb --defaults-file="$D/client.cnf" -N -B "$@"; }
  c -e "STOP SLAVE IO_THREAD"
  IO=$(c -e "SHOW SLAVE STATUS\G" | awk '$1=="Gtid_IO_Pos:"{print $2}')
  if [[ -n $IO ]]; then
    r=$(c -e "SELECT MASTER_GTID_WAIT('$IO', 30)")
    [[ $r == 0 ]] || die "replica :$PORT did not apply its relay log up to '$IO' in 30 s"
  fi
  c -e "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only=0;"
  POS=$(c -e "SELECT @@gtid_binlog_pos")
else
  c() { "$DEV_SCRIPTS/mysql-tool.sh" mysql --defaults-file="$D/client.cnf" --get-server-public-key -N -B "$@"; }
  c -e "STOP REPLICA IO_THREAD"
  RX=$(c -e "SELECT REPLACE(IFNULL(GROUP_CONCAT(RECEIVED_TRANSACTION_SET), ''), '\n', '')
             FROM performance_schema.replication_connection_status")
  if [[ -n $RX ]]; then
    r=$(c -e "SELECT WAIT_FOR_EXECUTED_GTID_SET('$RX', 30)")
    [[ $r == 0 ]] || die "replica :$PORT did not apply its relay log up to '$RX' in 30 s"
  fi
  c -e "STOP REPLICA; RESET REPLICA ALL; SET GLOBAL super_read_only=0, read_only=0;"
  POS=$(c -e "SELECT REPLACE(@@gtid_executed, '\n', '')")
fi
log "promoted :$PORT in $(elapsed "$t")s; gtid position: '$POS'"
echo "$POS"
