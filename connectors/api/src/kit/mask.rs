//! Column exclusion and masking (`[source] columns_exclude`, `columns_mask`;
//! Debezium's `column.exclude.list` and `column.mask.hash`): applied to each
//! change event where the source makes it, so no sink, not even the file
//! backup, ever holds the value.
//!
//! - an excluded column disappears from the images and from the event's
//!   [`TableMeta`] (so the Avro schema and the envelope lose it, and the
//!   primary key indices are renumbered); excluding a primary key column is
//!   refused: the key is what every sink addresses rows by;
//! - `sha256`: the value becomes the lowercase hex SHA-256 of the salt
//!   followed by the value's JSON text as the envelope writes it (the same
//!   value always gives the same hash, so keys stay joinable); `redact`:
//!   the fixed string [`REDACTED`]. NULL stays NULL. A masked column's type
//!   becomes a character string.
//!
//! Patterns are `db.table.column` with `*` and `?` wildcards in each part
//! (names containing a dot cannot be addressed). With no rules nothing is
//! looked at: [`ColumnRules::apply`] returns at once.
//!
//! Invariants: an image is rewritten with exactly the policy of its table
//! version (one policy per `TableMeta`, cached by its `Arc`, which the cache
//! keeps alive so the address is not reused); full images use the cached
//! renamed column list, partial images (MySQL `binlog_row_image=minimal`)
//! are rewritten by column name; the rows of one rows event share one
//! rewritten [`Shared`] as they shared the original, and find it and the
//! policy under one lock (the last rows event's pair is kept, holding the
//! original so its address is not reused).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::glob::glob;
use crate::event::{ChangeEvent, Columns, Shared};
use crate::table::{ColumnType, TableMeta};
use crate::value::Value;

/// What `redact` writes in place of a value.
pub const REDACTED: &str = "****";

/// How a masked column's values are replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mask {
    Sha256,
    Redact,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Exclude,
    Mask(Mask),
}

#[derive(Debug)]
struct Rule {
    /// `db`, `table`, `column` globs.
    parts: [String; 3],
    action: Action,
}

/// The compiled column rules of a source (cheap to clone: shared).
#[derive(Debug, Clone, Default)]
pub struct ColumnRules {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    rules: Vec<Rule>,
    salt: String,
    /// Policy per table version, by the address of its `TableMeta`.
    cache: Mutex<HashMap<usize, Cached>>,
    /// The last rows event's original `Shared` and what it became.
    last: Mutex<Option<(Arc<Shared>, Rewrite)>>,
}

/// A table's policy and a rows event's rewritten `Shared`; None when no
/// rule touches the table.
type Rewrite = Option<(Arc<Policy>, Arc<Shared>)>;

/// A table version (kept alive so its address is not reused) and its policy.
type Cached = (Arc<TableMeta>, Option<Arc<Policy>>);

/// What happens to the columns of one table version.
#[derive(Debug)]
struct Policy {
    /// Per column of the source table: None keeps it.
    actions: Vec<Option<Action>>,
    by_name: HashMap<Arc<str>, Action>,
    /// The source's full column list, and what full images get instead.
    source_columns: Columns,
    meta: Arc<TableMeta>,
}

impl ColumnRules {
    /// Compiles `exclude` (`db.table.column` globs) and `mask` (glob ->
    /// "sha256" | "redact"); `salt` is required when a rule hashes.
    pub fn new(
        exclude: &[String],
        mask: &BTreeMap<String, String>,
        salt: Option<&str>,
    ) -> Result<ColumnRules, String> {
        let mut rules = Vec::new();
        for p in exclude {
            rules.push(Rule {
                parts: split(p)?,
                action: Action::Exclude,
            });
        }
        for (p, how) in mask {
            let m = match how.as_str() {
                "sha256" => Mask::Sha256,
                "redact" => Mask::Redact,
                other => {
                    return Err(format!(
                        "columns_mask.\"{p}\" = \"{other}\": use \"sha256\" or \"redact\""
                    ))
                }
            };
            rules.push(Rule {
                parts: split(p)?,
                action: Action::Mask(m),
            });
        }
        if rules.is_empty() {
            return Ok(ColumnRules::default());
        }
        let hashes = rules.iter().any(|r| r.action == Action::Mask(Mask::Sha256));
        let salt = salt.unwrap_or_default();
        if hashes && salt.is_empty() {
            return Err(
                "columns_mask uses \"sha256\": set [source] mask_salt (a secret string; \
                 without it the hash of a short value can be looked up)"
                    .into(),
            );
        }
        Ok(ColumnRules {
            inner: Some(Arc::new(Inner {
                rules,
                salt: salt.to_string(),
                cache: Mutex::default(),
                last: Mutex::default(),
            })),
        })
    }

