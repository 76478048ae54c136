#!/usr/bin/env bash
# Peer benchmark: every binlog reader we compare with, on the same workload, in the same
# run. The bench-peers workload (../shared/bench-peers; benches/lib.sh bench_generate:
# 1000 transactions x 1000-row INSERT, then one UPDATE of all 1,000,000 rows = 2,000,000
# row changes, 8 mixed columns) is written once into a fresh binlog file of each of two
# private servers, and read back by
#   MariaDB 10.11 source (deploy/dev/start-mariadb.sh):
#     mariadb:rowstream-tail   `rowstream tail` (JSON lines, to a file, counted)
#     mariadb:rowstream-run    `rowstream run` into the file backup (fsync and checkpoint
#                              on): catch-up time until checkpoint.json holds the last GTID
#     mariadb:mariadb-binlog   `mariadb-binlog -v --base64-output=decode-rows` (remote)
#   MySQL 9.7 source (deploy/dev/start-mysql.sh, Debian sid's build; the same table and
#   changes, its numbers from a recursive CTE instead of MariaDB's seq_1_to_N):
#     mysql:rowstream-tail, mysql:rowstream-run   as above
#     mysql:rowstream-tail-debezium   `rowstream tail --format debezium --name bench`: the
#                              same {"topic","key","value"} lines Debezium's JsonConverter
#                              writes (schemas.enable=false), so the same output form
#     mysql:mysqlbinlog        sid's `mysqlbinlog -R -v --base64-output=decode-rows`
#                              (deploy/dev/mysql-tool.sh)
#     mysql:debezium           Debezium 3.6.1.Final embedded (deploy/dev/debezium/run.sh,
#                              DebeziumRunner.java): MySQL connector, Kafka Connect's
#                              JsonConverter with schemas.enable=false, one
#                              {"topic","key","value"} JSON line per change record to a
#                              file (like rowstream tail's one JSON line per change); the
#                              runner stops after the 2,000,000th record; the script checks
#                              that all 2,000,000 are bench.t's.
# Every reader's output goes to a file in $DIR (then deleted); each reads the workload's
# range only, over plain TCP on loopback (rowstream's default; mysqlbinlog and Debezium
# would use TLS by default on MySQL, so they get --ssl-mode=DISABLED / database.ssl.mode=
# disabled: the same transport for all).
#
# How Debezium reads the same binlog: embedded with in-memory offsets it cannot be told a
# GTID to start at, so it starts with no offsets and no snapshot at all
# (snapshot.mode=configuration_based with schema, data = false and start.stream = true,
# the 3.x form of the former snapshot.mode=never): it streams from the first binlog file
# of the fresh MySQL server, builds bench.t's schema from the CREATE TABLE in the binlog
# and then emits every row change of the workload (include.schema.changes=false, so the
# records are exactly the 2,000,000 row changes; table.include.list=bench.t).
# Before the workload that binlog holds only CREATE DATABASE / CREATE TABLE, so this is
# the same range the other readers read. Its JVM (DEBEZIUM_JAVA_OPTS, default
# "-Xmx2g -Drunner.buffered=true"): full JIT (not the tests' -XX:TieredStopAtLevel=1), the
# JVM's default GC (G1 here), a 2 GiB heap cap, stdout through a 64 KiB buffer (rowstream
# tail buffers too). Its wall time includes the JVM start and the connect; the runner
# also reports the time from its first record to its last (the "dbz first-to-last" line).
#
# Per reader, medians over RUNS: wall s, row changes/s, peak RSS, CPU s (user+sys of the
# whole process tree /usr/bin/time waits for); then the ratios: rowstream CPU / the
# server's own decoder CPU per source, rowstream rows/s / Debezium rows/s. The markdown
# goes to $DIR/summary.md too. Runs alternate: run 1 of every reader, then run 2, ...
#
# Usage: benches/peers.sh          (needs deploy/dev/install-test-deps.sh done: MariaDB,
#                                   sid's MySQL via setup-mysql.sh, Java 17 + Maven)
#        NTX=20 RUNS=1 BIN=target/release/rowstream benches/peers.sh   (a quick check)
# Knobs: PORT (3421: MariaDB; MySQL on PORT+1, or MYSQL_PORT), RUNS (3), NTX (1000) and
#        ROWS (1000) the workload's size, READERS (a subset, e.g. "mysql:debezium
#        mysql:rowstream-tail"), BIN (this binary, no cargo build), BASE_BIN (A/B: adds
#        mariadb:base-tail, mariadb:base-run, mysql:base-tail, mysql:base-run, the same
#        readers with another build, in the same run, and prints this/base ratios),
#        BENCH_DIR (target/bench-peers), DEBEZIUM_JAVA_OPTS, DEBEZIUM_TIMEOUT (3600 s).
# The generated data is kept in $DIR (range-*.env): a rerun with the same NTX x ROWS
# restarts the servers on it and skips the generation.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
PORT=${PORT:-3421}
MYSQL_PORT=${MYSQL_PORT:-$((PORT+1))}
RUNS=${RUNS:-3}
DIR=${BENCH_DIR:-target/bench-peers}
NTX=${NTX:-1000}
ROWS=${ROWS:-1000}
DEBEZIUM_TIMEOUT=${DEBEZIUM_TIMEOUT:-3600}
export DEBEZIUM_JAVA_OPTS=${DEBEZIUM_JAVA_OPTS:--Xmx2g -Drunner.buffered=true}
mkdir -p "$DIR"; DIR=$(readlink -f "$DIR")

