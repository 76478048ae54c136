//! GTID sets as the tests compare them: as sets of (source, sequence number), so two
//! spellings of the same set (order, case, intervals, separators) compare equal.
//!
//! Invariants: a MariaDB position `d-s-n` stands for sequence numbers 1..=n of domain d
//! (our servers start empty and have one writer per domain); a malformed GTID panics.

use std::collections::BTreeSet;

use super::Flavor;

/// (source, sequence number): MariaDB `d-s-n` -> (d, n) (sequence numbers are per domain);
/// MySQL `uuid[:tag]:n` -> (uuid[:tag], n).
pub fn gtid_key(flavor: Flavor, g: &str) -> (String, u64) {
    let bad = || format!("bad {} GTID {g:?}", flavor.name());
    match flavor {
        Flavor::MariaDb => {
            let p: Vec<&str> = g.trim().split('-').collect();
            assert_eq!(p.len(), 3, "{}", bad());
            (
                p[0].to_string(),
                p[2].parse().unwrap_or_else(|_| panic!("{}", bad())),
            )
        }
        Flavor::MySql => {
            let (src, n) = g
                .trim()
                .rsplit_once(':')
                .unwrap_or_else(|| panic!("{}", bad()));
            (
                src.to_lowercase(),
                n.parse().unwrap_or_else(|_| panic!("{}", bad())),
            )
        }
    }
}

/// Every transaction in a GTID set, as [`gtid_key`]s.
pub fn gtid_seqs(flavor: Flavor, set: &str) -> BTreeSet<(String, u64)> {
    let mut out = BTreeSet::new();
    for part in set.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match flavor {
            Flavor::MariaDb => {
                let (d, n) = gtid_key(flavor, part);
                for i in 1..=n {
                    out.insert((d.clone(), i));
                }
            }
            Flavor::MySql => {
                let mut it = part.split(':');
                let uuid = it.next().unwrap().to_lowercase();
                let mut src = uuid.clone();
                for p in it {
                    if p.starts_with(|c: char| c.is_ascii_digit()) {
                        let (lo, hi) = match p.split_once('-') {
                            Some((a, b)) => (a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap()),
                            None => (p.parse().unwrap(), p.parse().unwrap()),
                        };
                        for i in lo..=hi {
                            out.insert((src.clone(), i));
                        }
                    } else {
                        src = format!("{uuid}:{p}");
                    }
                }
            }
        }
    }
    out
}
