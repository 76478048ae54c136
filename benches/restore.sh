#!/usr/bin/env bash
# Restore benchmark: the bench-peers workload (1000 transactions x 1000-row
# INSERT, then one UPDATE of all 1,000,000 rows = 2,000,000 row changes,
# 8 mixed columns), captured once by `rowstream run` into a file backup that
# starts with a snapshot of the (empty) table, then applied to a fresh, empty
# MariaDB by, in the same run and alternating:
#   - rowstream-restore: `rowstream restore --threads $THREADS` of that backup,
#   - binlog-pipe: `mariadb-binlog <source binlog> | mariadb` (the serial
#     replay people use today),
#   - native-replica: a MariaDB replica of the source from an empty position
#     with slave_parallel_threads=4 (slave_parallel_mode=optimistic), timed
#     from START SLAVE until it holds the source's last GTID.
# Every run checks the target's row count and checksum against the source.
# Reported per reader (medians over RUNS, default 3): wall seconds, rows/s, the
# client's CPU seconds and peak RSS (rowstream; mariadb-binlog + mariadb), the
# target server's CPU seconds, and the ratios to rowstream.
# Usage: benches/restore.sh            (needs deploy/dev/install-test-deps.sh done)
#        PORT=3491 RUNS=5 THREADS=4 benches/restore.sh
#        READERS="rowstream-restore native-replica" benches/restore.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-3491}
TPORT=${TPORT:-$((PORT+1))}
RUNS=${RUNS:-3}
THREADS=${THREADS:-4}
DIR=${BENCH_DIR:-target/bench-restore}
NTX=${NTX:-1000}
ROWS=${ROWS:-1000}
mkdir -p "$DIR"
cargo build --release --quiet
BIN=target/release/rowstream
BIN=$(readlink -f "$BIN")

SERVER_ENV=$(deploy/dev/start-mariadb.sh "$PORT" "$DIR/src" -- --max-binlog-size=1G --max-allowed-packet=256M)  # a failed start stops the script; inside eval it would not
eval "$SERVER_ENV"
SRC_DATADIR=$DATADIR
trap 'deploy/dev/stop.sh "$DIR/src" >/dev/null 2>&1 || true; deploy/dev/stop.sh --purge "$DIR/target" >/dev/null 2>&1 || true' EXIT
SQLC=(mariadb --no-defaults -h127.0.0.1 -P"$PORT" -uroot -proot)
TSQL=(mariadb --no-defaults -h127.0.0.1 -P"$TPORT" -uroot -proot)

# The source data and its backup, made once (kept in $DIR across script runs).
if [[ ! -f $DIR/backup.env ]]; then
  rm -rf "$DIR/service"; mkdir -p "$DIR/service"
  "${SQLC[@]}" -e "CREATE DATABASE IF NOT EXISTS bench;
  CREATE TABLE bench.t (id BIGINT NOT NULL PRIMARY KEY, a INT NOT NULL, b VARCHAR(64) CHARACTER SET utf8mb4 NOT NULL,
    c DECIMAL(12,2) NOT NULL, d DATETIME(6) NOT NULL, e DOUBLE NOT NULL, f TEXT CHARACTER SET utf8mb4 NULL,
    g TINYINT UNSIGNED NOT NULL) ENGINE=InnoDB;"
  cat >"$DIR/service/rowstream.toml" <<TOML
[source]
url = "mysql://repl:repl@127.0.0.1:$PORT"
server_id = 9202
name = "bench"
[checkpoint]
dir = "$DIR/service/checkpoint"
[[sinks]]
type = "file"
name = "backup"
dir = "$DIR/service/backup"
TOML
  "$BIN" run --config "$DIR/service/rowstream.toml" 2>"$DIR/service/err.log" &
  pid=$!
  until grep -q '"gtid_set"' "$DIR/service/checkpoint/checkpoint.json" 2>/dev/null \
      && ! grep -q '"snapshot"' "$DIR/service/checkpoint/checkpoint.json"; do
    kill -0 $pid 2>/dev/null || { cat "$DIR/service/err.log" >&2; exit 1; }
    sleep 0.1
  done
  {
    echo "USE bench;"
    for ((t=1; t<=NTX; t++)); do
      echo "INSERT INTO bench.t SELECT ($t-1)*$ROWS+seq, CAST(seq AS SIGNED)*7-3500, CONCAT('name-',seq,'-',$t), seq*1.25, TIMESTAMP'2024-01-01 00:00:00.123456' + INTERVAL seq SECOND, seq/3.0, IF(seq%10=0, NULL, REPEAT('x', seq%50)), seq%256 FROM seq_1_to_$ROWS;"
    done
    echo "UPDATE bench.t SET a=a+1, b=CONCAT(b,'-u'), e=e*2;"
  } | "${SQLC[@]}"
  END=$("${SQLC[@]}" -N -e 'SELECT @@gtid_binlog_pos')
  until grep -q "\"gtid_set\":\"$END\"" "$DIR/service/checkpoint/checkpoint.json" 2>/dev/null; do
    kill -0 $pid 2>/dev/null || { cat "$DIR/service/err.log" >&2; exit 1; }
    sleep 0.2
  done
  kill -TERM $pid; wait $pid || true
  CHECKSUM=$("${SQLC[@]}" -N -e 'CHECKSUM TABLE bench.t' | awk '{print $2}')
  printf 'END=%s\nCHECKSUM=%s\n' "$END" "$CHECKSUM" >"$DIR/backup.env"
