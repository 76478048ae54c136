//! Operator views of a running (or stopped) service: the semi-sync part of
//! `rowstream check`, and `rowstream status`.
//!
//! Invariants: read-only everywhere (server queries are `SHOW` / `SELECT`,
//! the checkpoint is only loaded); a server that cannot be reached is
//! reported, never retried in a loop.

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
