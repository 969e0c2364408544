//! What two does with one message: decode it, skip it if already delivered, get a token, post it
//! to the third party, and classify every failure as retryable or permanent.

use crate::config::ThirdPartySettings;
use crate::store::ProcessedStore;
use cruncan_accesstoken::{Token, TokenCache};
use cruncan_kafka::{Handler, HandlerError, Message};
use cruncan_model::{OneRequestEvent, ThreeRequest};
use opentelemetry::metrics::Counter;
use reqwest::StatusCode;
use std::sync::Arc;
use std::time::Duration;

/// Service two's message handler: delivers each request to the third party.
pub struct DeliveryHandler {
    tokens: TokenCache,
    http: reqwest::Client,
    three: ThirdPartySettings,
    store: ProcessedStore,
    duplicates: Counter<u64>,
    /// Set when the token server refuses our credentials: a configuration error, on `/readyz`.
    config_error: std::sync::Mutex<Option<String>>,
}

impl std::fmt::Debug for DeliveryHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryHandler").field("three", &self.three.url).finish_non_exhaustive()
    }
}

impl DeliveryHandler {
    /// A handler posting to `three` with tokens from `tokens`.
    pub fn new(
        tokens: TokenCache,
        http: reqwest::Client,
        three: ThirdPartySettings,
        store: ProcessedStore,
    ) -> Self {
        let duplicates = cruncan_telemetry::meter("two")
            .u64_counter("two.duplicates.skipped")
            .with_description("Redelivered messages skipped because their request was already delivered")
            .build();
        duplicates.add(0, &[]); // the series exists from the start: the dashboard shows 0, not "no data"
        Self { tokens, http, three, store, duplicates, config_error: std::sync::Mutex::new(None) }
    }

    // ANCHOR: deliver
    /// Posts `body` with a token; on a 401 drops that token and tries once more with a new one.
    async fn deliver(&self, body: &ThreeRequest) -> Result<StatusCode, HandlerError> {
        let token = self.token().await?;
        let status = self.post(body, &token).await?;
        if status != StatusCode::UNAUTHORIZED {
            return classify(status, None).map(|()| status);
        }
        tracing::info!("third party rejected the token (401); fetching a new one and retrying once");
        self.tokens.reject(&token).await;
        let fresh = self.token().await?;
        let status = self.post(body, &fresh).await?;
        classify(status, None).map(|()| status)
    }
    // ANCHOR_END: deliver

    /// Why two cannot work until its configuration is fixed (e.g. a refused client secret).
    pub fn config_error(&self) -> Option<String> {
        self.config_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    // ANCHOR: token
    /// A token. The message is never at fault when the token server is: a transient failure is
    /// retryable, and refused credentials are a configuration error that pauses consumption
    /// (circuit breaker) and shows on `/readyz` instead of dead-lettering the topic.
    async fn token(&self) -> Result<Arc<Token>, HandlerError> {
        match self.tokens.token().await {
            Ok(token) => {
                self.config_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
                Ok(token)
            }
            Err(e) if e.is_retryable() => {
                Err(HandlerError::retryable(anyhow::anyhow!("getting an access token: {e}")))
            }
            Err(e) => {
                let why = format!(
                    "the token server refuses our credentials ({e}): check token.client_id and token.client_secret"
                );
                tracing::error!(error = %why, "configuration error; consumption paused");
                *self.config_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some(why.clone());
                Err(HandlerError::unavailable(anyhow::anyhow!(why)))
            }
        }
    }
    // ANCHOR_END: token

    /// One POST /three. Transport failures (timeout, refused) are retryable; statuses other than
    /// 401 are classified here so `Retry-After` can be read from the response.
    async fn post(&self, body: &ThreeRequest, token: &Token) -> Result<StatusCode, HandlerError> {
        let request = self
            .http
            .post(format!("{}/three", self.three.url.trim_end_matches('/')))
            .json(body)
            .header("language", &self.three.language)
            .header("idempotency-key", &body.id)
            .bearer_auth(token.bearer())
            .timeout(self.three.timeout)
            .build()
            .map_err(|e| HandlerError::permanent(anyhow::anyhow!("building the third-party request: {e}")))?;
        let response = cruncan_http::client::send_traced(&self.http, request).await.map_err(|e| {
            if e.is_connect() {
                // Nobody answers: the third party is down, whatever the message.
                HandlerError::unavailable(anyhow::anyhow!("POST /three could not connect: {e}"))
            } else {
                let kind = if e.is_timeout() { "timed out" } else { "failed" };
                HandlerError::retryable(anyhow::anyhow!("POST /three {kind}: {e}"))
            }
        })?;
        let status = response.status();
        if status.is_success() || status == StatusCode::UNAUTHORIZED {
            return Ok(status);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        classify(status, retry_after).map(|()| status)
    }
}

// ANCHOR: classify
/// 2xx is success; 408, 429 and 5xx are worth retrying (after `Retry-After` when given); any
/// other status will not change by retrying.
fn classify(status: StatusCode, retry_after: Option<Duration>) -> Result<(), HandlerError> {
    if status.is_success() {
        Ok(())
    } else if status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
    {
        Err(HandlerError::Retryable { error: anyhow::anyhow!("third party answered {status}"), retry_after })
    } else {
        Err(HandlerError::permanent(anyhow::anyhow!("third party answered {status}")))
    }
}
// ANCHOR_END: classify

/// `Retry-After` as delay-seconds or an HTTP date; capped at five minutes.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let delay = match value.trim().parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            httpdate::parse_http_date(value.trim()).ok()?.duration_since(std::time::SystemTime::now()).ok()?
        }
    };
    Some(delay.min(Duration::from_secs(300)))
}

// ANCHOR: handle
impl Handler for DeliveryHandler {
    async fn handle(&self, msg: &Message) -> Result<(), HandlerError> {
        // Poison: a message that cannot be decoded never will be; dead-letter it at once.
        let payload = msg
            .payload
            .as_deref()
            .ok_or_else(|| HandlerError::permanent(anyhow::anyhow!("empty message")))?;
        let event: OneRequestEvent = serde_json::from_slice(payload)
            .map_err(|e| HandlerError::permanent(anyhow::anyhow!("undecodable request event: {e}")))?;
        if event.request_id.is_empty() {
            return Err(HandlerError::permanent(anyhow::anyhow!("request event without request_id")));
        }

        // At-least-once delivery: a message seen again after a crash or rebalance is skipped.
        // Our own database down is an outage, not this message's fault: pause, do not dead-letter.
        let processed =
            self.store.is_processed(&event.request_id).await.map_err(HandlerError::unavailable)?;
        if processed {
            self.duplicates.add(1, &[]);
            tracing::info!(request_id = %event.request_id, "already processed; skipping duplicate delivery");
            return Ok(());
        }
        let body = ThreeRequest {
            id: event.request_id.clone(),
            metadata: format!("kafka:{}/{}@{}", msg.topic, msg.partition, msg.offset),
            one_request: event.request,
        };
        let status = self.deliver(&body).await?;
        self.store.mark(&event.request_id, status.as_u16()).await.map_err(HandlerError::unavailable)?;
        tracing::info!(request_id = %event.request_id, status = status.as_u16(), "request delivered to the third party");
        Ok(())
    }
}
// ANCHOR_END: handle

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        assert!(classify(StatusCode::OK, None).is_ok());
        assert!(classify(StatusCode::ACCEPTED, None).is_ok());
        for s in [408, 429, 500, 502, 503, 504] {
            let e = classify(StatusCode::from_u16(s).unwrap(), None).unwrap_err();
            assert!(matches!(e, HandlerError::Retryable { .. }), "{s} is retryable");
        }
        for s in [400, 403, 404, 409, 422] {
            let e = classify(StatusCode::from_u16(s).unwrap(), None).unwrap_err();
            assert!(matches!(e, HandlerError::Permanent(_)), "{s} is permanent");
        }
    }

    #[test]
    fn retry_after_as_seconds_or_date() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("100000"), Some(Duration::from_secs(300)), "capped");
        let soon = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(10));
        let d = parse_retry_after(&soon).unwrap();
        assert!(d > Duration::from_secs(8) && d <= Duration::from_secs(10), "{d:?}");
        assert_eq!(parse_retry_after("soon"), None);
    }
}
