//! The restore target's tables as `restore` needs them to type backup
//! values: column types, nullability and primary key from its
//! information_schema (the same reading the snapshot does on a source),
//! cached per table and dropped after each schema change.
//!
//! Invariant: a record is typed with the table as it is on the target at
//! the moment the record is applied (the caller drops the cache once a
//! schema change is applied, before typing the next record).

use std::collections::HashMap;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use rowstream_api::TableMeta;

use crate::source::conn::ConnOpts;
use crate::source::snapshot::rows::load_table;

/// A connection to the target for reading table definitions.
pub struct Target {
    conn: mysql_async::Conn,
    tables: HashMap<(Arc<str>, Arc<str>), Arc<TableMeta>>,
}

impl Target {
    pub async fn connect(url: &str) -> anyhow::Result<Target> {
        let opts = ConnOpts::from_url(url)?;
        let conn = mysql_async::Conn::new(opts.mysql_async_opts())
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot connect to the target {}:{}: {e}",
                    opts.host,
                    opts.port
                )
            })?;
        Ok(Target {
            conn,
            tables: HashMap::new(),
        })
    }

    /// Forgets every table (after a schema change).
    pub fn forget(&mut self) {
        self.tables.clear();
    }

    /// `db.table` on the target. Its absence is an error that says what
    /// kind of backup needs what kind of target.
    pub async fn table(
        &mut self,
        db: &Arc<str>,
        table: &Arc<str>,
    ) -> anyhow::Result<Arc<TableMeta>> {
        if let Some(t) = self.tables.get(&(db.clone(), table.clone())) {
            return Ok(t.clone());
        }
        let exists: Option<u64> = self
            .conn
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (&**db, &**table),
            )
            .await?;
        if exists.unwrap_or(0) == 0 {
            anyhow::bail!(
                "the target has no table {db}.{table} and the backup holds no CREATE for it before \
                 its first change: this backup did not start with a snapshot of that table, so it \
                 is a change log to apply on top of an earlier copy. Restore that copy first (or a \
                 backup that starts with a snapshot), or leave the table out with --exclude {db}.{table}"
            );
        }
        let meta = load_table(&mut self.conn, db, table)
            .await
            .map_err(|e| anyhow::anyhow!("target table {db}.{table}: {e}"))?
            .meta;
        self.tables
            .insert((db.clone(), table.clone()), meta.clone());
        Ok(meta)
    }
}
