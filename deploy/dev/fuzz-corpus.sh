#!/usr/bin/env bash
# fuzz-corpus.sh [CORPUS_DIR]
#
# Regenerates the seed corpora of the fuzz targets (fuzz/, see deploy/dev/fuzz.sh) from what
# the throwaway test servers produce: starts a MySQL (plain), a MySQL with compressed
# transactions and PARTIAL_JSON, and a MariaDB (deploy/dev/start-*.sh, ports 3391-3393),
# runs a workload over every column type (JSON with partial updates included), copies
# their binlog files as binlog_events seeds (byte 0 selects the flavour, see
# rowstream::fuzzing), their GTID sets as gtid_set seeds, runs `rowstream run` with a file
# sink for a few seconds to get real backup segments and a checkpoint, and adds the
# example configs. Servers are purged at the end. CORPUS_DIR defaults to fuzz/corpus.
# Seeds are kept small (each binlog file is cut to 64 KiB, the fuzzers' -max_len).
source "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-$ROOT/fuzz/corpus}
WORK=$(mktemp -d /tmp/rowstream-corpus.XXXXXX)
trap '"$DEV_SCRIPTS/stop.sh" --purge "$WORK/my" "$WORK/myz" "$WORK/ma" >/dev/null 2>&1; rm -rf "$WORK"' EXIT
for t in binlog_events binlog_json json_diff gtid_set backup_segment checkpoint config; do
  mkdir -p "$OUT/$t"
done

WORKLOAD="
CREATE DATABASE IF NOT EXISTS f;
CREATE TABLE f.t (id INT PRIMARY KEY, ti TINYINT, si SMALLINT UNSIGNED, mi MEDIUMINT, bi BIGINT UNSIGNED,
  fl FLOAT, db DOUBLE, de DECIMAL(20,6), dn DECIMAL(5,0), ch CHAR(3), vc VARCHAR(300), bn BINARY(4), vb VARBINARY(20),
  tx TEXT, bl BLOB, en ENUM('a','b','c'), st SET('x','y','z'), bt BIT(13), dt DATE, tm TIME(3), dtt DATETIME(6),
  ts TIMESTAMP(2) NULL, yr YEAR, js JSON) DEFAULT CHARSET utf8mb4;
INSERT INTO f.t VALUES (1, -1, 65535, -8388608, 18446744073709551615, 1.5, -2.25e100, -12345678901234.123456, 99999,
  'ab', REPEAT('v', 300), 0x01020304, 0xff00, 'text', 0xdeadbeef, 'b', 'x,z', b'1010101010101', '2024-02-29',
  '-838:59:59.000', '2038-01-19 03:14:07.999999', '2020-01-01 00:00:00.5', 2155,
  '{\"a\": [1, 2.5, \"s\", null, true, {\"b\": -3}], \"big\": 18446744073709551615, \"neg\": -9223372036854775808}');
INSERT INTO f.t (id, js) VALUES (2, '[]'), (3, '\"str\"'), (4, '{\"k\": {\"deep\": [[[1]]]}}'), (5, NULL);
UPDATE f.t SET js = JSON_SET(js, '\$.a[1]', 7, '\$.new', 'x') WHERE id = 1;
UPDATE f.t SET js = JSON_REPLACE(js, '\$.k.deep[0][0][0]', 'y') WHERE id = 4;
UPDATE f.t SET js = JSON_REMOVE(js, '\$.a[0]') WHERE id = 1;
UPDATE f.t SET js = JSON_INSERT(js, '\$[5]', 1) WHERE id = 2;
UPDATE f.t SET vc = 'changed', de = 0.000001 WHERE id = 1;
DELETE FROM f.t WHERE id = 3;
CREATE TABLE f.nopk (a INT, b VARCHAR(10));
INSERT INTO f.nopk VALUES (1, 'x'), (NULL, NULL);
ALTER TABLE f.nopk ADD COLUMN c DATETIME;
UPDATE f.nopk SET c = NOW();
TRUNCATE f.nopk;
"

run_sql() { # CLIENT_CNF SQL
  "$DEV_SCRIPTS/mysql-tool.sh" mysql --defaults-file="$1" -e "$2"
}
mariadb_sql() {
  mariadb --defaults-file="$1" -e "$2"
}

