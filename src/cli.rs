//! The command line: `run` is the service, `check` validates a server (or a
//! config and its servers), `tail` prints change events as NDJSON, `backup
//! cat` prints a file backup, `backup verify` checks one, `restore` replays
//! one into a server, `verify` compares a source with a copy. Exit codes: 0 ok,
//! 1 runtime error (or, for `backup verify`, problems found), 2 failed
//! checks, bad configuration or usage.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use rowstream_api::Record;
use tokio::sync::{mpsc, oneshot};

use crate::source::binlog::dump::{self, StreamConfig};
use crate::source::checks::CheckInput;
use crate::source::conn::ConnOpts;
use crate::source::filter::TableFilter;
use crate::source::{query, Batch, SourceError, CHANNEL_BATCHES};

#[derive(Parser, Debug)]
#[command(
    name = "rowstream",
    version,
    about = "Change data capture for MySQL and MariaDB"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Stream changes into the configured sinks, checkpointing as they become durable.
    Run(RunArgs),
    /// Check that a server is set up for rowstream (binlog, GTID, privileges, replica id);
    /// with --config, validate the config and check every source server in it.
    Check(CheckCmd),
    /// Print change events of a server as NDJSON on stdout.
    Tail(TailArgs),
    /// Work with a file backup.
    #[command(subcommand)]
    Backup(BackupCmd),
    /// Replay a file backup into a MySQL/MariaDB server up to a point in time.
    Restore(crate::restore::RestoreArgs),
    /// Compare a source's tables with a MySQL/MariaDB copy, live (exit 1 when they differ).
    Verify(crate::verify::VerifyArgs),
    /// One screen for an operator: source position, checkpoint, lag per sink, semi-sync.
    Status(crate::status::StatusArgs),
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The TOML config (see deploy/rowstream.toml); ROWSTREAM_SECTION__KEY variables override it.
    #[arg(long)]
    pub config: std::path::PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct CheckCmd {
    /// Validate this config file and check its source servers.
    #[arg(long, conflicts_with = "url")]
    pub config: Option<std::path::PathBuf>,
    /// Server URL: mysql://user:password@host:port[?tls=disabled|required|verify&tls-ca=FILE]
    #[arg(long, env = "ROWSTREAM_SOURCE_URL", required_unless_present = "config")]
    pub url: Option<String>,
    /// Our replica server id; default: random in 5400..6400 (like Debezium).
    #[arg(long)]
    pub server_id: Option<u32>,
    /// Start position to check for purging: earliest, latest or a GTID set.
    #[arg(long, default_value = "latest")]
    pub from: String,
}

#[derive(Subcommand, Debug)]
pub enum BackupCmd {
    /// Print the backup's row events and schema changes as NDJSON, in commit order.
    Cat {
        /// The file sink's directory.
        dir: std::path::PathBuf,
    },
    /// Check a backup: every transaction's checksum, no gap between segments,
    /// no transaction twice, complete snapshot chunks.
    #[command(long_about = "Check a file backup without changing it.

Reads every segment and checks every transaction's CRC32C and event count,
every segment line's CRC32C, zstd's frame checksum where a frame has one,
that every line is a backup record, that no segment ends inside a
transaction, that segment numbers have no gap (a deleted segment), that each
server's GTIDs increase (no transaction twice or out of commit order) and
that snapshot chunks follow one another.
Coverage: the source transactions each segment covers (those that wrote no
lines, e.g. only excluded tables, included) are recomputed from its start
line, markers and skipped lines; a transaction nothing accounts for is named
at the line where the numbers jump, and the set must equal the segment's end
line and the next segment's start line.

Prints one line per problem (segment file, line, transaction, what is wrong)
on stdout, then a summary: segments, transactions, rows, the GTIDs covered,
first and last commit time (source ts_ms). Backups written before checksums
existed are checked for everything else, with a warning.

On a live backup the newest segment may end inside a transaction being
written; that is reported as a problem. Run it on a stopped sink, or ignore
that last line.

Exit status: 0 clean, 1 problems found, 2 usage error (e.g. no such directory).")]
    Verify {
        /// The file sink's directory.
        dir: std::path::PathBuf,
    },
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Server URL: mysql://user:password@host:port[?tls=disabled|required|verify&tls-ca=FILE]
    #[arg(long, env = "ROWSTREAM_SOURCE_URL")]
    pub url: String,
    /// Our replica server id; default: random in 5400..6400 (like Debezium).
    #[arg(long)]
    pub server_id: Option<u32>,
    /// Start position to check for purging: earliest, latest or a GTID set.
    #[arg(long, default_value = "latest")]
    pub from: String,
}

