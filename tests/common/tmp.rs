//! Scratch directories ([`TmpDir`]) and the random seed of a test run ([`seed`]).
//!
//! Invariants: a [`TmpDir`] is fresh (`rowstream-test-<pid>-<n>-<label>` under the
//! system temp dir) and removed on drop unless the test is panicking (then it is kept and
//! named for inspection); the dirs of dead test processes are removed by the next one,
//! after lazily unmounting a filesystem a test may have mounted on its `backup` subdir.
//! A seed is always printed, so a failing random run can be repeated.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

const PREFIX: &str = "rowstream-test-";

/// A fresh directory, removed on drop unless the test is panicking.
pub struct TmpDir(pub PathBuf);

impl TmpDir {
    pub fn new(label: &str) -> TmpDir {
        static N: AtomicU32 = AtomicU32::new(0);
        static SWEEP: Once = Once::new();
        SWEEP.call_once(sweep_dead);
        let p = std::env::temp_dir().join(format!(
            "{PREFIX}{}-{}-{label}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TmpDir(p)
    }

    /// `<dir>/<name>`.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Removes the scratch dirs of test processes that are gone.
fn sweep_dead() {
    let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid
            .is_some_and(|p| p != std::process::id() && !Path::new(&format!("/proc/{p}")).exists())
        {
            // A tmpfs a killed test mounted there would make the removal fail.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(e.path().join("backup"))
                .output();
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The seed of this run's randomness: `ROWSTREAM_TEST_SEED`, else the clock. Printed.
pub fn seed() -> u64 {
    let s = std::env::var("ROWSTREAM_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("seed: {s} (set ROWSTREAM_TEST_SEED={s} to repeat)");
    s
}