ORDER=(mariadb:rowstream-tail mariadb:rowstream-run mariadb:mariadb-binlog
       mysql:rowstream-tail mysql:rowstream-tail-debezium mysql:rowstream-run mysql:mysqlbinlog mysql:debezium)
if [[ -n ${BASE_BIN:-} ]]; then
  [[ -x $BASE_BIN ]] || { echo "BASE_BIN=$BASE_BIN is not an executable" >&2; exit 1; }
  ORDER=(mariadb:rowstream-tail mariadb:base-tail mariadb:rowstream-run mariadb:base-run mariadb:mariadb-binlog
         mysql:rowstream-tail mysql:base-tail mysql:rowstream-tail-debezium mysql:rowstream-run mysql:base-run
         mysql:mysqlbinlog mysql:debezium)
fi
[[ -z ${READERS:-} ]] || read -ra ORDER <<<"$READERS"
for r in "${ORDER[@]}"; do
  case $r in
    mariadb:rowstream-tail|mariadb:rowstream-run|mariadb:mariadb-binlog|mysql:rowstream-tail|mysql:rowstream-tail-debezium|mysql:rowstream-run|mysql:mysqlbinlog|mysql:debezium) ;;
    *:base-tail|*:base-run) [[ -n ${BASE_BIN:-} && $r == @(mariadb|mysql):* ]] || { echo "$r needs BASE_BIN" >&2; exit 1; } ;;
    *) echo "unknown reader $r (see the header of $0)" >&2; exit 1 ;;
  esac
done
uses() { [[ " ${ORDER[*]} " == *" $1"* ]]; }   # uses PREFIX: some reader starts with PREFIX

if [[ -z ${BIN:-} ]]; then cargo build --release --quiet; BIN=target/release/rowstream; fi
[[ -x $BIN ]] || { echo "BIN=$BIN is not an executable" >&2; exit 1; }
! uses mysql:debezium || deploy/dev/debezium/run.sh --fetch

# Servers: only the ones a reader needs; both stopped on exit (their data stays for a rerun).
STARTED=()
trap 'for d in "${STARTED[@]}"; do deploy/dev/stop.sh "$d" >/dev/null 2>&1 || true; done' EXIT
if uses mariadb:; then
  STARTED+=("$DIR/mariadb")
  deploy/dev/start-mariadb.sh "$PORT" "$DIR/mariadb" -- --max-binlog-size=1G --max-allowed-packet=256M >/dev/null
  bench_generate "$DIR/range-mariadb.env" mariadb "$NTX" "$ROWS" mariadb --no-defaults -h127.0.0.1 -P"$PORT" -uroot -proot