#[derive(clap::Args, Debug)]
pub struct TailArgs {
    #[command(flatten)]
    pub check: CheckArgs,
    /// Only tables matching db.table globs (repeatable); default: all non-system schemas.
    #[arg(long)]
    pub include: Vec<String>,
    /// Tables to leave out (db.table globs, repeatable).
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Stop after printing this many row change events.
    #[arg(long)]
    pub max_events: Option<u64>,
    /// Logical server name printed as source.name.
    #[arg(long, default_value = "rowstream")]
    pub name: String,
    /// Heartbeat period asked from the server, seconds; reads time out after three.
    #[arg(long, default_value_t = 5)]
    pub heartbeat_secs: u64,
    /// A column never printed (db.table.column glob, repeatable), as
    /// `[source] columns_exclude`.
    #[arg(long, value_name = "DB.TABLE.COLUMN")]
    pub exclude_column: Vec<String>,
    /// A column printed masked: `db.table.column=sha256` (salted hash, needs
    /// --mask-salt) or `=redact` (repeatable), as `[source] columns_mask`.
    #[arg(long, value_name = "DB.TABLE.COLUMN=sha256|redact")]
    pub mask_column: Vec<String>,
    /// The salt of sha256 masks (or set ROWSTREAM_MASK_SALT).
    #[arg(long, env = "ROWSTREAM_MASK_SALT", hide_env_values = true)]
    pub mask_salt: Option<String>,
    /// Output: `json` (rowstream's envelope, one line per event) or
    /// `debezium` (one `{"topic","key","value"}` line per Kafka record
    /// Debezium's MySQL connector would write; needs the kafka feature).
    #[arg(long, default_value = "json", value_parser = ["json", "debezium"])]
    pub format: String,
}

/// Runs the command; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Run(a) => run_service(&a).await,
        Command::Check(CheckCmd {
            config: Some(path),
            server_id,
            ..
        }) => check_config(&path, server_id).await,
        Command::Check(CheckCmd {
            url,
            server_id,
            from,
            ..
        }) => {
            check(&CheckArgs {
                url: url.unwrap_or_default(),
                server_id,
                from,
            })
            .await
        }
        Command::Tail(a) => tail(a).await,
        Command::Backup(BackupCmd::Cat { dir }) => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(256 * 1024, stdout.lock());
            rowstream_file::reader::cat(&dir, &mut out)
                .map_err(|e| anyhow::anyhow!("backup {}: {e}", dir.display()))?;
            out.flush()?;
            Ok(0)
        }
        Command::Backup(BackupCmd::Verify { dir }) => backup_verify(&dir),
        Command::Restore(a) => crate::restore::run(&a).await,
        Command::Verify(a) => crate::verify::run(&a).await,
        Command::Status(a) => crate::status::run(&a).await,
    }
}

