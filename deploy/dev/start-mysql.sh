#!/usr/bin/env bash
# start-mysql.sh PORT DATADIR [SERVER_ID] [-- extra mysqld args...]
#
# Starts a private, throwaway Oracle MySQL 9.7 (Debian sid's build, extracted by
# setup-mysql.sh, which this script runs when needed; no root needed) on 127.0.0.1:PORT.
# Configured as a CDC source: binlog on, ROW format, FULL row image, FULL row metadata,
# gtid_mode=ON + enforce_gtid_consistency, log_replica_updates, X plugin off, semi-sync
# plugins loaded (off unless SEMI_SYNC=1). SERVER_ID defaults to PORT. Extra args after
# `--` are appended to mysqld's; e.g. the compressed / partial-JSON binlog variants:
#   -- --binlog-transaction-compression=ON --binlog-row-value-options=PARTIAL_JSON
# (both are OFF by default here).
#
# DATADIR layout: db/ (mysqld's datadir) tmp/ files/ (secure_file_priv) error.log
#                 server.pid server.env client.cnf
# Accounts (made by --initialize, never binlogged, so a fresh server's gtid_executed is
# empty; auth plugin caching_sha2_password, the only one in 9.x):
#   root@% / root@localhost  password $DB_ROOT_PASSWORD (root), all privileges
#   repl@%  password $DB_REPL_PASSWORD (repl): REPLICATION SLAVE, REPLICATION CLIENT,
#           SELECT, RELOAD, SHOW DATABASES
# Fresh datadirs are copies of a template made once by `mysqld --initialize-insecure`
# and cached in $ROWSTREAM_CACHE, minus auto.cnf so every copy gets its own server_uuid.
# An existing, stopped DATADIR is restarted with its data. Idempotent: when a server
# already runs on DATADIR it only prints the info. Prints sourceable KEY=VALUE info on
# stdout (see lib.sh print_info, plus SERVER_UUID), progress on stderr.
# Env: SEMI_SYNC=1, DURABLE=1 (see start-mariadb.sh), START_TIMEOUT (90 s).
source "$(dirname "$0")/lib.sh"

