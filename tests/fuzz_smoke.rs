//! A short mutation-fuzzing run of every fuzz target, inside the plain test
//! command, so every CI run fuzzes the parsers of new code a little (the
//! coverage-guided runs are `deploy/dev/fuzz.sh`, which needs nightly and an
//! AddressSanitizer build too slow for CI).
//!
//! Each target's seeds (`fuzz/corpus/<target>` and `tests/fuzz_inputs`) are
//! mutated at random (bit flips, interesting bytes and integers, inserted,
//! deleted, repeated and spliced ranges) and fed to the same entry points
//! the fuzzers call (`rowstream::fuzzing`) for `ROWSTREAM_FUZZ_SMOKE_SECS`
//! seconds per target (default 6). The rules are those of `fuzz.sh`: a
//! panic, one input running longer than 10 s, or one allocation over 256 MiB
//! fails the run, and the input is saved under
//! `target/tmp/fuzz-smoke/` with the printed seed (`ROWSTREAM_FUZZ_SEED`
//! repeats a run). Not coverage-guided: it finds shallow bugs only.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rowstream::fuzzing;

/// One allocation larger than this is a bug (`fuzz.sh`'s `-malloc_limit_mb`).
const ALLOC_LIMIT: usize = 256 << 20;
/// One input running longer than this is a hang (`fuzz.sh`'s `-timeout`).
const HANG_AFTER: Duration = Duration::from_secs(10);
/// Inputs are cut to this size (`fuzz.sh`'s `-max_len`).
const MAX_LEN: usize = 64 << 10;

/// The largest single allocation since the last reset: one test runs the
/// targets one after the other, so it is the current input's.
static LARGEST: AtomicUsize = AtomicUsize::new(0);

struct Tracking;

// SAFETY: forwards every call to the system allocator unchanged; it only
// records the sizes asked for.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: as in `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// xorshift64*: repeatable from the printed seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values that often sit on a boundary of a length or a type code.
const INTERESTING: &[u64] = &[
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0xffff,
    0xfffe,
    0x7fff_ffff,
    0xffff_ffff,
    u64::MAX,
    0xfb,
    0xfc,
    0xfd,
    0xfe,
];

/// One random edit of `buf`; `pool` gives splice material.
fn mutate_once(rng: &mut Rng, buf: &mut Vec<u8>, pool: &[Vec<u8>]) {
    let len = buf.len();
    match rng.below(8) {
        0 if len > 0 => {
            let i = rng.below(len);
            buf[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            buf[i] = INTERESTING[rng.below(INTERESTING.len())] as u8;
        }
        2 if len > 0 => {
            let width = [2, 4, 8][rng.below(3)].min(len);
            let i = rng.below(len - width + 1);
            let v = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
            buf[i..i + width].copy_from_slice(&v[..width]);
        }
        3 => {
            let i = rng.below(len + 1);
            let n = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            buf.splice(i..i, bytes);
        }
        4 if len > 1 => {
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(64));
            buf.drain(i..i + n);
        }
        5 if len > 1 => {
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(256));
            let copy = buf[i..i + n].to_vec();
            let at = rng.below(len + 1);
            buf.splice(at..at, copy);
        }
        6 if !pool.is_empty() => {
            let other = &pool[rng.below(pool.len())];
            if !other.is_empty() {
                let i = rng.below(other.len());
                let n = 1 + rng.below((other.len() - i).min(512));
                let at = rng.below(len + 1);
                buf.splice(at..at, other[i..i + n].iter().copied());
            }
        }
        _ if len > 0 => buf.truncate(rng.below(len)),
        _ => buf.push(rng.next() as u8),
    }
}

/// The seeds of `target`: its corpus and the regression inputs named after it.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(root.join("fuzz/corpus").join(target)) {
        for e in entries.flatten() {
            out.push(std::fs::read(e.path()).expect("reading a seed"));
        }
    }
    if let Ok(entries) = std::fs::read_dir(root.join("tests/fuzz_inputs")) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(target) {
                out.push(std::fs::read(e.path()).expect("reading a regression input"));
            }
        }
    }
    assert!(
        !out.is_empty(),
        "{target}: no seeds in fuzz/corpus/{target}"
    );
    out
}

