#!/usr/bin/env bash
# `rowstream verify` benchmark: one table of $ROWS rows (default 10,000,000;
# 8 mixed columns, the restore bench's shape) loaded identically into two
# idle MariaDB servers on this machine, then compared, in the same run and
# alternating:
#   - rowstream-verify: `rowstream verify --threads $THREADS --chunk-rows $CHUNK`
#     (idle servers: the whole-table CHECKSUM TABLE agrees; must exit 0);
#   - rowstream-chunks: the same with `--table-checksum never` (server-side
#     per-chunk checksums, the path of a live or differing copy);
#   - naive: `SELECT * FROM bench.t ORDER BY id` on both servers streamed
#     (mariadb --quick) into one client that compares them (`cmp`), the way
#     a script compares two tables today.
# A last rowstream run after one changed row on the target must exit 1 and
# name that key (a check that the fast path still looks).
# Reported per method (medians over RUNS, default 3): wall seconds, rows/s,
# the client's CPU seconds and peak RSS, and the ratio to rowstream.
# Usage: benches/verify.sh                       (release build; needs install-test-deps.sh)
#        ROWS=100000 RUNS=1 BIN=target/debug/rowstream benches/verify.sh   (a quick look)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-3495}
TPORT=${TPORT:-$((PORT+1))}
RUNS=${RUNS:-3}
THREADS=${THREADS:-4}
CHUNK=${CHUNK:-10000}
ROWS=${ROWS:-10000000}
DIR=${BENCH_DIR:-target/bench-verify}
mkdir -p "$DIR"
if [[ -z ${BIN:-} ]]; then
  cargo build --release --quiet
  BIN=target/release/rowstream
fi
BIN=$(readlink -f "$BIN")

deploy/dev/start-mariadb.sh "$PORT" "$DIR/src" >/dev/null
deploy/dev/start-mariadb.sh "$TPORT" "$DIR/target" >/dev/null
trap 'deploy/dev/stop.sh "$DIR/src" >/dev/null 2>&1 || true; deploy/dev/stop.sh "$DIR/target" >/dev/null 2>&1 || true' EXIT
SQL=(mariadb --no-defaults -h127.0.0.1 -uroot -proot)

# The same rows on both servers (kept in $DIR across runs of the same ROWS).
load() {
  "${SQL[@]}" -P"$1" -e "DROP DATABASE IF EXISTS bench; CREATE DATABASE bench;
  CREATE TABLE bench.t (id BIGINT NOT NULL PRIMARY KEY, a INT NOT NULL, b VARCHAR(64) CHARACTER SET utf8mb4 NOT NULL,
    c DECIMAL(12,2) NOT NULL, d DATETIME(6) NOT NULL, e DOUBLE NOT NULL, f TEXT CHARACTER SET utf8mb4 NULL,
    g TINYINT UNSIGNED NOT NULL) ENGINE=InnoDB;"
  local step=1000000 lo
  for ((lo=0; lo<ROWS; lo+=step)); do
    local n=$(( ROWS-lo < step ? ROWS-lo : step ))
    "${SQL[@]}" -P"$1" -e "SET sql_log_bin=0; USE bench; INSERT INTO bench.t SELECT $lo+seq, CAST(seq AS SIGNED)*7-3500,
      CONCAT('name-',seq,'-',$lo), seq*1.25, TIMESTAMP'2024-01-01 00:00:00.123456' + INTERVAL seq SECOND,
      seq/3.0, IF(seq%10=0, NULL, REPEAT('x', seq%50)), seq%256 FROM seq_1_to_$n;"
  done
}
if [[ $(cat "$DIR/rows" 2>/dev/null) != "$ROWS" ]]; then
  load "$PORT" & load "$TPORT" & wait
  echo "$ROWS" >"$DIR/rows"
fi

