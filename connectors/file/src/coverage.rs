//! What a backup covers: per server key, the sequence numbers of the source
//! transactions the backup accounts for, whether they wrote lines (a
//! transaction-end marker) or not (every change filtered out, empty, a
//! heartbeat-only transaction, or history from before the backup began).
//!
//! Keys are those of [`crate::encode::id_key`]: MySQL `uuid[:tag]`, MariaDB
//! the domain id, `snapshot:<id>` for snapshot chunks. A MariaDB position
//! `d-s-n` covers `d: 1..=n` (the server's own meaning of a GTID position);
//! a MySQL set covers exactly its intervals.
//!
//! Invariants: per key the intervals are closed, sorted, disjoint and
//! non-adjacent (merged), and never empty; a key without intervals is
//! removed. The common operation, adding the next sequence number of a
//! key ([`Coverage::add`]), is a map lookup by `&str` and one comparison,
//! no allocation.
//!
//! Serialized (segment lines, see `encode`) as a JSON object
//! `{"<key>":[[first,last],...],...}`; shown to people as
//! `key:a-b:c,key2:d-e` ([`fmt::Display`]).

use std::collections::BTreeMap;
use std::fmt;

use rowstream_api::gtid::GtidSet;
use serde::{Deserialize, Serialize};

/// Per server key, the sequence number of the last transaction (the
/// segment lines of backups written before coverage existed).
pub type Positions = BTreeMap<String, u64>;

/// Per key, closed intervals of sequence numbers (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Coverage(pub BTreeMap<String, Vec<(u64, u64)>>);

/// The key and sequence number of a GTID or chunk marker, borrowed: MySQL
/// `uuid[:tag]:n`, MariaDB `domain-server-n`, `snapshot:<id>:<n>`.
pub fn split_id(id: &str) -> Option<(&str, u64)> {
    if let Some((k, n)) = id.rsplit_once(':') {
        return Some((k, n.parse().ok()?));
    }
    let mut parts = id.splitn(3, '-');
    let (d, _s, n) = (parts.next()?, parts.next()?, parts.next()?);
    Some((d, n.parse().ok()?))
}

/// True for keys of snapshot chunk markers (not source transactions).
pub fn is_snapshot_key(key: &str) -> bool {
    key.starts_with("snapshot:")
}

impl Coverage {
    /// The transactions a source GTID set stands for.
    pub fn of_set(set: &GtidSet) -> Coverage {
        let mut c = Coverage::default();
        match set {
            GtidSet::MySql(s) => {
                for (tsid, iv) in s.iter() {
                    if !iv.is_empty() {
                        c.0.insert(tsid.to_string(), iv.to_vec());
                    }
                }
            }
            GtidSet::MariaDb(s) => {
                for g in s.iter().filter(|g| g.seq_no > 0) {
                    c.0.insert(g.domain_id.to_string(), vec![(1, g.seq_no)]);
                }
            }
        }
        c
    }