/// Where a failing input is saved.
fn save(target: &str, what: &str, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-smoke");
    std::fs::create_dir_all(&dir).expect("creating the fuzz-smoke directory");
    let path = dir.join(format!("{what}-{target}-{:08x}", crc32fast::hash(input)));
    std::fs::write(&path, input).expect("saving the failing input");
    path
}

/// The input being run and when it started, for the hang watchdog.
struct Current {
    target: &'static str,
    input: Vec<u8>,
}

/// Aborts the process, saving the input, when one input runs too long: a
/// hang cannot be unwound out of.
fn watchdog(current: Arc<Mutex<Current>>, started_ms: Arc<AtomicU64>, t0: Instant) {
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(500));
        let started = started_ms.load(Ordering::Relaxed);
        if started == u64::MAX {
            continue;
        }
        let ran = t0.elapsed().saturating_sub(Duration::from_millis(started));
        if ran > HANG_AFTER {
            let cur = current.lock().unwrap_or_else(|e| e.into_inner());
            let path = save(cur.target, "hang", &cur.input);
            eprintln!(
                "fuzz smoke: {} ran one input for {ran:?}; saved as {}",
                cur.target,
                path.display()
            );
            std::process::abort();
        }
    });
}

type Target = (&'static str, fn(&[u8]));

const TARGETS: &[Target] = &[
    ("binlog_events", fuzzing::binlog_events),
    ("binlog_json", fuzzing::binlog_json),
    ("json_diff", fuzzing::json_diff),
    ("gtid_set", fuzzing::gtid_set),
    ("backup_segment", fuzzing::backup_segment),
    ("checkpoint", fuzzing::checkpoint),
    ("config", fuzzing::config),
    ("packets", fuzzing::packets),
];

#[test]
fn fuzz_smoke_every_target() {
    let secs: u64 = std::env::var("ROWSTREAM_FUZZ_SMOKE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let seed: u64 = std::env::var("ROWSTREAM_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    eprintln!("fuzz smoke: ROWSTREAM_FUZZ_SEED={seed}, {secs} s per target");
    let t0 = Instant::now();
    let current = Arc::new(Mutex::new(Current {
        target: "",
        input: Vec::new(),
    }));
    let started_ms = Arc::new(AtomicU64::new(u64::MAX));
    watchdog(current.clone(), started_ms.clone(), t0);
    let mut rng = Rng(seed);
    for &(target, run) in TARGETS {
        let pool = seeds(target);
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut execs = 0u64;
        while Instant::now() < deadline {
            let mut input = pool[rng.below(pool.len())].clone();
            for _ in 0..1 + rng.below(8) {
                mutate_once(&mut rng, &mut input, &pool);
            }
            input.truncate(MAX_LEN);
            {
                let mut cur = current.lock().unwrap_or_else(|e| e.into_inner());
                cur.target = target;
                cur.input.clone_from(&input);
            }
            LARGEST.store(0, Ordering::Relaxed);
            started_ms.store(t0.elapsed().as_millis() as u64, Ordering::Relaxed);
            let outcome = catch_unwind(AssertUnwindSafe(|| run(&input)));
            started_ms.store(u64::MAX, Ordering::Relaxed);
            if outcome.is_err() {
                let path = save(target, "crash", &input);
                panic!(
                    "{target} panicked (seed {seed}); input saved as {}",
                    path.display()
                );
            }
            let largest = LARGEST.load(Ordering::Relaxed);
            if largest > ALLOC_LIMIT {
                let path = save(target, "alloc", &input);
                panic!(
                    "{target} allocated {largest} bytes at once for a {}-byte input (seed \
                     {seed}); input saved as {}",
                    input.len(),
                    path.display()
                );
            }
            execs += 1;
        }
        eprintln!(
            "fuzz smoke: {target}: {execs} executions, {} seeds",
            pool.len()
        );
        assert!(execs > 0, "{target}: no input ran");
    }
}
