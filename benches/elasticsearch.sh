#!/usr/bin/env bash
# Elasticsearch sink benchmark: the bench-peers workload (NTX transactions x ROWS-row
# INSERT, then one UPDATE of every row = 2*NTX*ROWS row changes, 8 mixed columns; the
# same SQL as benches/e2e.sh) read from a private MariaDB and indexed into a private
# osmem-server (deploy/dev/start-osmem.sh, fresh in-memory server per run) by
#   - rowstream-es: `rowstream run` with an elasticsearch sink (defaults but
#     bulk_docs = BULK_DOCS), timed from start until checkpoint.json holds the last
#     transaction (every bulk item acknowledged);
#   - plain-bulk: in the same run, the plain loader
#     connectors/elasticsearch/examples/plain_bulk.rs sending the same documents (the
#     after-images `rowstream tail` prints, one action per row change, external
#     versions, ids [id]) in bulks of BULK_DOCS through the sink's HTTP client into an
#     index with rowstream's mapping; all bodies built before its clock starts.
# Each of the two gets a freshly started osmem-server (same binary, port and settings),
# so both start from the same empty state (osmem is a Go program keeping everything in
# memory: a server already holding the other's 100,000 documents runs at a different
# speed), and the order alternates per run (odd runs rowstream first), so a drift in the
# machine's load does not always favour the same one.
# RUNS times each (default 3); prints both rates and the ratio per run and the median.
#
# osmem-server indexes only a few thousand documents per second, so the default is
# NTX=100 x ROWS=1000 = 100,000 rows (200,000 row changes), not e2e.sh's 1,000,000.
# Usage: benches/elasticsearch.sh                 (needs deploy/dev/install-test-deps.sh)
#        NTX=200 RUNS=5 benches/elasticsearch.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
PORT=${PORT:-3395}
ES_PORT=${ES_PORT:-$((PORT+1))}
RUNS=${RUNS:-3}
DIR=${BENCH_DIR:-target/bench-es}
NTX=${NTX:-100}
ROWS=${ROWS:-1000}
BULK_DOCS=${BULK_DOCS:-1000}
mkdir -p "$DIR"
cargo build --release --quiet
cargo build --release --quiet --example plain_bulk -p rowstream-elasticsearch
BIN=target/release/rowstream
PLAIN=target/release/examples/plain_bulk
deploy/dev/start-osmem.sh --fetch >/dev/null

SERVER_ENV=$(deploy/dev/start-mariadb.sh "$PORT" "$DIR/db" -- --max-binlog-size=1G --max-allowed-packet=256M)  # a failed start stops the script; inside eval it would not
eval "$SERVER_ENV"
trap 'deploy/dev/stop.sh "$DIR/db" >/dev/null 2>&1 || true; deploy/dev/stop-osmem.sh --purge "$DIR/osmem" >/dev/null 2>&1 || true' EXIT
SQLC=(mariadb --no-defaults -h127.0.0.1 -P"$PORT" -uroot -proot)

before=$(cat "$DIR/range.env" 2>/dev/null || true)
bench_generate "$DIR/range.env" mariadb "$NTX" "$ROWS" "${SQLC[@]}"
# A new workload makes the plain loader's cached envelopes stale.
[[ $(cat "$DIR/range.env") == "$before" ]] || rm -f "$DIR/envelopes.ndjson"
source "$DIR/range.env"
GTID_END=$("${SQLC[@]}" -N -e 'SELECT @@gtid_binlog_pos')
if [[ ! -s $DIR/envelopes.ndjson ]]; then
  "$BIN" tail --url "mysql://repl:repl@127.0.0.1:$PORT" --server-id 9203 --name bench --from "$GTID_START" \
    --max-events "$EXPECTED" 2>/dev/null >"$DIR/envelopes.ndjson"
fi
got=$(wc -l <"$DIR/envelopes.ndjson")
[[ $got -eq $EXPECTED ]] || { echo "rowstream tail printed $got events, expected $EXPECTED" >&2; exit 1; }

fresh_server() {
  deploy/dev/stop-osmem.sh --purge "$DIR/osmem" >/dev/null 2>&1 || true
  deploy/dev/start-osmem.sh "$ES_PORT" "$DIR/osmem" >/dev/null
}

