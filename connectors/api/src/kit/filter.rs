//! Which tables a source streams or a sink applies: `db.table` globs to
//! include and exclude (shared by the source and the apply sink).
//!
//! With no include pattern every non-system schema is included. Excludes
//! win over includes. Matching is case-sensitive, like table names on Linux.

use super::glob::glob;

/// Schemas that hold server internals and are never streamed by default.
const SYSTEM_SCHEMAS: [&str; 4] = ["mysql", "sys", "information_schema", "performance_schema"];

/// A compiled include/exclude filter, with the source's column rules (which
/// travel with it to every place that makes events).
#[derive(Debug, Clone, Default)]
pub struct TableFilter {
    include: Vec<String>,
    exclude: Vec<String>,
    columns: super::ColumnRules,
}

impl TableFilter {
    /// Builds a filter; each pattern is `db.table` where `*` and `?` are wildcards.
    /// A pattern without a dot is rejected so `shop` is not mistaken for a table glob.
    pub fn new(include: &[String], exclude: &[String]) -> Result<TableFilter, String> {
        for p in include.iter().chain(exclude) {
            if !p.contains('.') {
                return Err(format!(
                    "table pattern `{p}` must look like db.table (use `{p}.*` for a whole schema)"
                ));
            }
        }
        Ok(TableFilter {
            include: include.to_vec(),
            exclude: exclude.to_vec(),
            columns: super::ColumnRules::default(),
        })
    }

    /// The same filter with column exclusion and masking rules.
    pub fn with_columns(mut self, columns: super::ColumnRules) -> TableFilter {
        self.columns = columns;
        self
    }

    /// The column rules every event of the source passes through.
    pub fn columns(&self) -> &super::ColumnRules {
        &self.columns
    }

    /// True when rows of `db.table` must be streamed.
    pub fn matches(&self, db: &str, table: &str) -> bool {
        let hit = |p: &String| {
            let (pd, pt) = p.split_once('.').unwrap_or((p, "*"));
            glob(pd.as_bytes(), db.as_bytes()) && glob(pt.as_bytes(), table.as_bytes())
        };
        if self.exclude.iter().any(hit) {
            return false;
        }
        if self.include.is_empty() {
            return !SYSTEM_SCHEMAS.contains(&db);
        }
        self.include.iter().any(hit)
    }

    /// True when statements in schema `db` (DDL) concern streamed tables.
    pub fn matches_db(&self, db: &str) -> bool {
        if self.include.is_empty() {
            return !SYSTEM_SCHEMAS.contains(&db);
        }
        self.include.iter().any(|p| {
            glob(
                p.split_once('.').map_or(p.as_str(), |x| x.0).as_bytes(),
                db.as_bytes(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let f = TableFilter::new(
            &["shop.*".into(), "crm.user?".into()],
            &["shop.tmp_*".into()],
        )
        .unwrap();
        assert!(f.matches("shop", "orders"));
        assert!(!f.matches("shop", "tmp_x"));
        assert!(f.matches("crm", "users"));
        assert!(!f.matches("crm", "user"));
        assert!(!f.matches("other", "t"));
        let all = TableFilter::new(&[], &[]).unwrap();
        assert!(all.matches("app", "t"));
        assert!(!all.matches("mysql", "user"));
        assert!(TableFilter::new(&["shop".into()], &[]).is_err());
    }
}
