//! `rowstream verify`: is a MySQL/MariaDB copy (the `mysql` sink's target,
//! a restored server, a native replica) equal to its source, while both
//! are live?
//!
//! A table whose whole-table `CHECKSUM TABLE` agrees on both sides is
//! done (tried when the copy has caught up at the start, see
//! [`TableChecksum`]). For the others, a planner walks each source
//! table's primary key into chunks
//! (`chunk`); `--threads` workers, each with one connection to each side,
//! compare a chunk's server-computed checksums and, when they differ, its
//! rows (`compare`, which also holds the live-lag recheck); a collector
//! counts, reports per table and writes `--fix-sql` (`fix`). With
//! `--config FILE --sink NAME`, an Elasticsearch / OpenSearch sink's
//! indices are compared instead (`search`).
//!
//! Invariants:
//! - Read-only on both servers: the only statements sent are SELECTs,
//!   session settings and read transactions.
//! - Memory is bounded by the work in flight: at most `2 * threads`
//!   planned chunks wait, a chunk's rows are streamed, and only differing
//!   rows are kept (the report prints at most [`SHOWN`] per table; the fix
//!   script gets every one).
//! - Exit 0 only when every table was compared and nothing differs;
//!   1 when something differs; 2 on errors (a chunk that could not be
//!   compared, a target that did not catch up), which win over 1.

mod chunk;
mod compare;
mod fix;
mod progress;
#[cfg(feature = "elasticsearch")]
mod search;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use rowstream_api::{Flavor, TableFilter};
use tokio::sync::{mpsc, Mutex};

use chunk::{next_chunk, Range, VTable};
pub use compare::SHOWN;
use compare::{connect, Catchup, ChunkResult, Diff, Sides};
use progress::Progress;

use crate::source::conn::ConnOpts;
use crate::source::snapshot::rows::{list_tables, load_table};
use crate::source::SourceError;

/// `rowstream verify` arguments.
#[derive(clap::Args, Debug)]
#[command(
    long_about = "Compare the tables of a source with a MySQL/MariaDB copy, while both are live.

First, when the copy has applied the source's position at the start (an
idle or caught-up copy; --table-checksum), each table's CHECKSUM TABLE is
compared on both sides: equal means the table is equal. Otherwise each
source table is cut into primary-key chunks of --chunk-rows rows; for
every chunk both servers compute the row count and a checksum (the sum of a
CRC32 of every column of every row); chunks that differ are compared row by
row. A chunk that differs only because the copy has not yet applied the
source's newest changes is compared again once the copy has applied the
source's GTID position of that read (read from the mysql sink's progress
table, <--progress-schema>.progress row of sink --name, or, without a progress
table, from the target's own gtid_executed / gtid_binlog_pos); only
differences that persist are reported.

Output (stdout): one line per differing row, `db.table KIND key={..}
source={..} target={..}` with KIND changed, missing (only the source has
it) or extra (only the target has it); one line per table; a summary.
--fix-sql FILE writes REPLACE / DELETE statements that bring the target back.

Tables without a primary key are one chunk, compared by sorting every
column on both servers (a server-side sort of the whole table).

With --config FILE --sink NAME (an elasticsearch sink of that rowstream
config), each captured table is compared with its index instead: the row
encoded as the sink encodes it against the document with its _id, the index
held in memory (at most --max-docs documents per index); differences are
rechecked once the service's checkpoint covers the source's position.

