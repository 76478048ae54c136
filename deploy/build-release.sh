#!/usr/bin/env bash
# deploy/build-release.sh — the release binary we ship and benchmark: rowstream built with
# profile-guided optimization (PGO), into target/pgo/rowstream. `cargo build --release` is
# the same code without the profile (about 5% more instructions per change; README,
# "Building"). Steps (4-8 minutes on 2 cores; every step's output under target/pgo):
#   1. an instrumented build (rustc -Cprofile-generate),
#   2. the training run: deploy/pgo-train.sh's workload (most column types; not the
#      benchmarks' table) into a private MariaDB 10.11 and MySQL 9.7, then with the
#      instrumented binary: `tail` (json and debezium), `run` with a snapshot, `run` from
#      the binlog into a file backup and an http sink (connectors/http/examples/receiver.rs
#      answers), `backup verify`, `restore` into an empty server, `verify` of that copy,
#   3. llvm-profdata merge (rustup's llvm-tools component, installed when missing),
#   4. the optimized build (rustc -Cprofile-use),
#   5. a check: the optimized binary's `tail` prints the same lines as the instrumented
#      one's (processing times aside).
# Needs what the tests need (deploy/dev/install-test-deps.sh). Env: TRAIN_TX (100
# transactions per server), PGO_PORT (3420; the MySQL servers take the next ports).
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/dev/lib.sh
ROOT=$PWD
DIR=$ROOT/target/pgo
TX=${TRAIN_TX:-100}
CHANGES=$((1024 + 2000 * TX + 700 * (TX - 1)))   # the row changes of pgo-train.sh TX
PORT=${PGO_PORT:-3420}
PROFDATA=$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-profdata
if [[ ! -x $PROFDATA ]]; then
  log "installing llvm-profdata (rustup component add llvm-tools)"
  rustup component add llvm-tools >/dev/null
fi
[[ -x $PROFDATA ]] || die "llvm-profdata not found at $PROFDATA after 'rustup component add llvm-tools'"

