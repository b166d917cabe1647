//! The web console at `/`: one page served from the binary (no build
//! step), polling `/api/v1/status` and `/api/v1/events` four times a second.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::AppState;

/// The page.
pub const PAGE: &str = include_str!("../console/index.html");

/// The console's route.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/", get(page))
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ),
        ],
        PAGE,
    )
}
