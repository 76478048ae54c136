#!/usr/bin/env bash
# Commit-to-durable latency in the file backup under a steady load: a private MariaDB,
# `rowstream run` into the file backup (fsync on, group commit), and a paced writer of
# single-row commits at each RATE in RATES (default 1000 and 5000 transactions/s) for
# SECS seconds (default 20). Latency is what `[heartbeat]` measures on rowstream's own
# clock: from issuing a heartbeat upsert on the source (every 10 ms, its own connection)
# to that change being fsync'd in the backup (the histogram
# rowstream_sink_commit_to_durable_seconds{sink="backup"}, the difference between two
# scrapes around the load). Percentiles are read from the histogram's buckets
# (1, 2, 5, 10, 20, 50, 100 ms ...), so "p99 <= 20 ms" means the 99th percentile lies in
# the bucket ending at 20 ms. Also prints the rate the writer achieved, and the two
# parts measured on the same heartbeats: `src` = the heartbeat upsert's round trip on
# the source (rowstream_heartbeat_write_seconds: the source's commit under the load) and
# `sink` = from handing the batch to the sinks to the backup's ack (write + fsync,
# rowstream_sink_dispatch_to_durable_seconds); the rest is reading, decoding, queueing.
# Usage: benches/latency.sh                  (release build; needs deploy/dev/install-test-deps.sh)
#        RATES="1000 5000 10000" SECS=30 benches/latency.sh
#        PROFILE=debug RATES=200 SECS=3 benches/latency.sh   (a quick check that it works)
#        BIN=/path/to/rowstream benches/latency.sh          (another build, e.g. for an A/B)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-3411}
MPORT=${MPORT:-$((PORT+1))}
RATES=${RATES:-1000 5000}
SECS=${SECS:-20}
DIR=${BENCH_DIR:-target/bench-latency}
PROFILE=${PROFILE:-release}
if [[ -z ${BIN:-} ]]; then
  if [[ $PROFILE == release ]]; then cargo build --release --quiet; else cargo build --quiet; fi
  BIN=target/$PROFILE/rowstream
fi

cleanup() {
  [[ -n ${RS_PID:-} ]] && kill "$RS_PID" 2>/dev/null || true
  deploy/dev/stop.sh "$DIR/primary" >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup
rm -rf "$DIR"; mkdir -p "$DIR/rs"
deploy/dev/start-mariadb.sh "$PORT" "$DIR/primary" >/dev/null
P=(mariadb --defaults-file="$DIR/primary/client.cnf" -N -B)
"${P[@]}" <<'SQL'
CREATE DATABASE bench;
CREATE TABLE bench.t (id BIGINT AUTO_INCREMENT PRIMARY KEY, v INT NOT NULL, pad VARCHAR(100) NOT NULL);
DELIMITER //
CREATE PROCEDURE bench.paced(rate INT, secs INT)
BEGIN
  DECLARE t0 DECIMAL(20,6) DEFAULT UNIX_TIMESTAMP(SYSDATE(6));
  DECLARE i BIGINT DEFAULT 0;
  DECLARE ahead DECIMAL(20,6);
  WHILE i < rate * secs DO
    INSERT INTO bench.t (v, pad) VALUES (i, REPEAT('x', 80));
    SET i = i + 1;
    SET ahead = t0 + i / rate - UNIX_TIMESTAMP(SYSDATE(6));
    IF ahead > 0.001 THEN
      DO SLEEP(ahead);
    END IF;
  END WHILE;
END//
DELIMITER ;
SQL

cat >"$DIR/rs/rowstream.toml" <<TOML
[source]
url = "mysql://repl:repl@127.0.0.1:$PORT"
server_id = 9311
name = "bench"
[checkpoint]
dir = "$DIR/rs/checkpoint"
[[sinks]]
type = "file"
name = "backup"
dir = "$DIR/rs/backup"
[metrics]
listen = "127.0.0.1:$MPORT"
[heartbeat]
interval_ms = 10
url = "mysql://root:root@127.0.0.1:$PORT"
TOML
"$BIN" run --config "$DIR/rs/rowstream.toml" 2>"$DIR/rs/err.log" &
RS_PID=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$MPORT/metrics" | grep -q 'commit_to_durable_seconds_count{sink="backup"}' && break
  sleep 0.1
done

# Every histogram's bucket lines, "name{labels,le="X"} count" -> "name le count".
buckets() {
  curl -sf "http://127.0.0.1:$MPORT/metrics" | sed -n \
    -e 's/^rowstream_\(sink_commit_to_durable\|sink_dispatch_to_durable\)_seconds_bucket{sink="backup",le="\([^"]*\)"} \(.*\)$/\1 \2 \3/p' \
    -e 's/^rowstream_\(heartbeat_write\)_seconds_bucket{le="\([^"]*\)"} \(.*\)$/\1 \2 \3/p'
}

# p50 and p99 (bucket bounds, ms) of histogram $1 between two bucket dumps.
pct() {
  paste <(grep "^$1 " <<<"$2") <(grep "^$1 " <<<"$3") | awk '
    { le[NR]=$2; c[NR]=$6-$3 }
    END {
      n=c[NR]
      for (i=1; i<=NR; i++) {
        if (p50=="" && c[i] >= 0.50*n) p50=le[i]
        if (p99=="" && c[i] >= 0.99*n) p99=le[i]
      }
      printf "%s %s %d\n", (p50=="+Inf" ? "+Inf" : "<=" p50*1000), (p99=="+Inf" ? "+Inf" : "<=" p99*1000), n
    }'
}

printf '%-6s %9s %8s %10s %10s %10s %10s %10s %10s\n' rate achieved samples \
  p50_ms p99_ms src_p50 src_p99 sink_p50 sink_p99
for rate in $RATES; do
  before=$(buckets)
  t0=$(date +%s.%N)
  "${P[@]}" -e "CALL bench.paced($rate, $SECS)"
  t1=$(date +%s.%N)
  after=$(buckets)
  achieved=$(awk -v n=$((rate * SECS)) -v t0="$t0" -v t1="$t1" 'BEGIN {printf "%.0f", n/(t1-t0)}')
  read -r p50 p99 n < <(pct sink_commit_to_durable "$before" "$after")
  read -r s50 s99 _ < <(pct heartbeat_write "$before" "$after")
  read -r k50 k99 _ < <(pct sink_dispatch_to_durable "$before" "$after")
  printf '%-6s %9s %8s %10s %10s %10s %10s %10s %10s\n' "$rate" "$achieved" "$n" \
    "$p50" "$p99" "$s50" "$s99" "$k50" "$k99"
  kill -0 "$RS_PID" || { cat "$DIR/rs/err.log" >&2; exit 1; }
done
kill -TERM "$RS_PID"; wait "$RS_PID" || true; RS_PID=

# What the disk alone gives: 1,000 appends of 600 bytes (a heartbeat's share of a
# backup write), each fsync'd, in the backup's directory, right after the load.
python3 - "$DIR/rs/backup/fsync-probe" <<'PY'
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
t = []
for _ in range(1000):
    a = time.perf_counter(); os.write(fd, b"x" * 600); os.fsync(fd); t.append(time.perf_counter() - a)
os.close(fd); os.unlink(sys.argv[1]); t.sort()
print("disk: fsync of a 600-byte append, 1000 times: p50 %.2f ms, p99 %.2f ms, max %.1f ms"
      % (t[500] * 1e3, t[989] * 1e3, t[-1] * 1e3))
PY
