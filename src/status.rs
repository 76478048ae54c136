//! Operator views of a running (or stopped) service: the semi-sync part of
//! `rowstream check`, and `rowstream status`.
//!
//! Invariants: read-only everywhere (server queries are `SHOW` / `SELECT`,
//! the checkpoint is only loaded); a server that cannot be reached is
//! reported, never retried in a loop.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::source::conn::ConnOpts;
use crate::source::query;
use crate::source::semisync_state::SemiSyncState;

/// `rowstream check` with `source.semi_sync = true`: the server's semi-sync
/// state and the warnings that go with it.
pub async fn print_semi_sync_check(
    opts: &ConnOpts,
    flavor: rowstream_api::Flavor,
) -> anyhow::Result<()> {
    let (mut conn, _) = query::query_conn(opts).await?;
    let state = SemiSyncState::read(&mut conn, flavor).await?;
    conn.disconnect().await.ok();
    for l in state.lines(flavor) {
        println!("{l}");
    }
    Ok(())
}

/// `rowstream status` arguments.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The service's TOML config.
    #[arg(long)]
    pub config: std::path::PathBuf,
    /// Print the report as one JSON object (for scripts).
    #[arg(long)]
    pub json: bool,
}

/// `rowstream status`: one screen for an operator. From the running
/// service's `/status` when its metrics listener answers, else from the
/// checkpoint and the server. Exit 0, or 2 when the config is invalid.
pub async fn run(a: &StatusArgs) -> anyhow::Result<i32> {
    let cfg = match crate::config::load(&a.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rowstream: {e}");
            return Ok(2);
        }
    };
    let report = gather(&cfg).await;
    if a.json {
        println!("{report}");
    } else {
        print!("{}", render(&report));
    }
    Ok(0)
}

/// The report as JSON (see `render` for its fields).
async fn gather(cfg: &crate::config::Config) -> Value {
    let live = match cfg.metrics.listen {
        Some(addr) => fetch_status(addr).await,
        None => None,
    };
    let checkpoint = crate::checkpoint::read_unlocked(&cfg.checkpoint.dir);
    let (cp_json, cp_set) = match &checkpoint {
        Ok(Some(c)) => (
            json!({"gtid_set": c.gtid_set.to_string(), "updated_at": c.updated_at,
            "server": c.server, "snapshot_in_progress": c.snapshot.is_some(),
            "on_demand": c.on_demand.as_ref().map(|o| json!({
                "signal": o.signal,
                "tables": o.tables.len(),
                "tables_done": o.tables.iter().filter(|t| t.done).count(),
                "rows": o.rows(),
                "resumes": o.resumes,
            }))}),
            Some(c.gtid_set.clone()),
        ),
        Ok(None) => (json!(null), None),
        Err(e) => (json!({"error": e.to_string()}), None),
    };
    let source = source_state(cfg).await;
    let behind = match (&source.executed, &cp_set) {
        (Some(s), Some(c)) => Some(s.sequence().saturating_sub(c.sequence())),
        _ => None,
    };
    let names: Vec<String> = cfg.sinks.iter().map(|s| s.name().to_string()).collect();
    let sinks: Vec<Value> = match live.as_ref().and_then(|l| l["sinks"].as_array()) {
        Some(list) => list
            .iter()
            .map(|s| {
                let mut s = s.clone();
                s["transactions_behind"] = json!(behind);
                s
            })
            .collect(),
        // Down: nothing newer than the checkpoint is durable anywhere, so
        // with transactions behind every sink is at least its age behind.
        None => {
            let age = checkpoint_age_secs(checkpoint.as_ref().ok().and_then(|c| c.as_ref()));
            let secs = behind.map(|b| if b == 0 { Some(0.0) } else { age });
            names
                .iter()
                .map(|n| json!({"name": n, "transactions_behind": behind, "seconds_behind_at_least": secs.flatten()}))
                .collect()
        }
    };
    json!({
        "service": {
            "running": live.is_some(),
            "endpoint": cfg.metrics.listen.map(|a| a.to_string()),
            "health": live.as_ref().map(|l| l["status"].clone()),
            "problems": live.as_ref().map(|l| l["problems"].clone()),
            "read_position": live.as_ref().map(|l| l["read_position"].clone()),
        },
        "source": {
            "server": source.server,
            "flavor": source.flavor,
            "gtid_executed": source.executed.map(|s| s.to_string()),
            "error": source.error,
            "semi_sync": source.semi_sync,
        },
        "checkpoint": cp_json,
        "transactions_behind": behind,
        "sinks": sinks,
        "semi_sync_acks": live.as_ref().map(|l| l["semi_sync"].clone()),
    })
}

/// Seconds since the checkpoint was written (None: unknown).
fn checkpoint_age_secs(c: Option<&crate::checkpoint::Checkpoint>) -> Option<f64> {
    let written = rowstream_api::rfc3339::parse_ms(&c?.updated_at)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    Some(now.saturating_sub(written) as f64 / 1000.0)
}