    /// True when there are no rules.
    pub fn is_empty(&self) -> bool {
        self.inner.is_none()
    }

    /// Rewrites `ev` by its table's rules; an error names a primary key
    /// column that a rule excludes.
    pub fn apply(&self, ev: &mut ChangeEvent) -> Result<(), String> {
        let (Some(inner), Some(meta)) = (&self.inner, ev.table()) else {
            return Ok(());
        };
        let Some((p, rewritten)) = inner.for_rows_event(&ev.shared, meta)? else {
            return Ok(());
        };
        let shared = &ev.shared;
        for (names, values) in [
            (&shared.before_columns, &mut ev.before),
            (&shared.after_columns, &mut ev.after),
        ] {
            if let Some(values) = values {
                p.rewrite(names, values, &inner.salt);
            }
        }
        ev.shared = rewritten;
        Ok(())
    }
}

fn split(p: &str) -> Result<[String; 3], String> {
    let parts: Vec<&str> = p.split('.').collect();
    match parts[..] {
        [d, t, c] if !d.is_empty() && !t.is_empty() && !c.is_empty() => {
            Ok([d.into(), t.into(), c.into()])
        }
        _ => Err(format!(
            "column pattern `{p}` must look like db.table.column (wildcards * and ? allowed)"
        )),
    }
}

impl Inner {
    /// The policy of the rows event that `shared` belongs to and its
    /// rewritten `Shared` (the key, types and image names the policy
    /// leaves); None when no rule touches the table. Worked out once per
    /// rows event: its other rows take one lock and find it in `last`.
    fn for_rows_event(
        &self,
        shared: &Arc<Shared>,
        meta: &Arc<TableMeta>,
    ) -> Result<Rewrite, String> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((from, found)) = &*last {
            if Arc::ptr_eq(from, shared) {
                return Ok(found.clone());
            }
        }
        let found = self
            .policy(&shared.source.db, &shared.source.table, meta)?
            .map(|p| {
                let to = Arc::new(Shared {
                    before_columns: p.columns(&shared.before_columns),
                    after_columns: p.columns(&shared.after_columns),
                    ..Shared::typed(shared.source.clone(), &p.meta)
                });
                (p, to)
            });
        *last = Some((shared.clone(), found.clone()));
        Ok(found)
    }

    fn policy(
        &self,
        db: &str,
        table: &str,
        meta: &Arc<TableMeta>,
    ) -> Result<Option<Arc<Policy>>, String> {
        let key = Arc::as_ptr(meta) as usize;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, p)) = cache.get(&key) {
            return Ok(p.clone());
        }
        let p = self.build(db, table, meta)?.map(Arc::new);
        cache.insert(key, (meta.clone(), p.clone()));
        Ok(p)
    }

    /// The policy of one table version; None when no rule touches it.
    fn build(&self, db: &str, table: &str, meta: &TableMeta) -> Result<Option<Policy>, String> {
        let action = |col: &str| {
            // The first matching rule wins, excludes before masks.
            self.rules.iter().find_map(|r| {
                let [d, t, c] = &r.parts;
                (glob(d.as_bytes(), db.as_bytes())
                    && glob(t.as_bytes(), table.as_bytes())
                    && glob(c.as_bytes(), col.as_bytes()))
                .then_some(r.action)
            })
        };
        let actions: Vec<Option<Action>> = meta.columns.iter().map(|c| action(c)).collect();
        if actions.iter().all(Option::is_none) {
            return Ok(None);
        }
        for &k in meta.primary_key.iter() {
            if actions.get(k) == Some(&Some(Action::Exclude)) {
                return Err(format!(
                    "columns_exclude: `{db}.{table}.{}` is part of the primary key, which every \
                     sink addresses rows by; mask it (columns_mask) instead of excluding it",
                    meta.columns[k]
                ));
            }
        }
        let kept: Vec<usize> = (0..meta.columns.len())
            .filter(|&i| actions[i] != Some(Action::Exclude))
            .collect();
        let new_index = |old: usize| kept.iter().position(|&k| k == old).unwrap_or(0);
        let masked = TableMeta {
            columns: kept.iter().map(|&i| meta.columns[i].clone()).collect(),
            types: kept
                .iter()
                .map(|&i| match actions[i] {
                    Some(Action::Mask(_)) => ColumnType::String,
                    _ => meta.types[i].clone(),
                })
                .collect(),
            nullable: kept.iter().map(|&i| meta.nullable[i]).collect(),
            primary_key: meta.primary_key.iter().map(|&k| new_index(k)).collect(),
        };
        let by_name = meta
            .columns
            .iter()
            .zip(&actions)
            .filter_map(|(c, a)| a.map(|a| (c.clone(), a)))
            .collect();
        Ok(Some(Policy {
            actions,
            by_name,
            source_columns: meta.columns.clone(),
            meta: Arc::new(masked),
        }))
    }
}

