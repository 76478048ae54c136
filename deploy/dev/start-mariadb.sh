#!/usr/bin/env bash
# start-mariadb.sh PORT DATADIR [SERVER_ID] [-- extra mariadbd args...]
#
# Starts a private, throwaway MariaDB (the host's mariadbd; Debian 12: 10.11) on
# 127.0.0.1:PORT with its data in DATADIR. The system service is neither needed nor used.
# Configured as a CDC source: binlog on, ROW format, FULL row image, FULL row metadata,
# GTID strict mode, log_slave_updates (so a replica can be promoted), semi-sync built in.
# SERVER_ID defaults to PORT. Extra args after `--` are appended to mariadbd's.
#
# Accounts, created with sql_log_bin=0 so a fresh server's GTID position is empty:
#   root@%  / root@localhost  password $DB_ROOT_PASSWORD (root), all privileges
#   repl@%  password $DB_REPL_PASSWORD (repl): REPLICATION SLAVE, REPLICATION CLIENT
#           (= BINLOG MONITOR), REPLICA MONITOR, REPLICATION MASTER ADMIN, SELECT,
#           RELOAD, SHOW DATABASES
#
# Fresh datadirs are copies of a template made once by mariadb-install-db and cached in
# $ROWSTREAM_CACHE (a warm start takes well under a second). An existing, stopped DATADIR
# is restarted with its data. Idempotent: when a server already runs on DATADIR it only
# prints the info. Prints sourceable KEY=VALUE info on stdout (see lib.sh print_info),
# progress on stderr.
# Env: GTID_DOMAIN_ID (0), SEMI_SYNC=1 (rpl_semi_sync_master_enabled=ON at boot),
#      DURABLE=1 (sync_binlog=1, innodb_flush_log_at_trx_commit=1; default: fast, which
#      survives a killed server but not a killed machine), START_TIMEOUT (60 s), MARIADBD.
source "$(dirname "$0")/lib.sh"

[[ $# -ge 2 ]] || die "usage: $0 PORT DATADIR [SERVER_ID] [-- mariadbd args]"
FLAVOR=mariadb
PORT=$1; DATADIR=$2; shift 2
SERVER_ID=$PORT
if [[ $# -gt 0 && $1 != -- ]]; then SERVER_ID=$1; shift; fi
[[ ${1:-} == -- ]] && shift
EXTRA=("$@")

MARIADBD=${MARIADBD:-$(command -v mariadbd || echo /usr/sbin/mariadbd)}
[[ -x $MARIADBD ]] || die "mariadbd not found: run deploy/dev/install-test-deps.sh"
for t in mariadb-install-db mariadb-admin mariadb; do
  command -v "$t" >/dev/null || die "$t not found: run deploy/dev/install-test-deps.sh"
done
mkdir -p "$DATADIR"; DATADIR=$(readlink -f "$DATADIR")
SOCK=$(socket_path "$DATADIR")
VERSION=$("$MARIADBD" --version | awk '{print $3}')

if PID=$(running_server "$DATADIR"); then
  log "mariadb already running (pid $PID) on $DATADIR"
  # shellcheck disable=SC1091
  source "$DATADIR/server.env"
  print_info; exit 0
fi
check_port "$PORT"
T0=$(now)

if [[ ! -d $DATADIR/mysql ]]; then
  BOOT_SQL="FLUSH PRIVILEGES;
SET SESSION sql_log_bin=0;
CREATE OR REPLACE USER 'root'@'%' IDENTIFIED BY '$ROOT_PW';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;
ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('$ROOT_PW') OR unix_socket;
CREATE OR REPLACE USER 'repl'@'%' IDENTIFIED BY '$REPL_PW';
GRANT REPLICATION SLAVE, REPLICATION CLIENT, REPLICA MONITOR, REPLICATION MASTER ADMIN, SELECT, RELOAD, SHOW DATABASES ON *.* TO 'repl'@'%';"
  TPL=$ROWSTREAM_CACHE/mariadb-template-$VERSION-$(printf '%s' "$BOOT_SQL" | md5sum | cut -c1-10)
  mkdir -p "$ROWSTREAM_CACHE"
  (
    flock 8
    if [[ ! -f $TPL/.ready ]]; then
      t=$(now); rm -rf --one-file-system "$TPL" "$TPL.tmp"; mkdir -p "$TPL.tmp"
      printf '%s\n' "$BOOT_SQL" >"$TPL.boot.sql"
      mariadb-install-db --no-defaults --user="$(id -un)" --datadir="$TPL.tmp" \
        --auth-root-authentication-method=socket --skip-test-db --skip-name-resolve \
        --innodb-log-file-size=16M --extra-file="$TPL.boot.sql" >"$TPL.install.log" 2>&1 \
        || { cat "$TPL.install.log" >&2; die "mariadb-install-db failed"; }
      rm -f "$TPL.boot.sql" "$TPL.install.log"
      touch "$TPL.tmp/.ready"; mv "$TPL.tmp" "$TPL"
      log "mariadb template created by mariadb-install-db in $(elapsed "$t")s: $TPL"
    fi
  ) 8>"$ROWSTREAM_CACHE/.mariadb-template.lock"
  cp -a --reflink=auto "$TPL/." "$DATADIR/"; rm -f "$DATADIR/.ready"
fi

if [[ -n ${DURABLE:-} ]]; then DUR=(--sync-binlog=1 --innodb-flush-log-at-trx-commit=1)
else DUR=(--sync-binlog=0 --innodb-flush-log-at-trx-commit=2 --innodb-doublewrite=0); fi
ARGS=(
  --no-defaults
  --user="$(id -un)"
  --datadir="$DATADIR"
  --port="$PORT" --bind-address=127.0.0.1
  --socket="$SOCK" --pid-file="$DATADIR/mysqld.pid"
  --log-error="$DATADIR/error.log"
  --skip-name-resolve
  --server-id="$SERVER_ID"
  --log-bin="$DATADIR/mysql-bin" --log-bin-index="$DATADIR/mysql-bin.index"
  --relay-log="$DATADIR/relay-bin"
  --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL
  --log-slave-updates=ON
  --gtid-strict-mode=ON --gtid-domain-id="${GTID_DOMAIN_ID:-0}"
  --rpl-semi-sync-master-enabled="$([[ -n ${SEMI_SYNC:-} ]] && echo ON || echo OFF)"
  --rpl-semi-sync-slave-enabled=ON
  --innodb-buffer-pool-size=128M --innodb-log-file-size=16M
  "${DUR[@]}"
  --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci
  "${EXTRA[@]}"
)
printf 'FLAVOR=mariadb\nPORT=%s\nSOCK=%q\nSERVER_ID=%s\n' "$PORT" "$SOCK" "$SERVER_ID" >"$DATADIR/server.env"
write_client_cnf "$DATADIR" "$PORT"

t=$(now)
# setsid + nohup: detached from the caller's session; in a script setsid does not fork,
# so $! is mariadbd itself.
setsid nohup "$MARIADBD" "${ARGS[@]}" </dev/null >>"$DATADIR/stdout.log" 2>&1 &
PID=$!
echo "$PID" >"$DATADIR/server.pid"
wait_ready "$PID" "${START_TIMEOUT:-60}" \
  mariadb-admin --defaults-file="$DATADIR/client.cnf" --connect-timeout=1 ping
log "mariadb $VERSION ready on 127.0.0.1:$PORT, pid $PID (server start $(elapsed "$t")s, total $(elapsed "$T0")s)"
print_info