/// What the first source server says (or why it could not be asked).
#[derive(Default)]
struct SourceState {
    server: Option<String>,
    flavor: Option<&'static str>,
    executed: Option<crate::gtid::GtidSet>,
    semi_sync: Option<SemiSyncState>,
    error: Option<String>,
}

async fn source_state(cfg: &crate::config::Config) -> SourceState {
    let mut st = SourceState::default();
    let opts = match cfg.source.conn_opts() {
        Ok(mut o) if !o.is_empty() => o.remove(0),
        Ok(_) => return st,
        Err(e) => {
            st.error = Some(e.to_string());
            return st;
        }
    };
    st.server = Some(format!("{}:{}", opts.host, opts.port));
    let (mut conn, flavor) = match query::query_conn(&opts).await {
        Ok(c) => c,
        Err(e) => {
            st.error = Some(e.to_string());
            return st;
        }
    };
    st.flavor = Some(flavor.as_str());
    match query::server_executed(&mut conn, flavor).await {
        Ok(s) => st.executed = Some(s),
        Err(e) => st.error = Some(e.to_string()),
    }
    st.semi_sync = SemiSyncState::read(&mut conn, flavor).await.ok();
    conn.disconnect().await.ok();
    st
}

/// GET /status from the running service (None: not running or not answering).
async fn fetch_status(addr: std::net::SocketAddr) -> Option<Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = std::time::Duration::from_secs(3);
    let mut s = tokio::time::timeout(t, tokio::net::TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    s.write_all(b"GET /status HTTP/1.1\r\nHost: rowstream\r\n\r\n")
        .await
        .ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(t, s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf);
    let body = &text[text.find("\r\n\r\n")? + 4..];
    serde_json::from_str(body).ok()
}

/// The one-screen text form of the report.
fn render(r: &Value) -> String {
    let mut out = String::new();
    let s = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let svc = &r["service"];
    if svc["running"] == true {
        let _ = writeln!(
            out,
            "service     running ({}), health {}",
            s(&svc["endpoint"]),
            s(&svc["health"])
        );
        if let Some(p) = svc["problems"].as_array().filter(|p| !p.is_empty()) {
            for p in p {
                let _ = writeln!(out, "  problem   {}", s(p));
            }
        }
    } else {
        let _ = writeln!(
            out,
            "service     not answering{}",
            match svc["endpoint"].as_str() {
                Some(e) => format!(" on {e} (stopped?)"),
                None => " (no [metrics] listen: cannot tell)".to_string(),
            }
        );
    }
    let src = &r["source"];
    let _ = writeln!(
        out,
        "source      {} {}",
        s(&src["flavor"]),
        s(&src["server"])
    );
    if !src["error"].is_null() {
        let _ = writeln!(out, "  error     {}", s(&src["error"]));
    }
    let _ = writeln!(out, "  executed  {}", s(&src["gtid_executed"]));
    let cp = &r["checkpoint"];
    let _ = writeln!(
        out,
        "checkpoint  {} (written {})",
        s(&cp["gtid_set"]),
        s(&cp["updated_at"])
    );
    let od = &cp["on_demand"];
    if !od.is_null() {
        let _ = writeln!(
            out,
            "  on-demand snapshot {}: {}/{} table(s) done, {} row(s) durable, resumed {} time(s)",
            s(&od["signal"]),
            s(&od["tables_done"]),
            s(&od["tables"]),
            s(&od["rows"]),
            s(&od["resumes"])
        );
    }
    let _ = writeln!(
        out,
        "behind      {} transaction(s)",
        s(&r["transactions_behind"])
    );
    for k in r["sinks"].as_array().into_iter().flatten() {
        if svc["running"] == true {
            let _ = writeln!(
                out,
                "sink {:<10} lag {}s, last ack {}s ago, {} batch(es) unacked, {} transaction(s) behind",
                s(&k["name"]),
                s(&k["lag_seconds"]),
                s(&k["last_ack_age_seconds"]),
                s(&k["unacked_batches"]),
                s(&k["transactions_behind"])
            );
        } else {
            let _ = writeln!(
                out,
                "sink {:<10} {} transaction(s) behind, at least {}s (from the checkpoint)",
                s(&k["name"]),
                s(&k["transactions_behind"]),
                s(&k["seconds_behind_at_least"])
            );
        }
    }
    match &src["semi_sync"] {
        Value::Null => {}
        ss if ss["enabled"] == true => {
            let _ =
                writeln!(
                out,
                "semi-sync   enabled, {}, wait point {}, timeout {} ms, {} client(s); acks sent {}",
                if ss["active"] == true { "active" } else { "NOT active (fell back to async)" },
                s(&ss["wait_point"]),
                s(&ss["timeout_ms"]),
                s(&ss["clients"]),
                s(&r["semi_sync_acks"]["acks_sent"])
            );
        }
        _ => {
            let _ = writeln!(out, "semi-sync   off on the server");
        }
    }
    out
}
