#!/usr/bin/env bash
# HTTP sink benchmark: the bench-peers workload (NTX transactions x ROWS-row INSERT,
# then one UPDATE of every row = 2*NTX*ROWS row changes, 8 mixed columns; the same SQL
# as benches/e2e.sh) read from a private MariaDB and posted to a local receiver
# (connectors/http/examples/receiver.rs: answers 200 at once, keep-alive) by
#   - rowstream-http: `rowstream run` with an http sink (format = "envelope", the
#     defaults otherwise: batch_records = 100, one request in flight for the one
#     table), timed from start until checkpoint.json holds the last transaction
#     (every request answered 2xx); the receiver saves every body it gets;
#   - plain-post: in the same run, connectors/http/examples/plain_post.rs posting
#     exactly those bodies, one request at a time, with a reqwest client built like
#     the sink's, to a fresh receiver (saving to /dev/null, so both pay the same);
#     all bodies read before its clock starts.
# The order alternates per run (odd runs rowstream first). RUNS times each (default 3);
# prints both rates and the ratio per run and the median (target >= 90%).
#
# Usage: benches/http.sh                          (the 2,000,000-change size: NTX=1000)
#        NTX=10 ROWS=1000 RUNS=1 benches/http.sh  (a quick look)
#        PROFILE=debug ...                        (debug build, to try the script out)
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
PORT=${PORT:-3397}
RX_PORT=${RX_PORT:-$((PORT+1))}
RUNS=${RUNS:-3}
DIR=${BENCH_DIR:-target/bench-http}
NTX=${NTX:-1000}
ROWS=${ROWS:-1000}
PROFILE=${PROFILE:-release}
mkdir -p "$DIR"
if [[ $PROFILE == release ]]; then
  cargo build --release --quiet
  cargo build --release --quiet --examples -p rowstream-http
else
  cargo build --quiet
  cargo build --quiet --examples -p rowstream-http
fi
BIN=target/$PROFILE/rowstream
RECEIVER=target/$PROFILE/examples/receiver
PLAIN=target/$PROFILE/examples/plain_post

SERVER_ENV=$(deploy/dev/start-mariadb.sh "$PORT" "$DIR/db" -- --max-binlog-size=1G --max-allowed-packet=256M)  # a failed start stops the script; inside eval it would not
eval "$SERVER_ENV"
RX_PID=
trap 'deploy/dev/stop.sh "$DIR/db" >/dev/null 2>&1 || true; [[ -z $RX_PID ]] || kill $RX_PID 2>/dev/null || true' EXIT
SQLC=(mariadb --no-defaults -h127.0.0.1 -P"$PORT" -uroot -proot)

bench_generate "$DIR/range.env" mariadb "$NTX" "$ROWS" "${SQLC[@]}"
source "$DIR/range.env"
GTID_END=$("${SQLC[@]}" -N -e 'SELECT @@gtid_binlog_pos')

# Starts a receiver saving to $1; its stdout goes to $2.
start_receiver() {
  "$RECEIVER" "$RX_PORT" "$1" >"$2" &
  RX_PID=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$RX_PORT") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "receiver did not start" >&2; return 1
}
stop_receiver() { kill -TERM "$RX_PID"; wait "$RX_PID" || true; RX_PID=; }

# rowstream run into the sink; prints the catch-up seconds; leaves the bodies in
# $DIR/bodies.ndjson.
run_service() {
  local d=$DIR/service t0 pid records
  rm -rf "$d"; mkdir -p "$d"
  cat >"$d/rowstream.toml" <<TOML
[source]
url = "mysql://repl:repl@127.0.0.1:$PORT"
server_id = 9207
name = "bench"
start = "$GTID_START"
[checkpoint]
dir = "$d/checkpoint"
[[sinks]]
type = "http"
name = "hook"
url = "http://127.0.0.1:$RX_PORT/{db}/{table}"
TOML
  start_receiver "$DIR/bodies.ndjson" "$d/receiver.out"
  t0=$(date +%s.%N)
  "$BIN" run --config "$d/rowstream.toml" 2>"$d/err.log" &
  pid=$!
  bench_wait_for "$d/checkpoint/checkpoint.json" "\"gtid_set\":\"$GTID_END\"" $pid \
    || { cat "$d/err.log" >&2; return 1; }
  echo "$(date +%s.%N) $t0" | awk '{printf "%.2f", $1-$2}'
  kill -TERM $pid
  wait $pid
  stop_receiver
  records=$(grep -o '{"id":"' "$DIR/bodies.ndjson" | wc -l)
  [[ $records -ge $EXPECTED ]] || { echo "the receiver got $records records, expected $EXPECTED" >&2; return 1; }
}

# plain_post with the same bodies; prints its seconds.
run_plain() {
  local out
  start_receiver /dev/null "$DIR/plain-receiver.out"
  out=$("$PLAIN" "http://127.0.0.1:$RX_PORT/bench/t" <"$DIR/bodies.ndjson") || { stop_receiver; return 1; }
  stop_receiver
  sed 's/.*seconds=\([0-9.]*\).*/\1/' <<<"$out"
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
: >"$DIR/runs.tsv"
rm -f "$DIR/bodies.ndjson"
for i in $(seq 1 "$RUNS"); do
  if (( i % 2 == 1 )) || [[ ! -s $DIR/bodies.ndjson ]]; then
    rs=$(run_service) || exit 1
    pl=$(run_plain) || exit 1
  else
    pl=$(run_plain) || exit 1
    rs=$(run_service) || exit 1
  fi
  printf '%s\t%s\t%s\n' "$i" "$rs" "$pl" >>"$DIR/runs.tsv"
  awk -v n="$EXPECTED" -v i="$i" -v r="$rs" -v p="$pl" 'BEGIN { printf "run %s: rowstream-http %.0f changes/s (%.2f s), plain-post %.0f changes/s (%.2f s), ratio %.1f%%\n", i, n/r, r, n/p, p, 100*p/r }'
done
{
  echo "| reader | median wall s | row changes/s |"
  echo "|---|---:|---:|"
  r=$(cut -f2 "$DIR/runs.tsv" | median); p=$(cut -f3 "$DIR/runs.tsv" | median)
  awk -v n="$EXPECTED" -v r="$r" -v p="$p" 'BEGIN { printf "| rowstream-http | %.2f | %.0f |\n| plain-post | %.2f | %.0f |\n", r, n/r, p, n/p }'
  awk -F'\t' '{ print 100*$3/$2 }' "$DIR/runs.tsv" | median | awk -v n="$EXPECTED" -v runs="$RUNS" -v prof="$PROFILE" '{ printf "rowstream-http / plain-post: median ratio %.1f%% over %s runs, %d row changes, %s build (target >= 90%%)\n", $1, runs, n, prof }'
} | tee "$DIR/summary.md"
