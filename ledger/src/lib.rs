//! The issuance ledger: stores the registry token gateways' per-decision records, serves
//! them to the security team (admin JWT), and keeps the revocation list the gateways fetch.
//!
//! See `docs/LEDGER.md`.

pub mod api;
pub mod auth;
pub mod config;
pub mod db;
pub mod metrics;
pub mod model;
pub mod robots;

use std::io::Write;
use std::sync::Arc;

use crate::api::AppState;
use crate::auth::AdminAuth;
use crate::config::Config;
use crate::db::Db;

/// Connects, migrates, binds and serves until SIGINT/SIGTERM. Prints `listening on ADDR`
/// on standard output once the socket is bound.
pub async fn run(config: Config) -> Result<(), String> {
    let db = Db::connect(&config.database, config.max_connections).await?;
    let auth = AdminAuth::new(&config).await?;
    let state = Arc::new(AppState {
        db: db.clone(),
        auth,
        ingest_secret: config.ingest_secret.clone(),
        feed_secret: config.feed_secret.clone(),
        metrics: metrics::Metrics::default(),
        max_revocations: config.max_revocations,
        digest_feed: api::feed::DigestFeedCache::default(),
        robots: config.robots()?.map(Arc::new),
    });
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("--listen {}: {e}", config.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("--listen {}: {e}", config.listen))?;
    tracing::info!("ledger on http://{addr} ({:?} database)", db.backend());
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {addr}");
        let _ = out.flush();
    }
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(|e| format!("server: {e}"))?;
    db.close().await;
    Ok(())
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
