//! The source server's semi-sync state, as `rowstream check` and `rowstream
//! status` report it: enabled or not, wait point, timeout, whether it is
//! semi-sync right now and how many semi-sync replicas it has.
//!
//! Invariants: read-only (`SHOW GLOBAL VARIABLES` / `STATUS`); a server
//! without semi-sync (MySQL without the plugin) is a state (`available =
//! false`), never an error; the wording of warnings lives in
//! [`SemiSyncState::lines`], a pure function the unit tests drive.

use std::collections::HashMap;

use mysql_async::prelude::Queryable;
use rowstream_api::Flavor;

/// What the server says about its semi-sync side.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SemiSyncState {
    /// The variables exist (MySQL: plugin `rpl_semi_sync_source` loaded).
    pub available: bool,
    /// `rpl_semi_sync_source_enabled` / `rpl_semi_sync_master_enabled`.
    pub enabled: bool,
    /// `AFTER_SYNC` or `AFTER_COMMIT`.
    pub wait_point: String,
    /// Milliseconds a commit waits for an ACK before the server falls back to async.
    pub timeout_ms: u64,
    /// The server is semi-sync right now (not fallen back).
    pub active: bool,
    /// Semi-sync replicas connected.
    pub clients: u64,
}

fn prefix(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::MySql => "rpl_semi_sync_source_",
        Flavor::MariaDb => "rpl_semi_sync_master_",
    }
}

impl SemiSyncState {
    /// Reads the state from the server behind `conn`.
    pub async fn read(
        conn: &mut mysql_async::Conn,
        flavor: Flavor,
    ) -> Result<SemiSyncState, mysql_async::Error> {
        let p = prefix(flavor);
        let like = format!("LIKE '{p}%'");
        let vars: Vec<(String, String)> =
            conn.query(format!("SHOW GLOBAL VARIABLES {like}")).await?;
        let status: Vec<(String, String)> =
            conn.query(format!("SHOW GLOBAL STATUS {like}")).await?;
        let lower = |v: Vec<(String, String)>| -> HashMap<String, String> {
            v.into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect()
        };
        Ok(Self::from_maps(flavor, &lower(vars), &lower(status)))
    }

    /// The state from `SHOW VARIABLES` / `SHOW STATUS` rows (names lower-cased).
    pub fn from_maps(
        flavor: Flavor,
        vars: &HashMap<String, String>,
        status: &HashMap<String, String>,
    ) -> SemiSyncState {
        let p = prefix(flavor);
        let get = |m: &HashMap<String, String>, k: &str| m.get(&format!("{p}{k}")).cloned();
        let on = |v: Option<String>| v.is_some_and(|v| v.eq_ignore_ascii_case("ON"));
        SemiSyncState {
            available: get(vars, "enabled").is_some(),
            enabled: on(get(vars, "enabled")),
            wait_point: get(vars, "wait_point").unwrap_or_default(),
            timeout_ms: get(vars, "timeout")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            active: on(get(status, "status")),
            clients: get(status, "clients")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        }
    }

    /// Report lines: "ok: ..." or "warning: ..." each.
    pub fn lines(&self, flavor: Flavor) -> Vec<String> {
        let p = prefix(flavor);
        if !self.available || !self.enabled {
            let fix = match flavor {
                Flavor::MySql => "INSTALL PLUGIN rpl_semi_sync_source SONAME 'semisync_source.so'; SET GLOBAL rpl_semi_sync_source_enabled = ON (my.cnf: plugin-load-add = semisync_source.so, rpl_semi_sync_source_enabled = ON)",
                Flavor::MariaDb => "SET GLOBAL rpl_semi_sync_master_enabled = ON (my.cnf: rpl_semi_sync_master_enabled = ON)",
            };
            return vec![format!(
                "warning: source.semi_sync = true but semi-sync is off on the server: rowstream streams asynchronously and commits are not protected. Fix: {fix}"
            )];
        }
        let mut out = vec![format!(
            "ok: semi-sync enabled ({p}enabled = ON), wait point {}, timeout {} ms, now {}, {} semi-sync replica(s) connected",
            self.wait_point,
            self.timeout_ms,
            if self.active { "active" } else { "not active (no acknowledging replica)" },
            self.clients
        )];
        if !self.wait_point.eq_ignore_ascii_case("AFTER_SYNC") {
            out.push(format!(
                "warning: {p}wait_point = {}: other sessions can see a commit before rowstream has it; use AFTER_SYNC for zero loss",
                self.wait_point
            ));
        }
        out.push(format!(
            "warning: when rowstream does not acknowledge for {p}timeout ({} ms), the source falls back to asynchronous replication: commits made then are not protected until rowstream catches up",
            self.timeout_ms
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn states_and_lines() {
        let s = SemiSyncState::from_maps(Flavor::MySql, &map(&[]), &map(&[]));
        assert!(!s.available);
        assert!(s.lines(Flavor::MySql)[0].contains("INSTALL PLUGIN"));
        let s = SemiSyncState::from_maps(
            Flavor::MariaDb,
            &map(&[
                ("rpl_semi_sync_master_enabled", "ON"),
                ("rpl_semi_sync_master_wait_point", "AFTER_COMMIT"),
                ("rpl_semi_sync_master_timeout", "10000"),
            ]),
            &map(&[
                ("rpl_semi_sync_master_status", "ON"),
                ("rpl_semi_sync_master_clients", "1"),
            ]),
        );
        assert!(s.enabled && s.active);
        assert_eq!((s.timeout_ms, s.clients), (10000, 1));
        let l = s.lines(Flavor::MariaDb);
        assert!(l[0].starts_with("ok: semi-sync enabled"), "{l:?}");
        assert!(l[1].contains("AFTER_SYNC"), "{l:?}");
        assert!(l[2].contains("falls back"), "{l:?}");
    }
}
