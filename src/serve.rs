//! `smsmax serve`: wires configuration, storage and listeners together and
//! runs until SIGTERM or SIGINT.
//!
//! Shutdown order: stop accepting, let every session answer what it has in
//! flight and unbind its client, then close storage (which finishes pending
//! commits and syncs), then return so the process exits 0.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use tokio::{
    net::TcpListener,
    sync::{watch, Semaphore},
};
use tokio_util::task::TaskTracker;

use crate::{
    config::{Config, StorageBackend},
    esme::{
        auth::Authenticator,
        listener::{self, Transport},
        Gateway, SessionSettings,
    },
    ids::MessageIdGenerator,
    queue::Queue,
    store::{embedded::EmbeddedStorage, Store},
};

/// A running gateway: its bound addresses and the handle that stops it.
pub struct Running {
    pub smpp_addr: std::net::SocketAddr,
    pub smpp_tls_addr: Option<std::net::SocketAddr>,
    stop: watch::Sender<bool>,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Begins the graceful shutdown and waits for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.done.await.context("gateway task")?
    }
}

/// Starts the gateway and returns once it listens.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let (queue, store): (Arc<dyn Queue>, Arc<dyn Store>) = match config.storage.backend {
        StorageBackend::Embedded => {
            let storage = EmbeddedStorage::open(&config.storage.data_dir, config.storage.max_batch)
                .await
                .with_context(|| format!("opening storage in {}", config.storage.data_dir.display()))?;
            (storage.clone(), storage)
        }
    };
    let smpp = &config.smpp;
    let settings = SessionSettings {
        system_id: smpp.system_id.clone(),
        bind_timeout: Duration::from_secs(smpp.bind_timeout_secs),
        enquire_link_interval: Duration::from_secs(smpp.enquire_link_interval_secs),
        response_timeout: Duration::from_secs(smpp.response_timeout_secs),
        max_command_length: smpp.max_command_length,
        storage_timeout: Duration::from_secs(30),
    };
    let gateway = Arc::new(Gateway {
        settings,
        auth: Authenticator::new(&config.clients, &config.security),
        queue: queue.clone(),
        store,
        ids: MessageIdGenerator::new(config.node.id),
    });
    let connections = Arc::new(Semaphore::new(smpp.max_connections));
    let sessions = TaskTracker::new();
    let (stop, stopped) = watch::channel(false);

    let tcp = TcpListener::bind(smpp.listen)
        .await
        .with_context(|| format!("listening on {}", smpp.listen))?;
    let smpp_addr = tcp.local_addr()?;
    let mut listeners = vec![tokio::spawn(listener::serve(
        tcp,
        Transport::Tcp,
        gateway.clone(),
        connections.clone(),
        sessions.clone(),
        stopped.clone(),
    ))];
    let mut smpp_tls_addr = None;
    if let Some(tls) = &smpp.tls {
        let acceptor = listener::tls_acceptor(&tls.cert, &tls.key)?;
        let socket = TcpListener::bind(tls.listen)
            .await
            .with_context(|| format!("listening on {}", tls.listen))?;
        smpp_tls_addr = Some(socket.local_addr()?);
        listeners.push(tokio::spawn(listener::serve(
            socket,
            Transport::Tls(acceptor),
            gateway.clone(),
            connections,
            sessions.clone(),
            stopped.clone(),
        )));
    }
    tracing::info!(%smpp_addr, ?smpp_tls_addr, clients = config.clients.len(), "SMSMax listening");

    let drain_timeout = gateway.settings.response_timeout * 2 + gateway.settings.storage_timeout;
    let done = tokio::spawn(async move {
        let mut stopped = stopped;
        let _ = stopped.wait_for(|s| *s).await;
        tracing::info!("shutting down: unbinding clients");
        for l in listeners {
            let _ = l.await;
        }
        sessions.close();
        if tokio::time::timeout(drain_timeout, sessions.wait()).await.is_err() {
            tracing::warn!("sessions did not finish in time");
        }
        queue.close().await.context("closing storage")?;
        tracing::info!("storage closed; bye");
        Ok(())
    });
    Ok(Running {
        smpp_addr,
        smpp_tls_addr,
        stop,
        done,
    })
}

/// Runs the gateway until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let running = start(config).await?;
    wait_for_signal().await?;
    running.stop().await
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
    }
    Ok(())
}
