//! A random insert / update / delete workload over two tables of database `s`: `s.t`, a
//! single-column key `id` (its other columns given by the test, [`Tables`]), and `s.c`,
//! a composite key `(b, a)` with a counter `x`. Primary-key changes included.
//!
//! Invariants: the workload keeps a model of the live keys, so updates and deletes
//! mostly hit rows and key changes move to free keys (no duplicate-key errors); the same
//! seed gives the same SQL.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What the test's `s.t` looks like besides its key `id`.
#[derive(Clone, Copy)]
pub struct Tables {
    /// The values after `id` of a new `s.t` row, as SQL.
    pub t_values: fn(&mut StdRng) -> String,
    /// The `SET` list of an update of `s.t` that keeps the key.
    pub t_update: fn(&mut StdRng) -> String,
}

/// `txs` random transactions (1-4 statements each) as one SQL script.
pub struct Workload {
    rng: StdRng,
    tables: Tables,
    t_ids: Vec<i64>,
    c_keys: Vec<(i32, String)>,
    next_id: i64,
}

/// An INT value or NULL (one in five), as SQL.
pub fn int_or_null(rng: &mut StdRng) -> String {
    if rng.gen_bool(0.2) {
        "NULL".to_string()
    } else {
        rng.gen_range(-1000..1000).to_string()
    }
}

impl Workload {
    pub fn new(seed: u64, tables: Tables) -> Workload {
        Workload {
            rng: StdRng::seed_from_u64(seed),
            tables,
            t_ids: Vec::new(),
            c_keys: Vec::new(),
            next_id: 1,
        }
    }

    pub fn script(&mut self, txs: usize) -> String {
        let mut sql = String::new();
        for _ in 0..txs {
            sql.push_str("BEGIN;\n");
            for _ in 0..self.rng.gen_range(1..=4) {
                let stmt = self.statement();
                sql.push_str(&stmt);
                sql.push_str(";\n");
            }
            sql.push_str("COMMIT;\n");
        }
        sql
    }

    fn statement(&mut self) -> String {
        let r = self.rng.gen_range(0..100);
        match r {
            0..=29 => {
                let id = self.next_id;
                self.next_id += 1;
                self.t_ids.push(id);
                let values = (self.tables.t_values)(&mut self.rng);
                format!("INSERT INTO s.t VALUES ({id}, {values})")
            }
            30..=49 if !self.t_ids.is_empty() => {
                let id = self.t_ids[self.rng.gen_range(0..self.t_ids.len())];
                let set = (self.tables.t_update)(&mut self.rng);
                format!("UPDATE s.t SET {set} WHERE id = {id}")
            }
            50..=59 if !self.t_ids.is_empty() => {
                // Primary key change.
                let i = self.rng.gen_range(0..self.t_ids.len());
                let old = self.t_ids[i];
                let new = self.next_id;
                self.next_id += 1;
                self.t_ids[i] = new;
                format!("UPDATE s.t SET id = {new} WHERE id = {old}")
            }
            60..=69 if !self.t_ids.is_empty() => {
                let i = self.rng.gen_range(0..self.t_ids.len());
                let id = self.t_ids.swap_remove(i);
                format!("DELETE FROM s.t WHERE id = {id}")
            }
            70..=99 => self.composite_statement(r),
            _ => "DO 0".to_string(),
        }
    }

    /// A change of `s.c`: insert or bump (`r` 70..=79), key change or bump (80..=89),
    /// delete (90..=99).
    fn composite_statement(&mut self, r: u32) -> String {
        match r {
            70..=79 => {
                let a = self.rng.gen_range(0..40);
                let b = format!("k{}", self.rng.gen_range(0..5));
                if self.c_keys.contains(&(a, b.clone())) {
                    format!("UPDATE s.c SET x = x + 1 WHERE a = {a} AND b = '{b}'")
                } else {
                    self.c_keys.push((a, b.clone()));
                    format!("INSERT INTO s.c VALUES ({a}, '{b}', 0)")
                }
            }
            80..=89 if !self.c_keys.is_empty() => {
                // Composite key change (to a free key) or plain update.
                let i = self.rng.gen_range(0..self.c_keys.len());
                let (a, b) = self.c_keys[i].clone();
                let na = self.rng.gen_range(0..40);
                if self.c_keys.contains(&(na, b.clone())) {
                    format!("UPDATE s.c SET x = x + 10 WHERE a = {a} AND b = '{b}'")
                } else {
                    self.c_keys[i] = (na, b.clone());
                    format!("UPDATE s.c SET a = {na} WHERE a = {a} AND b = '{b}'")
                }
            }
            90..=99 if !self.c_keys.is_empty() => {
                let i = self.rng.gen_range(0..self.c_keys.len());
                let (a, b) = self.c_keys.swap_remove(i);
                format!("DELETE FROM s.c WHERE a = {a} AND b = '{b}'")
            }
            _ => "DO 0".to_string(),
        }
    }
}

/// What [`kill_and_freeze`] did.
#[derive(Debug, Default)]
pub struct Chaos {
    /// SIGKILLs of rowstream (each followed by a restart).
    pub kills: u32,
    /// Freezes of the daemon.
    pub freezes: u32,
    /// Runs that ended by themselves (each restarted, as a supervisor would).
    pub restarts: u32,
}

