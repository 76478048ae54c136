//! The sink kit's conformance test (`rowstream_api::testing::conformance`)
//! against the file backup sink on a temporary directory. The failure is a
//! full disk: every segment the sink may open next is a symlink to
//! `/dev/full`, and segments rotate after every transaction.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::Path;

use rowstream_api::testing::conformance::{check, good_batch, Provoke};
use rowstream_file::segment::segment_name;
use rowstream_file::FileSinkConfig;

/// Makes every segment number from 1 to 10 000 not on disk yet a full disk.
fn fill_disk(dir: &Path) {
    for n in 1..=10_000 {
        let path = dir.join(segment_name(n, false));
        if !path.exists() && !dir.join(segment_name(n, true)).exists() {
            std::os::unix::fs::symlink("/dev/full", path).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sink_conforms() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = FileSinkConfig::new("backup", d.path());
    cfg.segment_max_bytes = 1;
    cfg.compress = false;
    let dir = d.path().to_path_buf();
    check(
        &cfg,
        &good_batch,
        Provoke::Break(Box::new(move || fill_disk(&dir))),
    )
    .await;
}
