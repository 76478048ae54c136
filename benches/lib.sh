# shellcheck shell=bash
# benches/lib.sh — helpers shared by the scripts in benches/. Source it, don't
# run it. Nothing here starts or stops a server: the scripts do (and trap EXIT).
#
#   bench_generate ENVFILE FLAVOR NTX ROWS CLIENT...
#       the bench-peers workload (../shared/bench-peers: table bench.t, 8 mixed columns,
#       NTX transactions x ROWS-row INSERT, then one UPDATE of every row = NTX*ROWS*2 row
#       changes) into a fresh binlog file of a server (FLAVOR mariadb or mysql), through
#       CLIENT (a mariadb / mysql command line); writes ENVFILE: FILE END GTID_START
#       EXPECTED. Skipped when ENVFILE exists with the same EXPECTED (a cached run).
#   file_sink_toml DIR            the [[sinks]] table of a file backup in DIR
#   bench_wait_for FILE TEXT PID  waits until FILE holds TEXT (looked at every 5 ms), or
#                                 returns 1 once PID is gone; forks nothing meanwhile
#   run_service TIMEFILE DIR URL GTID_START GTID_END BIN SINK_TOML
#       `rowstream run` from GTID_START with a fresh checkpoint in DIR, under
#       /usr/bin/time -v -o TIMEFILE; TIMEFILE.catchup gets the seconds from start until
#       DIR/checkpoint/checkpoint.json holds GTID_END; then a clean stop (SIGTERM).
#   bench_row TSV DIR READER RUN  appends "READER RUN wall rss_kib cpu_s" to TSV from
#                                 DIR/READER.RUN.time (and .catchup when there is one)
#   bench_median_of TSV READER COLUMN   the median of a column (3 wall, 4 rss, 5 cpu)
#   bench_table TSV EXPECTED OUT READER...  the markdown median table, also into OUT
#   bench_ab TSV OUT PREFIX...    "this build / base" wall and CPU ratios of PREFIXtail
#                                 vs PREFIXbase-tail (rowstream-tail / base-tail), ditto run

# The SELECT list of one INSERT: rows ($t-1)*ROWS+1 .. t*ROWS from a column `seq` 1..ROWS.
bench_select() {
  echo "($1-1)*$2+seq, CAST(seq AS SIGNED)*7-3500, CONCAT('name-',seq,'-',$1), seq*1.25, TIMESTAMP'2024-01-01 00:00:00.123456' + INTERVAL seq SECOND, seq/3.0, IF(seq%10=0, NULL, REPEAT('x', seq%50)), seq%256"
}

bench_generate() {
  local env=$1 flavor=$2 ntx=$3 rows=$4; shift 4
  local expected=$((ntx*rows*2)) status gtid file file2 end gtid_start t
  if [[ -f $env ]] && grep -q "^EXPECTED=$expected\$" "$env"; then return 0; fi
  # MySQL 8.4+ dropped SHOW MASTER STATUS; its GTID set is @@gtid_executed.
  if [[ $flavor == mysql ]]; then status='SHOW BINARY LOG STATUS'; gtid='@@gtid_executed'
  else status='SHOW MASTER STATUS'; gtid='@@gtid_binlog_pos'; fi
  "$@" -e "CREATE DATABASE IF NOT EXISTS bench; DROP TABLE IF EXISTS bench.t;
  CREATE TABLE bench.t (id BIGINT NOT NULL PRIMARY KEY, a INT NOT NULL, b VARCHAR(64) CHARACTER SET utf8mb4 NOT NULL,
    c DECIMAL(12,2) NOT NULL, d DATETIME(6) NOT NULL, e DOUBLE NOT NULL, f TEXT CHARACTER SET utf8mb4 NULL,
    g TINYINT UNSIGNED NOT NULL) ENGINE=InnoDB; FLUSH BINARY LOGS;" || { echo "creating bench.t failed" >&2; return 1; }
  read -r file _ <<<"$("$@" -N -e "$status")"
  gtid_start=$("$@" -N -e "SELECT $gtid")
  {
    echo "USE bench;"
    # MySQL has no seq_1_to_N engine: a recursive CTE of BIGINT UNSIGNED like MariaDB's seq.
    [[ $flavor != mysql ]] || echo "SET SESSION cte_max_recursion_depth = $((rows+10));"
    for ((t=1; t<=ntx; t++)); do
      if [[ $flavor == mysql ]]; then
        echo "INSERT INTO bench.t WITH RECURSIVE n(seq) AS (SELECT CAST(1 AS UNSIGNED) UNION ALL SELECT seq+1 FROM n WHERE seq<$rows) SELECT $(bench_select "$t" "$rows") FROM n;"
      else
        echo "INSERT INTO bench.t SELECT $(bench_select "$t" "$rows") FROM seq_1_to_$rows;"
      fi
    done
    echo "UPDATE bench.t SET a=a+1, b=CONCAT(b,'-u'), e=e*2;"
  } | "$@" || { echo "generating the workload failed" >&2; return 1; }
  read -r file2 end _ <<<"$("$@" -N -e "$status")"
  [[ $file == "$file2" ]] || { echo "binlog rotated during generation ($file -> $file2): raise max_binlog_size" >&2; return 1; }
  printf 'FILE=%s\nEND=%s\nGTID_START=%s\nEXPECTED=%s\n' "$file" "$end" "$gtid_start" "$expected" >"$env"
}

