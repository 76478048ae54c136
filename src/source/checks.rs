//! Server validation before streaming: is this server usable as a CDC source
//! for us, from the requested start position?
//!
//! [`run_checks`] reads the server's settings, our privileges, the replicas
//! registered on it and its GTID state, and returns **every** problem it
//! finds (not just the first) as a [`CheckFailure`] that names the setting,
//! what it must be, what it is, and a concrete fix (SQL and the `my.cnf`
//! line). An empty list means the server is fine.
//!
//! Invariants: only read-only statements are sent (`SHOW …`, `SELECT …`);
//! a server error from an individual probe becomes a failure or a skipped
//! check (logged), only a broken connection is returned as `Err`. The
//! decision logic is in pure functions (`check_*`, [`parse_grants`]) that the
//! unit tests drive without a server.
//!
//! What is checked:
//! * `log_bin=ON`, `binlog_format=ROW`, `binlog_row_image=FULL`,
//!   `binlog_row_metadata=FULL` (column names and signedness in TABLE_MAP),
//!   `binlog_checksum=CRC32` (we verify every event);
//! * MySQL: `gtid_mode=ON`, `enforce_gtid_consistency=ON`;
//! * MariaDB: `log_bin_compress=OFF` (we refuse compressed binlog events);
//! * the server really is the flavour the caller assumed;
//! * privileges from `SHOW GRANTS` (active roles are expanded by the server):
//!   `REPLICATION SLAVE` and `REPLICATION CLIENT` (MariaDB 10.5+: `BINLOG
//!   MONITOR`, of which `REPLICATION CLIENT` is an alias) on `*.*`, or `ALL
//!   PRIVILEGES`; and `SELECT`, needed for table definitions and snapshots.
//!   `SELECT` on any database or table is accepted here, because the captured
//!   tables are not known at this point; the snapshot fails per table if one
//!   is not readable. A missing `SELECT` is reported as a failure like the
//!   replication privileges;
//! * `server_id`: ours is non-zero, differs from the server's own, and no
//!   registered replica (`SHOW REPLICAS` / `SHOW SLAVE HOSTS`) uses it.
//!   Without the privilege to list replicas (MariaDB 10.5+ needs
//!   `REPLICATION MASTER ADMIN`) this check is skipped with a warning;
//! * the start position (when one is given): MySQL: `@@gtid_purged` must be a
//!   subset of it (otherwise binlogs we need are gone) and it must be a subset
//!   of `@@gtid_executed` (otherwise this server lacks transactions we already
//!   streamed: wrong server). MariaDB: the oldest binlog's position
//!   (`BINLOG_GTID_POS(first file, 4)`) must not be past the start position in
//!   any domain (a domain of that position missing from the start position
//!   counts as sequence number 0), and the start position must not be past
//!   `@@gtid_binlog_pos` in any of its domains.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use mysql_async::prelude::Queryable;
use rowstream_api::Flavor;

use crate::gtid::{GtidError, GtidSet, MariaDbGtidSet, MySqlGtidSet};

/// One reason the server cannot be used, with the way to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckFailure {
    /// The variable, privilege or position at fault, e.g. `binlog_format`.
    pub setting: String,
    /// What it must be.
    pub expected: String,
    /// What it is.
    pub actual: String,
    /// What the operator should do: SQL and / or a `my.cnf` line.
    pub fix: String,
}

impl fmt::Display for CheckFailure {
    /// `binlog_format: must be ROW, is STATEMENT. Fix: SET GLOBAL …`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: must be {}, is {}. Fix: {}",
            self.setting, self.expected, self.actual, self.fix
        )
    }
}

fn failure(
    setting: impl Into<String>,
    expected: impl Into<String>,
    actual: impl Into<String>,
    fix: impl Into<String>,
) -> CheckFailure {
    CheckFailure {
        setting: setting.into(),
        expected: expected.into(),
        actual: actual.into(),
        fix: fix.into(),
    }
}

/// What [`run_checks`] needs to know about us.
#[derive(Debug, Clone, Copy)]
pub struct CheckInput<'a> {
    /// The flavour we will speak (normally [`detect_flavor`] of the version).
    pub flavor: Flavor,
    /// The server id we will register with.
    pub server_id: u32,
    /// The requested start position; `None` to start at the server's latest.
    pub start: Option<&'a GtidSet>,
    /// The report host we register with when only one process can use it
    /// (the service, guarded by its checkpoint lock): a registration under it
    /// is our own previous run. `None`: every duplicate is a failure.
    pub own_report_host: Option<&'a str>,
}

/// The flavour from a server version string: anything mentioning MariaDB
/// (`10.11.6-MariaDB-0+deb12u1`, `5.5.5-10.11.6-MariaDB`) is MariaDB,
/// everything else MySQL.
pub fn detect_flavor(version: &str) -> Flavor {
    if version.to_ascii_lowercase().contains("mariadb") {
        Flavor::MariaDb
    } else {
        Flavor::MySql
    }
}

/// The global variables [`check_variables`] looks at.
pub const CHECKED_VARIABLES: &[&str] = &[
    "log_bin",
    "binlog_format",
    "binlog_row_image",
    "binlog_row_metadata",
    "gtid_mode",
    "enforce_gtid_consistency",
    "log_bin_compress",
    "binlog_checksum",
    "server_id",
];

