//! Health endpoints for load balancers and orchestrators (Patroni's
//! pattern): unauthenticated, cheap, answered from the same snapshot the
//! brain publishes.
//!
//! - `/health`: 200 when the daemon runs and has joined its cluster.
//! - `/ready`: 200 when it may run groups: joined, quorate (when quorum is
//!   used) and not waiting for a witness, an arbitrator or a fence.
//! - `/active/GROUP`: 200 on the node where GROUP is started, 503
//!   elsewhere, 404 for an unknown group. `option httpchk GET /active/web`
//!   makes HAProxy send traffic to the active node only.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::AppState;
use crate::routes::snapshot;

/// The health routes.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/active/{group}", get(active))
}

fn answer(ok: bool, body: serde_json::Value) -> Response {
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn health(State(s): State<Arc<AppState>>) -> Response {
    match snapshot(&s) {
        Ok(st) => {
            let m = &st.membership;
            answer(
                m.joined,
                json!({"node": m.local, "daemon": "up", "joined": m.joined}),
            )
        }
        Err(r) => r.into_response(),
    }
}

async fn ready(State(s): State<Arc<AppState>>) -> Response {
    match snapshot(&s) {
        Ok(st) => {
            let m = &st.membership;
            let quorate = m.quorum.as_ref().is_none_or(|q| q.quorate);
            let why = if !m.joined {
                Some("still joining the cluster".to_string())
            } else if !quorate {
                Some("no quorum".to_string())
            } else {
                m.waiting.clone()
            };
            answer(
                why.is_none(),
                json!({"node": m.local, "ready": why.is_none(), "reason": why}),
            )
        }
        Err(r) => r.into_response(),
    }
}

async fn active(State(s): State<Arc<AppState>>, Path(group): Path<String>) -> Response {
    match snapshot(&s) {
        Ok(st) => {
            let m = &st.membership;
            let Some(g) = m.groups.iter().find(|g| g.name == group) else {
                return crate::routes::error(
                    StatusCode::NOT_FOUND,
                    format!("no group is called {group}"),
                );
            };
            let here = g.phase_here == "started";
            answer(
                here,
                json!({
                    "node": m.local,
                    "group": g.name,
                    "active": here,
                    "phase": g.phase_here,
                    "active_on": g.active_on,
                }),
            )
        }
        Err(r) => r.into_response(),
    }
}