impl Policy {
    /// The values of an image named by `names`, rewritten.
    fn rewrite(&self, names: &Columns, values: &mut Vec<Value>, salt: &str) {
        let old = std::mem::take(values);
        if Arc::ptr_eq(names, &self.source_columns) {
            *values = old
                .into_iter()
                .zip(&self.actions)
                .filter_map(|(v, a)| apply(*a, v, salt))
                .collect();
            return;
        }
        for (c, v) in names.iter().zip(old) {
            if let Some(v) = apply(self.by_name.get(c).copied(), v, salt) {
                values.push(v);
            }
        }
    }

    /// The names a rewritten image named by `names` has: the table's
    /// kept columns for a full image, the kept subset of a partial one.
    fn columns(&self, names: &Columns) -> Columns {
        if Arc::ptr_eq(names, &self.source_columns) {
            return self.meta.columns.clone();
        }
        names
            .iter()
            .filter(|c| self.by_name.get(*c) != Some(&Action::Exclude))
            .cloned()
            .collect()
    }
}

/// The value an action leaves (None: the column is dropped).
fn apply(action: Option<Action>, v: Value, salt: &str) -> Option<Value> {
    match (action, v) {
        (None, v) => Some(v),
        (Some(Action::Exclude), _) => None,
        (Some(Action::Mask(_)), Value::Null) => Some(Value::Null),
        (Some(Action::Mask(Mask::Redact)), _) => Some(Value::String(REDACTED.into())),
        (Some(Action::Mask(Mask::Sha256)), v) => Some(Value::String(hash(salt, &v).into())),
    }
}

