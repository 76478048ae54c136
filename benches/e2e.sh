#!/usr/bin/env bash
# End-to-end benchmark: the bench-peers workload (1000 transactions x 1000-row
# INSERT, then one UPDATE of all 1,000,000 rows = 2,000,000 row changes,
# 8 mixed columns) read from a private MariaDB by
#   - rowstream tail (JSON encoding, output to /dev/null),
#   - rowstream run into the file backup (fsync on, checkpoint on): catch-up
#     time from start until checkpoint.json holds the last transaction,
#   - mariadb-binlog -v --base64-output=decode-rows (the C++ reference decoder),
#   - with KAFKA=1 (default): rowstream run into a Kafka sink (format json,
#     the sink's default producer settings) on a private noida-db broker
#     (deploy/dev/start-kafka.sh, fresh data dir per run), timed like the
#     file backup run; then, in the same run against the same broker, the
#     rdkafka producer ceiling: connectors/kafka/examples/plain_producer.rs
#     sending as many records as rowstream produced, with the average key,
#     value and header sizes measured from rowstream's topic (first run),
#     with the sink's producer settings; timed from process start to the
#     last delivery report,
# in the same run, RUNS times each (default 3); prints the median table.
# Usage: benches/e2e.sh            (needs deploy/dev/install-test-deps.sh done)
#        PORT=3391 RUNS=5 benches/e2e.sh
#        KAFKA=0 benches/e2e.sh                      (no Kafka readers)
#        KAFKA_PROPS="linger.ms=20" benches/e2e.sh   (librdkafka properties for
#                                                    the sink and the producer)
#        READERS="rowstream-kafka" benches/e2e.sh    (a subset; rowstream-kafka
#                                                    brings rdkafka-producer)
#        BASE_BIN=/path/to/old/rowstream benches/e2e.sh
#                                 (A/B: adds base-tail and base-run, the same
#                                 readers with another build, in the same run)
#        BIN=target/release/rowstream benches/e2e.sh  (this binary, no cargo build)
# Shared with benches/peers.sh: benches/lib.sh (workload, run_service, the table).
# Runs alternate: run 1 of every reader, then run 2 of every reader, ...
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
PORT=${PORT:-3391}
RUNS=${RUNS:-3}
DIR=${BENCH_DIR:-target/bench-e2e}
NTX=${NTX:-1000}
ROWS=${ROWS:-1000}
KAFKA=${KAFKA:-1}
KAFKA_PORT=${KAFKA_PORT:-$((PORT+1))}
# librdkafka properties for both the sink and the plain producer, "k=v k=v".
KAFKA_PROPS=${KAFKA_PROPS:-}
XPROPS=()
for kv in $KAFKA_PROPS; do XPROPS+=(-X "$kv"); done
mkdir -p "$DIR"
if [[ -z ${BIN:-} ]]; then cargo build --release --quiet; BIN=target/release/rowstream; fi
PLAIN=target/release/examples/plain_producer
if [[ $KAFKA == 1 ]]; then
  cargo build --release --quiet --example plain_producer -p rowstream-kafka
  deploy/dev/start-kafka.sh --fetch >/dev/null
fi

SERVER_ENV=$(deploy/dev/start-mariadb.sh "$PORT" "$DIR/db" -- --max-binlog-size=1G --max-allowed-packet=256M)  # a failed start stops the script; inside eval it would not
eval "$SERVER_ENV"
trap 'deploy/dev/stop.sh "$DIR/db" >/dev/null 2>&1 || true; [[ $KAFKA != 1 ]] || deploy/dev/stop-kafka.sh --purge "$DIR/kafka" >/dev/null 2>&1 || true' EXIT
SQLC=(mariadb --no-defaults -h127.0.0.1 -P"$PORT" -uroot -proot)

bench_generate "$DIR/range.env" mariadb "$NTX" "$ROWS" "${SQLC[@]}"
source "$DIR/range.env"
GTID_END=$("${SQLC[@]}" -N -e 'SELECT @@gtid_binlog_pos')

# rowstream run: a fresh backup and checkpoint per run; timed until the checkpoint holds GTID_END.
# service TIMEFILE [file|kafka] [BINARY]
service() {
  local d=$DIR/service sink
  rm -rf "$d"; mkdir -p "$d"
  if [[ ${2:-file} == kafka ]]; then
    sink=$(printf '[[sinks]]\ntype = "kafka"\nname = "kafka"\nbrokers = "127.0.0.1:%s"\nformat = "json"\n[sinks.properties]\n' "$KAFKA_PORT")
    for kv in $KAFKA_PROPS; do sink+=$(printf '\n"%s" = "%s"' "${kv%%=*}" "${kv#*=}"); done
  else
    sink=$(file_sink_toml "$d")
  fi
  # shellcheck disable=SC2153  # GTID_START comes from range.env
  run_service "$1" "$d" "mysql://repl:repl@127.0.0.1:$PORT" "$GTID_START" "$GTID_END" "${3:-$BIN}" "$sink"
}

declare -A CMD=(
  [rowstream-tail]="$BIN tail --url mysql://repl:repl@127.0.0.1:$PORT --server-id 9101 --from $GTID_START --max-events $EXPECTED"
  [mariadb-binlog]="mariadb-binlog --read-from-remote-server --host=127.0.0.1 --port=$PORT --user=repl --password=repl -v --base64-output=decode-rows --start-position=4 --stop-position=$END $FILE"
)
ORDER=(rowstream-tail rowstream-run mariadb-binlog)
if [[ -n ${BASE_BIN:-} ]]; then
  CMD[base-tail]="$BASE_BIN tail --url mysql://repl:repl@127.0.0.1:$PORT --server-id 9104 --from $GTID_START --max-events $EXPECTED"
  ORDER=(rowstream-tail base-tail rowstream-run base-run mariadb-binlog)
