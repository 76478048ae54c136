-- grants.sql — the account a production rowstream needs on its source server.
--
-- rowstream connects like a replica: it registers itself (COM_REGISTER_SLAVE), streams
-- the binlog from a GTID position (COM_BINLOG_DUMP_GTID), checks the server's settings and
-- binlog files before it starts, and reads table definitions and snapshot rows. Nothing
-- else: it never writes to the source.
--
-- Run as an administrator, after replacing the password (and narrowing the host pattern
-- '%' to the hosts rowstream runs on). Pick the section of your server; comment out the
-- other one. The mysql CLI: mysql -uroot -p < deploy/grants.sql
--
-- Creating the user writes to the binlog (and adds a GTID) like any DDL; that is harmless.

-- ===================== MySQL 8.0 / 8.4 / 9.x =====================
-- caching_sha2_password is the default (and in 9.x the only) auth plugin. Without TLS
-- the client fetches the server's RSA public key; rowstream does that by itself.
CREATE USER IF NOT EXISTS 'rowstream'@'%' IDENTIFIED BY 'change-me';
GRANT
  -- COM_BINLOG_DUMP_GTID (the binlog stream itself) and COM_REGISTER_SLAVE, so
  -- SHOW REPLICAS on the source lists rowstream.
  REPLICATION SLAVE,
  -- SHOW BINARY LOG STATUS / SHOW MASTER STATUS and SHOW BINARY LOGS: where the binlog is
  -- now and which files still exist, to refuse a resume point that was purged.
  REPLICATION CLIENT,
  -- information_schema column definitions (names, types, unsigned, charsets) and the
  -- initial snapshot (op "r" events). Narrow it to the captured schemas if you like:
  -- GRANT SELECT ON shop.* TO 'rowstream'@'%';
  SELECT
ON *.* TO 'rowstream'@'%';
-- Optional, for an exact snapshot cut (no row delivered twice): FLUSH TABLES WITH READ
-- LOCK, held only while the snapshot's read views open (milliseconds; lock_ms is logged).
-- Without it rowstream uses the lock-free cut (see README "Snapshots").
-- GRANT RELOAD ON *.* TO 'rowstream'@'%';

-- ===================== MariaDB 10.5+ (checked on 10.11) =====================
-- MariaDB split the old privileges in 10.5; REPLICATION CLIENT is now an alias of
-- BINLOG MONITOR, and SHOW SLAVE HOSTS needs REPLICATION MASTER ADMIN.
-- CREATE USER IF NOT EXISTS 'rowstream'@'%' IDENTIFIED BY 'change-me';
-- GRANT
--   -- COM_BINLOG_DUMP (with the GTID position) and COM_REGISTER_SLAVE.
--   REPLICATION SLAVE,
--   -- SHOW BINLOG STATUS / SHOW MASTER STATUS, SHOW BINARY LOGS, SHOW BINLOG EVENTS
--   -- (= REPLICATION CLIENT on 10.5+).
--   BINLOG MONITOR,
--   -- SHOW SLAVE HOSTS / SHOW REPLICA HOSTS, to check that rowstream is registered.
--   -- Optional: without it rowstream works, only that check is skipped.
--   REPLICATION MASTER ADMIN,
--   -- information_schema column definitions and the initial snapshot.
--   SELECT
-- ON *.* TO 'rowstream'@'%';
-- Optional: RELOAD, for FLUSH TABLES WITH READ LOCK when concurrent writes keep the
-- snapshot's read views from agreeing on one binlog position (rare; else lock-free).
-- GRANT RELOAD ON *.* TO 'rowstream'@'%';
-- Optional, only when rowstream is pointed at a replica and should report its
-- replication state (SHOW SLAVE STATUS): GRANT SLAVE MONITOR ON *.* TO 'rowstream'@'%';
