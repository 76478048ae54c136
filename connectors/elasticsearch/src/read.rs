//! Reading an index back, for `rowstream verify`: every document of an
//! index through a scroll, and one document by `_id`. Not used by the sink.
//!
//! Invariants: read-only (searches, gets, and clearing the scroll context
//! this opened); memory is one page of hits at a time, handed to the
//! caller document by document; a missing index reads as empty (`Ok(None)`
//! from [`scroll_all`]), never as an error to retry.

use elasticsearch::http::Method;
use serde_json::{json, Value as Json};

use crate::client::{Client, Failure};

/// How long a scroll context lives between pages.
const KEEP_ALIVE: &str = "2m";

/// Calls `each(_id, _source)` for every document of `index`, `page` hits
/// per request (sorted by `_doc`, the cheapest order); returns how many
/// there were, or `None` when the index does not exist. `each` may stop the
/// scroll with an error, which is returned as [`Failure::Rejected`] with
/// status 0.
pub async fn scroll_all(
    client: &Client,
    index: &str,
    page: usize,
    mut each: impl FnMut(String, Json) -> Result<(), String>,
) -> Result<Option<u64>, Failure> {
    let path = format!(
        "/{}/_search?scroll={KEEP_ALIVE}",
        crate::client::encode_path(index)
    );
    let body = json!({ "size": page.max(1), "sort": ["_doc"], "query": { "match_all": {} } });
    let first = client
        .send(
            Method::Post,
            &path,
            Some(body.to_string().into_bytes()),
            false,
        )
        .await;
    let mut resp = match first {
        Ok((_, b)) => parse(&b)?,
        Err(Failure::Rejected { status: 404, .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut n = 0u64;
    let mut scroll_id: Option<String> = None;
    let result = loop {
        if let Some(id) = resp["_scroll_id"].as_str() {
            scroll_id = Some(id.to_string());
        }
        let hits = resp["hits"]["hits"].as_array().cloned().unwrap_or_default();
        if hits.is_empty() {
            break Ok(Some(n));
        }
        let mut stop = None;
        for h in hits {
            n += 1;
            let id = h["_id"].as_str().unwrap_or_default().to_string();
            if let Err(e) = each(id, h["_source"].clone()) {
                stop = Some(e);
                break;
            }
        }
        if let Some(reason) = stop {
            break Err(Failure::Rejected { status: 0, reason });
        }
        let Some(id) = &scroll_id else {
            break Ok(Some(n));
        };
        let next = json!({ "scroll": KEEP_ALIVE, "scroll_id": id });
        match client
            .send(
                Method::Post,
                "/_search/scroll",
                Some(next.to_string().into_bytes()),
                false,
            )
            .await
        {
            Ok((_, b)) => resp = parse(&b)?,
            Err(e) => break Err(e),
        }
    };
    if let Some(id) = scroll_id {
        let clear = json!({ "scroll_id": id });
        let _ = client
            .send(
                Method::Delete,
                "/_search/scroll",
                Some(clear.to_string().into_bytes()),
                false,
            )
            .await;
    }
    result
}

/// The `_source` of document `id` of `index` (a realtime get: no refresh
/// needed); `None` when there is no such document or index.
pub async fn get_doc(client: &Client, index: &str, id: &str) -> Result<Option<Json>, Failure> {
    let path = format!(
        "/{}/_doc/{}",
        crate::client::encode_path(index),
        crate::client::encode_path(id)
    );
    match client.send(Method::Get, &path, None, false).await {
        Ok((_, b)) => {
            let v = parse(&b)?;
            Ok(v["found"]
                .as_bool()
                .unwrap_or(false)
                .then(|| v["_source"].clone()))
        }
        Err(Failure::Rejected { status: 404, .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn parse(body: &[u8]) -> Result<Json, Failure> {
    serde_json::from_slice(body).map_err(|e| Failure::Transient(format!("unreadable answer: {e}")))
}