fi
MYSQLC=(deploy/dev/mysql-tool.sh mysql --defaults-file="$DIR/mysql/client.cnf" --get-server-public-key)
if uses mysql:; then
  STARTED+=("$DIR/mysql")
  # 1 GiB binlog files (MySQL's maximum): the ~250 MB workload never rotates mid-range.
  if [[ ! -f $DIR/range-mysql.env ]] || ! grep -q "^EXPECTED=$((NTX*ROWS*2))\$" "$DIR/range-mysql.env"; then
    # Debezium reads from the first binlog file: the workload goes into a fresh server,
    # whose binlog holds nothing else (no earlier size, no half-done generation).
    deploy/dev/stop.sh --purge "$DIR/mysql" >/dev/null 2>&1 || { echo "could not remove $DIR/mysql" >&2; exit 1; }
    rm -f "$DIR/range-mysql.env"
  fi
  deploy/dev/start-mysql.sh "$MYSQL_PORT" "$DIR/mysql" -- --max-binlog-size=1073741824 --max-allowed-packet=268435456 >/dev/null
  bench_generate "$DIR/range-mysql.env" mysql "$NTX" "$ROWS" "${MYSQLC[@]}"
fi

# Per source: FILE END GTID_START EXPECTED (range-*.env), GTID_END, the port.
declare -A R_FILE R_END R_FROM R_UPTO R_PORT
for s in mariadb mysql; do
  uses "$s:" || continue
  # shellcheck disable=SC1090
  source "$DIR/range-$s.env"
  # shellcheck disable=SC2153  # FILE END GTID_START come from the range file
  R_FILE[$s]=$FILE; R_END[$s]=$END; R_FROM[$s]=$GTID_START
  if [[ $s == mysql ]]; then
    R_PORT[$s]=$MYSQL_PORT; R_UPTO[$s]=$("${MYSQLC[@]}" -N -e 'SELECT @@gtid_executed')
  else
    R_PORT[$s]=$PORT; R_UPTO[$s]=$(mariadb --no-defaults -h127.0.0.1 -P"$PORT" -uroot -proot -N -e 'SELECT @@gtid_binlog_pos')
  fi
done
EXPECTED=$((NTX*ROWS*2))

# run_reader READER RUN: one timed run of READER into $DIR/READER.RUN.time (+ .catchup for
# `rowstream run`, + .firstlast for Debezium); checks that every change arrived.
run_reader() {
  local r=$1 i=$2 s=${1%%:*} name=${1#*:} tf=$DIR/$1.$2.time out=$DIR/$1.out got bin=$BIN
  local port=${R_PORT[$s]} url="mysql://repl:repl@127.0.0.1:${R_PORT[$s]}"
  [[ $name != base-* ]] || bin=$BASE_BIN
  case $name in
    rowstream-run|base-run)
      rm -rf "$DIR/service"; mkdir -p "$DIR/service"
      run_service "$tf" "$DIR/service" "$url" "${R_FROM[$s]}" "${R_UPTO[$s]}" "$bin" "$(file_sink_toml "$DIR/service")"
      return ;;
    rowstream-tail|base-tail)
      /usr/bin/time -v -o "$tf" "$bin" tail --url "$url" --server-id 9101 --from "${R_FROM[$s]}" \
        --max-events "$EXPECTED" >"$out" 2>"$out.err" || { cat "$out.err" >&2; return 1; } ;;
    rowstream-tail-debezium)
      # --name bench: the topic prefix Debezium gets below, so the lines match its own.
      /usr/bin/time -v -o "$tf" "$bin" tail --url "$url" --server-id 9101 --from "${R_FROM[$s]}" \
        --max-events "$EXPECTED" --name bench --format debezium >"$out" 2>"$out.err" || { cat "$out.err" >&2; return 1; } ;;
    mariadb-binlog)
      /usr/bin/time -v -o "$tf" mariadb-binlog --read-from-remote-server --host=127.0.0.1 --port="$port" \
        --user=repl --password=repl -v --base64-output=decode-rows --start-position=4 \
        --stop-position="${R_END[$s]}" "${R_FILE[$s]}" >"$out" 2>"$out.err" || { cat "$out.err" >&2; return 1; } ;;
    mysqlbinlog)
      # mysql-tool.sh execs the tool (through sid's ld.so): time -v measures mysqlbinlog.
      /usr/bin/time -v -o "$tf" deploy/dev/mysql-tool.sh mysqlbinlog -R -h127.0.0.1 -P"$port" -urepl -prepl \
        --ssl-mode=DISABLED --get-server-public-key -v --base64-output=decode-rows --start-position=4 \
        --stop-position="${R_END[$s]}" "${R_FILE[$s]}" >"$out" 2>"$out.err" || { cat "$out.err" >&2; return 1; } ;;
    debezium)
      /usr/bin/time -v -o "$tf" deploy/dev/debezium/run.sh 127.0.0.1 "$port" repl repl bench bench \
        "$EXPECTED" "$DEBEZIUM_TIMEOUT" database.ssl.mode=disabled table.include.list=bench.t \
        include.schema.changes=false snapshot.mode=configuration_based \
        snapshot.mode.configuration.based.snapshot.schema=false \
        snapshot.mode.configuration.based.snapshot.data=false \
        snapshot.mode.configuration.based.start.stream=true >"$out" 2>"$out.err" || { cat "$out.err" >&2; return 1; }
      got=$(grep -c '^{"topic":"bench\.bench\.t",' "$out" || true)
      [[ $got -eq $EXPECTED ]] || { echo "$r: $got change records of bench.t, expected $EXPECTED" >&2; return 1; }
      sed -n 's/^records [0-9]*, first record to last \([0-9.]*\) s$/\1/p' "$out.err" >"$tf.firstlast" ;;
  esac
  if [[ $name == @(*-tail|rowstream-tail-debezium) ]]; then
    got=$(wc -l <"$out")
    [[ $got -ge $EXPECTED ]] || { echo "$r printed $got lines, expected $EXPECTED" >&2; return 1; }
  elif [[ $name == @(mariadb-binlog|mysqlbinlog) ]]; then
    # -v prints one "### INSERT INTO" / "### UPDATE" header per row change.
    got=$(grep -c '^### \(INSERT INTO\|UPDATE\) ' "$out" || true)
    [[ $got -eq $EXPECTED ]] || { echo "$r decoded $got row changes, expected $EXPECTED" >&2; return 1; }
  fi
  rm -f "$out"
}