/// Runs every check against the server behind `conn` and returns all
/// failures (empty: the server is usable). Sends only read-only statements.
/// `Err` only when the connection itself fails or a basic query that every
/// account may run (`SHOW GLOBAL VARIABLES`, `SELECT @@…`) errors.
pub async fn run_checks(
    conn: &mut mysql_async::Conn,
    input: &CheckInput<'_>,
) -> Result<Vec<CheckFailure>, mysql_async::Error> {
    let flavor = input.flavor;
    let mut out = Vec::new();

    // Settings. SHOW VARIABLES lists only variables the server has, which is
    // how a missing one (old server, other flavour) is told apart.
    let names = CHECKED_VARIABLES
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(",");
    let rows: Vec<(String, Option<String>)> = conn
        .query(format!(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN ({names})"
        ))
        .await?;
    let vars: HashMap<String, String> = rows
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.unwrap_or_default()))
        .collect();

    let (version, account): (String, String) = conn
        .query_first("SELECT VERSION(), CURRENT_USER()")
        .await?
        .unwrap_or_default();
    if detect_flavor(&version) != flavor {
        out.push(failure(
            "server flavor",
            flavor.as_str(),
            format!("{} (version {version})", detect_flavor(&version).as_str()),
            "point rowstream at the intended server, or let it detect the flavor from the server version",
        ));
    }
    out.extend(check_variables(flavor, &vars));

    // Privileges.
    let account = quote_account(&account);
    match conn.query::<String, _>("SHOW GRANTS").await {
        Ok(lines) => out.extend(check_grants(flavor, &parse_grants(&lines), &account)),
        Err(mysql_async::Error::Server(e)) => out.push(failure(
            "privileges",
            "readable with SHOW GRANTS",
            format!("SHOW GRANTS failed: {} ({})", e.message, e.code),
            "check the account rowstream connects with",
        )),
        Err(e) => return Err(e),
    }

    // server_id.
    let server_own_id = vars
        .get("server_id")
        .and_then(|v| v.trim().parse::<u32>().ok());
    let replicas = match list_replicas(conn, flavor).await? {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(
                error = %e.message,
                code = e.code,
                "cannot list the replicas of the server; skipping the duplicate server_id check"
            );
            None
        }
    };
    out.extend(check_server_id(
        input.server_id,
        server_own_id,
        replicas.as_deref().unwrap_or(&[]),
        input.own_report_host,
    ));

    // Start position.
    let Some(start) = input.start else {
        return Ok(out);
    };
    let binlog_on = var_is(&vars, "log_bin", "ON");
    let gtid_on = flavor == Flavor::MariaDb || var_is(&vars, "gtid_mode", "ON");
    if binlog_on && gtid_on {
        out.extend(check_start_position(conn, flavor, start).await?);
    }
    // Otherwise reported above; GTID state is meaningless without them.
    Ok(out)
}

/// The start-position part of [`run_checks`]: `start` is neither purged from
/// the server nor ahead of it. Also run on every reconnect and failover,
/// where the other checks (notably our own lingering registration) do not
/// apply. Assumes binlog and GTIDs are on.
pub async fn check_start_position(
    conn: &mut mysql_async::Conn,
    flavor: Flavor,
    start: &GtidSet,
) -> Result<Vec<CheckFailure>, mysql_async::Error> {
    let mut out = Vec::new();
    match (start, flavor) {
        (GtidSet::MySql(start), Flavor::MySql) => {
            let (executed, purged): (String, String) = conn
                .query_first("SELECT @@GLOBAL.gtid_executed, @@GLOBAL.gtid_purged")
                .await?
                .unwrap_or_default();
            match (MySqlGtidSet::parse(&executed), MySqlGtidSet::parse(&purged)) {
                (Ok(executed), Ok(purged)) => {
                    out.extend(check_mysql_start(start, &purged, &executed))
                }
                (Err(e), _) | (_, Err(e)) => out.push(failure(
                    "gtid_executed / gtid_purged",
                    "readable GTID sets",
                    e.to_string(),
                    "report this as a rowstream bug, with the server version",
                )),
            }
        }
        (GtidSet::MariaDb(start), Flavor::MariaDb) => {
            out.extend(mariadb_start_checks(conn, start).await?);
        }
        (start, flavor) => out.push(failure(
            "start position",
            format!("a {} GTID position", flavor.as_str()),
            format!("a {} GTID set: {}", start.flavor().as_str(), abbrev(&start.to_string())),
            "the checkpoint or --from value belongs to a server of the other flavor: point rowstream at the right server or start from a new snapshot",
        )),
    }
    Ok(out)
}

async fn mariadb_start_checks(
    conn: &mut mysql_async::Conn,
    start: &MariaDbGtidSet,
) -> Result<Vec<CheckFailure>, mysql_async::Error> {
    let mut out = Vec::new();
    let unreadable = |e: GtidError| {
        failure(
            "gtid_binlog_pos",
            "a readable GTID position",
            e.to_string(),
            "report this as a rowstream bug, with the server version",
        )
    };
    // Ahead of the server? Needs no privilege.
    let current: Option<String> = conn.query_first("SELECT @@GLOBAL.gtid_binlog_pos").await?;
    match MariaDbGtidSet::parse(current.as_deref().unwrap_or("")) {
        Ok(current) => out.extend(check_mariadb_ahead(start, &current)),
        Err(e) => out.push(unreadable(e)),
    }
    // Purged? Needs BINLOG MONITOR for SHOW BINARY LOGS.
    let cant = |what: &str, e: &mysql_async::ServerError| {
        failure(
            "start position (purged binlog check)",
            "checkable",
            format!("{what} failed: {} ({})", e.message, e.code),
            "GRANT BINLOG MONITOR ON *.* TO the rowstream account (see the privilege failures)",
        )
    };
    let files = match conn.query::<mysql_async::Row, _>("SHOW BINARY LOGS").await {
        Ok(rows) => rows,
        Err(mysql_async::Error::Server(e)) => {
            out.push(cant("SHOW BINARY LOGS", &e));
            return Ok(out);
        }
        Err(e) => return Err(e),
    };
    let Some(first) = files
        .first()
        .and_then(|r| r.get_opt::<String, _>(0))
        .and_then(Result::ok)
    else {
        return Ok(out);
    };
    let oldest: Option<String> = match conn
        .exec_first("SELECT BINLOG_GTID_POS(?, 4)", (first.as_str(),))
        .await
    {
        Ok(v) => v.flatten(),
        Err(mysql_async::Error::Server(e)) => {
            out.push(cant("SELECT BINLOG_GTID_POS", &e));
            return Ok(out);
        }
        Err(e) => return Err(e),
    };
    let Some(oldest) = oldest else {
        tracing::warn!(file = %first, "BINLOG_GTID_POS returned NULL; skipping the purged binlog check");
        return Ok(out);
    };
    let purged = match MariaDbGtidSet::parse(&oldest) {
        Ok(oldest) => check_mariadb_purged(start, &oldest, &first),
        Err(e) => vec![unreadable(e)],
    };
    // Purged first, then ahead, as check_mariadb_start orders them.
    out.splice(0..0, purged);
    Ok(out)
}

