//! Load shedding: at most `max` requests in flight across every route; the next one is answered
//! 503 with `Retry-After` at once instead of waiting in an unbounded queue.

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use tower::{BoxError, ServiceBuilder};

// ANCHOR: shed
/// `router` with a global in-flight limit that sheds instead of queueing.
pub fn with_load_shedding(router: Router, max_in_flight: usize) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(overloaded))
            .load_shed()
            .layer(tower::limit::GlobalConcurrencyLimitLayer::new(max_in_flight.max(1))),
    )
}

async fn overloaded(e: BoxError) -> Response {
    if !e.is::<tower::load_shed::error::Overloaded>() {
        tracing::error!(error = %e, "unexpected middleware error");
        return cruncan_http::json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error");
    }
    let mut r =
        cruncan_http::json_error(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "too busy; retry later");
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}
// ANCHOR_END: shed