: >"$DIR/runs.tsv"
rm -f "$DIR"/*.time "$DIR"/*.time.catchup "$DIR"/*.time.firstlast "$DIR"/*.out "$DIR"/*.out.err
for i in $(seq 1 "$RUNS"); do
  for r in "${ORDER[@]}"; do
    run_reader "$r" "$i" || { echo "$r run $i failed" >&2; exit 1; }
    bench_row "$DIR/runs.tsv" "$DIR" "$r" "$i"
  done
done

echo
bench_table "$DIR/runs.tsv" "$EXPECTED" "$DIR/summary.md" "${ORDER[@]}"
# ratio LABEL A B COLUMN [inverse]: median(A's COLUMN) / median(B's COLUMN) as a table row,
# when both readers ran (wall ratios are inverted into rows/s ratios).
ratio() {
  local a b
  a=$(bench_median_of "$DIR/runs.tsv" "$2" "$4"); b=$(bench_median_of "$DIR/runs.tsv" "$3" "$4")
  [[ -n $a && -n $b ]] || return 0
  awk -v l="$1" -v a="$a" -v b="$b" -v inv="${5:-}" 'BEGIN { printf "| %s | %.2f |\n", l, inv ? b/a : a/b }'
}
RATIOS=$(
  for s in mariadb mysql; do
    dec=mariadb:mariadb-binlog; [[ $s == mariadb ]] || dec=mysql:mysqlbinlog
    for p in tail run; do
      ratio "$s: rowstream $p CPU / ${dec#*:} CPU" "$s:rowstream-$p" "$dec" 5
    done
  done
  for p in tail run; do
    ratio "mysql: rowstream $p rows/s / Debezium rows/s" "mysql:rowstream-$p" mysql:debezium 3 inverse
  done
  ratio "mysql: rowstream tail --format debezium rows/s / Debezium rows/s" mysql:rowstream-tail-debezium mysql:debezium 3 inverse
)
[[ -z $RATIOS ]] || printf '\n| ratio (medians) | value |\n|---|---:|\n%s\n' "$RATIOS" | tee -a "$DIR/summary.md"
if ls "$DIR"/mysql:debezium.*.time.firstlast >/dev/null 2>&1; then
  fl=$(cat "$DIR"/mysql:debezium.*.time.firstlast | bench_median)
  [[ -z $fl ]] || awk -v f="$fl" -v n="$EXPECTED" 'BEGIN { printf "\nDebezium, first record to last (no JVM start, no connect): median %.2f s, %.0f row changes/s\n", f, n/f }' \
    | tee -a "$DIR/summary.md"
fi
[[ -z ${BASE_BIN:-} ]] || bench_ab "$DIR/runs.tsv" "$DIR/summary.md" mariadb: mysql:
