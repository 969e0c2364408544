//! The notes service's durable consumer of `user.created`: it keeps the service's own copy of the
//! users, which sharing is checked against. Handling is idempotent (an insert that ignores a user
//! it already has), so a redelivery or a duplicate publish changes nothing; the ack comes after
//! the commit, so a crash in between redelivers.

use anyhow::Context as _;
use async_nats::jetstream::{self, AckKind, consumer};
use cruncan_shutdown::Shutdown;
use futures::StreamExt as _;
use sqlx::PgPool;
use std::time::Duration;

use crate::config::NatsSettings;
use crate::events::{USER_CREATED, UserCreated};

/// The durable pull consumer (shared by every replica of the notes service).
pub async fn ensure_consumer(
    stream: &jetstream::stream::Stream,
    s: &NatsSettings,
) -> anyhow::Result<consumer::PullConsumer> {
    stream
        .get_or_create_consumer(
            &s.users_consumer,
            consumer::pull::Config {
                durable_name: Some(s.users_consumer.clone()),
                filter_subject: s.subject(USER_CREATED),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: s.ack_wait,
                max_deliver: s.max_deliver,
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("creating or reading consumer {}", s.users_consumer))
}

// ANCHOR: apply
/// Records the user; `true` when it was new. Running it twice for one event is harmless.
pub async fn apply(pool: &PgPool, event: &UserCreated) -> anyhow::Result<bool> {
    let r = sqlx::query(
        "INSERT INTO known_users (id, name, event_id) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
    )
    .bind(event.user_id)
    .bind(&event.name)
    .bind(event.event_id)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}
// ANCHOR_END: apply

// ANCHOR: run
/// Consumes until `stop`: ack after the commit; a payload that does not parse is terminated
/// (redelivering it cannot help); a database failure is nak'ed with a delay and retried.
pub async fn run(consumer: consumer::PullConsumer, pool: PgPool, stop: Shutdown) -> anyhow::Result<()> {
    while !stop.is_triggered() {
        let mut messages = match consumer.messages().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "user.created consumer: pull failed; retrying");
                tokio::select! { () = stop.wait() => break, () = tokio::time::sleep(Duration::from_secs(1)) => continue }
            }
        };
        loop {
            let next = tokio::select! { () = stop.wait() => return Ok(()), next = messages.next() => next };
            let Some(msg) = next else { break };
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "user.created consumer: stream error; re-pulling");
                    break;
                }
            };
            let ack = match serde_json::from_slice::<UserCreated>(&msg.payload) {
                Err(e) => {
                    tracing::error!(error = %e, subject = %msg.subject, "unreadable user.created; terminated");
                    AckKind::Term
                }
                Ok(event) => match apply(&pool, &event).await {
                    Ok(new) => {
                        tracing::info!(user = %event.user_id, new, "user.created applied");
                        AckKind::Ack
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "user.created not applied; redelivering");
                        AckKind::Nak(Some(Duration::from_secs(1)))
                    }
                },
            };
            if let Err(e) = msg.ack_with(ack).await {
                tracing::warn!(error = %e, "ack failed; the event will be redelivered (harmless)");
            }
        }
    }
    Ok(())
}
// ANCHOR_END: run