Exit status: 0 equal, 1 something differs, 2 an error (usage, connection, a
copy that did not catch up within --lag-timeout)."
)]
pub struct VerifyArgs {
    /// Source URL: mysql://user:password@host:port[?tls=...] (with --config:
    /// default the config's first source server).
    #[arg(long, env = "ROWSTREAM_SOURCE_URL", required_unless_present = "config")]
    pub source: Option<String>,
    /// Target (copy) URL, same form.
    #[arg(long, required_unless_present = "config", conflicts_with = "config")]
    pub target: Option<String>,
    /// Compare an Elasticsearch / OpenSearch sink of this rowstream config
    /// (with --sink) instead of a MySQL/MariaDB target.
    #[arg(long, requires = "sink")]
    pub config: Option<PathBuf>,
    /// The elasticsearch sink's name in --config.
    #[arg(long, requires = "config")]
    pub sink: Option<String>,
    /// With --sink: the most documents of one index held in memory.
    #[arg(long, default_value_t = 2_000_000)]
    pub max_docs: usize,
    /// Only tables matching db.table globs (repeatable); default: all non-system schemas.
    #[arg(long)]
    pub include: Vec<String>,
    /// Tables to leave out (db.table globs, repeatable).
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Chunks compared at a time (one connection per side each).
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    /// Rows per chunk.
    #[arg(long, default_value_t = 1000)]
    pub chunk_rows: u64,
    /// Write the statements that bring the target back to the source here.
    #[arg(long)]
    pub fix_sql: Option<PathBuf>,
    /// The mysql sink's name in the target's progress table; default: the
    /// only name there, or the target's own GTID set when there is none.
    #[arg(long)]
    pub name: Option<String>,
    /// The mysql sink's progress schema on the target.
    #[arg(long, default_value = "rowstream")]
    pub progress_schema: String,
    /// Compare each table's whole-table `CHECKSUM TABLE` first and skip its
    /// chunks when equal: `auto` when the copy has applied the source's
    /// position at the start (an idle or caught-up copy), `always`, `never`.
    #[arg(long, value_enum, default_value_t = TableChecksum::Auto)]
    pub table_checksum: TableChecksum,
    /// Seconds to wait for the copy to apply a source position; 0: do not
    /// wait (an idle copy, or one that does not record the source's GTIDs).
    #[arg(long, default_value_t = 60)]
    pub lag_timeout: u64,
}

/// When to try the whole-table checksum first (see [`VerifyArgs::table_checksum`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TableChecksum {
    Auto,
    Always,
    Never,
}

/// One chunk to compare.
struct Job {
    table: usize,
    range: Range,
}

/// A compared chunk (or why it could not be).
struct Done {
    table: usize,
    result: Result<ChunkResult, String>,
}

/// What the report says of a table.
#[derive(Default)]
struct TableReport {
    source_rows: u64,
    target_rows: u64,
    chunks: u64,
    differing: u64,
    rechecked: u64,
    shown: Vec<Diff>,
    errors: u64,
    /// Found equal by the whole-table checksum (no chunks compared).
    whole: bool,
}

/// How to tell what the target has applied (see [`VerifyArgs::name`]).
async fn catchup(tgt: &mut Conn, a: &VerifyArgs) -> Result<Catchup, SourceError> {
    if let Some(name) = &a.name {
        return Ok(Catchup::Progress {
            schema: a.progress_schema.clone(),
            name: name.clone(),
        });
    }
    let names: Result<Vec<String>, _> = tgt
        .query(format!(
            "SELECT DISTINCT name FROM {}.progress",
            crate::source::snapshot::rows::quote_ident(&a.progress_schema)
        ))
        .await;
    match names {
        Ok(n) if n.len() == 1 => Ok(Catchup::Progress {
            schema: a.progress_schema.clone(),
            name: n[0].clone(),
        }),
        Ok(n) if n.len() > 1 => Err(SourceError::Config(format!(
            "the target's progress table holds several sinks ({}): choose one with --name",
            n.join(", ")
        ))),
        Ok(_) => Ok(Catchup::Native),
        Err(mysql_async::Error::Server(e)) if matches!(e.code, 1049 | 1146) => Ok(Catchup::Native),
        Err(e) => Err(e.into()),
    }
}