# Builtins only: on two shared cores, a grep and a sleep every 20 ms (100 forks a
# second) took about 0.08 CPU s per second from the process being timed, and it is the
# only reader timed by polling. `read -t` on a pipe nobody writes is the sleep.
bench_wait_for() {
  local f=$1 text=$2 pid=$3 s fd rc=0
  exec {fd}<> <(:)
  while :; do
    s=""
    [[ -r $f ]] && { IFS= read -r -d '' s <"$f" || true; }
    [[ $s == *"$text"* ]] && break
    kill -0 "$pid" 2>/dev/null || { rc=1; break; }
    read -t 0.005 -u "$fd" _ || true
  done
  exec {fd}<&-
  return $rc
}

file_sink_toml() { printf '[[sinks]]\ntype = "file"\nname = "backup"\ndir = "%s"' "$1/backup"; }

run_service() {
  local tf=$1 d=$2 url=$3 from=$4 upto=$5 bin=$6 sink=$7 t0 pid
  cat >"$d/rowstream.toml" <<TOML
[source]
url = "$url"
server_id = 9102
name = "bench"
start = "$from"
[checkpoint]
dir = "$d/checkpoint"
$sink
TOML
  t0=$(date +%s.%N)
  /usr/bin/time -v -o "$tf" "$bin" run --config "$d/rowstream.toml" 2>"$d/err.log" &
  pid=$!
  bench_wait_for "$d/checkpoint/checkpoint.json" "\"gtid_set\":\"$upto\"" $pid ||
    { cat "$d/err.log" >&2; return 1; }
  echo "$(date +%s.%N) $t0" | awk '{printf "%.2f", $1-$2}' >"$tf.catchup"
  pkill -TERM -P $pid   # rowstream itself, not /usr/bin/time: a clean drain
  wait $pid
}

bench_to_secs() { awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else if (NF==2) print $1*60+$2; else print $1 }'; }
bench_median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

bench_row() {
  local tsv=$1 d=$2 r=$3 i=$4 wall rss cpu
  if [[ -f $d/$r.$i.time.catchup ]]; then wall=$(cat "$d/$r.$i.time.catchup")
  else wall=$(grep 'Elapsed (wall clock)' "$d/$r.$i.time" | awk '{print $NF}' | bench_to_secs); fi
  rss=$(grep 'Maximum resident set size' "$d/$r.$i.time" | awk '{print $NF}')
  cpu=$(awk '/User time|System time/ {s+=$NF} END {print s}' "$d/$r.$i.time")
  printf '%s\t%s\t%s\t%s\t%s\n' "$r" "$i" "$wall" "$rss" "$cpu" | tee -a "$tsv"
}

bench_median_of() { awk -v r="$2" -v c="$3" -F'\t' '$1==r {print $c}' "$1" | bench_median; }

bench_table() {
  local tsv=$1 n=$2 out=$3 r; shift 3
  printf '| reader | median wall s | row changes/s | median peak RSS MiB | median CPU s |\n|---|---:|---:|---:|---:|\n' | tee "$out"
  for r in "$@"; do
    awk -v r="$r" -v w="$(bench_median_of "$tsv" "$r" 3)" -v m="$(bench_median_of "$tsv" "$r" 4)" \
        -v c="$(bench_median_of "$tsv" "$r" 5)" -v n="$n" \
      'BEGIN { if (w == "") exit; printf "| %s | %.2f | %.0f | %.1f | %.2f |\n", r, w, n/w, m/1024, c }' | tee -a "$out"
  done
}

bench_ab() {
  local tsv=$1 out=$2 pre p; shift 2
  for pre in "$@"; do
    for p in tail run; do
      awk -F'\t' -v a="${pre}rowstream-$p" -v b="${pre}base-$p" '
        $1==a {wa[++na]=$3; ca[na]=$5} $1==b {wb[++nb]=$3; cb[nb]=$5}
        function med(x, n) { asort(x); return x[int((n+1)/2)] }
        END { if (na && nb) printf "%s: this build / base: wall %.2f, CPU %.2f (medians)\n", a, med(wa,na)/med(wb,nb), med(ca,na)/med(cb,nb) }' \
        "$tsv" | tee -a "$out"
    done
  done
}