fn hash(salt: &str, v: &Value) -> String {
    let mut text = Vec::with_capacity(64);
    crate::json::write_value(&mut text, v);
    let digest = Sha256::new()
        .chain_update(salt.as_bytes())
        .chain_update(&text)
        .finalize();
    digest.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Flavor, Op, Row, Snapshot, Source};

    fn meta() -> Arc<TableMeta> {
        Arc::new(TableMeta {
            columns: ["id", "email", "ssn", "name"]
                .iter()
                .map(|c| Arc::from(*c))
                .collect(),
            types: vec![
                ColumnType::Int {
                    bits: 32,
                    unsigned: false,
                },
                ColumnType::String,
                ColumnType::String,
                ColumnType::String,
            ],
            nullable: vec![false, true, true, true],
            primary_key: Arc::from([0usize]),
        })
    }

    fn event(m: &Arc<TableMeta>, values: Vec<Value>) -> ChangeEvent {
        let row = Row {
            columns: m.columns.clone(),
            values,
        };
        let mut ev = ChangeEvent {
            op: Op::Update,
            before: None,
            after: None,
            ts_ms: 0,
            shared: Arc::new(Shared {
                source: Source {
                    version: "t",
                    connector: Flavor::MariaDb,
                    name: "s".into(),
                    ts_ms: 0,
                    snapshot: Snapshot::False,
                    db: "shop".into(),
                    table: "customers".into(),
                    server_id: 1,
                    gtid: "0-1-1".into(),
                    file: "f".into(),
                    pos: 4,
                    sequence: 1,
                },
                primary_key: m.primary_key.clone(),
                table: Some(m.clone()),
                before_columns: Default::default(),
                after_columns: Default::default(),
            }),
            row: 0,
            transaction: None,
            overlap: false,
        };
        ev.set_rows(Some(row.clone()), Some(row));
        ev
    }

    fn rules() -> ColumnRules {
        let mask = BTreeMap::from([
            ("shop.customers.email".to_string(), "sha256".to_string()),
            ("shop.*.na?e".to_string(), "redact".to_string()),
        ]);
        ColumnRules::new(&["shop.customers.ssn".into()], &mask, Some("pepper")).unwrap()
    }

    #[test]
    fn excludes_hashes_and_redacts_full_images() {
        let m = meta();
        let mut ev = event(
            &m,
            vec![
                Value::Int(7),
                Value::String("a@b.c".into()),
                Value::String("123-45".into()),
                Value::Null,
            ],
        );
        rules().apply(&mut ev).unwrap();
        let after = ev.after_row().unwrap();
        let names: Vec<&str> = after.columns.iter().map(|c| &**c).collect();
        assert_eq!(names, ["id", "email", "name"]);
        // sha256("pepper" + "\"a@b.c\"")
        let expect = hash("pepper", &Value::String("a@b.c".into()));
        assert_eq!(after.values[1], Value::String(expect.clone().into()));
        assert_eq!(expect.len(), 64);
        assert_ne!(expect, hash("salt", &Value::String("a@b.c".into())));
        assert_eq!(after.values[2], Value::Null, "NULL stays NULL");
        let t = ev.table().unwrap();
        assert_eq!(&t.columns, after.columns);
        assert_eq!(t.types[1], ColumnType::String);
        assert_eq!(ev.primary_key(), &[0]);
        assert_eq!(ev.before, ev.after);
    }

    #[test]
    fn rows_of_one_rows_event_share_the_rewritten_copy() {
        let m = meta();
        let r = rules();
        let first = event(&m, vec![Value::Int(1); 4]);
        let original = first.shared.clone();
        let (mut a, mut b) = (first.clone(), first);
        r.apply(&mut a).unwrap();
        r.apply(&mut b).unwrap();
        assert!(Arc::ptr_eq(&a.shared, &b.shared));
        assert!(!Arc::ptr_eq(&a.shared, &original));
        assert_eq!(a.table().unwrap().columns.len(), 3);
        assert_eq!(original.table.as_ref().unwrap().columns.len(), 4);
        // Another rows event of the same table gets its own copy.
        let mut c = event(&m, vec![Value::Int(1); 4]);
        r.apply(&mut c).unwrap();
        assert!(!Arc::ptr_eq(&a.shared, &c.shared));
        assert_eq!(a.shared, c.shared);
    }

    #[test]
    fn partial_images_by_name_and_other_tables_untouched() {
        let m = meta();
        let r = rules();
        let mut ev = event(&m, vec![]);
        let partial = Row {
            columns: ["id", "ssn", "name"]
                .iter()
                .map(|c| Arc::from(*c))
                .collect(),
            values: vec![Value::Int(1), Value::String("x".into()), Value::Int(3)],
        };
        ev.set_rows(Some(partial), None);
        r.apply(&mut ev).unwrap();
        let b = ev.before_row().unwrap();
        assert_eq!(b.columns.len(), 2);
        assert_eq!(b.values[1], Value::String(REDACTED.into()));

        let mut other = event(&m, vec![Value::Int(1); 4]);
        other.shared_mut().source.table = "orders".into();
        // `shop.*.na?e` still applies to orders.name.
        let m2 = Arc::new((*m).clone());
        other.shared_mut().table = Some(m2);
        r.apply(&mut other).unwrap();
        assert_eq!(other.after.unwrap().len(), 4);
        assert!(ColumnRules::default().is_empty());
    }

    #[test]
    fn refuses_bad_rules_and_excluded_keys() {
        let none = BTreeMap::new();
        assert!(ColumnRules::new(&["shop.customers".into()], &none, None).is_err());
        let hash = BTreeMap::from([("a.b.c".to_string(), "sha256".to_string())]);
        assert!(ColumnRules::new(&[], &hash, None)
            .unwrap_err()
            .contains("mask_salt"));
        let bad = BTreeMap::from([("a.b.c".to_string(), "md5".to_string())]);
        assert!(ColumnRules::new(&[], &bad, Some("s")).is_err());
        let r = ColumnRules::new(&["shop.customers.id".into()], &none, None).unwrap();
        let m = meta();
        let err = r.apply(&mut event(&m, vec![Value::Int(1); 4])).unwrap_err();
        assert!(err.contains("primary key"), "{err}");
    }
}