/// The source tables to compare, and a line for each that cannot be (no
/// such table on the target, other columns).
async fn tables(
    src: &mut Conn,
    tgt: &mut Conn,
    flavor: Flavor,
    a: &VerifyArgs,
) -> Result<(Vec<VTable>, Vec<String>), SourceError> {
    let filter = TableFilter::new(&a.include, &a.exclude).map_err(SourceError::Config)?;
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (db, table) in list_tables(src).await? {
        if !filter.matches(&db, &table) || db == a.progress_schema {
            continue;
        }
        let t = VTable::new(load_table(src, &db, &table).await?, flavor);
        let cols: Vec<String> = tgt
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (&db, &table),
            )
            .await?;
        let want: Vec<&str> = t.def.names.iter().map(|n| &**n).collect();
        if cols.is_empty() {
            problems.push(format!(
                "{db}.{table} missing: the target has no such table"
            ));
        } else if cols != want {
            problems.push(format!(
                "{db}.{table} columns: source ({}) target ({})",
                want.join(", "),
                cols.join(", ")
            ));
        } else {
            out.push(t);
        }
    }
    Ok((out, problems))
}

/// Walks every table into chunks, in table order.
async fn plan(
    mut conn: Conn,
    tables: Arc<Vec<VTable>>,
    chunk_rows: u64,
    jobs: mpsc::Sender<Job>,
) -> Result<(), SourceError> {
    for (i, t) in tables.iter().enumerate() {
        let mut after = None;
        loop {
            let (range, last) = next_chunk(&mut conn, t, after, chunk_rows).await?;
            after = range.hi.clone();
            if jobs.send(Job { table: i, range }).await.is_err() {
                return Ok(());
            }
            if last {
                break;
            }
        }
    }
    conn.disconnect().await.ok();
    Ok(())
}

/// Compares chunks until the planner is done.
async fn work(
    mut sides: Sides,
    tables: Arc<Vec<VTable>>,
    jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    done: mpsc::Sender<Done>,
) {
    loop {
        let job = jobs.lock().await.recv().await;
        let Some(job) = job else { break };
        let result = sides
            .chunk(&tables[job.table], &job.range)
            .await
            .map_err(|e| format!("{}: {e}", tables[job.table].label()));
        if done
            .send(Done {
                table: job.table,
                result,
            })
            .await
            .is_err()
        {
            break;
        }
    }
    sides.src.disconnect().await.ok();
    sides.tgt.disconnect().await.ok();
}

/// `rowstream verify`: returns the exit code.
pub async fn run(a: &VerifyArgs) -> anyhow::Result<i32> {
    let r = match (&a.config, &a.sink) {
        (Some(config), Some(sink)) => search_sink(a, config, sink).await,
        _ => compare_all(a).await,
    };
    match r {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("rowstream: verify: {e}");
            Ok(2)
        }
    }
}

#[cfg(feature = "elasticsearch")]
async fn search_sink(
    a: &VerifyArgs,
    config: &std::path::Path,
    sink: &str,
) -> Result<i32, SourceError> {
    let opts = search::Options {
        source: a.source.as_deref(),
        include: &a.include,
        exclude: &a.exclude,
        lag_timeout: Duration::from_secs(a.lag_timeout),
        max_docs: a.max_docs,
    };
    search::run(&opts, config, sink).await
}

#[cfg(not(feature = "elasticsearch"))]
async fn search_sink(_: &VerifyArgs, _: &std::path::Path, _: &str) -> Result<i32, SourceError> {
    Err(SourceError::Config(
        "this rowstream is built without the elasticsearch feature".into(),
    ))
}

