#!/usr/bin/env bash
# End-to-end benchmark: the bench-peers workload (1000 transactions x 1000-row
# INSERT, then one UPDATE of all 1,000,000 rows = 2,000,000 row changes,
# 8 mixed columns) read from a private MariaDB by
#   - rowstream tail (JSON encoding, output to /dev/null),
#   - rowstream run into the file backup (fsync on, checkpoint on): catch-up
#     time from start until checkpoint.json holds the last transaction,
#   - mariadb-binlog -v --base64-output=decode-rows (the C++ reference decoder),
# in the same run, RUNS times each (default 3); prints the median table.
# Usage: benches/e2e.sh            (needs deploy/dev/install-test-deps.sh done)
#        PORT=3391 RUNS=5 benches/e2e.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-3391}
RUNS=${RUNS:-3}
DIR=${BENCH_DIR:-target/bench-e2e}
NTX=${NTX:-1000}
ROWS=${ROWS:-1000}
mkdir -p "$DIR"
cargo build --release --quiet
BIN=target/release/rowstream

eval "$(deploy/dev/start-mariadb.sh "$PORT" "$DIR/db" -- --max-binlog-size=1G --max-allowed-packet=256M)"
trap 'deploy/dev/stop.sh "$DIR/db" >/dev/null 2>&1 || true' EXIT
SQLC=(mariadb --no-defaults -h127.0.0.1 -P"$PORT" -uroot -proot)

if [[ ! -f $DIR/range.env ]]; then
  "${SQLC[@]}" -e "CREATE DATABASE IF NOT EXISTS bench; DROP TABLE IF EXISTS bench.t;
  CREATE TABLE bench.t (id BIGINT NOT NULL PRIMARY KEY, a INT NOT NULL, b VARCHAR(64) CHARACTER SET utf8mb4 NOT NULL,
    c DECIMAL(12,2) NOT NULL, d DATETIME(6) NOT NULL, e DOUBLE NOT NULL, f TEXT CHARACTER SET utf8mb4 NULL,
    g TINYINT UNSIGNED NOT NULL) ENGINE=InnoDB; FLUSH BINARY LOGS;"
  read -r FILE _ <<<"$("${SQLC[@]}" -N -e 'SHOW MASTER STATUS')"
  GTID_START=$("${SQLC[@]}" -N -e 'SELECT @@gtid_binlog_pos')
  {
    echo "USE bench;"
    for ((t=1; t<=NTX; t++)); do
      echo "INSERT INTO bench.t SELECT ($t-1)*$ROWS+seq, CAST(seq AS SIGNED)*7-3500, CONCAT('name-',seq,'-',$t), seq*1.25, TIMESTAMP'2024-01-01 00:00:00.123456' + INTERVAL seq SECOND, seq/3.0, IF(seq%10=0, NULL, REPEAT('x', seq%50)), seq%256 FROM seq_1_to_$ROWS;"
    done
    echo "UPDATE bench.t SET a=a+1, b=CONCAT(b,'-u'), e=e*2;"
  } | "${SQLC[@]}"
  read -r FILE2 END <<<"$("${SQLC[@]}" -N -e 'SHOW MASTER STATUS')"
  [[ $FILE == "$FILE2" ]] || { echo "binlog rotated during generation" >&2; exit 1; }
  printf 'FILE=%s\nEND=%s\nGTID_START=%s\nEXPECTED=%s\n' "$FILE" "$END" "$GTID_START" "$((NTX*ROWS*2))" >"$DIR/range.env"
fi
source "$DIR/range.env"
GTID_END=$("${SQLC[@]}" -N -e 'SELECT @@gtid_binlog_pos')