[[ $# -ge 2 ]] || die "usage: $0 PORT DATADIR [SERVER_ID] [-- mysqld args]"
FLAVOR=mysql
PORT=$1; DATADIR=$2; shift 2
SERVER_ID=$PORT
if [[ $# -gt 0 && $1 != -- ]]; then SERVER_ID=$1; shift; fi
[[ ${1:-} == -- ]] && shift
EXTRA=("$@")

"$DEV_SCRIPTS/setup-mysql.sh" >/dev/null
X=$ROWSTREAM_MYSQL_ROOT
mkdir -p "$DATADIR"; DATADIR=$(readlink -f "$DATADIR")
SOCK=$(socket_path "$DATADIR")
VERSION=$(mysql_tool mysqld --version | awk '{print $3}')
mysql_tool_cmd mysqld; MYSQLD=("${TOOL_CMD[@]}")
BASE=(--no-defaults --basedir="$X/usr" --plugin-dir="$X/usr/lib/mysql/plugin"
      --lc-messages-dir="$X/usr/share/mysql" --character-sets-dir="$X/usr/share/mysql/charsets"
      --user="$(id -un)")
REDO=(--innodb-redo-log-capacity=32M)

server_info() {
  print_info
  printf 'SERVER_UUID=%q\n' "$(sed -n 's/^server-uuid=//p' "$DATADIR/db/auto.cnf" 2>/dev/null)"
}
if PID=$(running_server "$DATADIR"); then
  log "mysql already running (pid $PID) on $DATADIR"
  # shellcheck disable=SC1091
  source "$DATADIR/server.env"
  server_info; exit 0
fi
check_port "$PORT"
T0=$(now)
mkdir -p "$DATADIR/tmp" "$DATADIR/files"; chmod 750 "$DATADIR/files"

if [[ ! -d $DATADIR/db/mysql ]]; then
  INIT_SQL="SET SESSION sql_log_bin=0;
CREATE USER 'root'@'%' IDENTIFIED BY '$ROOT_PW';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;
ALTER USER 'root'@'localhost' IDENTIFIED BY '$ROOT_PW';
CREATE USER 'repl'@'%' IDENTIFIED BY '$REPL_PW';
GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT, RELOAD, SHOW DATABASES ON *.* TO 'repl'@'%';"
  TPL=$ROWSTREAM_CACHE/mysql-template-$VERSION-$(printf '%s' "$INIT_SQL" | md5sum | cut -c1-10)
  (
    flock 8
    if [[ ! -f $TPL/.ready ]]; then
      t=$(now); rm -rf --one-file-system "$TPL" "$TPL.tmp"; mkdir -p "$TPL.tmp"
      printf '%s\n' "$INIT_SQL" >"$TPL.tmp/init.sql"
      "${MYSQLD[@]}" "${BASE[@]}" --initialize-insecure \
        --datadir="$TPL.tmp/db" --init-file="$TPL.tmp/init.sql" --log-error="$TPL.tmp/init.log" \
        --secure-file-priv= "${REDO[@]}" \
        || { cat "$TPL.tmp/init.log" >&2; die "mysqld --initialize-insecure failed"; }
      rm -f "$TPL.tmp/init.sql" "$TPL.tmp/db/auto.cnf"
      touch "$TPL.tmp/.ready"; mv "$TPL.tmp" "$TPL"
      log "mysql template created by mysqld --initialize in $(elapsed "$t")s: $TPL"
    fi
  ) 8>"$ROWSTREAM_CACHE/.mysql-template.lock"
  cp -a --reflink=auto "$TPL/db" "$DATADIR/db"
fi

if [[ -n ${DURABLE:-} ]]; then DUR=(--sync-binlog=1 --innodb-flush-log-at-trx-commit=1)
else DUR=(--sync-binlog=0 --innodb-flush-log-at-trx-commit=2 --innodb-doublewrite=OFF); fi
SEMI=$([[ -n ${SEMI_SYNC:-} ]] && echo ON || echo OFF)
ARGS=(
  "${BASE[@]}"
  --datadir="$DATADIR/db" --tmpdir="$DATADIR/tmp" --secure-file-priv="$DATADIR/files"
  --socket="$SOCK" --pid-file="$DATADIR/mysqld.pid" --log-error="$DATADIR/error.log"
  --port="$PORT" --bind-address=127.0.0.1 --mysqlx=OFF
  --skip-name-resolve
  --server-id="$SERVER_ID"
  --log-bin=mysql-bin --relay-log=relay-bin
  --gtid-mode=ON --enforce-gtid-consistency=ON
  --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL
  --binlog-transaction-compression=OFF --binlog-row-value-options=
  --log-replica-updates=ON
  --plugin-load-add=semisync_source.so --plugin-load-add=semisync_replica.so
  --rpl-semi-sync-source-enabled="$SEMI" --rpl-semi-sync-replica-enabled="$SEMI"
  --innodb-buffer-pool-size=128M "${REDO[@]}"
  "${DUR[@]}"
  "${EXTRA[@]}"
)
printf 'FLAVOR=mysql\nPORT=%s\nSOCK=%q\nSERVER_ID=%s\n' "$PORT" "$SOCK" "$SERVER_ID" >"$DATADIR/server.env"
write_client_cnf "$DATADIR" "$PORT"
# No server runs on DATADIR (checked above): a socket lock left by a killed mysqld names
# its PID, which mysqld believes alive while it is an unreaped zombie -> remove it.
rm -f "$DATADIR/mysqld.pid" "$SOCK" "$SOCK.lock"

t=$(now)
# setsid + nohup: detached from the caller's session; in a script setsid does not fork
# and ld.so execs nothing, so $! is mysqld itself.
setsid nohup "${MYSQLD[@]}" "${ARGS[@]}" </dev/null >>"$DATADIR/stdout.log" 2>&1 &
PID=$!
echo "$PID" >"$DATADIR/server.pid"
# Ready = mysqladmin ping over TCP succeeds (TLS is on by default, self-signed).
wait_ready "$PID" "${START_TIMEOUT:-90}" \
  mysql_tool mysqladmin --defaults-file="$DATADIR/client.cnf" --connect-timeout=1 --get-server-public-key ping
log "mysql $VERSION ready on 127.0.0.1:$PORT, pid $PID (server start $(elapsed "$t")s, total $(elapsed "$T0")s)"
server_info