/// `rowstream backup verify DIR`: problems and summary on stdout; exit 0
/// clean, 1 problems, 2 not a directory.
fn backup_verify(dir: &std::path::Path) -> anyhow::Result<i32> {
    if !dir.is_dir() {
        eprintln!(
            "rowstream: backup dir {} does not exist or is not a directory",
            dir.display()
        );
        return Ok(2);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut write_err = None;
    let summary = rowstream_file::verify(dir, &mut |p| {
        if let Err(e) = writeln!(out, "{p}") {
            write_err.get_or_insert(e);
        }
    })
    .map_err(|e| anyhow::anyhow!("backup {}: {e}", dir.display()))?;
    if let Some(e) = write_err {
        return Err(e.into());
    }
    writeln!(out, "{summary}")?;
    out.flush()?;
    Ok(if summary.problems == 0 { 0 } else { 1 })
}

fn load_config(path: &std::path::Path) -> Result<crate::config::Config, i32> {
    crate::config::load(path).map_err(|e| {
        eprintln!("rowstream: {e}");
        2
    })
}

/// `rowstream run`: the service until SIGINT/SIGTERM (drain, exit 0) or an error.
async fn run_service(a: &RunArgs) -> anyhow::Result<i32> {
    // The handlers go in first, before anything that takes time: until
    // then a SIGTERM kills the process instead of draining it (a stop
    // right after a start did, under the tests' kill loops).
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = (
        signal(SignalKind::terminate())?,
        signal(SignalKind::interrupt())?,
    );
    let cfg = match load_config(&a.config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        let _ = stop_tx.send(true);
    });
    match crate::pipeline::run(cfg, stop_rx).await {
        Ok(()) => Ok(0),
        Err(e @ crate::pipeline::ServiceError::Checks(_)) => {
            eprintln!("rowstream: {e}");
            Ok(2)
        }
        Err(e) => {
            eprintln!("rowstream: {e}");
            Ok(1)
        }
    }
}