# rowstream run: a fresh backup and checkpoint per run; timed until the checkpoint holds GTID_END.
run_service() {
  local d=$DIR/service
  rm -rf "$d"; mkdir -p "$d"
  cat >"$d/rowstream.toml" <<TOML
[source]
url = "mysql://repl:repl@127.0.0.1:$PORT"
server_id = 9102
name = "bench"
start = "$GTID_START"
[checkpoint]
dir = "$d/checkpoint"
[[sinks]]
type = "file"
name = "backup"
dir = "$d/backup"
TOML
  local t0 pid
  t0=$(date +%s.%N)
  /usr/bin/time -v -o "$1" "$BIN" run --config "$d/rowstream.toml" 2>"$d/err.log" &
  pid=$!
  until grep -q "\"gtid_set\":\"$GTID_END\"" "$d/checkpoint/checkpoint.json" 2>/dev/null; do
    kill -0 $pid 2>/dev/null || { cat "$d/err.log" >&2; return 1; }
    sleep 0.02
  done
  echo "$(date +%s.%N) $t0" | awk '{printf "%.2f", $1-$2}' >"$1.catchup"
  pkill -TERM -P $pid   # rowstream itself, not /usr/bin/time: a clean drain
  wait $pid
}

declare -A CMD=(
  [rowstream-tail]="$BIN tail --url mysql://repl:repl@127.0.0.1:$PORT --server-id 9101 --from $GTID_START --max-events $EXPECTED"
  [mariadb-binlog]="mariadb-binlog --read-from-remote-server --host=127.0.0.1 --port=$PORT --user=repl --password=repl -v --base64-output=decode-rows --start-position=4 --stop-position=$END $FILE"
)
ORDER=(rowstream-tail rowstream-run mariadb-binlog)
to_secs() { awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else if (NF==2) print $1*60+$2; else print $1 }'; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
: >"$DIR/runs.tsv"
for r in "${ORDER[@]}"; do
  for i in $(seq 1 "$RUNS"); do
    if [[ $r == rowstream-run ]]; then
      run_service "$DIR/$r.$i.time" || exit 1
      : >"$DIR/$r.out"
    else
      /usr/bin/time -v -o "$DIR/$r.$i.time" ${CMD[$r]} >"$DIR/$r.out" 2>"$DIR/$r.err" || { cat "$DIR/$r.err" >&2; exit 1; }
    fi
    if [[ $r == rowstream-tail ]]; then
      got=$(wc -l <"$DIR/$r.out")
      [[ $got -ge $EXPECTED ]] || { echo "rowstream printed $got lines, expected $EXPECTED" >&2; exit 1; }
    fi
    if [[ -f $DIR/$r.$i.time.catchup ]]; then wall=$(cat "$DIR/$r.$i.time.catchup")
    else wall=$(grep 'Elapsed (wall clock)' "$DIR/$r.$i.time" | awk '{print $NF}' | to_secs); fi
    rss=$(grep 'Maximum resident set size' "$DIR/$r.$i.time" | awk '{print $NF}')
    cpu=$(awk '/User time|System time/ {s+=$NF} END {print s}' "$DIR/$r.$i.time")
    printf '%s\t%s\t%s\t%s\t%s\n' "$r" "$i" "$wall" "$rss" "$cpu" | tee -a "$DIR/runs.tsv"
  done
  rm -f "$DIR/$r.out"
done
echo
printf '| reader | median wall s | row changes/s | median peak RSS MiB | median CPU s |\n|---|---:|---:|---:|---:|\n' | tee "$DIR/summary.md"
for r in "${ORDER[@]}"; do
  w=$(awk -v r="$r" -F'\t' '$1==r {print $3}' "$DIR/runs.tsv" | median)
  m=$(awk -v r="$r" -F'\t' '$1==r {print $4}' "$DIR/runs.tsv" | median)
  c=$(awk -v r="$r" -F'\t' '$1==r {print $5}' "$DIR/runs.tsv" | median)
  awk -v r="$r" -v w="$w" -v m="$m" -v c="$c" -v n="$EXPECTED" 'BEGIN { printf "| %s | %.2f | %.0f | %.1f | %.2f |\n", r, w, n/w, m/1024, c }' | tee -a "$DIR/summary.md"
done
