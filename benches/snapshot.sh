#!/usr/bin/env bash
# Snapshot benchmark: a ROWS-row table (default 10,000,000; the 8 mixed columns of
# benches/e2e.sh) on a private MariaDB, read by `rowstream run` with
# [snapshot] mode = "initial_only" into the file backup (fsync on, checkpoint per
# chunk): wall time from process start to its exit after the last chunk is durable,
# rows/s, peak RSS and CPU, RUNS times (default 3, median). The table is built once and
# kept in $DIR/db (about 3 GB with its binlog) for later runs.
# Usage: benches/snapshot.sh
#        ROWS=1000000 THREADS=4 CHUNK_ROWS=20000 RUNS=1 benches/snapshot.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-3393}
RUNS=${RUNS:-3}
ROWS=${ROWS:-10000000}
THREADS=${THREADS:-2}
CHUNK_ROWS=${CHUNK_ROWS:-10000}
DIR=${BENCH_DIR:-target/bench-snapshot}
mkdir -p "$DIR"
cargo build --release --quiet
BIN=target/release/rowstream

SERVER_ENV=$(deploy/dev/start-mariadb.sh "$PORT" "$DIR/db" -- --innodb-buffer-pool-size=1G)  # a failed start stops the script; inside eval it would not
eval "$SERVER_ENV"
trap 'deploy/dev/stop.sh "$DIR/db" >/dev/null 2>&1 || true' EXIT
SQLC=(mariadb --no-defaults -h127.0.0.1 -P"$PORT" -uroot -proot)

have=$("${SQLC[@]}" -N -e "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA='bench' AND TABLE_NAME='s'")
if [[ $have == 0 || ! -f $DIR/rows.$ROWS ]]; then
  echo "building bench.s with $ROWS rows ..." >&2
  "${SQLC[@]}" -e "CREATE DATABASE IF NOT EXISTS bench; DROP TABLE IF EXISTS bench.s;
  CREATE TABLE bench.s (id BIGINT NOT NULL PRIMARY KEY, a INT NOT NULL, b VARCHAR(64) CHARACTER SET utf8mb4 NOT NULL,
    c DECIMAL(12,2) NOT NULL, d DATETIME(6) NOT NULL, e DOUBLE NOT NULL, f TEXT CHARACTER SET utf8mb4 NULL,
    g TINYINT UNSIGNED NOT NULL) ENGINE=InnoDB;"
  step=1000000
  for ((off=0; off<ROWS; off+=step)); do
    n=$(( ROWS-off < step ? ROWS-off : step ))
    "${SQLC[@]}" -e "SET SESSION sql_log_bin=0; INSERT INTO bench.s SELECT $off+seq, CAST(seq AS SIGNED)*7-3500,
      CONCAT('name-',seq,'-',$off), seq*1.25, TIMESTAMP'2024-01-01 00:00:00.123456' + INTERVAL seq SECOND, seq/3.0,
      IF(seq%10=0, NULL, REPEAT('x', seq%50)), seq%256 FROM bench.seq_1_to_$n"
  done
  "${SQLC[@]}" -e "ANALYZE TABLE bench.s" >/dev/null
  rm -f "$DIR"/rows.*; touch "$DIR/rows.$ROWS"
fi

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
to_secs() { awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else if (NF==2) print $1*60+$2; else print $1 }'; }
: >"$DIR/runs.tsv"
for i in $(seq 1 "$RUNS"); do
  d=$DIR/service
  rm -rf "$d"; mkdir -p "$d"
  cat >"$d/rowstream.toml" <<TOML
[source]
url = "mysql://repl:repl@127.0.0.1:$PORT"
server_id = 9202
name = "bench"
include = ["bench.s"]
[snapshot]
mode = "initial_only"
threads = $THREADS
chunk_rows = $CHUNK_ROWS
[checkpoint]
dir = "$d/checkpoint"
[[sinks]]
type = "file"
name = "backup"
dir = "$d/backup"
TOML
  load0=$(cut -d' ' -f1 /proc/loadavg)
  /usr/bin/time -v -o "$d/time" "$BIN" run --config "$d/rowstream.toml" 2>"$d/err.log" \
    || { tail -20 "$d/err.log" >&2; exit 1; }
  wall=$(grep 'Elapsed (wall clock)' "$d/time" | awk '{print $NF}' | to_secs)
  rss=$(grep 'Maximum resident set size' "$d/time" | awk '{print $NF}')
  cpu=$(awk '/User time|System time/ {s+=$NF} END {print s}' "$d/time")
  got=$(grep -o '"rows":[0-9]*' "$d/err.log" | tail -1 || true)
  grep -q '"snapshot"' "$d/checkpoint/checkpoint.json" && { echo "snapshot not complete" >&2; exit 1; }
  lines=$(zstdcat -f "$d"/backup/*.zst "$d"/backup/*.zst.open "$d"/backup/*.ndjson 2>/dev/null | grep -c '"op":"r"' || true)
  [[ $lines == "$ROWS" ]] || { echo "backup holds $lines snapshot rows, expected $ROWS" >&2; exit 1; }
  printf '%s\t%s\t%s\t%s\t%s\n' "$i" "$wall" "$rss" "$cpu" "$load0" | tee -a "$DIR/runs.tsv"
  grep -E 'consistent cut made|reading ended' "$d/err.log" | sed 's/\x1b\[[0-9;]*m//g' >&2
done
w=$(cut -f2 "$DIR/runs.tsv" | median)
m=$(cut -f3 "$DIR/runs.tsv" | median)
c=$(cut -f4 "$DIR/runs.tsv" | median)
printf '| rows | threads | chunk_rows | median wall s | rows/s | median peak RSS MiB | median CPU s |\n|---:|---:|---:|---:|---:|---:|---:|\n' | tee "$DIR/summary.md"
awk -v n="$ROWS" -v t="$THREADS" -v k="$CHUNK_ROWS" -v w="$w" -v m="$m" -v c="$c" \
  'BEGIN { printf "| %d | %d | %d | %.2f | %.0f | %.1f | %.2f |\n", n, t, k, w, n/w, m/1024, c }' | tee -a "$DIR/summary.md"
echo "load average at start of each run: $(cut -f5 "$DIR/runs.tsv" | tr '\n' ' ')" | tee -a "$DIR/summary.md"
