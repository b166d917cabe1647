//! `/api/v1/…`: the same reads and operator commands as the control socket,
//! as JSON over HTTP. Reads are open; changes need a token (see `auth`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tandem_control::Status;
use tandem_core::Command;

use crate::AppState;

type St = State<Arc<AppState>>;

/// The API's routes.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/nodes", get(nodes))
        .route("/api/v1/groups", get(groups))
        .route("/api/v1/groups/{group}", get(group))
        .route("/api/v1/groups/{group}/resources", get(resources))
        .route("/api/v1/volumes", get(volumes))
        .route("/api/v1/events", get(events))
        .route("/api/v1/history", get(history))
        .route("/api/v1/groups/{group}/move", post(move_group))
        .route("/api/v1/groups/{group}/clear", post(clear))
        .route("/api/v1/groups/{group}/cleanup", post(cleanup))
        .route("/api/v1/nodes/{node}/standby", post(standby))
        .route("/api/v1/nodes/{node}/unstandby", post(unstandby))
        .route("/api/v1/nodes/{node}/force-primary", post(force_primary))
        .fallback(not_found)
}

/// A JSON error answer: `{"error": message}`.
pub(crate) fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(json!({ "error": message.into() }))).into_response()
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint; see /api/v1/status, /api/v1/groups, /api/v1/nodes, /api/v1/volumes, /api/v1/events, /metrics, /health, /ready, /active/GROUP",
    )
}

/// The daemon has no snapshot yet (it is starting): 503 with the reason.
pub(crate) struct Unavailable(String);

impl IntoResponse for Unavailable {
    fn into_response(self) -> Response {
        error(StatusCode::SERVICE_UNAVAILABLE, self.0)
    }
}

/// The status, or why there is none yet.
pub(crate) fn snapshot(state: &AppState) -> Result<Status, Unavailable> {
    state.backend.status().map_err(Unavailable)
}

async fn status(State(s): St) -> Response {
    match snapshot(&s) {
        Ok(st) => Json(st).into_response(),
        Err(r) => r.into_response(),
    }
}

async fn nodes(State(s): St) -> Response {
    match snapshot(&s) {
        Ok(st) => Json(st.membership.nodes).into_response(),
        Err(r) => r.into_response(),
    }
}

async fn groups(State(s): St) -> Response {
    match snapshot(&s) {
        Ok(st) => Json(st.membership.groups).into_response(),
        Err(r) => r.into_response(),
    }
}

fn unknown_group(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no group is called {name}; GET /api/v1/groups lists them"),
    )
}

async fn group(State(s): St, Path(name): Path<String>) -> Response {
    match snapshot(&s) {
        Ok(st) => match st.membership.groups.into_iter().find(|g| g.name == name) {
            Some(g) => Json(g).into_response(),
            None => unknown_group(&name),
        },
        Err(r) => r.into_response(),
    }
}

async fn resources(State(s): St, Path(name): Path<String>) -> Response {
    match snapshot(&s) {
        Ok(st) => match st.membership.groups.into_iter().find(|g| g.name == name) {
            Some(g) => Json(g.resources).into_response(),
            None => unknown_group(&name),
        },
        Err(r) => r.into_response(),
    }
}

async fn volumes(State(s): St) -> Response {
    match snapshot(&s) {
        Ok(st) => Json(st.volumes).into_response(),
        Err(r) => r.into_response(),
    }
}

/// `?since=SEQ&limit=N`.
#[derive(Deserialize)]
struct EventsQuery {
    #[serde(default)]
    since: u64,
    limit: Option<usize>,
}

async fn events(
    State(s): St,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return error(
            StatusCode::BAD_REQUEST,
            "since and limit must be whole numbers, e.g. /api/v1/events?since=120&limit=50",
        );
    };
    let limit = q.limit.unwrap_or(100).min(crate::events::CAPACITY);
    Json(json!({
        "node": s.backend.status().ok().map(|st| st.membership.local),
        "dropped": s.events.dropped(),
        "events": s.events.since(q.since, limit),
    }))
    .into_response()
}

/// `?since_ms=UNIX_MS`.
#[derive(Deserialize)]
struct HistoryQuery {
    #[serde(default)]
    since_ms: u64,
}