/// Starts `svc` and runs `rounds` scripts of 20 transactions of a seeded [`Workload`] on
/// `server` (150 ms apart) in a writer thread; meanwhile, every 200-900 ms, either
/// SIGKILLs and restarts `svc` (with probability `kill_p`) or freezes `daemon` (SIGSTOP
/// for 100-1500 ms, then SIGCONT), the freeze being run by `around_freeze` (which may look
/// at the daemon before and after). A run that ended by itself is restarted and counted;
/// the test decides whether that was allowed. Returns once the writer is done and the
/// checkpoint has caught up with the server.
pub fn kill_and_freeze(
    svc: &mut super::Service,
    server: &super::TestServer,
    daemon: &super::TestDaemon,
    tables: Tables,
    (rounds, kill_p): (usize, f64),
    mut around_freeze: impl FnMut(&dyn Fn()),
) -> Chaos {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    let seed = super::seed();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut w = Workload::new(seed, tables);
    svc.spawn();
    let stop = AtomicBool::new(false);
    let mut chaos = Chaos::default();
    std::thread::scope(|sc| {
        let _guard = super::StopOnDrop(&stop);
        let writer = sc.spawn(|| {
            for _ in 0..rounds {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                server.exec(&w.script(20));
                std::thread::sleep(Duration::from_millis(150));
            }
        });
        while !writer.is_finished() {
            std::thread::sleep(Duration::from_millis(rng.gen_range(200..900)));
            if let Some(st) = svc.exited() {
                eprintln!("rowstream exited on its own ({st}); restarting");
                chaos.restarts += 1;
                svc.spawn();
                continue;
            }
            if rng.gen_bool(kill_p) {
                svc.kill9();
                chaos.kills += 1;
                svc.spawn();
            } else {
                let pause = Duration::from_millis(rng.gen_range(100..1500));
                around_freeze(&|| {
                    daemon.freeze(true);
                    std::thread::sleep(pause);
                    daemon.freeze(false);
                });
                chaos.freezes += 1;
            }
        }
    });
    eprintln!(
        "{}: killed rowstream {}x, froze the {} {}x; {} restarts after an exit",
        server.flavor.name(),
        chaos.kills,
        daemon.kind.name,
        chaos.freezes,
        chaos.restarts
    );
    svc.wait_caught_up(server, Duration::from_secs(180));
    svc.stop(Duration::from_secs(60));
    chaos
}

/// The JSON value of key column `col` of a row of the workload's tables, from the text the
/// client printed: a number, except for `s.c.b` (a string that may look like one).
pub fn key_json(col: &str, text: String) -> serde_json::Value {
    match text.parse::<i64>() {
        Ok(n) if col != "b" => serde_json::Value::from(n),
        _ => serde_json::Value::from(text),
    }
}

/// The keys whose values differ between `a` and `b` (or that only one has): those of `a`
/// first, each once.
pub fn differing_keys<K: Ord + Clone, V: PartialEq>(
    a: &std::collections::BTreeMap<K, V>,
    b: &std::collections::BTreeMap<K, V>,
) -> Vec<K> {
    let mut diff = Vec::new();
    for k in a.keys().chain(b.keys()) {
        if a.get(k) != b.get(k) && !diff.contains(k) {
            diff.push(k.clone());
        }
    }
    diff
}

/// The usual load of a sink test: 150 transactions of `w` on `server` before `svc`
/// starts, then three more batches of 150 (200 ms apart) while it streams, then `last`
/// (SQL, may be empty); waits up to `timeout` for the checkpoint to catch up, then stops
/// `svc` (SIGTERM, clean exit).
pub fn stream_workload(
    svc: &mut super::Service,
    server: &super::TestServer,
    w: &mut Workload,
    last: &str,
    timeout: std::time::Duration,
) {
    use std::time::{Duration, Instant};

    server.exec(&w.script(150));
    let t = Instant::now();
    svc.spawn();
    for _ in 0..3 {
        server.exec(&w.script(150));
        std::thread::sleep(Duration::from_millis(200));
    }
    if !last.is_empty() {
        server.exec(last);
    }
    let caught = svc.wait_caught_up(server, timeout);
    eprintln!(
        "{}: 600 transactions streamed, caught up {caught:?} after the last write ({:?} total)",
        server.flavor.name(),
        t.elapsed()
    );
    svc.stop(Duration::from_secs(60));
}

/// `s.t` (single-column key, a string with quotes and non-ASCII, a nullable
/// INT, a DECIMAL, a DATETIME(3)) and `s.c` (composite key) for [`MIXED`].
pub const MIXED_SCHEMA: &str = "CREATE DATABASE s; \
    CREATE TABLE s.t (id BIGINT PRIMARY KEY, v VARCHAR(100) NOT NULL, n INT NULL, \
      p DECIMAL(9,2) NULL, at DATETIME(3) NULL) DEFAULT CHARSET=utf8mb4; \
    CREATE TABLE s.c (a INT NOT NULL, b VARCHAR(10) NOT NULL, x INT NOT NULL, PRIMARY KEY (b, a)) DEFAULT CHARSET=utf8mb4";

/// The rows of `s.t` in [`MIXED_SCHEMA`].
pub const MIXED: Tables = Tables {
    t_values: |rng| {
        let v: u32 = rng.gen();
        let n = int_or_null(rng);
        let p = rng.gen_range(-99999..99999);
        let ms = rng.gen_range(0..86_400_000u64);
        format!(
            "'v{v}-\"q\" é', {n}, {p}/100, \
             TIMESTAMPADD(MICROSECOND, {ms}000, '2024-02-29 00:00:00.000')"
        )
    },
    t_update: |rng| format!("v = 'u{}', n = n + 1, p = NULL", rng.gen::<u32>()),
};