async fn compare_all(a: &VerifyArgs) -> Result<i32, SourceError> {
    let url = |u: &Option<String>, what: &str| {
        u.as_deref()
            .ok_or_else(|| SourceError::Config(format!("--{what} is required")))
            .and_then(ConnOpts::from_url)
    };
    let src_opts = url(&a.source, "source")?;
    let tgt_opts = url(&a.target, "target")?;
    let (mut src, flavor) = connect(&src_opts).await?;
    let (mut tgt, _) = connect(&tgt_opts).await?;
    let catchup = catchup(&mut tgt, a).await?;
    let (all, problems) = tables(&mut src, &mut tgt, flavor, a).await?;
    let equal = whole_tables(&mut src, &mut tgt, flavor, &catchup, &all, a).await?;
    tgt.disconnect().await.ok();
    let (mut tables, mut whole) = (Vec::new(), Vec::new());
    for (t, eq) in all.into_iter().zip(equal) {
        if eq {
            whole.push(t);
        } else {
            tables.push(t);
        }
    }
    let tables = Arc::new(tables);
    let threads = a.threads.max(1);
    let (job_tx, job_rx) = mpsc::channel::<Job>(threads * 2);
    let (done_tx, mut done_rx) = mpsc::channel::<Done>(threads * 2);
    let planner = tokio::spawn(plan(src, tables.clone(), a.chunk_rows.max(1), job_tx));
    let job_rx = Arc::new(Mutex::new(job_rx));
    for _ in 0..threads {
        let sides = Sides {
            src: connect(&src_opts).await?.0,
            tgt: connect(&tgt_opts).await?.0,
            flavor,
            catchup: catchup.clone(),
            lag_timeout: Duration::from_secs(a.lag_timeout),
        };
        tokio::spawn(work(sides, tables.clone(), job_rx.clone(), done_tx.clone()));
    }
    drop(done_tx);
    let mut fix = match &a.fix_sql {
        Some(p) => {
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(p)
                    .map_err(|e| SourceError::Config(format!("--fix-sql {}: {e}", p.display())))?,
            );
            f.write_all(fix::HEADER.as_bytes())
                .map_err(|e| SourceError::Fatal(format!("--fix-sql: {e}")))?;
            Some(f)
        }
        None => None,
    };
    let estimate = tables.iter().map(|t| t.def.estimated_rows).sum();
    let mut prog = Progress::new(estimate);
    let mut reports: Vec<TableReport> = tables.iter().map(|_| TableReport::default()).collect();
    let mut errors = Vec::new();
    while let Some(d) = done_rx.recv().await {
        let rep = &mut reports[d.table];
        match d.result {
            Ok(c) => {
                rep.chunks += 1;
                rep.source_rows += c.source_rows;
                rep.target_rows += c.target_rows;
                rep.differing += c.diffs.len() as u64;
                rep.rechecked += u64::from(c.rechecked);
                prog.chunk(c.source_rows, c.diffs.len() as u64);
                if let Some(f) = fix.as_mut() {
                    write_fix(f, &tables[d.table], &c.diffs)?;
                }
                let room = SHOWN.saturating_sub(rep.shown.len());
                rep.shown.extend(c.diffs.into_iter().take(room));
            }
            Err(e) => {
                rep.errors += 1;
                errors.push(e);
            }
        }
    }
    prog.finish();
    match planner.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => errors.push(format!("planning chunks: {e}")),
        Err(e) => errors.push(format!("planner: {e}")),
    }
    if let Some(mut f) = fix {
        f.flush()
            .map_err(|e| SourceError::Fatal(format!("--fix-sql: {e}")))?;
    }
    let mut listed: Vec<&VTable> = tables.iter().collect();
    for t in &whole {
        reports.push(TableReport {
            whole: true,
            ..TableReport::default()
        });
        listed.push(t);
    }
    Ok(report(&listed, &reports, &problems, &errors))
}

/// Per table, whether the whole-table checksums agree (so its chunks need
/// no comparing); all `false` when not tried (see [`TableChecksum`]).
async fn whole_tables(
    src: &mut Conn,
    tgt: &mut Conn,
    flavor: Flavor,
    catchup: &Catchup,
    tables: &[VTable],
    a: &VerifyArgs,
) -> Result<Vec<bool>, SourceError> {
    let tried = match a.table_checksum {
        TableChecksum::Never => false,
        TableChecksum::Always => true,
        TableChecksum::Auto => {
            let g = crate::source::query::server_executed(src, flavor).await?;
            let applied = catchup.applied(tgt, flavor).await?;
            compare::caught_up(&g, &applied, catchup)
        }
    };
    let mut out = Vec::with_capacity(tables.len());
    for t in tables {
        out.push(tried && compare::same_table_checksum(src, tgt, t).await?);
    }
    Ok(out)
}

