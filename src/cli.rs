//! The command line: `check` validates a server, `tail` prints its change
//! events as NDJSON. Exit codes: 0 ok, 1 runtime error, 2 failed checks or
//! bad arguments.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use rowstream_api::Record;
use tokio::sync::{mpsc, oneshot};

use crate::source::checks::{self, CheckInput};
use crate::source::conn::ConnOpts;
use crate::source::filter::TableFilter;
use crate::source::stream::{self, Batch, StreamConfig};
use crate::source::SourceError;

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
    /// Check that a server is set up for rowstream (binlog, GTID, privileges, replica id).
    Check(CheckArgs),
    /// Print change events of a server as NDJSON on stdout.
    Tail(TailArgs),
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
}

/// Runs the command; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Check(a) => check(&a).await,
        Command::Tail(a) => tail(a).await,
    }
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
) -> anyhow::Result<(
    i32,
    Option<(rowstream_api::Flavor, crate::source::gtid::GtidSet)>,
)> {
    let (mut conn, flavor) = stream::query_conn(opts).await?;
    // Resolving the start may itself need the privileges being checked: run
    // the checks anyway, so a missing grant is reported as such.
    let start = stream::resolve_start(&mut conn, flavor, from).await;
    let failures = checks::run_checks(
        &mut conn,
        &CheckInput {
            flavor,
            server_id,
            start: start.as_ref().ok(),
        },
    )
    .await
    .map_err(SourceError::from)?;
    let start = match start {
        Ok(s) => s,
        Err(e) if failures.is_empty() => return Err(e.into()),
        Err(_) => crate::source::gtid::GtidSet::empty(flavor),
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
    let filter = TableFilter::new(&a.include, &a.exclude).map_err(SourceError::Config)?;
    let server_id = server_id(&a.check);
    let (code, ok) = run_checks(&opts, server_id, &a.check.from).await?;
    let Some((flavor, start)) = ok else {
        return Ok(code);
    };
    let cfg = StreamConfig {
        servers: vec![opts],
        server_id,
        name: Arc::from(a.name.as_str()),
        filter,
        heartbeat: Duration::from_secs(a.heartbeat_secs.max(1)),
    };
    let (tx, rx) = mpsc::channel::<Batch>(stream::CHANNEL_BATCHES);
    let (done_tx, done_rx) = oneshot::channel();
    let max = a.max_events;
    // Encoding runs on its own thread so decoding and encoding use both cores.
    let writer = std::thread::Builder::new()
        .name("ndjson".into())
        .spawn(move || {
            let r = write_ndjson(rx, max);
            let _ = done_tx.send(());
            r
        })?;
    let dump_conn = stream::DumpConn::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let result = tokio::select! {
        r = stream::run(&cfg, start, flavor, tx, &dump_conn, stop_rx) => r,
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
fn write_ndjson(mut rx: mpsc::Receiver<Batch>, max: Option<u64>) -> std::io::Result<u64> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut buf = Vec::with_capacity(512 * 1024);
    let mut n = 0u64;
    'outer: while let Some(batch) = rx.blocking_recv() {
        for r in &batch.records {
            rowstream_api::json::write_record(&mut buf, r);
            buf.push(b'\n');
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
    }
    out.write_all(&buf)?;
    out.flush()?;
    Ok(n)
}
