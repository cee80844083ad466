//! Waiting on an in-process user agent's `Events` stream (async tests).

use std::time::Duration;
use wakeline::{Event, Events};

/// The next event matching `pred` within `limit`; panics naming the limit and what came instead.
pub async fn next_matching(
    events: &mut Events,
    limit: Duration,
    pred: impl Fn(&Event) -> bool,
) -> Event {
    let found = tokio::time::timeout(limit, async {
        while let Some(e) = events.next().await {
            if pred(&e) {
                return Some(e);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(e)) => e,
        other => panic!("no matching event within {limit:?}: {other:?}"),
    }
}