URLS=(--source "mysql://root:root@127.0.0.1:$PORT" --target "mysql://root:root@127.0.0.1:$TPORT")
# run NAME OUT: one timed comparison; writes "wall client_cpu peak_rss_kb".
run() {
  local name=$1 out=$2 t0 t1 rc=0
  t0=$(date +%s.%N)
  case $name in
    rowstream-verify)
      /usr/bin/time -f '%U %S %M' -o "$out.time" "$BIN" verify "${URLS[@]}" --include 'bench.*' \
        --threads "$THREADS" --chunk-rows "$CHUNK" >"$out.log" 2>&1 || rc=$? ;;
    rowstream-chunks)
      /usr/bin/time -f '%U %S %M' -o "$out.time" "$BIN" verify "${URLS[@]}" --include 'bench.*' \
        --threads "$THREADS" --chunk-rows "$CHUNK" --table-checksum never >"$out.log" 2>&1 || rc=$? ;;
    naive)
      /usr/bin/time -f '%U %S %M' -o "$out.time" bash -c \
        "cmp <(mariadb --no-defaults -h127.0.0.1 -P$PORT -uroot -proot --quick -N -e 'SELECT * FROM bench.t ORDER BY id') \
             <(mariadb --no-defaults -h127.0.0.1 -P$TPORT -uroot -proot --quick -N -e 'SELECT * FROM bench.t ORDER BY id')" \
        >"$out.log" 2>&1 || rc=$? ;;
  esac
  t1=$(date +%s.%N)
  [[ $rc == 0 ]] || { echo "$name exited $rc:" >&2; cat "$out.log" >&2; exit 1; }
  read -r u s m <"$out.time"
  echo "$t1 $t0 $u $s $m" | awk '{printf "%.2f %.2f %d\n", $1-$2, $3+$4, $5/1024}' >"$out"
}

ORDER=(rowstream-verify rowstream-chunks naive)
for ((r=1; r<=RUNS; r++)); do
  for name in "${ORDER[@]}"; do
    run "$name" "$DIR/$name.$r"
    echo "run $r $name: $(cat "$DIR/$name.$r") (wall s, client cpu s, client peak RSS MB)" >&2
  done
done

# The fast path must still see a difference.
"${SQL[@]}" -P"$TPORT" -e "SET sql_log_bin=0; UPDATE bench.t SET a = a + 1 WHERE id = $((ROWS/2))"
rc=0
"$BIN" verify "${URLS[@]}" --include 'bench.*' --threads "$THREADS" --chunk-rows "$CHUNK" >"$DIR/diff.log" 2>&1 || rc=$?
"${SQL[@]}" -P"$TPORT" -e "SET sql_log_bin=0; UPDATE bench.t SET a = a - 1 WHERE id = $((ROWS/2))"
[[ $rc == 1 ]] && grep -q "key={\"id\":$((ROWS/2))}" "$DIR/diff.log" \
  || { echo "verify missed the changed row (exit $rc):" >&2; cat "$DIR/diff.log" >&2; exit 1; }

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
col() { for ((r=1; r<=RUNS; r++)); do awk -v c="$2" '{print $c}' "$DIR/$1.$r"; done | median; }
base=$(col rowstream-verify 1)
printf '| method | wall s | rows/s | client CPU s | client peak RSS MB | wall vs rowstream |\n'
printf '|---|---|---|---|---|---|\n'
for name in "${ORDER[@]}"; do
  w=$(col "$name" 1); c=$(col "$name" 2); m=$(col "$name" 3)
  awk -v n="$name" -v w="$w" -v c="$c" -v m="$m" -v e="$ROWS" -v b="$base" \
    'BEGIN {printf "| %s | %.1f | %.0f | %.1f | %d | %.2fx |\n", n, w, e/w, c, m, (b>0 ? w/b : 0)}'
done
echo "($RUNS runs, medians; $ROWS rows; rowstream --threads $THREADS --chunk-rows $CHUNK; the changed row was found)"
