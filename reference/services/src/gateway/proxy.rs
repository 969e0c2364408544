//! Forwarding: the path's first segment picks the upstream; the request goes on with its
//! headers (minus hop-by-hop ones), its request id and the remaining deadline.

use crate::deadline::{DEADLINE_HEADER, Deadline};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use std::sync::Arc;
use std::time::Duration;

/// Where each prefix goes.
#[derive(Debug, Clone)]
pub struct Upstreams {
    /// The HTTP client (one connection pool for all upstreams).
    pub client: reqwest::Client,
    /// `/users…`.
    pub users: String,
    /// `/products…`.
    pub products: String,
    /// `/orders…`.
    pub orders: String,
    /// The gateway's time cap, sent downstream as the deadline.
    pub timeout: Duration,
    /// Largest body forwarded.
    pub body_limit: usize,
}

impl Upstreams {
    fn base(&self, path: &str) -> Option<&str> {
        match path.trim_start_matches('/').split('/').next()? {
            "users" => Some(&self.users),
            "products" => Some(&self.products),
            "orders" => Some(&self.orders),
            _ => None,
        }
    }
}

/// Headers meaningful for one connection only (RFC 9110 §7.6.1), plus those reqwest sets.
const HOP_BY_HOP: [header::HeaderName; 9] = [
    header::CONNECTION,
    header::HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
];

fn end_to_end(mut headers: HeaderMap) -> HeaderMap {
    for h in &HOP_BY_HOP {
        headers.remove(h);
    }
    headers.remove(header::CONTENT_LENGTH);
    headers
}

// ANCHOR: forward
/// Forwards the request to its upstream and returns its answer: 502 when the upstream
/// cannot be reached, 504 when it does not answer within the deadline.
pub async fn forward(State(up): State<Arc<Upstreams>>, req: Request) -> Response {
    let Some(base) = up.base(req.uri().path()) else { return cruncan_http::not_found().await };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, up.body_limit).await else {
        let msg = format!("request body is larger than {} bytes", up.body_limit);
        return cruncan_http::json_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", msg);
    };
    let deadline = Deadline::from_headers(&parts.headers, up.timeout);
    let mut headers = end_to_end(parts.headers);
    if let Ok(v) = HeaderValue::from_str(&deadline.header_value()) {
        headers.insert(DEADLINE_HEADER, v);
    }
    let request =
        up.client.request(parts.method, url).headers(headers).body(body).timeout(deadline.remaining());
    let answer = match request.build() {
        Ok(r) => cruncan_http::client::send_traced(&up.client, r).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(r) => {
            let (status, headers) = (r.status(), end_to_end(r.headers().clone()));
            let body = match r.bytes().await {
                Ok(b) => b,
                Err(e) => return upstream_failed(&e),
            };
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            response
        }
        Err(e) => upstream_failed(&e),
    }
}

fn upstream_failed(e: &reqwest::Error) -> Response {
    tracing::warn!(error = %e, "upstream failed");
    if e.is_timeout() {
        cruncan_http::json_error(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            "the service did not answer in time",
        )
    } else {
        cruncan_http::json_error(StatusCode::BAD_GATEWAY, "bad_gateway", "the service is unreachable")
    }
}
// ANCHOR_END: forward
