//! Which transactions a source leaves out because of where they come from:
//! loop prevention when two rowstream instances sync two writable servers
//! both ways (A -> B and B -> A).
//!
//! - `exclude_server_ids`: transactions whose events carry one of these
//!   originating server ids (the binlog keeps the origin's id through
//!   replication).
//! - `skip_rowstream_applied`: transactions a rowstream `mysql` sink
//!   applied. The sink writes its progress row (`<schema>.progress`) as the
//!   first statement of every transaction it applies, so the transaction's
//!   first table map names that table; the DDL it applies starts with
//!   [`rowstream_api::sink::APPLIED_DDL_MARK`].
//!
//! Invariant: a left-out transaction still advances the executed GTID set
//! (it is covered, like one that touched only filtered tables), so the
//! checkpoint never waits for it and it is never read again.

/// The origin rules of a source (empty: keep everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginFilter {
    /// Originating server ids whose transactions are left out.
    pub exclude_server_ids: Vec<u32>,
    /// The progress schema of the rowstream sinks whose transactions are
    /// left out; `None`: keep them (a chain A -> rowstream -> B ->
    /// rowstream -> Kafka must capture everything).
    pub skip_applied_schema: Option<String>,
}

impl OriginFilter {
    /// True when transactions from server `id` are left out.
    pub fn drops_server(&self, id: u32) -> bool {
        self.exclude_server_ids.contains(&id)
    }

    /// True when a transaction whose first table map is `db.table` was
    /// applied by a rowstream sink and is left out.
    pub fn drops_first_table(&self, db: &[u8], table: &[u8]) -> bool {
        self.skip_applied_schema
            .as_ref()
            .is_some_and(|s| s.as_bytes() == db && table == b"progress")
    }

    /// True when a DDL statement was applied by a rowstream sink and is left out.
    pub fn drops_ddl(&self, sql: &str) -> bool {
        self.skip_applied_schema.is_some() && sql.starts_with(rowstream_api::sink::APPLIED_DDL_MARK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let keep = OriginFilter::default();
        assert!(!keep.drops_server(1));
        assert!(!keep.drops_first_table(b"rowstream", b"progress"));
        assert!(!keep.drops_ddl("/* rowstream applied */ ALTER TABLE t ADD c INT"));
        let f = OriginFilter {
            exclude_server_ids: vec![7],
            skip_applied_schema: Some("rs".into()),
        };
        assert!(f.drops_server(7) && !f.drops_server(8));
        assert!(f.drops_first_table(b"rs", b"progress"));
        assert!(!f.drops_first_table(b"rowstream", b"progress"));
        assert!(!f.drops_first_table(b"rs", b"t"));
        assert!(f.drops_ddl(&format!(
            "{}ALTER TABLE t ADD c INT",
            rowstream_api::sink::APPLIED_DDL_MARK
        )));
        assert!(!f.drops_ddl("ALTER TABLE t ADD c INT"));
    }
}
