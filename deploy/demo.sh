#!/usr/bin/env bash
# deploy/demo.sh — the README's first command: see rowstream stream changes in a minute.
#   1. installs MariaDB from apt if it is missing (deploy/dev/install-test-deps.sh does the
#      same for the tests; the demo needs MariaDB only),
#   2. builds rowstream (release),
#   3. starts a private MariaDB on 127.0.0.1:${DEMO_PORT:-3390} (datadir target/demo/db),
#      with a small `shop` schema and a writer that inserts, updates and deletes orders,
#   4. runs `rowstream check --config`, then the service, `rowstream run`, into a file
#      backup under target/demo/backup (checkpoint in target/demo/checkpoint), and every
#      few seconds prints the backup's newest change events (`rowstream backup cat`),
#      for DEMO_SECONDS (default 20) or until Ctrl-C; then SIGTERM (clean drain), and
#      shows the checkpoint, runs `rowstream backup verify` on the backup, and restores the
#      backup into a second, empty server (`rowstream restore`), comparing the tables.
#      `rowstream tail` is the same stream straight to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/dev/lib.sh
PORT=${DEMO_PORT:-3390}
SECONDS_TO_RUN=${DEMO_SECONDS:-20}
DIR=target/demo

command -v cargo >/dev/null || die "cargo is missing: install Rust with https://rustup.rs (curl https://sh.rustup.rs -sSf | sh)"
if ! command -v mariadbd >/dev/null && [[ ! -x /usr/sbin/mariadbd ]]; then
  log "installing MariaDB (apt-get install mariadb-server mariadb-client)"
  SUDO=(); [[ $(id -u) == 0 ]] || SUDO=(sudo)
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y install mariadb-server mariadb-client >/dev/null
fi
log "building rowstream (cargo build --release)"
cargo build --release --quiet
BIN=target/release/rowstream

mkdir -p "$DIR"
deploy/dev/stop.sh --kill --purge "$DIR/db" >/dev/null 2>&1 || true   # a fresh demo every time
rm -rf "$DIR/backup" "$DIR/checkpoint"
SERVER_ENV=$(deploy/dev/start-mariadb.sh "$PORT" "$DIR/db")  # a failed start stops the script; inside eval it would not
eval "$SERVER_ENV"
SQL=(mariadb --no-defaults --default-character-set=utf8mb4 -h127.0.0.1 -P"$PORT" -uroot -proot)
WRITER= SERVICE=
cleanup() {
  [[ -n $SERVICE ]] && kill "$SERVICE" 2>/dev/null
  [[ -n $WRITER ]] && kill "$WRITER" 2>/dev/null
  deploy/dev/stop.sh "$DIR/db" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

START=$("${SQL[@]}" -N -e "SELECT @@gtid_binlog_pos")
"${SQL[@]}" <<'SQL'
CREATE DATABASE IF NOT EXISTS shop;
CREATE TABLE IF NOT EXISTS shop.customers (
  id INT UNSIGNED PRIMARY KEY AUTO_INCREMENT, name VARCHAR(100) NOT NULL, email VARCHAR(200),
  created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3));
CREATE TABLE IF NOT EXISTS shop.orders (
  id BIGINT UNSIGNED PRIMARY KEY AUTO_INCREMENT, customer_id INT UNSIGNED NOT NULL,
  total DECIMAL(10,2) NOT NULL, status ENUM('new','paid','shipped','cancelled') NOT NULL DEFAULT 'new',
  note JSON, updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6));
INSERT INTO shop.customers (name, email) VALUES ('Ada Lovelace', 'ada@example.com'), ('Alan Turing', NULL), ('Zoë Ünal', 'zoe@example.com');
SQL

