#!/usr/bin/env bash
# Commit latency cost of rowstream as the semi-sync replica: single-row commits from one
# session on a private MariaDB primary (DURABLE=1: sync_binlog=1,
# innodb_flush_log_at_trx_commit=1; AFTER_SYNC, 60 s timeout), N commits per mode, in the
# same run, modes one after the other on the same servers:
#   - async:           semi-sync off on the primary (a native replica attached, async);
#   - rowstream:       semi-sync on, `rowstream run` with [source] semi_sync = true into the
#                      file backup (fsync on) the only acknowledging replica: it ACKs once
#                      the transaction is fsync'd in the backup and in checkpoint.json;
#   - replica-sync1:   semi-sync on, a native MariaDB replica acknowledging
#                      (rpl_semi_sync_slave_enabled=ON) with sync_relay_log=1;
#   - replica-default: the same replica with the default sync_relay_log=10000.
# Latency of each commit is measured inside the server (a stored procedure timing each
# INSERT with SYSDATE(6) into a temporary table, which is not binlogged), so no client
# round trip or process start is counted. Each semi-sync mode checks that the primary did
# not fall back to async meanwhile (Rpl_semi_sync_master_no_tx unchanged).
# Prints: mode, commits/s, p50 ms, p99 ms.
# Usage: benches/semisync.sh                 (release build; needs deploy/dev/install-test-deps.sh)
#        N=20000 PORT=3401 benches/semisync.sh
#        PROFILE=debug N=300 benches/semisync.sh   (a quick check that the script works)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-3401}
N=${N:-5000}
DIR=${BENCH_DIR:-target/bench-semisync}
PROFILE=${PROFILE:-release}
if [[ $PROFILE == release ]]; then cargo build --release --quiet; else cargo build --quiet; fi
BIN=target/$PROFILE/rowstream
RPORT=$((PORT+1))

cleanup() {
  [[ -n ${RS_PID:-} ]] && kill "$RS_PID" 2>/dev/null || true
  deploy/dev/stop.sh "$DIR/primary" >/dev/null 2>&1 || true
  deploy/dev/stop.sh "$DIR/replica" >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup
rm -rf "$DIR"; mkdir -p "$DIR"
DURABLE=1 deploy/dev/start-mariadb.sh "$PORT" "$DIR/primary" -- \
  --rpl-semi-sync-master-wait-point=AFTER_SYNC --rpl-semi-sync-master-timeout=60000 >/dev/null
DURABLE=1 deploy/dev/start-mariadb.sh "$RPORT" "$DIR/replica" >/dev/null
P=(mariadb --defaults-file="$DIR/primary/client.cnf" -N -B)
R=(mariadb --defaults-file="$DIR/replica/client.cnf" -N -B)
"${P[@]}" <<'SQL'
CREATE DATABASE bench;
CREATE TABLE bench.t (id BIGINT AUTO_INCREMENT PRIMARY KEY, v INT NOT NULL);
DELIMITER //
CREATE PROCEDURE bench.commits(n INT)
BEGIN
  DECLARE i INT DEFAULT 0;
  DECLARE t0 DECIMAL(20,6);
  WHILE i < n DO
    SET t0 = UNIX_TIMESTAMP(SYSDATE(6));
    INSERT INTO bench.t (v) VALUES (i);
    INSERT INTO lat VALUES ((UNIX_TIMESTAMP(SYSDATE(6)) - t0) * 1000000);
    SET i = i + 1;
  END WHILE;
END//
DELIMITER ;
SQL
deploy/dev/make-replica.sh "$DIR/replica" "$PORT" >/dev/null

status() { "${P[@]}" -e "SHOW GLOBAL STATUS LIKE '$1'" | awk '{print $2}'; }
wait_clients() {
  local want=$1 t=0
  until [[ $(status Rpl_semi_sync_master_clients) == "$want" ]]; do
    sleep 0.1; t=$((t+1))
    [[ $t -lt 300 ]] || { echo "semi-sync clients never reached $want" >&2; "${P[@]}" -e "SHOW PROCESSLIST; SHOW GLOBAL STATUS LIKE 'Rpl_semi%'" >&2; exit 1; }
  done
}

# Runs N commits; prints "commits/s p50_ms p99_ms".
measure() {
  local t0 t1 lat
  t0=$(date +%s.%N)
  lat=$("${P[@]}" bench -e "CREATE TEMPORARY TABLE lat (us BIGINT) ENGINE=MEMORY; CALL bench.commits($N); SELECT us FROM lat ORDER BY us;") || return 1
  t1=$(date +%s.%N)
  awk -v n="$N" -v t0="$t0" -v t1="$t1" '{a[NR]=$1} END {
    p50=a[int(NR*0.50)>0?int(NR*0.50):1]; p99=a[int(NR*0.99)>0?int(NR*0.99):1];
    printf "%.0f %.2f %.2f\n", n/(t1-t0), p50/1000, p99/1000 }' <<<"$lat"
}

row() {
  local mode=$1 before after r
  before=$(status Rpl_semi_sync_master_no_tx)
  r=$(measure) || exit 1
  after=$(status Rpl_semi_sync_master_no_tx)
  if [[ $mode != async && $after != "$before" ]]; then
    echo "$mode: the primary fell back to async ($before -> $after commits not acknowledged)" >&2
    exit 1
  fi
  printf '%-16s %10s %8s %8s\n' "$mode" $r
}

printf '%-16s %10s %8s %8s\n' mode commits/s p50_ms p99_ms

"${P[@]}" -e "SET GLOBAL rpl_semi_sync_master_enabled = OFF"
row async

"${P[@]}" -e "SET GLOBAL rpl_semi_sync_master_enabled = ON"
mkdir -p "$DIR/rs"
cat >"$DIR/rs/rowstream.toml" <<TOML
[source]
url = "mysql://repl:repl@127.0.0.1:$PORT"
server_id = 9301
name = "bench"
semi_sync = true
[checkpoint]
dir = "$DIR/rs/checkpoint"
[[sinks]]
type = "file"
name = "backup"
dir = "$DIR/rs/backup"
TOML
"$BIN" run --config "$DIR/rs/rowstream.toml" 2>"$DIR/rs/err.log" &
RS_PID=$!
wait_clients 1
row rowstream
kill -TERM "$RS_PID"; wait "$RS_PID" || true; RS_PID=
# (MariaDB 10.11 may keep counting a killed semi-sync client in
# Rpl_semi_sync_master_clients: the replica's own ACK counter is checked instead.)

"${R[@]}" -e "SET GLOBAL rpl_semi_sync_slave_enabled = ON, sync_relay_log = 1; STOP SLAVE IO_THREAD; START SLAVE IO_THREAD"
sleep 1
acks() { "${R[@]}" -e "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_slave_send_ack'" | awk '{print $2}'; }
replica_row() {
  local a0 a1
  a0=$(acks); row "$1"; a1=$(acks)
  [[ $((a1 - a0)) -ge $N ]] || { echo "$1: the replica acknowledged only $((a1 - a0)) of $N commits" >&2; exit 1; }
}
replica_row replica-sync1
"${R[@]}" -e "SET GLOBAL sync_relay_log = 10000"
replica_row replica-default