fi
source "$DIR/backup.env"
BINLOGS=$(ls "$SRC_DATADIR"/mysql-bin.[0-9]* | tr "\n" " ")
EXPECTED=$((NTX*ROWS*2))

fresh_target() {
  deploy/dev/stop.sh --purge "$DIR/target" >/dev/null 2>&1 || true
  TARGET_PID=$(deploy/dev/start-mariadb.sh "$TPORT" "$DIR/target" -- --max-allowed-packet=256M \
    --slave-parallel-threads=4 --slave-parallel-mode=optimistic | sed -n 's/^PID=//p')
}
cpu_of() { awk '{print ($14+$15)/100}' "/proc/$1/stat"; }
check_target() {
  local sum
  sum=$("${TSQL[@]}" -N -e 'CHECKSUM TABLE bench.t' | awk '{print $2}')
  [[ $sum == "$CHECKSUM" ]] || { echo "$1: target checksum $sum, source $CHECKSUM" >&2; exit 1; }
}

# run_reader NAME OUT: one timed run into a fresh target; writes "wall client_cpu rss server_cpu".
run_reader() {
  local name=$1 out=$2 t0 t1 s0 s1
  fresh_target
  s0=$(cpu_of "$TARGET_PID")
  t0=$(date +%s.%N)
  case $name in
    rowstream-restore)
      /usr/bin/time -f '%U %S %M' -o "$out.time" "$BIN" restore --backup "$DIR/service/backup" \
        --url "mysql://root:root@127.0.0.1:$TPORT" --threads "$THREADS" 2>"$out.log" ;;
    binlog-pipe)
      # shellcheck disable=SC2086
      /usr/bin/time -f '%U %S %M' -o "$out.time" bash -c \
        "mariadb-binlog $BINLOGS | mariadb --no-defaults -h127.0.0.1 -P$TPORT -uroot -proot --max-allowed-packet=256M" \
        2>"$out.log" ;;
    native-replica)
      "${TSQL[@]}" -e "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$PORT, MASTER_USER='repl',
        MASTER_PASSWORD='repl', MASTER_USE_GTID=slave_pos; SET GLOBAL gtid_slave_pos=''; START SLAVE;"
      "${TSQL[@]}" -N -e "SELECT MASTER_GTID_WAIT('$END', 3600)" >"$out.log"
      echo "0 0 0" >"$out.time" ;;
  esac
  t1=$(date +%s.%N)
  s1=$(cpu_of "$TARGET_PID")
  check_target "$name"
  read -r u s m <"$out.time"
  echo "$t1 $t0 $u $s $m $s1 $s0" | awk '{printf "%.2f %.2f %d %.2f\n", $1-$2, $3+$4, $5/1024, $6-$7}' >"$out"
}

ORDER=(rowstream-restore binlog-pipe native-replica)
[[ -z ${READERS:-} ]] || read -ra ORDER <<<"$READERS"
for ((r=1; r<=RUNS; r++)); do
  for name in "${ORDER[@]}"; do
    run_reader "$name" "$DIR/$name.$r"
    echo "run $r $name: $(cat "$DIR/$name.$r") (wall s, client cpu s, client peak RSS MB, target server cpu s)" >&2
  done
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
col() { for ((r=1; r<=RUNS; r++)); do awk -v c="$2" '{print $c}' "$DIR/$1.$r"; done | median; }
base=$(col rowstream-restore 1 2>/dev/null || echo 0)
printf '| reader | wall s | rows/s | client CPU s | client peak RSS MB | target server CPU s | wall vs rowstream |\n'
printf '|---|---|---|---|---|---|---|\n'
for name in "${ORDER[@]}"; do
  w=$(col "$name" 1); c=$(col "$name" 2); m=$(col "$name" 3); s=$(col "$name" 4)
  awk -v n="$name" -v w="$w" -v c="$c" -v m="$m" -v s="$s" -v e="$EXPECTED" -v b="$base" \
    'BEGIN {printf "| %s | %.1f | %.0f | %.1f | %d | %.1f | %.2fx |\n", n, w, e/w, c, m, s, (b>0 ? w/b : 0)}'
done
echo "($RUNS runs, medians; $EXPECTED row changes; rowstream --threads $THREADS; replica slave_parallel_threads=4)"
