//! A rate limit per client — the token's `sub`, so one busy client cannot use up everyone's
//! share — with governor's GCRA; over the limit is 429 with `Retry-After`.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::num::NonZeroU32;
use std::sync::Arc;

/// Per-client limiter.
pub type Limiter = DefaultKeyedRateLimiter<String>;

/// `per_second` sustained, `burst` at once, per client.
pub fn limiter(per_second: u32, burst: u32) -> Arc<Limiter> {
    let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(rate);
    Arc::new(Limiter::keyed(Quota::per_second(rate).allow_burst(burst)))
}

// ANCHOR: rate_limit
/// Middleware, after the JWT check: the verified claims name the client.
pub async fn limit(State(limiter): State<Arc<Limiter>>, req: Request, next: Next) -> Response {
    let client = req.extensions().get::<jwt::Claims>().map_or_else(String::new, |c| c.sub.clone());
    match limiter.check_key(&client) {
        Ok(()) => next.run(req).await,
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let msg = format!("rate limit exceeded; retry in {secs} s");
            let mut r = cruncan_http::json_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", msg);
            if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
    }
}
// ANCHOR_END: rate_limit

/// Forgets clients whose limit has fully recovered, once a minute, so the keyed state does not
/// grow with every client ever seen.
pub async fn prune(limiter: Arc<Limiter>, shutdown: cruncan_shutdown::Shutdown) {
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
        }
        limiter.retain_recent();
        limiter.shrink_to_fit();
    }
}
