//! Accept loops for SMPP over TCP and over TLS.
//!
//! Each accepted connection takes one of `max_connections` permits; with none
//! left the connection is closed at once (and logged) instead of queueing.
//! A TLS handshake must finish within the bind timeout.

use std::{net::SocketAddr, sync::Arc};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::{watch, Semaphore},
};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use super::{session, Gateway};

/// What a listener serves: plain TCP or TLS.
#[derive(Clone)]
pub enum Transport {
    Tcp,
    Tls(TlsAcceptor),
}

/// Accepts connections on `listener` until `shutdown` turns true; every
/// session is spawned on `sessions` so the caller can wait for them.
pub async fn serve(
    listener: TcpListener,
    transport: Transport,
    gateway: Arc<Gateway>,
    connections: Arc<Semaphore>,
    sessions: TaskTracker,
    mut shutdown: watch::Receiver<bool>,
) {
    let local = listener.local_addr().ok();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off a little instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection refused: max_connections reached");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let gateway = gateway.clone();
        let shutdown = shutdown.clone();
        let transport = transport.clone();
        sessions.spawn(async move {
            accept_one(stream, peer, transport, gateway, shutdown).await;
            drop(permit);
        });
    }
    tracing::info!(?local, "listener stopped");
}

async fn accept_one(
    stream: TcpStream,
    peer: SocketAddr,
    transport: Transport,
    gateway: Arc<Gateway>,
    shutdown: watch::Receiver<bool>,
) {
    tracing::debug!(%peer, "connection accepted");
    match transport {
        Transport::Tcp => session::run(stream, peer, gateway, shutdown).await,
        Transport::Tls(acceptor) => {
            let handshake = tokio::time::timeout(gateway.settings.bind_timeout, acceptor.accept(stream)).await;
            match handshake {
                Ok(Ok(tls)) => session::run(tls, peer, gateway, shutdown).await,
                Ok(Err(e)) => tracing::warn!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::warn!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

/// Builds a TLS acceptor from PEM files.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<TlsAcceptor> {
    use anyhow::Context;
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).with_context(|| format!("opening certificate {}", cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .with_context(|| format!("reading certificate {}", cert.display()))?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).with_context(|| format!("opening key {}", key.display()))?,
    ))
    .with_context(|| format!("reading key {}", key.display()))?
    .with_context(|| format!("no private key in {}", key.display()))?;
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("certificate and key do not match")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