async fn history(
    State(s): St,
    q: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return error(
            StatusCode::BAD_REQUEST,
            "since_ms must be a whole number of milliseconds since 1970",
        );
    };
    let Some(dir) = s.history.clone() else {
        return error(StatusCode::NOT_FOUND, "this node keeps no event history");
    };
    match tokio::task::spawn_blocking(move || crate::history::read(&dir, q.since_ms)).await {
        Ok(records) => Json(records).into_response(),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "reading the history failed",
        ),
    }
}

/// The body of a move: `{"node": "n2", "duration": "30m"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveBody {
    node: String,
    #[serde(default)]
    duration: Option<String>,
}

/// Who asked for a change.
struct Caller {
    name: String,
    peer: SocketAddr,
}

impl IntoResponse for crate::auth::Denied {
    fn into_response(self) -> Response {
        let (code, msg) = self.answer();
        error(code, msg)
    }
}

fn authorize(
    s: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<Caller, crate::auth::Denied> {
    s.tokens
        .authorize(headers, peer, s.tls)
        .map(|name| Caller { name, peer })
        .inspect_err(|d| {
            let msg = d.answer().1;
            tracing::warn!(target: "tandem::audit", "refused a change from {peer}: {msg}");
        })
}

/// Runs `command` for `caller` off the runtime and maps the brain's answer.
async fn apply(s: Arc<AppState>, caller: Caller, command: Command) -> Response {
    let backend = s.backend.clone();
    let by = format!("token {} from {}", caller.name, caller.peer);
    let answer = tokio::task::spawn_blocking(move || backend.command(command, &by)).await;
    let (code, body) = match answer {
        Ok(tandem_control::Response::Done { message }) => (
            StatusCode::OK,
            json!({"result": "done", "message": message}),
        ),
        Ok(tandem_control::Response::Refused { message, kind }) => {
            let code = match kind.as_str() {
                "unknown_group" | "unknown_node" => StatusCode::NOT_FOUND,
                "bad_selection" => StatusCode::BAD_REQUEST,
                _ => StatusCode::CONFLICT,
            };
            (
                code,
                json!({"result": "refused", "kind": kind, "message": message}),
            )
        }
        Ok(tandem_control::Response::Error { message }) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"result": "error", "message": message}),
        ),
        Ok(tandem_control::Response::Status(_)) | Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"result": "error", "message": "unexpected answer from the daemon"}),
        ),
    };
    (code, Json(body)).into_response()
}

async fn move_group(
    State(s): St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(group): Path<String>,
    body: Result<Json<MoveBody>, JsonRejection>,
) -> Response {
    let caller = match authorize(&s, &headers, peer) {
        Ok(c) => c,
        Err(d) => return d.into_response(),
    };
    let body = match body {
        Ok(Json(b)) => b,
        Err(e) => {
            return error(
                e.status(),
                format!(
                    "{}; send {{\"node\": \"n2\"}} or {{\"node\": \"n2\", \"duration\": \"30m\"}}",
                    e.body_text()
                ),
            );
        }
    };
    let duration = match body.duration.as_deref().map(tandem_config::parse_duration) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("duration: {e}; e.g. \"30m\" or \"2h\""),
            );
        }
    };
    let command = Command::Move {
        group,
        node: Some(body.node),
        duration,
    };
    apply(s, caller, command).await
}

macro_rules! change {
    ($name:ident, $param:ident, $make:expr) => {
        async fn $name(
            State(s): St,
            ConnectInfo(peer): ConnectInfo<SocketAddr>,
            headers: HeaderMap,
            Path($param): Path<String>,
        ) -> Response {
            match authorize(&s, &headers, peer) {
                Ok(caller) => apply(s, caller, $make).await,
                Err(r) => r.into_response(),
            }
        }
    };
}

change!(
    clear,
    group,
    Command::Move {
        group,
        node: None,
        duration: None
    }
);
change!(cleanup, group, Command::Cleanup { group });
change!(standby, node, Command::Standby { node, on: true });
change!(unstandby, node, Command::Standby { node, on: false });
change!(force_primary, node, Command::ForcePrimary { node });