seed_server() { # NAME FLAVOR_BYTE START_SCRIPT PORT DATADIR SQL_FN [-- args]
  local name=$1 sel=$2 script=$3 port=$4 dir=$5 sqlfn=$6; shift 6
  local server_env
  server_env=$("$DEV_SCRIPTS/$script" "$port" "$dir" "$@")  # fails here if the server did not start
  eval "$server_env"
  local sql=$WORKLOAD
  # MariaDB has no JSON type (it is LONGTEXT) nor JSON_SET partial updates in the binlog.
  [[ $sel == 1 ]] && sql=${sql//' JSON)'/' LONGTEXT)'}
  "$sqlfn" "$CLIENT_CNF" "$sql" >/dev/null
  "$sqlfn" "$CLIENT_CNF" "FLUSH BINARY LOGS" >/dev/null
  local f
  for f in "$DATADIR"/db/mysql-bin.[0-9]* "$DATADIR"/mysql-bin.[0-9]*; do
    [[ -f $f ]] || continue
    { printf "\\x0$sel"; head -c 65535 "$f"; } > "$OUT/binlog_events/$name-$(basename "$f")"
  done
  "$sqlfn" "$CLIENT_CNF" "SELECT @@gtid_executed" 2>/dev/null | tail -1 > "$OUT/gtid_set/$name-executed" || true
  "$sqlfn" "$CLIENT_CNF" "SELECT @@gtid_binlog_pos" 2>/dev/null | tail -1 > "$OUT/gtid_set/$name-pos" || true
  echo "$REPL_URL"
}

MY_URL=$(seed_server my 0 start-mysql.sh 3391 "$WORK/my" run_sql)
seed_server myz 0 start-mysql.sh 3392 "$WORK/myz" run_sql -- \
  --binlog-transaction-compression=ON --binlog-row-value-options=PARTIAL_JSON >/dev/null
seed_server ma 1 start-mariadb.sh 3393 "$WORK/ma" mariadb_sql >/dev/null

# Backup segments and a checkpoint from a real run (the debug binary of this tree).
BIN=$ROOT/target/debug/rowstream
[[ -x $BIN ]] || (cd "$ROOT" && cargo build --bin rowstream)
cat > "$WORK/rs.toml" <<TOML
[source]
url = "$MY_URL"
server_id = 4999
name = "corpus"
start = "earliest"
[checkpoint]
dir = "$WORK/cp"
[[sinks]]
type = "file"
name = "backup"
dir = "$WORK/backup"
TOML
"$BIN" run --config "$WORK/rs.toml" 2>"$WORK/rs.log" & RS=$!
sleep 8; kill -TERM "$RS"; wait "$RS" || true
cp "$WORK/cp/checkpoint.json" "$OUT/checkpoint/real" 2>/dev/null || log "no checkpoint written: $(tail -3 "$WORK/rs.log")"
# The open segment is written compressed (N.ndjson.zst.open): seeds take its text.
for f in "$WORK"/backup/*.ndjson.zst.open; do
  [[ -f $f ]] || continue
  zstdcat "$f" > "${f%.zst.open}" 2>/dev/null || true
done
for f in "$WORK"/backup/*.ndjson; do
  [[ -f $f ]] || continue
  # Layout of rowstream::fuzzing::backup_segment: byte 0, u16 length of segment 1, segments.
  python3 - "$f" "$OUT/backup_segment/$(basename "$f")" <<'PY'
import struct, sys
data = open(sys.argv[1], 'rb').read()[:60000]
half = data.rfind(b'\n', 0, len(data) // 2) + 1
open(sys.argv[2], 'wb').write(bytes([0]) + struct.pack('<H', half) + data)
PY
done

# Hand-made seeds for what the servers do not produce.
printf '%s' '{"version":2,"flavor":"mariadb","gtid_set":"0-1-5,1-2-7","server":"db:3306","updated_at":"2026-01-01T00:00:00Z","snapshot":{}}' > "$OUT/checkpoint/mariadb"
printf '%s' '{"version":1,"flavor":"mysql","gtid_set":"3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7-9:tag:1","server":"x","updated_at":"2026-01-01T00:00:00Z"}' > "$OUT/checkpoint/v1"
printf '%s' '3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7-9,3e11fa47-71ca-11e1-9e33-c80aa9429563:tag:1-3' > "$OUT/gtid_set/mysql-tagged"
printf '%s' '0-1-100,1-2-3,4294967295-4294967295-18446744073709551615' > "$OUT/gtid_set/mariadb"
for f in "$ROOT"/deploy/*.toml; do
  cp "$f" "$OUT/config/$(basename "$f")"
  { cat "$f"; printf '\0SOURCE__NAME=env\nSINKS__0__DIR=/tmp/x\n'; } > "$OUT/config/env-$(basename "$f")"
done
printf '\x04\x00{"a":1}' > "$OUT/json_diff/text-doc"
printf '\x00\x01\x00\x02\x00\x00' > "$OUT/binlog_json/small-object"
log "corpus in $OUT: $(du -sh "$OUT" | cut -f1)"