fn write_fix(f: &mut impl std::io::Write, t: &VTable, diffs: &[Diff]) -> Result<(), SourceError> {
    for d in diffs {
        let stmt = match (&d.source, &d.target) {
            (Some(s), _) => fix::replace(t, s),
            (None, Some(tg)) => fix::delete(t, tg),
            (None, None) => continue,
        };
        f.write_all(stmt.as_bytes())
            .map_err(|e| SourceError::Fatal(format!("--fix-sql: {e}")))?;
    }
    Ok(())
}

/// `{"col": value, ..}` of the columns `cols` of `row`.
fn row_json(t: &VTable, row: &[mysql_async::Value], cols: &[usize]) -> serde_json::Value {
    serde_json::Value::Object(
        cols.iter()
            .map(|&i| {
                (
                    t.def.names[i].to_string(),
                    fix::json(&row[i], t.def.conv[i]),
                )
            })
            .collect(),
    )
}

/// One report line of a differing row.
fn diff_line(t: &VTable, d: &Diff) -> String {
    let all: Vec<usize> = (0..t.def.names.len()).collect();
    let key_cols: Vec<usize> = if t.keyed() {
        t.def.primary_key.to_vec()
    } else {
        all.clone()
    };
    let (kind, any) = match (&d.source, &d.target) {
        (Some(s), Some(_)) => ("changed", s),
        (Some(s), None) => ("missing", s),
        (None, Some(tg)) => ("extra", tg),
        (None, None) => return String::new(),
    };
    let side = |r: &Option<Vec<mysql_async::Value>>| {
        r.as_ref()
            .map_or(serde_json::Value::Null, |r| row_json(t, r, &all))
    };
    format!(
        "{} {kind} key={} source={} target={}",
        t.label(),
        row_json(t, any, &key_cols),
        side(&d.source),
        side(&d.target)
    )
}

/// Prints the report on stdout; returns the exit code.
fn report(
    tables: &[&VTable],
    reports: &[TableReport],
    problems: &[String],
    errors: &[String],
) -> i32 {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut differing = 0u64;
    let mut rows = 0u64;
    for (t, r) in tables.iter().zip(reports) {
        for d in &r.shown {
            let _ = writeln!(out, "{}", diff_line(t, d));
        }
        if r.differing > r.shown.len() as u64 {
            let _ = writeln!(
                out,
                "{}: ... and {} more differing rows (see --fix-sql)",
                t.label(),
                r.differing - r.shown.len() as u64
            );
        }
        if r.whole {
            let _ = writeln!(
                out,
                "table {}: whole-table checksum equal on both sides (rows not counted): ok",
                t.label()
            );
            continue;
        }
        let state = if r.errors > 0 {
            "NOT COMPARED (errors)"
        } else if r.differing > 0 {
            "DIFFERS"
        } else {
            "ok"
        };
        let _ = writeln!(
            out,
            "table {}: {} rows on the source, {} on the target, {} chunks ({} rechecked), {} differing rows: {state}",
            t.label(),
            r.source_rows,
            r.target_rows,
            r.chunks,
            r.rechecked,
            r.differing
        );
        differing += r.differing;
        rows += r.source_rows;
    }
    for p in problems {
        let _ = writeln!(out, "table {p}: DIFFERS");
    }
    for e in errors {
        eprintln!("rowstream: verify: {e}");
    }
    let bad_tables = reports.iter().filter(|r| r.differing > 0).count() + problems.len();
    let _ = writeln!(
        out,
        "verify: {} tables, {rows} rows compared, {differing} differing rows in {bad_tables} tables, {} errors",
        tables.len() + problems.len(),
        errors.len()
    );
    let _ = out.flush();
    if !errors.is_empty() {
        2
    } else if bad_tables > 0 {
        1
    } else {
        0
    }
}