    /// The same set with the invariants restored (sorted, merged, no empty
    /// keys): for sets read from a file, which may be damaged.
    pub fn normalized(self) -> Coverage {
        let mut c = Coverage::default();
        for (k, iv) in &self.0 {
            for &(a, b) in iv {
                c.insert(k, a, b);
            }
        }
        c
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The highest sequence number covered for `key` (0: none).
    pub fn last(&self, key: &str) -> u64 {
        self.0
            .get(key)
            .and_then(|iv| iv.last())
            .map_or(0, |&(_, b)| b)
    }

    /// Adds one transaction. Fast when `n` follows the key's last number.
    #[inline]
    pub fn add(&mut self, key: &str, n: u64) {
        if let Some(last) = self.0.get_mut(key).and_then(|iv| iv.last_mut()) {
            if last.1.checked_add(1) == Some(n) {
                last.1 = n;
                return;
            }
        }
        self.insert(key, n, n);
    }

    /// Adds `[a, b]` (nothing when `a > b`), merging.
    pub fn insert(&mut self, key: &str, a: u64, b: u64) {
        if a > b {
            return;
        }
        let iv = match self.0.get_mut(key) {
            Some(iv) => iv,
            None => self.0.entry(key.to_string()).or_default(),
        };
        // Intervals that overlap or touch [a, b] merge into it (the others
        // are disjoint and non-adjacent, so growing it touches no more).
        let touches = |&(x, y): &(u64, u64)| x <= b.saturating_add(1) && a <= y.saturating_add(1);
        let (mut a, mut b) = (a, b);
        let first = iv.iter().position(touches);
        match first {
            None => {
                let at = iv.partition_point(|&(x, _)| x < a);
                iv.insert(at, (a, b));
            }
            Some(i) => {
                let mut j = i;
                while j < iv.len() && touches(&iv[j]) {
                    a = a.min(iv[j].0);
                    b = b.max(iv[j].1);
                    j += 1;
                }
                iv.splice(i..j, [(a, b)]);
            }
        }
    }

    /// Adds everything in `other`.
    pub fn union_with(&mut self, other: &Coverage) {
        for (k, iv) in &other.0 {
            for &(a, b) in iv {
                self.insert(k, a, b);
            }
        }
    }

    /// What `self` covers and `other` does not.
    pub fn minus(&self, other: &Coverage) -> Coverage {
        let mut out = Coverage::default();
        for (k, iv) in &self.0 {
            let theirs = other.0.get(k).map_or(&[][..], Vec::as_slice);
            for &(a, b) in iv {
                for (x, y) in range_minus(a, b, theirs) {
                    out.insert(k, x, y);
                }
            }
        }
        out
    }

    /// The parts of `[a, b]` of `key` that `self` covers.
    pub fn within(&self, key: &str, a: u64, b: u64) -> Vec<(u64, u64)> {
        let Some(iv) = self.0.get(key) else {
            return Vec::new();
        };
        iv.iter()
            .filter(|&&(x, y)| x <= b && a <= y)
            .map(|&(x, y)| (x.max(a), y.min(b)))
            .collect()
    }

    /// True when some key is a source server's (not only snapshot chunks):
    /// the backup has recorded where in the source's history it stands.
    pub fn anchored(&self) -> bool {
        self.0.keys().any(|k| !is_snapshot_key(k))
    }

    /// Without the snapshot chunk keys.
    pub fn source_only(&self) -> Coverage {
        Coverage(
            self.0
                .iter()
                .filter(|(k, _)| !is_snapshot_key(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    /// Per key, the highest number covered.
    pub fn positions(&self) -> Positions {
        self.0
            .iter()
            .filter_map(|(k, iv)| Some((k.clone(), iv.last()?.1)))
            .collect()
    }
}

/// `[a, b]` minus the sorted disjoint intervals `theirs`.
fn range_minus(a: u64, b: u64, theirs: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut from = a;
    for &(x, y) in theirs {
        if y < from || x > b {
            continue;
        }
        if x > from {
            out.push((from, x - 1));
        }
        if y >= b {
            return out;
        }
        from = y + 1;
    }
    if from <= b {
        out.push((from, b));
    }
    out
}

/// Appends `a-b` intervals joined by `:`.
pub fn write_intervals(s: &mut String, iv: &[(u64, u64)]) {
    for (i, &(a, b)) in iv.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        if a == b {
            s.push_str(&a.to_string());
        } else {
            s.push_str(&format!("{a}-{b}"));
        }
    }
}

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        for (i, (k, iv)) in self.0.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(k);
            s.push(':');
            write_intervals(&mut s, iv);
        }
        f.write_str(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rowstream_api::gtid::GtidSet;
    use rowstream_api::Flavor;

    #[test]
    fn add_insert_minus() {
        let mut c = Coverage::default();
        c.add("0", 1);
        c.add("0", 2);
        c.add("0", 5);
        c.insert("0", 3, 3);
        assert_eq!(c.0["0"], vec![(1, 3), (5, 5)]);
        c.insert("0", 4, 4);
        assert_eq!(c.0["0"], vec![(1, 5)]);
        c.insert("0", 8, 9);
        c.insert("0", 12, 12);
        c.insert("0", 7, 13);
        assert_eq!(c.0["0"], vec![(1, 5), (7, 13)]);
        let messy = Coverage([("0".to_string(), vec![(9, 9), (1, 3), (2, 5), (7, 0)])].into());
        assert_eq!(messy.normalized().to_string(), "0:1-5:9");
        let mut d = Coverage::default();
        d.insert("0", 2, 8);
        assert_eq!(c.minus(&d).to_string(), "0:1:9-13");
        assert_eq!(d.minus(&c).to_string(), "0:6");
        assert_eq!(c.within("0", 4, 8), vec![(4, 5), (7, 8)]);
        assert_eq!(c.last("0"), 13);
        assert_eq!(c.last("1"), 0);
        assert!(c.anchored());
        let mut s = Coverage::default();
        s.add("snapshot:1", 1);
        assert!(!s.anchored());
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, "{\"0\":[[1,5],[7,13]]}");
        assert_eq!(serde_json::from_str::<Coverage>(&json).unwrap(), c);
    }

    #[test]
    fn of_sets_and_ids() {
        let m = GtidSet::parse(Flavor::MariaDb, "0-1-100,2-5-7").unwrap();
        assert_eq!(Coverage::of_set(&m).to_string(), "0:1-100,2:1-7");
        let y = GtidSet::parse(
            Flavor::MySql,
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7,3e11fa47-71ca-11e1-9e33-c80aa9429562:tg:2",
        )
        .unwrap();
        let c = Coverage::of_set(&y);
        assert_eq!(
            c.to_string(),
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7,3e11fa47-71ca-11e1-9e33-c80aa9429562:tg:2"
        );
        assert_eq!(split_id("0-1-42"), Some(("0", 42)));
        assert_eq!(split_id("u:tag:3"), Some(("u:tag", 3)));
        assert_eq!(split_id("snapshot:7:3"), Some(("snapshot:7", 3)));
        assert_eq!(split_id("junk"), None);
    }
}