fi
[[ $KAFKA != 1 ]] || ORDER+=(rowstream-kafka rdkafka-producer)
[[ -z ${READERS:-} ]] || read -ra ORDER <<<"$READERS"
[[ " ${ORDER[*]} " != *" rowstream-kafka "* || " ${ORDER[*]} " == *" rdkafka-producer "* ]] || ORDER+=(rdkafka-producer)

# A fresh, empty broker (noida-db keeps its data across restarts).
fresh_broker() {
  deploy/dev/stop-kafka.sh --purge "$DIR/kafka" >/dev/null 2>&1 || true
  deploy/dev/start-kafka.sh "$KAFKA_PORT" "$DIR/kafka" >/dev/null
}
# The sizes of rowstream's Kafka records for this workload, once per script run: the
# value is the envelope `rowstream tail --name bench` prints (the sink uses the same
# encoder, connectors/kafka/src/encode.rs), the key {"id":N}, the gtid header the
# transaction's GTID. (Consuming the ~1 GB topic back from noida-db 0.2.3 fails in
# librdkafka with "Bad message format", so the sizes are not read from the topic.)
kafka_sizes() {
  "$BIN" tail --url "mysql://repl:repl@127.0.0.1:$PORT" --server-id 9103 --name bench --from "$GTID_START" \
    --max-events "$EXPECTED" 2>/dev/null | awk '
    { v += length($0); match($0, /"id":[0-9]+/); k += RLENGTH + 2
      match($0, /"gtid":"[^"]*"/); g += RLENGTH - 9; n++ }
    END { printf "records=%d\nkey_bytes=%.0f\nvalue_bytes=%.0f\ngtid_header_bytes=%.0f\n", n, k/n, v/n, g/n }' >"$DIR/kafka-sizes.env"
}
# After rowstream-kafka run $1, on the same broker: the plain producer with the
# count and the sizes of rowstream's records.
run_producer() {
  [[ -f $DIR/kafka-sizes.env ]] || kafka_sizes
  local got; got=$("$PLAIN" count "127.0.0.1:$KAFKA_PORT" bench.bench.t) || return 1
  source "$DIR/kafka-sizes.env"
  [[ $records -eq $EXPECTED && $got == "records=$EXPECTED" ]] \
    || { echo "rowstream produced $got records (tail: $records), expected $EXPECTED" >&2; return 1; }
  /usr/bin/time -v -o "$DIR/rdkafka-producer.$1.time" "$PLAIN" produce "127.0.0.1:$KAFKA_PORT" plain \
    "$records" "$key_bytes" "$value_bytes" "$gtid_header_bytes" "${XPROPS[@]}" >"$DIR/rdkafka-producer.$1.out" || return 1
  echo "  plain producer: $(cat "$DIR/rdkafka-producer.$1.out") (key $key_bytes B, value $value_bytes B, gtid header $gtid_header_bytes B)" >&2
}
: >"$DIR/runs.tsv"
row() { bench_row "$DIR/runs.tsv" "$DIR" "$@"; }
rm -f "$DIR"/*.time "$DIR"/*.time.catchup "$DIR/kafka-sizes.env"
for i in $(seq 1 "$RUNS"); do
  for r in "${ORDER[@]}"; do
    [[ $r != rdkafka-producer ]] || continue   # runs right after rowstream-kafka
    if [[ $r == rowstream-run || $r == base-run ]]; then
      bin=$BIN; [[ $r == rowstream-run ]] || bin=$BASE_BIN
      service "$DIR/$r.$i.time" file "$bin" || exit 1
    elif [[ $r == rowstream-kafka ]]; then
      fresh_broker
      service "$DIR/$r.$i.time" kafka || exit 1
      row "$r" "$i"
      run_producer "$i" || exit 1
      row rdkafka-producer "$i"
      continue
    else
      /usr/bin/time -v -o "$DIR/$r.$i.time" ${CMD[$r]} >"$DIR/$r.out" 2>"$DIR/$r.err" || { cat "$DIR/$r.err" >&2; exit 1; }
    fi
    if [[ $r == rowstream-tail || $r == base-tail ]]; then
      got=$(wc -l <"$DIR/$r.out")
      [[ $got -ge $EXPECTED ]] || { echo "$r printed $got lines, expected $EXPECTED" >&2; exit 1; }
    fi
    rm -f "$DIR/$r.out"
    row "$r" "$i"
  done
done
echo
bench_table "$DIR/runs.tsv" "$EXPECTED" "$DIR/summary.md" "${ORDER[@]}"
if [[ " ${ORDER[*]} " == *" rowstream-kafka "* ]]; then
  # Per run (same broker, back to back), then the median of the per-run ratios.
  awk -F'\t' -v n="$EXPECTED" '$1=="rowstream-kafka" {k[$2]=$3} $1=="rdkafka-producer" {p[$2]=$3}
    END { m=0; for (i in k) if (i in p) { r[++m]=p[i]/k[i]; printf "run %s: rowstream-kafka %.0f/s, rdkafka-producer %.0f/s, ratio %.1f%%\n", i, n/k[i], n/p[i], 100*p[i]/k[i] }
          asort(r); if (m) printf "rowstream-kafka / rdkafka-producer: median ratio %.1f%% (target >= 80%%)\n", 100*r[int((m+1)/2)] }' \
    "$DIR/runs.tsv" | tee -a "$DIR/summary.md"
fi
[[ -z ${BASE_BIN:-} ]] || bench_ab "$DIR/runs.tsv" "$DIR/summary.md" ""