fn var_is(vars: &HashMap<String, String>, name: &str, want: &str) -> bool {
    vars.get(name)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(want))
}

/// At most 300 characters of a (GTID set) string, for messages.
fn abbrev(s: &str) -> String {
    const MAX: usize = 300;
    if s.is_empty() {
        return "(empty)".into();
    }
    let s = s.replace('\n', "");
    if s.chars().count() <= MAX {
        s
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head}… ({} characters)", s.chars().count())
    }
}

/// The failures of the server settings, from `SHOW GLOBAL VARIABLES`
/// (lowercase names → values) restricted to [`CHECKED_VARIABLES`].
pub fn check_variables(flavor: Flavor, vars: &HashMap<String, String>) -> Vec<CheckFailure> {
    let mut out = Vec::new();
    let get = |n: &str| vars.get(n).map(|v| v.trim().to_string());
    let shown = |v: Option<String>| v.unwrap_or_else(|| "not set (variable missing)".into());

    if !var_is(vars, "log_bin", "ON") {
        let fix = match flavor {
            Flavor::MySql => "add log_bin=mysql-bin to [mysqld] in my.cnf (and remove skip-log-bin / disable-log-bin) and restart the server; log_bin cannot be changed at runtime",
            Flavor::MariaDb => "add log_bin=mysql-bin to [mariadb] (or [mysqld]) in my.cnf and restart the server; log_bin cannot be changed at runtime",
        };
        out.push(failure("log_bin", "ON", shown(get("log_bin")), fix));
    }
    // A MySQL that no longer has binlog_format writes ROW only.
    if let Some(v) = get("binlog_format") {
        if !v.eq_ignore_ascii_case("ROW") {
            out.push(failure(
                "binlog_format",
                "ROW",
                v,
                "SET GLOBAL binlog_format=ROW and binlog_format=ROW in my.cnf; sessions already open keep their old format until they reconnect",
            ));
        }
    }
    let row_image = get("binlog_row_image");
    if !row_image
        .as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("FULL"))
    {
        out.push(failure(
            "binlog_row_image",
            "FULL",
            shown(row_image),
            "SET GLOBAL binlog_row_image=FULL and binlog_row_image=FULL in my.cnf; sessions already open keep the old value until they reconnect",
        ));
    }
    // We verify every event's CRC32; a binlog without checksums cannot be verified.
    if let Some(v) = get("binlog_checksum") {
        if !v.eq_ignore_ascii_case("CRC32") {
            out.push(failure(
                "binlog_checksum",
                "CRC32",
                v,
                "SET GLOBAL binlog_checksum=CRC32 and binlog_checksum=CRC32 in my.cnf (rowstream verifies the CRC32 of every event)",
            ));
        }
    }
    let metadata = get("binlog_row_metadata");
    match metadata {
        Some(v) if v.eq_ignore_ascii_case("FULL") => {}
        Some(v) => out.push(failure(
            "binlog_row_metadata",
            "FULL",
            v,
            "SET GLOBAL binlog_row_metadata=FULL and binlog_row_metadata=FULL in my.cnf (without it the binlog has no column names and no UNSIGNED flags)",
        )),
        None => out.push(failure(
            "binlog_row_metadata",
            "FULL",
            "not supported by this server (variable missing)",
            match flavor {
                Flavor::MySql => "upgrade to MySQL 8.0 or later and set binlog_row_metadata=FULL",
                Flavor::MariaDb => "upgrade to MariaDB 10.5 or later and set binlog_row_metadata=FULL",
            },
        )),
    }
    match flavor {
        Flavor::MySql => {
            if !var_is(vars, "gtid_mode", "ON") {
                out.push(failure(
                    "gtid_mode",
                    "ON",
                    shown(get("gtid_mode")),
                    "step by step, on every server of the topology: SET GLOBAL enforce_gtid_consistency=ON; SET GLOBAL gtid_mode=OFF_PERMISSIVE; SET GLOBAL gtid_mode=ON_PERMISSIVE; wait until SHOW STATUS LIKE 'Ongoing_anonymous_transaction_count' is 0; SET GLOBAL gtid_mode=ON; then gtid_mode=ON and enforce_gtid_consistency=ON in my.cnf",
                ));
            }
            if !var_is(vars, "enforce_gtid_consistency", "ON") {
                out.push(failure(
                    "enforce_gtid_consistency",
                    "ON",
                    shown(get("enforce_gtid_consistency")),
                    "SET GLOBAL enforce_gtid_consistency=ON and enforce_gtid_consistency=ON in my.cnf",
                ));
            }
        }
        Flavor::MariaDb => {
            if let Some(v) = get("log_bin_compress") {
                if !v.eq_ignore_ascii_case("OFF") {
                    out.push(failure(
                        "log_bin_compress",
                        "OFF",
                        v,
                        "SET GLOBAL log_bin_compress=OFF and log_bin_compress=OFF in my.cnf (rowstream does not read compressed binlog events; transactions already written compressed cannot be streamed: start from a new snapshot after the change)",
                    ));
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Privileges
// ---------------------------------------------------------------------------

/// What `SHOW GRANTS` says the account may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Privileges granted `ON *.*`, uppercase with single spaces
    /// (`REPLICATION SLAVE`, `ALL PRIVILEGES`, `BINLOG_ADMIN`, …).
    pub global: BTreeSet<String>,
    /// Whether `SELECT` (or `ALL`) is granted on anything: globally, on a
    /// database, a table or some columns.
    pub select_somewhere: bool,
}

impl Grants {
    fn has_all(&self) -> bool {
        self.global.contains("ALL PRIVILEGES") || self.global.contains("ALL")
    }

    fn has_global(&self, any_of: &[&str]) -> bool {
        self.has_all() || any_of.iter().any(|p| self.global.contains(*p))
    }
}

/// Parses the lines of `SHOW GRANTS` (MySQL 5.7–9.x, MariaDB 10.x–11.x).
/// Lines that are not privilege grants (role grants such as
/// ``GRANT `r`@`%` TO `u`@`%` ``, `REVOKE` lines of partial revokes) are
/// ignored.
pub fn parse_grants<S: AsRef<str>>(lines: &[S]) -> Grants {
    let mut g = Grants::default();
    for line in lines {
        let line = line.as_ref().trim();
        let Some(rest) = strip_prefix_ci(line, "GRANT ") else {
            continue;
        };
        let Some(on) = find_top_level(rest, " ON ") else {
            continue; // role grant
        };
        let privs = &rest[..on];
        let after = &rest[on + 4..];
        let object = match find_top_level(after, " TO ") {
            Some(i) => after[..i].trim(),
            None => after.trim(),
        };
        let global = object == "*.*";
        for p in split_top_level(privs, ',') {
            // Drop a column list: SELECT (`a`, `b`).
            let p = p.split('(').next().unwrap_or("");
            let p = p
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_ascii_uppercase();
            if p.is_empty() {
                continue;
            }
            if p == "SELECT" || p == "ALL" || p == "ALL PRIVILEGES" {
                g.select_somewhere = true;
            }
            if global {
                g.global.insert(p);
            }
        }
    }
    g
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// Byte offset of `needle` (ASCII, matched case-insensitively) outside
/// parentheses and quotes.
fn find_top_level(s: &str, needle: &str) -> Option<usize> {
    let b = s.as_bytes();
    let n = needle.as_bytes();
    let (mut depth, mut quote) = (0usize, None::<u8>);
    for i in 0..b.len() {
        let c = b[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                b'`' | b'\'' | b'"' => quote = Some(c),
                b'(' => depth += 1,
                b')' => depth = depth.saturating_sub(1),
                _ if depth == 0
                    && b.len() - i >= n.len()
                    && b[i..i + n.len()].eq_ignore_ascii_case(n) =>
                {
                    return Some(i)
                }
                _ => {}
            },
        }
    }
    None
}

fn split_top_level(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            c if c == sep && depth == 0 => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// `repl@%` (from `CURRENT_USER()`) as `'repl'@'%'` for GRANT statements.
fn quote_account(account: &str) -> String {
    match account.rsplit_once('@') {
        Some((u, h)) => format!("'{u}'@'{h}'"),
        None if account.is_empty() => "<rowstream user>".into(),
        None => format!("'{account}'"),
    }
}

/// The privilege failures for `account` (as quoted in a GRANT statement).
pub fn check_grants(flavor: Flavor, grants: &Grants, account: &str) -> Vec<CheckFailure> {
    let mut out = Vec::new();
    let has = if grants.global.is_empty() {
        "no global privileges".to_string()
    } else {
        format!(
            "has only {} on *.*",
            grants.global.iter().cloned().collect::<Vec<_>>().join(", ")
        )
    };
    let mut need = |name: &str, any_of: &[&str], why: &str| {
        if !grants.has_global(any_of) {
            out.push(failure(
                format!("privilege {name}"),
                format!("granted ON *.* ({why})"),
                format!("not granted to {account}, which {has}"),
                format!("GRANT {name} ON *.* TO {account};"),
            ));
        }
    };
    need(
        "REPLICATION SLAVE",
        &["REPLICATION SLAVE", "REPLICATION REPLICA"],
        "to register as a replica and read the binlog",
    );
    match flavor {
        Flavor::MySql => need(
            "REPLICATION CLIENT",
            &["REPLICATION CLIENT"],
            "for SHOW BINARY LOGS and SHOW BINARY LOG STATUS",
        ),
        Flavor::MariaDb => need(
            "BINLOG MONITOR",
            // REPLICATION CLIENT is an alias on 10.5+ and the name before it.
            &["BINLOG MONITOR", "REPLICATION CLIENT"],
            "for SHOW BINARY LOGS and SHOW BINLOG STATUS; called REPLICATION CLIENT before MariaDB 10.5",
        ),
    }
    if !grants.select_somewhere && !grants.has_all() {
        out.push(failure(
            "privilege SELECT",
            "granted on the captured tables (for table definitions and snapshots)",
            format!("not granted to {account} on anything"),
            format!("GRANT SELECT ON *.* TO {account}; (or GRANT SELECT ON <db>.* per captured database)"),
        ));
    }
    out
}

// ---------------------------------------------------------------------------
// server_id
// ---------------------------------------------------------------------------

/// One row of `SHOW REPLICAS` / `SHOW SLAVE HOSTS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredReplica {
    pub server_id: u32,
    pub host: String,
    pub port: u32,
}

/// `Ok(rows)`, or `Ok(Err(e))` when the server refused (no privilege).
async fn list_replicas(
    conn: &mut mysql_async::Conn,
    flavor: Flavor,
) -> Result<Result<Vec<RegisteredReplica>, mysql_async::ServerError>, mysql_async::Error> {
    // The statements tried in turn; a server error from the last one is the answer.
    let stmts: &[&str] = match flavor {
        // SHOW REPLICAS exists since 8.0.22; older servers say syntax error.
        Flavor::MySql => &["SHOW REPLICAS", "SHOW SLAVE HOSTS"],
        Flavor::MariaDb => &["SHOW SLAVE HOSTS"],
    };
    for (i, stmt) in stmts.iter().enumerate() {
        match conn.query::<mysql_async::Row, _>(*stmt).await {
            Ok(rows) => return Ok(Ok(rows.iter().filter_map(replica_from_row).collect())),
            Err(mysql_async::Error::Server(e)) if i + 1 == stmts.len() => return Ok(Err(e)),
            Err(mysql_async::Error::Server(_)) => {}
            Err(e) => return Err(e),
        }
    }
    // Not reached: `stmts` is never empty and its last statement returned above.
    Ok(Ok(Vec::new()))
}

fn replica_from_row(row: &mysql_async::Row) -> Option<RegisteredReplica> {
    let col = |name: &str| {
        row.columns_ref()
            .iter()
            .position(|c| c.name_str().eq_ignore_ascii_case(name))
    };
    let text = |i: Option<usize>| -> Option<String> {
        i.and_then(|i| row.get_opt::<Option<String>, _>(i))
            .and_then(Result::ok)
            .flatten()
    };
    Some(RegisteredReplica {
        server_id: text(col("Server_id"))?.trim().parse().ok()?,
        host: text(col("Host")).unwrap_or_default(),
        port: text(col("Port"))
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0),
    })
}

/// The `server_id` failures: ours must be non-zero, differ from the
/// server's own (`None`: unknown) and from every registered replica's.
///
/// A replica registered with our id under `our_host` (the report host this
/// very service registers with) is our own previous run, killed before the
/// server noticed: the server replaces it when we register, so it is only
/// logged.
pub fn check_server_id(
    ours: u32,
    server_own: Option<u32>,
    replicas: &[RegisteredReplica],
    our_host: Option<&str>,
) -> Vec<CheckFailure> {
    let mut out = Vec::new();
    let fix = "set another source.server_id in the rowstream config: unique among the source, its replicas and every other rowstream";
    if ours == 0 {
        out.push(failure("server_id (rowstream)", "a non-zero id", "0", fix));
    }
    if server_own == Some(ours) {
        out.push(failure(
            "server_id (rowstream)",
            "different from the source's own server_id",
            format!("{ours}, the source's own"),
            fix,
        ));
    }
    for r in replicas.iter().filter(|r| r.server_id == ours) {
        if our_host == Some(r.host.as_str()) {
            tracing::warn!(server_id = ours, host = %r.host, "a previous run of this rowstream is still registered on the source; it is replaced when we register");
            continue;
        }
        out.push(failure(
            "server_id (rowstream)",
            "unique among the replicas registered on the source",
            if r.host.is_empty() {
                format!("{ours}, also used by a registered replica (port {}, no report_host)", r.port)
            } else {
                format!("{ours}, also used by the replica registered as {}:{}", r.host, r.port)
            },
            format!("{fix}. If that replica is a rowstream process with this server_id that just stopped, the source drops it within about a minute (when it next writes to the dead connection); then start again"),
        ));
    }
    out
}

// ---------------------------------------------------------------------------
// Start position
// ---------------------------------------------------------------------------

/// MySQL: `purged ⊆ start ⊆ executed`.
pub fn check_mysql_start(
    start: &MySqlGtidSet,
    purged: &MySqlGtidSet,
    executed: &MySqlGtidSet,
) -> Vec<CheckFailure> {
    let mut out = Vec::new();
    let gone = purged.subtract(start);
    if !gone.is_empty() {
        out.push(failure(
            "gtid_purged",
            format!("a subset of the start position {}", abbrev(&start.to_string())),
            format!(
                "{}; the binary logs with {} were purged before rowstream read them",
                abbrev(&purged.to_string()),
                abbrev(&gone.to_string())
            ),
            "the changes in between can no longer be streamed: take a new snapshot, or start from the current position with --from latest (the sinks miss the changes in between); keep binlogs longer with binlog_expire_logs_seconds",
        ));
    }
    let unknown = start.subtract(executed);
    if !unknown.is_empty() {
        out.push(failure(
            "gtid_executed",
            format!("a superset of the start position {}", abbrev(&start.to_string())),
            format!(
                "{}, which lacks {} that rowstream already streamed",
                abbrev(&executed.to_string()),
                abbrev(&unknown.to_string())
            ),
            "this is not the server rowstream was streaming from (or it was restored from an older backup): point rowstream at the right server, or start from a new snapshot of this one",
        ));
    }
    out
}

/// MariaDB: the oldest available binlog (`oldest_file`, whose starting
/// position is `oldest`) must not be past `start` in any domain, and `start`
/// must not be past `binlog_pos` (`@@gtid_binlog_pos`) in any domain. The
/// two halves are [`check_mariadb_purged`] and [`check_mariadb_ahead`].
pub fn check_mariadb_start(
    start: &MariaDbGtidSet,
    oldest: &MariaDbGtidSet,
    oldest_file: &str,
    binlog_pos: &MariaDbGtidSet,
) -> Vec<CheckFailure> {
    let mut out = check_mariadb_purged(start, oldest, oldest_file);
    out.extend(check_mariadb_ahead(start, binlog_pos));
    out
}

/// MariaDB: in every domain of `oldest` (the position at the start of the
/// oldest binlog file), `start` must be at or past it; a domain missing from
/// `start` counts as sequence number 0 (its early transactions are gone).
pub fn check_mariadb_purged(
    start: &MariaDbGtidSet,
    oldest: &MariaDbGtidSet,
    oldest_file: &str,
) -> Vec<CheckFailure> {
    let gone: Vec<String> = oldest
        .iter()
        .filter_map(|o| {
            let from = start.get(o.domain_id).map_or(0, |g| g.seq_no);
            (from < o.seq_no).then(|| {
                format!(
                    "domain {} (start at seq_no {from}, binlog continues after {o})",
                    o.domain_id
                )
            })
        })
        .collect();
    if gone.is_empty() {
        return Vec::new();
    }
    vec![failure(
        "binlog (purged)",
        format!(
            "still holding the transactions after the start position {}",
            abbrev(&start.to_string())
        ),
        format!(
            "purged up to {} (oldest binlog {oldest_file}): {}",
            abbrev(&oldest.to_string()),
            gone.join("; ")
        ),
        "the changes in between can no longer be streamed: take a new snapshot, or start from the current position with --from latest (the sinks miss the changes in between); keep binlogs longer with binlog_expire_logs_seconds / expire_logs_days",
    )]
}

/// MariaDB: `binlog_pos` (`@@gtid_binlog_pos`) must be at or past `start`
/// in every domain of `start`.
pub fn check_mariadb_ahead(
    start: &MariaDbGtidSet,
    binlog_pos: &MariaDbGtidSet,
) -> Vec<CheckFailure> {
    let ahead: Vec<String> = start
        .iter()
        .filter(|g| !binlog_pos.contains(g))
        .map(|g| match binlog_pos.get(g.domain_id) {
            Some(cur) => format!("domain {}: start {g}, server at {cur}", g.domain_id),
            None => format!(
                "domain {}: start {g}, server has no such domain",
                g.domain_id
            ),
        })
        .collect();
    if ahead.is_empty() {
        return Vec::new();
    }
    vec![failure(
        "gtid_binlog_pos",
        format!("at or past the start position {}", abbrev(&start.to_string())),
        format!("{}: {}", abbrev(&binlog_pos.to_string()), ahead.join("; ")),
        "this is not the server rowstream was streaming from (or it was restored from an older backup): point rowstream at the right server, or start from a new snapshot of this one",
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    const U1: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const U2: &str = "8a94f357-aab4-11df-86ab-c80aa9429562";

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn good_mysql() -> HashMap<String, String> {
        vars(&[
            ("log_bin", "ON"),
            ("binlog_format", "ROW"),
            ("binlog_row_image", "FULL"),
            ("binlog_row_metadata", "FULL"),
            ("gtid_mode", "ON"),
            ("enforce_gtid_consistency", "ON"),
            ("server_id", "1"),
        ])
    }

    fn good_mariadb() -> HashMap<String, String> {
        vars(&[
            ("log_bin", "ON"),
            ("binlog_format", "ROW"),
            ("binlog_row_image", "FULL"),
            ("binlog_row_metadata", "FULL"),
            ("log_bin_compress", "OFF"),
            ("server_id", "1"),
        ])
    }

    fn settings(f: &[CheckFailure]) -> Vec<&str> {
        f.iter().map(|f| f.setting.as_str()).collect()
    }

    #[test]
    fn display_format() {
        let f = failure(
            "binlog_format",
            "ROW",
            "STATEMENT",
            "SET GLOBAL binlog_format=ROW",
        );
        assert_eq!(
            f.to_string(),
            "binlog_format: must be ROW, is STATEMENT. Fix: SET GLOBAL binlog_format=ROW"
        );
    }

    #[test]
    fn flavor_detection() {
        assert_eq!(
            detect_flavor("10.11.6-MariaDB-0+deb12u1-log"),
            Flavor::MariaDb
        );
        assert_eq!(detect_flavor("5.5.5-10.11.6-MariaDB"), Flavor::MariaDb);
        assert_eq!(detect_flavor("11.4.2-mariadb"), Flavor::MariaDb);
        assert_eq!(detect_flavor("9.7.4-2"), Flavor::MySql);
        assert_eq!(detect_flavor("8.4.3"), Flavor::MySql);
        assert_eq!(detect_flavor("8.0.36-0ubuntu0.22.04.1"), Flavor::MySql);
    }

    #[test]
    fn good_settings_pass() {
        assert_eq!(check_variables(Flavor::MySql, &good_mysql()), vec![]);
        assert_eq!(check_variables(Flavor::MariaDb, &good_mariadb()), vec![]);
        // case-insensitive values
        let mut v = good_mysql();
        v.insert("binlog_format".into(), "row".into());
        assert_eq!(check_variables(Flavor::MySql, &v), vec![]);
    }

    #[test]
    fn every_bad_setting_is_reported() {
        let v = vars(&[
            ("log_bin", "OFF"),
            ("binlog_format", "STATEMENT"),
            ("binlog_row_image", "MINIMAL"),
            ("binlog_row_metadata", "MINIMAL"),
            ("gtid_mode", "OFF_PERMISSIVE"),
            ("enforce_gtid_consistency", "WARN"),
            ("binlog_checksum", "NONE"),
        ]);
        let f = check_variables(Flavor::MySql, &v);
        assert_eq!(
            settings(&f),
            [
                "log_bin",
                "binlog_format",
                "binlog_row_image",
                "binlog_checksum",
                "binlog_row_metadata",
                "gtid_mode",
                "enforce_gtid_consistency"
            ]
        );
        assert_eq!(f[1].actual, "STATEMENT");
        assert!(f[1].to_string().starts_with(
            "binlog_format: must be ROW, is STATEMENT. Fix: SET GLOBAL binlog_format=ROW"
        ));
        assert!(f[5].fix.contains("ON_PERMISSIVE"));
        assert!(f.iter().all(|f| !f.fix.is_empty()));
    }

    #[test]
    fn mariadb_specific_settings() {
        let mut v = good_mariadb();
        v.insert("log_bin_compress".into(), "ON".into());
        v.insert("binlog_row_metadata".into(), "NO_LOG".into());
        let f = check_variables(Flavor::MariaDb, &v);
        assert_eq!(settings(&f), ["binlog_row_metadata", "log_bin_compress"]);
        assert_eq!(f[0].actual, "NO_LOG");
        assert!(f[1].fix.contains("SET GLOBAL log_bin_compress=OFF"));
        // gtid_mode is not a MariaDB variable: not checked there
        assert!(!settings(&f).contains(&"gtid_mode"));
        // MariaDB 10.4 has no binlog_row_metadata; 10.1 no log_bin_compress is fine
        let mut v = good_mariadb();
        v.remove("binlog_row_metadata");
        v.remove("log_bin_compress");
        let f = check_variables(Flavor::MariaDb, &v);
        assert_eq!(settings(&f), ["binlog_row_metadata"]);
        assert!(f[0].actual.contains("missing"));
        assert!(f[0].fix.contains("10.5"));
    }

    #[test]
    fn missing_variables_are_failures_except_binlog_format() {
        let f = check_variables(Flavor::MySql, &HashMap::new());
        assert_eq!(
            settings(&f),
            [
                "log_bin",
                "binlog_row_image",
                "binlog_row_metadata",
                "gtid_mode",
                "enforce_gtid_consistency"
            ]
        );
    }

    // Real SHOW GRANTS output of MySQL 9.7.4 (deploy/dev servers).
    const MYSQL_ROOT: &[&str] = &[
        "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, RELOAD, SHUTDOWN, PROCESS, FILE, REFERENCES, INDEX, ALTER, SHOW DATABASES, SUPER, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, REPLICATION SLAVE, REPLICATION CLIENT, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, CREATE USER, EVENT, TRIGGER, CREATE TABLESPACE, CREATE ROLE, DROP ROLE ON *.* TO `root`@`%` WITH GRANT OPTION",
        "GRANT ALLOW_NONEXISTENT_DEFINER,APPLICATION_PASSWORD_ADMIN,AUDIT_ADMIN,BACKUP_ADMIN,BINLOG_ADMIN,REPLICATION_APPLIER,REPLICATION_SLAVE_ADMIN,TRANSACTION_GTID_TAG,XA_RECOVER_ADMIN ON *.* TO `root`@`%` WITH GRANT OPTION",
    ];
    const MYSQL_REPL: &[&str] =
        &["GRANT SELECT, RELOAD, SHOW DATABASES, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `repl`@`%`"];
    // A user whose REPLICATION CLIENT and SELECT come from an active role.
    const MYSQL_ROLE: &[&str] = &[
        "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `u1`@`%`",
        "GRANT SELECT ON `shop`.* TO `u1`@`%`",
        "GRANT `rr`@`%` TO `u1`@`%`",
    ];
    // Real SHOW GRANTS output of MariaDB 10.11.14.
    const MARIADB_REPL: &[&str] = &["GRANT SELECT, RELOAD, SHOW DATABASES, REPLICATION SLAVE, BINLOG MONITOR, REPLICATION MASTER ADMIN, SLAVE MONITOR ON *.* TO `repl`@`%` IDENTIFIED BY PASSWORD '*A424E797037BF97C19A2E88CF7891C5C2038C039'"];
    const MARIADB_ROOT: &[&str] = &["GRANT ALL PRIVILEGES ON *.* TO `root`@`%` IDENTIFIED BY PASSWORD '*81F5E21E35407D884A6CD4A731AEBFB6AF209E1B' WITH GRANT OPTION"];

    #[test]
    fn grants_parse_real_output() {
        let g = parse_grants(MYSQL_ROOT);
        assert!(g.global.contains("REPLICATION SLAVE"));
        assert!(g.global.contains("REPLICATION CLIENT"));
        assert!(g.global.contains("BINLOG_ADMIN"));
        assert!(g.global.contains("CREATE TEMPORARY TABLES"));
        assert!(g.select_somewhere);
        let g = parse_grants(MYSQL_ROLE);
        assert_eq!(
            g.global.iter().map(String::as_str).collect::<Vec<_>>(),
            ["REPLICATION CLIENT", "REPLICATION SLAVE"]
        );
        assert!(g.select_somewhere);
        let g = parse_grants(MARIADB_REPL);
        assert!(g.global.contains("BINLOG MONITOR"));
        assert!(g.global.contains("SLAVE MONITOR"));
        let g = parse_grants(MARIADB_ROOT);
        assert!(g.global.contains("ALL PRIVILEGES"));
    }

    #[test]
    fn good_grants_pass() {
        for lines in [MYSQL_ROOT, MYSQL_REPL, MYSQL_ROLE] {
            assert_eq!(
                check_grants(Flavor::MySql, &parse_grants(lines), "'u'@'%'"),
                vec![]
            );
        }
        for lines in [MARIADB_REPL, MARIADB_ROOT] {
            assert_eq!(
                check_grants(Flavor::MariaDb, &parse_grants(lines), "'u'@'%'"),
                vec![]
            );
        }
        // MariaDB before 10.5 printed REPLICATION CLIENT
        let old = ["GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'r'@'%' IDENTIFIED BY PASSWORD '*X'"];
        assert_eq!(
            check_grants(Flavor::MariaDb, &parse_grants(&old), "'r'@'%'"),
            vec![]
        );
    }

    #[test]
    fn missing_grants_are_each_reported() {
        let usage = ["GRANT USAGE ON *.* TO `u`@`%`"];
        let f = check_grants(Flavor::MySql, &parse_grants(&usage), "'u'@'%'");
        assert_eq!(
            settings(&f),
            [
                "privilege REPLICATION SLAVE",
                "privilege REPLICATION CLIENT",
                "privilege SELECT"
            ]
        );
        assert_eq!(f[0].fix, "GRANT REPLICATION SLAVE ON *.* TO 'u'@'%';");
        assert!(f[0].actual.contains("USAGE"), "{}", f[0].actual);
        let f = check_grants(Flavor::MariaDb, &parse_grants(&usage), "'u'@'%'");
        assert_eq!(
            settings(&f),
            [
                "privilege REPLICATION SLAVE",
                "privilege BINLOG MONITOR",
                "privilege SELECT"
            ]
        );
        // replication privileges on a database do not count
        let f = check_grants(
            Flavor::MySql,
            &parse_grants(&["GRANT ALL PRIVILEGES ON `shop`.* TO `u`@`%`"]),
            "'u'@'%'",
        );
        assert_eq!(
            settings(&f),
            [
                "privilege REPLICATION SLAVE",
                "privilege REPLICATION CLIENT"
            ]
        );
        // SUPER is not REPLICATION CLIENT on MariaDB 10.5+
        let f = check_grants(
            Flavor::MariaDb,
            &parse_grants(&["GRANT SUPER, REPLICATION SLAVE, SELECT ON *.* TO `u`@`%`"]),
            "'u'@'%'",
        );
        assert_eq!(settings(&f), ["privilege BINLOG MONITOR"]);
    }

    #[test]
    fn grants_parser_edge_cases() {
        let g = parse_grants(&[
            // column privileges, lowercase keywords, role grant, proxy, revoke
            "grant select (`a`, `b`), insert (`c`) on `db`.`t` to `u`@`%`",
            "GRANT `reader`@`%`,`writer`@`%` TO `u`@`%`",
            "GRANT PROXY ON ''@'' TO 'root'@'localhost' WITH GRANT OPTION",
            "REVOKE SELECT ON `mysql`.* FROM `u`@`%`",
            "GRANT replication   slave ON *.* TO `u`@`%`",
            "GRANT USAGE ON *.* TO `odd ON name`@`%`",
        ]);
        assert!(g.select_somewhere);
        assert_eq!(
            g.global.iter().map(String::as_str).collect::<Vec<_>>(),
            ["REPLICATION SLAVE", "USAGE"]
        );
        // MariaDB role grant without host
        let g = parse_grants(&["GRANT `role1` TO `u`@`%`"]);
        assert_eq!(g, Grants::default());
    }

    #[test]
    fn account_quoting() {
        assert_eq!(quote_account("repl@%"), "'repl'@'%'");
        assert_eq!(quote_account("a@b@localhost"), "'a@b'@'localhost'");
        assert_eq!(quote_account(""), "<rowstream user>");
    }

    #[test]
    fn server_id_checks() {
        let r = |id, host: &str| RegisteredReplica {
            server_id: id,
            host: host.into(),
            port: 3306,
        };
        assert_eq!(
            check_server_id(1001, Some(1), &[r(2, "a"), r(3, "b")], None),
            vec![]
        );
        assert_eq!(check_server_id(1001, None, &[], None), vec![]);
        let f = check_server_id(1, Some(1), &[], None);
        assert_eq!(f.len(), 1);
        assert!(f[0].actual.contains("source's own"));
        let f = check_server_id(0, Some(1), &[], None);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].actual, "0");
        let f = check_server_id(7, Some(1), &[r(2, "a"), r(7, "replica-b")], None);
        assert_eq!(f.len(), 1);
        assert!(f[0].actual.contains("replica-b:3306"), "{}", f[0].actual);
        let f = check_server_id(7, None, &[r(7, "")], None);
        assert!(
            f[0].actual.contains("port 3306, no report_host"),
            "{}",
            f[0].actual
        );
        assert!(f[0].fix.contains("server_id"));
    }

    fn my(s: &str) -> MySqlGtidSet {
        MySqlGtidSet::parse(s).unwrap()
    }

    fn ma(s: &str) -> MariaDbGtidSet {
        MariaDbGtidSet::parse(s).unwrap()
    }

    #[test]
    fn mysql_start_position() {
        let executed = my(&format!("{U1}:1-100,{U2}:1-10"));
        let purged = my(&format!("{U1}:1-50"));
        // fine: inside the retained binlogs
        assert_eq!(
            check_mysql_start(&my(&format!("{U1}:1-60,{U2}:1-3")), &purged, &executed),
            vec![]
        );
        // fine: exactly at the purge boundary, and at the very end
        assert_eq!(
            check_mysql_start(&my(&format!("{U1}:1-50")), &purged, &executed),
            vec![]
        );
        assert_eq!(check_mysql_start(&executed, &purged, &executed), vec![]);
        // purged: we stopped at 40, server purged up to 50
        let f = check_mysql_start(&my(&format!("{U1}:1-40")), &purged, &executed);
        assert_eq!(settings(&f), ["gtid_purged"]);
        assert!(
            f[0].actual.contains(&format!("{U1}:41-50")),
            "{}",
            f[0].actual
        );
        assert!(f[0].fix.contains("--from latest"));
        // empty start against a purged server
        assert_eq!(
            settings(&check_mysql_start(&MySqlGtidSet::new(), &purged, &executed)),
            ["gtid_purged"]
        );
        // wrong server: start has transactions the server lacks
        let f = check_mysql_start(&my(&format!("{U1}:1-120")), &purged, &executed);
        assert_eq!(settings(&f), ["gtid_executed"]);
        assert!(
            f[0].actual.contains(&format!("{U1}:101-120")),
            "{}",
            f[0].actual
        );
        // both at once (a gap below and an excess above)
        let f = check_mysql_start(&my(&format!("{U1}:1-10,{U2}:1-11")), &purged, &executed);
        assert_eq!(settings(&f), ["gtid_purged", "gtid_executed"]);
        // tags are separate tsids
        let executed = my(&format!("{U1}:1-10:t:1-5"));
        let purged = my(&format!("{U1}:t:1-2"));
        assert_eq!(
            check_mysql_start(&my(&format!("{U1}:1-3:t:1-2")), &purged, &executed),
            vec![]
        );
        assert_eq!(
            settings(&check_mysql_start(
                &my(&format!("{U1}:1-3")),
                &purged,
                &executed
            )),
            ["gtid_purged"]
        );
    }

    #[test]
    fn mariadb_start_position() {
        let oldest = ma("0-1-100,1-2-5");
        let current = ma("0-1-500,1-2-9,2-3-1");
        let ok = |s: &str| check_mariadb_start(&ma(s), &oldest, "mysql-bin.000007", &current);
        assert_eq!(ok("0-1-100,1-2-5"), vec![]);
        assert_eq!(ok("0-1-300,1-2-9,2-3-1"), vec![]);
        assert_eq!(ok("0-1-500,1-2-9"), vec![]);
        // a domain with a different server id in the start position is still compared by seq_no
        assert_eq!(ok("0-7-200,1-2-6"), vec![]);
        // purged in domain 0
        let f = ok("0-1-99,1-2-5");
        assert_eq!(settings(&f), ["binlog (purged)"]);
        assert!(f[0].actual.contains("domain 0"), "{}", f[0].actual);
        assert!(f[0].actual.contains("mysql-bin.000007"));
        assert!(!f[0].actual.contains("domain 1"));
        // domain 1 missing from the start position: its early transactions are gone
        let f = ok("0-1-200");
        assert_eq!(settings(&f), ["binlog (purged)"]);
        assert!(
            f[0].actual.contains("domain 1 (start at seq_no 0"),
            "{}",
            f[0].actual
        );
        // empty start: everything before the oldest binlog is gone
        assert_eq!(settings(&ok("")), ["binlog (purged)"]);
        // fresh server, empty start: fine
        assert_eq!(
            check_mariadb_start(&ma(""), &ma(""), "mysql-bin.000001", &ma("")),
            vec![]
        );
        // ahead of the server
        let f = ok("0-1-501,1-2-9");
        assert_eq!(settings(&f), ["gtid_binlog_pos"]);
        assert!(
            f[0].actual
                .contains("domain 0: start 0-1-501, server at 0-1-500"),
            "{}",
            f[0].actual
        );
        let f = ok("0-1-200,1-2-5,9-9-1");
        assert_eq!(settings(&f), ["gtid_binlog_pos"]);
        assert!(f[0].actual.contains("no such domain"));
        // both
        assert_eq!(
            settings(&ok("0-1-1,1-2-10")),
            ["binlog (purged)", "gtid_binlog_pos"]
        );
    }

    #[test]
    fn abbreviation() {
        assert_eq!(abbrev("a,\nb"), "a,b");
        assert_eq!(abbrev(""), "(empty)");
        let long = "x".repeat(1000);
        let a = abbrev(&long);
        assert!(a.starts_with(&"x".repeat(300)));
        assert!(a.ends_with("(1000 characters)"));
    }
}
