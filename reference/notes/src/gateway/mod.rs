//! The gateway: the page, the WebSocket that pushes each signed-in user's events, and the same
//! stream over gRPC. It holds no state of its own: live events come from one JetStream ordered
//! consumer fanned out in process (the hub), missed ones are read back from the stream.

pub mod feed;
pub mod follow;
pub mod grpc;
pub mod hub;
pub mod ws;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use cruncan_shutdown::Shutdown;
use std::sync::Arc;

use crate::auth::Verifier;
use crate::config::GatewaySettings;
use follow::Follower;

/// What the gateway's handlers share.
#[derive(Clone)]
pub struct GatewayState {
    /// Opens feeds.
    pub follower: Follower,
    /// Token verification.
    pub verifier: Verifier,
    /// Timeouts and limits.
    pub settings: Arc<GatewaySettings>,
    /// Where the page finds the two REST services.
    pub page_config: Arc<serde_json::Value>,
    /// Closes the sockets (1001) when the gateway stops.
    pub shutdown: Shutdown,
}

/// The gateway's routes: `/ws`, `/config.json`, `/stats`, the page from `web_dir`.
pub fn router(state: GatewayState, web_dir: &std::path::Path) -> Router {
    let page = tower_http::services::ServeDir::new(web_dir)
        .not_found_service(get(missing_page).with_state(web_dir.display().to_string()));
    Router::new()
        .route("/ws", get(ws::upgrade))
        .route(
            "/config.json",
            get(|State(s): State<GatewayState>| async move { axum::Json((*s.page_config).clone()) }),
        )
        .route("/stats", get(stats))
        .with_state(state)
        .fallback_service(page)
}

async fn stats(State(s): State<GatewayState>) -> axum::Json<serde_json::Value> {
    use std::sync::atomic::Ordering::Relaxed;
    let st = s.follower.hub().stats();
    axum::Json(serde_json::json!({
        "connected": st.connected.load(Relaxed),
        "queued": st.queued.load(Relaxed),
        "slow_dropped": st.slow_dropped.load(Relaxed),
    }))
}

async fn missing_page(State(dir): State<String>) -> axum::response::Response {
    cruncan_http::json_error(
        axum::http::StatusCode::NOT_FOUND,
        "not_found",
        format!("nothing here; if this is the page, build it first: scripts/notes-web.sh (into {dir})"),
    )
}