# The live writer: a new order every half second, then it gets paid, shipped or cancelled.
(
  i=0
  while sleep 0.5; do
    i=$((i+1))
    "${SQL[@]}" -e "INSERT INTO shop.orders (customer_id, total, note) VALUES (1 + $i % 3, ROUND(RAND()*200, 2), JSON_OBJECT('n', $i, 'gift', $i % 2 = 0));
      UPDATE shop.orders SET status = ELT(1 + $i % 3, 'paid', 'shipped', 'cancelled') WHERE id + 1 = LAST_INSERT_ID();
      DELETE FROM shop.orders WHERE status = 'cancelled' AND id + 5 < LAST_INSERT_ID();" >/dev/null 2>>"$DIR/writer.err" || log "demo writer: statement failed (see $DIR/writer.err)"
  done
) &
WRITER=$!

cat >"$DIR/rowstream.toml" <<TOML
[source]
url = "mysql://repl:repl@127.0.0.1:$PORT"
server_id = 5401
name = "demo"
start = "${START:-earliest}"          # used only while there is no checkpoint
include = ["shop.*"]

[checkpoint]
dir = "$DIR/checkpoint"

[[sinks]]
type = "file"
name = "backup"
dir = "$DIR/backup"
TOML

echo
echo "== rowstream check --config $DIR/rowstream.toml"
"$BIN" check --config "$DIR/rowstream.toml"
echo
echo "== rowstream run --config $DIR/rowstream.toml   (for ${SECONDS_TO_RUN}s; Ctrl-C stops)"
"$BIN" run --config "$DIR/rowstream.toml" 2>"$DIR/rowstream.log" &
SERVICE=$!
for ((t = 5; t <= SECONDS_TO_RUN; t += 5)); do
  sleep 5
  kill -0 "$SERVICE" 2>/dev/null || { cat "$DIR/rowstream.log" >&2; die "rowstream run stopped"; }
  echo "-- after ${t}s: $("$BIN" backup cat "$DIR/backup" | wc -l) records in the backup; the newest:"
  "$BIN" backup cat "$DIR/backup" | tail -n 3
done
kill "$WRITER" 2>/dev/null; wait "$WRITER" 2>/dev/null || true; WRITER=
sleep 2   # let the service take in the writer's last transactions
kill -TERM "$SERVICE"; wait "$SERVICE"; SERVICE=
echo
echo "== stopped cleanly (SIGTERM). Checkpoint ($DIR/checkpoint/checkpoint.json):"
cat "$DIR/checkpoint/checkpoint.json"; echo
echo "== backup files:"; ls -l "$DIR/backup"
echo; echo "== rowstream backup verify $DIR/backup   (every transaction's CRC32C, order, gaps)"
"$BIN" backup verify "$DIR/backup"
echo
RPORT=$((PORT + 1))
echo "== rowstream restore --backup $DIR/backup --url mysql://root:root@127.0.0.1:$RPORT   (into a fresh, empty server)"
deploy/dev/stop.sh --kill --purge "$DIR/restored" >/dev/null 2>&1 || true
deploy/dev/start-mariadb.sh "$RPORT" "$DIR/restored" >/dev/null
"$BIN" restore --backup "$DIR/backup" --url "mysql://root:root@127.0.0.1:$RPORT"
RSQL=(mariadb --no-defaults -h127.0.0.1 -P"$RPORT" -uroot -proot)
for t in shop.customers shop.orders; do
  a=$("${SQL[@]}" -N -e "CHECKSUM TABLE $t" | awk '{print $2}')
  b=$("${RSQL[@]}" -N -e "CHECKSUM TABLE $t" | awk '{print $2}')
  [[ $a == "$b" ]] || die "$t differs after restore: source checksum $a, restored $b"
  echo "-- $t: same CHECKSUM TABLE on the source and the restored server ($a)"
done
deploy/dev/stop.sh --purge "$DIR/restored" >/dev/null 2>&1 || true
echo "Run it again and it resumes from the checkpoint; 'rowstream backup cat $DIR/backup' prints everything;"
echo "'rowstream restore --before GTID' restores to just before a bad transaction."
