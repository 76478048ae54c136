#!/usr/bin/env bash
# deploy/pgo-train.sh N — prints the SQL of build-release.sh's training workload, for MariaDB
# 10.11 and MySQL 9.7 alike: a `train` schema of two tables with most column types (not the
# benchmarks' bench.t, so that the profile does not fit the benchmark), N transactions
# inserting 1,000 rows into each, then updates, deletes and an ALTER TABLE mid-stream.
# Row changes: 1,024 (train.seq) + 2,000 N (inserts) + 700 (N - 1) (500 updates and 200
# deletes per later transaction). Deterministic but for TIMESTAMP defaults.
set -euo pipefail
N=${1:?usage: $0 TRANSACTIONS}
cat <<'SQL'
CREATE DATABASE train;
CREATE TABLE train.seq (n INT NOT NULL PRIMARY KEY);
CREATE TABLE train.accounts (
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  owner VARCHAR(120) CHARACTER SET utf8mb4 NOT NULL,
  code CHAR(12) CHARACTER SET latin1 NOT NULL,
  balance DECIMAL(18,4) NOT NULL,
  credit DECIMAL(32,8) NULL,
  rate FLOAT NOT NULL,
  score DOUBLE NULL,
  flags BIT(8) NOT NULL,
  tier ENUM('free','pro','enterprise') NOT NULL,
  tags SET('a','b','c','d') NOT NULL,
  born DATE NULL,
  wake TIME(3) NOT NULL,
  created DATETIME NOT NULL,
  updated TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  yr YEAR NOT NULL,
  small TINYINT NOT NULL,
  mid MEDIUMINT UNSIGNED NOT NULL,
  sm SMALLINT NOT NULL,
  n INT NULL
) ENGINE=InnoDB;
CREATE TABLE train.events (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  account_id BIGINT UNSIGNED NOT NULL,
  kind VARCHAR(32) CHARACTER SET ascii NOT NULL,
  body TEXT CHARACTER SET utf8mb4,
  payload JSON,
  raw VARBINARY(64),
  digest BINARY(16),
  data BLOB,
  at DATETIME(3) NOT NULL
) ENGINE=InnoDB;
INSERT INTO train.seq VALUES (1);
INSERT INTO train.seq SELECT n + 1 FROM train.seq;
INSERT INTO train.seq SELECT n + 2 FROM train.seq;
INSERT INTO train.seq SELECT n + 4 FROM train.seq;
INSERT INTO train.seq SELECT n + 8 FROM train.seq;
INSERT INTO train.seq SELECT n + 16 FROM train.seq;
INSERT INTO train.seq SELECT n + 32 FROM train.seq;
INSERT INTO train.seq SELECT n + 64 FROM train.seq;
INSERT INTO train.seq SELECT n + 128 FROM train.seq;
INSERT INTO train.seq SELECT n + 256 FROM train.seq;
INSERT INTO train.seq SELECT n + 512 FROM train.seq;
SQL
for ((i = 0; i < N; i++)); do
  cat <<SQL
INSERT INTO train.accounts (id, owner, code, balance, credit, rate, score, flags, tier, tags,
    born, wake, created, yr, small, mid, sm, n)
  SELECT $i * 1000 + n, CONCAT('owner-', n, IF(n % 7 = 0, ' Zoë Ünal 🚀', '')), LPAD(n, 12, '0'),
    n * 1.2345 - 500, IF(n % 3 = 0, NULL, n * 123456789.12345678 - 1e11), n / 7,
    IF(n % 5 = 0, NULL, n * 3.14159), n % 256, ELT(1 + n % 3, 'free', 'pro', 'enterprise'),
    ELT(1 + n % 4, 'a', 'a,b', 'b,c,d', ''), IF(n % 11 = 0, NULL, '1990-01-01' + INTERVAL n DAY),
    SEC_TO_TIME(n * 37 + 0.125), '2020-01-01' + INTERVAL ($i * 1000 + n) * 61 SECOND,
    1990 + n % 100, n % 128 - 64, n * 7, n % 30000 - 15000, IF(n % 13 = 0, NULL, n - 500)
  FROM train.seq WHERE n <= 1000;
INSERT INTO train.events (account_id, kind, body, payload, raw, digest, data, at)
  SELECT $i * 1000 + n, ELT(1 + n % 4, 'login', 'order', 'refund', 'note'),
    IF(n % 9 = 0, NULL, REPEAT(CONCAT('line ', n, ' "quoted" \\\\ tab\t é; '), 1 + n % 5)),
    JSON_OBJECT('n', n, 'ok', n % 2 = 0, 'list', JSON_ARRAY(n, 'x', n * 0.5, NULL),
      'nested', JSON_OBJECT('k', CONCAT('v', n), 'big', n * 1000000007)),
    UNHEX(SHA2(n, 224)), LEFT(UNHEX(SHA2(n, 256)), 16),
    IF(n % 4 = 0, NULL, REPEAT(UNHEX(SHA2(n, 256)), n % 8)),
    '2021-06-01 00:00:00.000' + INTERVAL ($i * 1000 + n) * 1001 MICROSECOND
  FROM train.seq WHERE n <= 1000;
SQL
  if ((i == N / 2)); then echo "ALTER TABLE train.events ADD COLUMN note VARCHAR(20) NULL;"; fi
  # Half of an earlier transaction's accounts change; a fifth of its events go.
  if ((i > 0)); then
    j=$((i - 1))
    cat <<SQL
UPDATE train.accounts SET balance = balance + 1.5, score = score * 2, tier = 'pro', tags = 'c',
    updated = '2024-01-01 00:00:00' + INTERVAL id SECOND
  WHERE id > $j * 1000 AND id <= $j * 1000 + 1000 AND id % 2 = 0;
DELETE FROM train.events WHERE account_id > $j * 1000 AND account_id <= $j * 1000 + 1000 AND id % 5 = 0;
SQL
  fi
done
