//! The gateway's one subscription to the note events: an ordered consumer (no acks, no server
//! state to clean up; the client re-creates it on a gap) from the sequence after `start`, feeding
//! the hub. If it fails for good, it is re-created after the last sequence it handed over.

use async_nats::jetstream::{consumer, stream};
use cruncan_shutdown::Shutdown;
use futures::StreamExt as _;
use std::sync::Arc;
use std::time::Duration;

use crate::events::NoteEvent;
use crate::gateway::hub::{Delivered, Hub};

// ANCHOR: feed
/// Feeds `hub` with the events after stream sequence `start` until `stop`.
pub async fn run(stream: stream::Stream, filter: String, hub: Arc<Hub>, start: u64, stop: Shutdown) {
    let mut last = start;
    while !stop.is_triggered() {
        let messages = async {
            stream
                .create_consumer(consumer::pull::OrderedConfig {
                    filter_subject: filter.clone(),
                    deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: last + 1 },
                    ..Default::default()
                })
                .await?
                .messages()
                .await
                .map_err(anyhow::Error::from)
        };
        let mut messages = match messages.await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "gateway feed: subscribe failed; retrying");
                tokio::select! { () = stop.wait() => return, () = tokio::time::sleep(Duration::from_secs(1)) => continue }
            }
        };
        loop {
            let next = tokio::select! { () = stop.wait() => return, n = messages.next() => n };
            let msg = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, last, "gateway feed: consumer failed; re-creating");
                    break;
                }
                None => break,
            };
            let Ok(info) = msg.info() else { continue };
            let seq = info.stream_sequence;
            last = last.max(seq);
            match serde_json::from_slice::<NoteEvent>(&msg.payload)
                .map_err(anyhow::Error::from)
                .and_then(|e| Delivered::new(seq, e))
            {
                Ok(d) => hub.publish(&Arc::new(d)),
                Err(e) => {
                    tracing::warn!(seq, error = %format!("{e:#}"), "gateway feed: unreadable event skipped")
                }
            }
        }
    }
}
// ANCHOR_END: feed
