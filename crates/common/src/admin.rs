//! The admin HTTP server: `/healthz` (the process is alive), `/readyz` (it
//! takes new traffic; 503 once it drains) and `/metrics` (Prometheus text).

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tracing::info;

use crate::lifecycle::Lifecycle;

#[derive(Clone)]
struct AdminState {
    metrics: PrometheusHandle,
    lifecycle: Lifecycle,
}

/// Binds the admin port now (so a busy port fails start-up) and returns the
/// task serving it until the process exits.
pub async fn start(addr: SocketAddr, metrics: PrometheusHandle, lifecycle: Lifecycle) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind the admin port ADMIN_PORT={}: {e}", addr.port()))?;
    info!(%addr, "Admin HTTP listening");
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render))
        .with_state(AdminState { metrics, lifecycle });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "admin HTTP server failed");
        }
    });
    Ok(())
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    if s.lifecycle.is_ready() { (StatusCode::OK, "ready\n") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready\n") }
}

async fn render(State(s): State<AdminState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render(&s.metrics))
}
