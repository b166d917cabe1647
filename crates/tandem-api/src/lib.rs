//! tandem's HTTP surface: the versioned JSON API (`/api/v1/…`), the web
//! console (`/`), Prometheus metrics (`/metrics`) and the health endpoints
//! load balancers check (`/health`, `/ready`, `/active/GROUP`).
//!
//! It runs on a thread of its own (`tandem-http`, a single-threaded tokio
//! runtime) and only reads the snapshot the heartbeat thread publishes,
//! through a [`Backend`]; commands go to the brain through the same path as
//! the control socket. A slow or hostile HTTP client therefore cannot delay
//! a heartbeat. Reads are open; changes need a bearer token from the
//! tokens file, over TLS or from loopback, and are audited in the log with
//! the token's name (never the token).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tandem_control::{Response, Status};

pub mod auth;
mod console;
pub mod events;
mod health;
pub mod history;
pub mod metrics;
mod routes;

pub use auth::{Tokens, TokensError};
pub use events::{EventLog, EventRecord, EventSink, Numbered};

/// Largest request body accepted (commands are a few dozen bytes).
pub const MAX_BODY: usize = 16 * 1024;

/// What the HTTP surface needs from the daemon.
pub trait Backend: Send + Sync + 'static {
    /// The status document (the same as `tandem status --json`), or why it
    /// is not available (the daemon is starting).
    fn status(&self) -> Result<Status, String>;
    /// Applies an operator command asked by `by` (the token's name and the
    /// caller's address); may block for a few seconds while the brain
    /// answers (run off the async runtime).
    fn command(&self, command: tandem_core::Command, by: &str) -> Response;
}

/// How the HTTP surface is set up.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// Serve HTTPS with this certificate and key (PEM files).
    pub tls: Option<tandem_config::Tls>,
    /// Tokens that may change things; empty: read-only.
    pub tokens: Tokens,
    /// The event history's directory (`GET /api/v1/history`), if kept.
    pub history: Option<std::path::PathBuf>,
}

/// Why the HTTP surface could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The address could not be bound.
    #[error("[http] listen {addr}: {source}; pick a free port or another address")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The certificate or key could not be loaded.
    #[error("[http] cert {cert} / key {key}: {detail}")]
    Tls {
        /// Certificate path.
        cert: String,
        /// Key path.
        key: String,
        /// What was wrong.
        detail: String,
    },
    /// The thread or runtime could not be created.
    #[error("start the HTTP thread: {0}")]
    Thread(std::io::Error),
}

/// Shared by every handler.
pub(crate) struct AppState {
    pub backend: Arc<dyn Backend>,
    pub events: Arc<EventLog>,
    pub tokens: Tokens,
    pub tls: bool,
    pub history: Option<std::path::PathBuf>,
}

/// The router: every endpoint, with the body limit.
fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(routes::routes())
        .merge(health::routes())
        .merge(console::routes())
        .route("/metrics", axum::routing::get(metrics::handler))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// A running HTTP surface.
#[derive(Debug)]
pub struct Server {
    /// The address it listens on (the real port when 0 was asked for).
    pub local_addr: SocketAddr,
    /// The thread serving it.
    pub thread: std::thread::JoinHandle<()>,
}

/// Binds `config.listen` and serves the API on a new thread `tandem-http`.
/// Errors (address in use, unreadable certificate) are returned before the
/// thread starts serving.
pub fn serve(
    config: ApiConfig,
    backend: Arc<dyn Backend>,
    events: Arc<EventLog>,
) -> Result<Server, ApiError> {
    let listener = std::net::TcpListener::bind(config.listen).map_err(|source| ApiError::Bind {
        addr: config.listen,
        source,
    })?;
    let local_addr = listener.local_addr().map_err(|source| ApiError::Bind {
        addr: config.listen,
        source,
    })?;
    listener.set_nonblocking(true).map_err(ApiError::Thread)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ApiError::Thread)?;
    let tls = match &config.tls {
        Some(t) => Some(runtime.block_on(load_tls(t))?),
        None => None,
    };
    let state = Arc::new(AppState {
        backend,
        events,
        tokens: config.tokens,
        tls: tls.is_some(),
        history: config.history,
    });
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let thread = std::thread::Builder::new()
        .name("tandem-http".into())
        .spawn(move || {
            runtime.block_on(async move {
                let served = match tls {
                    Some(tls) => match axum_server::from_tcp_rustls(listener, tls) {
                        Ok(s) => s.serve(app).await,
                        Err(e) => Err(e),
                    },
                    None => match axum_server::from_tcp(listener) {
                        Ok(s) => s.serve(app).await,
                        Err(e) => Err(e),
                    },
                };
                if let Err(e) = served {
                    tracing::error!("[http] the API stopped serving: {e}");
                }
            });
        })
        .map_err(ApiError::Thread)?;
    Ok(Server { local_addr, thread })
}

async fn load_tls(
    t: &tandem_config::Tls,
) -> Result<axum_server::tls_rustls::RustlsConfig, ApiError> {
    axum_server::tls_rustls::RustlsConfig::from_pem_file(&t.cert, &t.key)
        .await
        .map_err(|e| ApiError::Tls {
            cert: t.cert.display().to_string(),
            key: t.key.display().to_string(),
            detail: e.to_string(),
        })
}