/// `rowstream check --config`: the config is valid and every source server passes the checks.
async fn check_config(path: &std::path::Path, server_id: Option<u32>) -> anyhow::Result<i32> {
    let cfg = match load_config(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    println!("ok: config {} is valid", path.display());
    let mut code = 0;
    for opts in cfg.source.conn_opts()? {
        let (c, ok) = run_checks(
            &opts,
            server_id.unwrap_or(cfg.source.server_id),
            &cfg.source.start,
        )
        .await?;
        if let Some((flavor, _)) = ok {
            println!(
                "ok: {} at {}:{} is ready for rowstream",
                flavor.as_str(),
                opts.host,
                opts.port
            );
            if cfg.source.semi_sync {
                crate::status::print_semi_sync_check(&opts, flavor).await?;
            }
        }
        code = code.max(c);
    }
    Ok(code)
}

fn server_id(a: &CheckArgs) -> u32 {
    a.server_id
        .unwrap_or_else(|| 5400 + rand::random::<u32>() % 1000)
}

/// Runs every check and prints each failure; returns the exit code.
async fn run_checks(
    opts: &ConnOpts,
    server_id: u32,
    from: &str,
) -> anyhow::Result<(i32, Option<(rowstream_api::Flavor, crate::gtid::GtidSet)>)> {
    let (mut conn, flavor) = query::query_conn(opts).await?;
    // Resolving the start may itself need the privileges being checked: run
    // the checks anyway, so a missing grant is reported as such.
    let start = query::resolve_start(&mut conn, flavor, from).await;
    let failures = crate::pipeline::check_server(
        &mut conn,
        &CheckInput {
            flavor,
            server_id,
            start: start.as_ref().ok(),
            own_report_host: None,
        },
    )
    .await?;
    let start = match start {
        Ok(s) => s,
        Err(e) if failures.is_empty() => return Err(e.into()),
        Err(_) => crate::gtid::GtidSet::empty(flavor),
    };
    conn.disconnect().await.ok();
    if failures.is_empty() {
        return Ok((0, Some((flavor, start))));
    }
    eprintln!(
        "rowstream: {} check(s) failed for {opts:?}:",
        failures.len()
    );
    for f in &failures {
        eprintln!("  - {f}");
    }
    Ok((2, None))
}

async fn check(a: &CheckArgs) -> anyhow::Result<i32> {
    let opts = ConnOpts::from_url(&a.url)?;
    let (code, ok) = run_checks(&opts, server_id(a), &a.from).await?;
    if let Some((flavor, _)) = ok {
        println!(
            "ok: {} at {}:{} is ready for rowstream",
            flavor.as_str(),
            opts.host,
            opts.port
        );
    }
    Ok(code)
}

async fn tail(a: TailArgs) -> anyhow::Result<i32> {
    let opts = ConnOpts::from_url(&a.check.url)?;
    let mut masks = std::collections::BTreeMap::new();
    for m in &a.mask_column {
        let (col, how) = m.split_once('=').ok_or_else(|| {
            anyhow::anyhow!("--mask-column {m}: write db.table.column=sha256 or =redact")
        })?;
        masks.insert(col.to_string(), how.to_string());
    }
    let columns =
        rowstream_api::kit::ColumnRules::new(&a.exclude_column, &masks, a.mask_salt.as_deref())
            .map_err(|e| anyhow::anyhow!(e))?;
    let filter = TableFilter::new(&a.include, &a.exclude)
        .map_err(SourceError::Config)?
        .with_columns(columns);
    let server_id = server_id(&a.check);
    let (code, ok) = run_checks(&opts, server_id, &a.check.from).await?;
    let Some((flavor, start)) = ok else {
        return Ok(code);
    };
    let cfg = StreamConfig {
        servers: vec![opts],
        server_id,
        name: Arc::from(a.name.as_str()),
        report_host: "rowstream".into(),
        filter,
        origins: Default::default(),
        heartbeat: Duration::from_secs(a.heartbeat_secs.max(1)),
        semi_sync: None,
    };
    let (tx, rx) = mpsc::channel::<Batch>(CHANNEL_BATCHES);
    let (done_tx, done_rx) = oneshot::channel();
    let max = a.max_events;
    let debezium = a.format == "debezium";
    if debezium && !cfg!(feature = "kafka") {
        anyhow::bail!("--format debezium needs rowstream built with the kafka feature");
    }
    // Encoding runs on its own thread so decoding and encoding use both cores.
    let (free_tx, mut free_rx) = mpsc::channel::<Batch>(2);
    tokio::spawn(async move { while free_rx.recv().await.is_some() {} });
    let writer = std::thread::Builder::new()
        .name("ndjson".into())
        .spawn(move || {
            let r = write_ndjson(rx, free_tx, max, debezium);
            let _ = done_tx.send(());
            r
        })?;
    let dump_conn = dump::DumpConn::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let result = tokio::select! {
        r = dump::run(&cfg, start.into(), flavor, tx, &dump_conn, stop_rx) => r,
        _ = done_rx => Ok(()),
        _ = tokio::signal::ctrl_c() => { let _ = stop_tx.send(true); Ok(()) }
    };
    dump_conn.release(&cfg.servers).await;
    // The sender is gone now: the writer drains what it has and returns.
    let written = writer
        .join()
        .map_err(|_| anyhow::anyhow!("output thread panicked"))??;
    tracing::info!(events = written, "tail finished");
    match result {
        Ok(()) => Ok(0),
        Err(e) => {
            eprintln!("rowstream: {e}");
            Ok(1)
        }
    }
}

/// Prints records as NDJSON until the channel closes or `max` row events were printed.
///
/// Printed batches go back through `done` to be freed on the thread that
/// built them (shared reference counts then never bounce between cores).
fn write_ndjson(
    mut rx: mpsc::Receiver<Batch>,
    done: mpsc::Sender<Batch>,
    max: Option<u64>,
    debezium: bool,
) -> std::io::Result<u64> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut buf = Vec::with_capacity(512 * 1024);
    let mut n = 0u64;
    'outer: while let Some(batch) = rx.blocking_recv() {
        for r in &batch.records {
            write_line(&mut buf, r, debezium);
            if matches!(r, Record::Change(_)) {
                n += 1;
                if max.is_some_and(|m| n >= m) {
                    break 'outer;
                }
            }
            if buf.len() >= 256 * 1024 {
                out.write_all(&buf)?;
                buf.clear();
            }
        }
        out.write_all(&buf)?;
        buf.clear();
        out.flush()?;
        let _ = done.try_send(batch);
    }
    out.write_all(&buf)?;
    out.flush()?;
    Ok(n)
}

/// One record of `tail` output: rowstream's envelope, or Debezium's records.
fn write_line(buf: &mut Vec<u8>, r: &Record, debezium: bool) {
    #[cfg(feature = "kafka")]
    if debezium {
        let mut enc = rowstream_kafka::encode::Encoded::default();
        rowstream_kafka::debezium::write_lines(buf, r, &mut enc);
        return;
    }
    #[cfg(not(feature = "kafka"))]
    let _ = debezium;
    rowstream_api::json::write_record(buf, r);
    buf.push(b'\n');
}
