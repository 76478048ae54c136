//! The request log: the first and last record id of every request, written
//! before the request is sent, so that after a crash the replayed records
//! are grouped into the very same requests and carry the same
//! `Idempotency-Key` (a receiver that de-duplicates by key then sees each
//! change once, not only a receiver that de-duplicates by record id).
//!
//! A replay starts at the checkpoint, a transaction boundary that may lie
//! inside a request of the earlier run: the replay's first request then
//! ends where that one ended ([`Journal::ended_at`]), which realigns it;
//! only that first request (records the receiver already had) gets a new
//! key. Every later one, the requests in flight at the crash included,
//! gets the key it had.
//!
//! Format: one line `<first id>\t<last id>` per request (a request whose
//! ids hold a tab or a newline, possible only with such a table name, is
//! not noted). The log is written, not fsync'd: a killed process
//! keeps what it wrote (the page cache outlives it); after a machine crash
//! the last requests may be grouped anew, which only costs a receiver that
//! de-duplicates by key a duplicate.
//!
//! Invariants: bounded: after `ROTATE` lines the file is renamed to
//! `<path>.1` (replacing the previous one) and a new one started, and both
//! are read at start, so at least the last `ROTATE` requests are
//! remembered (a replay reaches back as far as the checkpoint lags, far
//! less); a torn last line (a kill mid-write) is ignored.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Lines per file before it is rotated.
const ROTATE: usize = 100_000;

/// The request log of one sink.
pub struct Journal {
    path: PathBuf,
    file: File,
    lines: usize,
    /// Requests of earlier runs: first record id -> last record id.
    earlier: HashMap<String, String>,
    /// Their last record ids.
    lasts: HashSet<String>,
}

impl Journal {
    /// Opens (creating) the log at `path` and reads what earlier runs sent.
    pub fn open(path: &Path) -> std::io::Result<Journal> {
        let mut earlier = HashMap::new();
        let mut lasts = HashSet::new();
        let mut lines = 0;
        for (p, current) in [(rotated(path), false), (path.to_path_buf(), true)] {
            let text = match std::fs::read(&p) {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for line in text.split_inclusive('\n') {
                if current {
                    lines += 1;
                }
                let Some((first, last)) = line.strip_suffix('\n').and_then(|l| l.split_once('\t'))
                else {
                    continue;
                };
                earlier.insert(first.to_string(), last.to_string());
                lasts.insert(last.to_string());
            }
        }
        let mut file = OpenOptions::new().create(true).append(true).open(path)?;
        // A torn last line must not run into the next one.
        if file.metadata()?.len() > 0 && !std::fs::read(path)?.ends_with(b"\n") {
            file.write_all(b"\n")?;
        }
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            lines,
            earlier,
            lasts,
        })
    }

    /// The last record id of the earlier request that began with `first`.
    pub fn earlier_end(&self, first: &str) -> Option<&str> {
        self.earlier.get(first).map(String::as_str)
    }

    /// True when an earlier run's request ended with record `id`: a replay
    /// that began inside that request ends its first request there, and is
    /// aligned with the earlier requests from then on.
    pub fn ended_at(&self, id: &str) -> bool {
        self.lasts.contains(id)
    }

    /// Notes a request about to be sent.
    pub fn note(&mut self, first: &str, last: &str) -> std::io::Result<()> {
        if [first, last].iter().any(|s| s.contains(['\t', '\n'])) {
            return Ok(());
        }
        if self.lines >= ROTATE {
            std::fs::rename(&self.path, rotated(&self.path))?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.lines = 0;
        }
        self.file
            .write_all(format!("{first}\t{last}\n").as_bytes())?;
        self.lines += 1;
        Ok(())
    }
}

fn rotated(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".1");
    PathBuf::from(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_across_runs_and_ignores_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.log");
        {
            let mut j = Journal::open(&path).unwrap();
            assert_eq!(j.earlier_end("a:1"), None);
            j.note("a:1", "a:9").unwrap();
            j.note("b:1", "b:3").unwrap();
        }
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"c:1\tc:").unwrap();
        let mut j = Journal::open(&path).unwrap();
        assert_eq!(j.earlier_end("a:1"), Some("a:9"));
        assert_eq!(j.earlier_end("b:1"), Some("b:3"));
        assert_eq!(j.earlier_end("c:1"), None);
        assert!(j.ended_at("a:9") && !j.ended_at("a:1"));
        j.note("d:1", "d:2").unwrap();
        assert_eq!(
            Journal::open(&path).unwrap().earlier_end("d:1"),
            Some("d:2")
        );
    }
}