STARTED=() RX=
cleanup() {
  [[ -n $RX ]] && kill "$RX" 2>/dev/null
  for d in "${STARTED[@]}"; do deploy/dev/stop.sh --purge "$d" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
rm -rf "$DIR/raw" "$DIR/train"
mkdir -p "$DIR/raw" "$DIR/train"

log "1/5 instrumented build (target/pgo/gen)"
RUSTFLAGS="-Cprofile-generate=$DIR/raw" cargo build --release --quiet --bin rowstream --target-dir "$DIR/gen"
GEN=$DIR/gen/release/rowstream
# Build scripts of the instrumented build wrote profiles too: only the training's count.
rm -f "$DIR"/raw/*
# The http sink's peer: answers every request 200 at once.
cargo build --release --quiet --example receiver -p rowstream-http
target/release/examples/receiver "$((PORT + 10))" /dev/null >/dev/null &
RX=$!

# train FLAVOR PORT: the workload into a fresh server, then every command over it.
train() {
  local flavor=$1 port=$2 d=$DIR/train/$1 sql
  local url=mysql://root:root@127.0.0.1:$port
  mkdir -p "$d"
  STARTED+=("$d/db" "$d/copy")
  deploy/dev/stop.sh --kill --purge "$d/db" >/dev/null 2>&1 || true
  deploy/dev/stop.sh --kill --purge "$d/copy" >/dev/null 2>&1 || true
  if [[ $flavor == mariadb ]]; then
    deploy/dev/start-mariadb.sh "$port" "$d/db" >/dev/null
    deploy/dev/start-mariadb.sh "$((port + 2))" "$d/copy" >/dev/null
    sql=(mariadb --no-defaults --default-character-set=utf8mb4 -h127.0.0.1 -P"$port" -uroot -proot)
  else
    deploy/dev/start-mysql.sh "$port" "$d/db" >/dev/null
    deploy/dev/start-mysql.sh "$((port + 2))" "$d/copy" >/dev/null
    sql=(deploy/dev/mysql-tool.sh mysql --defaults-file="$d/db/client.cnf" --get-server-public-key
      --default-character-set=utf8mb4)
  fi
  deploy/pgo-train.sh "$TX" | "${sql[@]}"
  log "  $flavor: $CHANGES row changes; tail, run (snapshot, then the binlog), verify, restore"
  "$GEN" tail --url "$url" --from earliest --max-events "$CHANGES" >"$d/tail.json" 2>"$d/tail.log"
  "$GEN" tail --url "$url" --from earliest --max-events "$CHANGES" --format debezium >/dev/null 2>>"$d/tail.log"
  # The service: a snapshot of what is there (op "r", then exit), then a second service
  # streams the whole binlog into its own backup until its checkpoint holds the server's set.
  conf() { # conf NAME START_LINE SNAPSHOT_MODE
    printf '[source]\nurl = "mysql://repl:repl@127.0.0.1:%s"\nserver_id = 9301\nname = "train"\n%s\n' "$port" "$2"
    printf '[snapshot]\nmode = "%s"\n[checkpoint]\ndir = "%s"\n' "$3" "$d/$1-checkpoint"
    printf '[[sinks]]\ntype = "file"\nname = "backup"\ndir = "%s"\n' "$d/$1-backup"
    [[ $1 == stream ]] && printf '[[sinks]]\ntype = "http"\nname = "hook"\nurl = "http://127.0.0.1:%s/{db}/{table}"\n' "$((PORT + 10))"
    return 0
  }
  conf snapshot 'start = "latest"' initial_only >"$d/snapshot.toml"
  conf stream 'start = "earliest"' initial >"$d/stream.toml"
  "$GEN" run --config "$d/snapshot.toml" 2>"$d/snapshot.log" || { cat "$d/snapshot.log" >&2; die "training: the snapshot failed"; }
  local want pid n=0
  if [[ $flavor == mariadb ]]; then want=$("${sql[@]}" -N -e 'SELECT @@gtid_binlog_pos'); else want=$("${sql[@]}" -N -e 'SELECT @@gtid_executed'); fi
  "$GEN" run --config "$d/stream.toml" 2>"$d/run.log" &
  pid=$!
  until grep -qF "\"gtid_set\":\"$want\"" "$d/stream-checkpoint/checkpoint.json" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { cat "$d/run.log" >&2; die "training: rowstream run stopped"; }
    ((n++ < 600)) || die "training: the checkpoint did not reach $want in 60 s (see $d/run.log)"
    sleep 0.1
  done
  kill -TERM "$pid"; wait "$pid" || die "training: rowstream run did not stop cleanly (see $d/run.log)"
  [[ $("$GEN" backup cat "$d/stream-backup" | grep -c '"op":"[cud]"') == "$CHANGES" ]] ||
    die "training: the backup does not hold the $CHANGES row changes"
  "$GEN" backup verify "$d/stream-backup" >/dev/null
  "$GEN" restore --backup "$d/stream-backup" --url "mysql://root:root@127.0.0.1:$((port + 2))" >/dev/null 2>"$d/restore.log"
  "$GEN" verify --source "$url" --target "mysql://root:root@127.0.0.1:$((port + 2))" --include 'train.*' \
    >"$d/verify.log" 2>&1 || { cat "$d/verify.log" >&2; die "training: the restored copy differs from the source"; }
}

log "2/5 training run (target/pgo/train)"
train mariadb "$PORT"
train mysql "$((PORT + 1))"

log "3/5 merging the profiles"
"$PROFDATA" merge -o "$DIR/rowstream.profdata" "$DIR"/raw/*.profraw

log "4/5 optimized build (target/pgo/use)"
RUSTFLAGS="-Cprofile-use=$DIR/rowstream.profdata" cargo build --release --quiet --bin rowstream --target-dir "$DIR/use"
cp "$DIR/use/release/rowstream" "$DIR/rowstream.new"

log "5/5 checking the optimized binary against the instrumented one"
# The envelope's processing time (after `op`, or after a DDL record's source block).
strip_ts() { sed 's/\("op":"."\),"ts_ms":[0-9]*,/\1,/; s/},"ts_ms":[0-9]*,"databaseName"/},"databaseName"/' "$1"; }
for flavor in mariadb mysql; do
  d=$DIR/train/$flavor
  p=$PORT; [[ $flavor == mysql ]] && p=$((PORT + 1))
  "$DIR/rowstream.new" tail --url "mysql://root:root@127.0.0.1:$p" --from earliest \
    --max-events "$CHANGES" >"$d/tail.pgo.json" 2>/dev/null
  cmp -s <(strip_ts "$d/tail.json") <(strip_ts "$d/tail.pgo.json") ||
    die "the optimized binary's tail differs from the instrumented one's on $flavor ($d/tail.json, $d/tail.pgo.json)"
done
mv "$DIR/rowstream.new" "$DIR/rowstream"
log "built $DIR/rowstream"