# rowstream run into the sink; prints the catch-up seconds. Saves the mapping rowstream
# created (for plain-bulk) the first time.
run_service() {
  local d=$DIR/service t0 pid count
  rm -rf "$d"; mkdir -p "$d"
  cat >"$d/rowstream.toml" <<TOML
[source]
url = "mysql://repl:repl@127.0.0.1:$PORT"
server_id = 9202
name = "bench"
start = "$GTID_START"
[checkpoint]
dir = "$d/checkpoint"
[[sinks]]
type = "elasticsearch"
name = "es"
urls = ["http://127.0.0.1:$ES_PORT"]
bulk_docs = $BULK_DOCS
TOML
  t0=$(date +%s.%N)
  "$BIN" run --config "$d/rowstream.toml" 2>"$d/err.log" &
  pid=$!
  bench_wait_for "$d/checkpoint/checkpoint.json" "\"gtid_set\":\"$GTID_END\"" $pid \
    || { cat "$d/err.log" >&2; return 1; }
  echo "$(date +%s.%N) $t0" | awk '{printf "%.2f", $1-$2}'
  kill -TERM $pid
  wait $pid
  count=$(curl -sf "http://127.0.0.1:$ES_PORT/bench.t/_count" | sed 's/.*"count":\([0-9]*\).*/\1/')
  [[ $count -eq $((NTX*ROWS)) ]] || { echo "index bench.t holds $count documents, expected $((NTX*ROWS))" >&2; return 1; }
  [[ -s $DIR/mapping.json ]] || curl -sf "http://127.0.0.1:$ES_PORT/bench.t/_mapping" \
    | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["bench.t"]["mappings"]))' >"$DIR/mapping.json"
}

# plain_bulk with the same documents; prints its seconds.
run_plain() {
  local out count
  out=$("$PLAIN" "http://127.0.0.1:$ES_PORT" "$DIR/mapping.json" plain "$BULK_DOCS" <"$DIR/envelopes.ndjson") || return 1
  count=$(curl -sf "http://127.0.0.1:$ES_PORT/plain/_count" | sed 's/.*"count":\([0-9]*\).*/\1/')
  [[ $count -eq $((NTX*ROWS)) ]] || { echo "index plain holds $count documents, expected $((NTX*ROWS))" >&2; return 1; }
  sed 's/.*seconds=\([0-9.]*\).*/\1/' <<<"$out"
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
rm -f "$DIR/mapping.json"
: >"$DIR/runs.tsv"
for i in $(seq 1 "$RUNS"); do
  if (( i % 2 == 1 )); then
    fresh_server; rs=$(run_service) || exit 1
    fresh_server; pl=$(run_plain) || exit 1
  else
    fresh_server; pl=$(run_plain) || exit 1
    fresh_server; rs=$(run_service) || exit 1
  fi
  printf '%s\t%s\t%s\n' "$i" "$rs" "$pl" >>"$DIR/runs.tsv"
  awk -v n="$EXPECTED" -v i="$i" -v r="$rs" -v p="$pl" 'BEGIN { printf "run %s: rowstream-es %.0f changes/s (%.2f s), plain-bulk %.0f docs/s (%.2f s), ratio %.1f%%\n", i, n/r, r, n/p, p, 100*p/r }'
done
{
  echo "| reader | median wall s | row changes/s |"
  echo "|---|---:|---:|"
  r=$(cut -f2 "$DIR/runs.tsv" | median); p=$(cut -f3 "$DIR/runs.tsv" | median)
  awk -v n="$EXPECTED" -v r="$r" -v p="$p" 'BEGIN { printf "| rowstream-es | %.2f | %.0f |\n| plain-bulk | %.2f | %.0f |\n", r, n/r, p, n/p }'
  awk -F'\t' '{ print 100*$3/$2 }' "$DIR/runs.tsv" | median | awk -v n="$EXPECTED" -v runs="$RUNS" '{ printf "rowstream-es / plain-bulk: median ratio %.1f%% over %s runs, %d row changes (target >= 80%%)\n", $1, runs, n }'
} | tee "$DIR/summary.md"
