//! `smsmax serve`: wires configuration, storage and listeners together and
//! runs until SIGTERM or SIGINT.
//!
//! With `[[upstreams]]` configured, the upstream pools and the relay start
//! after storage; without, messages stay queued (a warning says so once).
//!
//! Shutdown order: stop accepting and taking outbox entries, let every
//! session answer what it has in flight and unbind its client, settle the
//! outbox deliveries (answered ones acked, the rest back in the outbox),
//! stop the relay (its submits in flight finish; what it had reserved goes
//! back to the queue), stop the upstream pools, stop the receipt correlator
//! (it handles what the pools delivered until they stopped; held receipts
//! stay stored as unmatched and are reloaded at the next start), then close
//! storage (which finishes pending commits and syncs), then return so the
//! process exits 0.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use tokio::{
    net::TcpListener,
    sync::{watch, Semaphore},
};
use tokio_util::task::TaskTracker;

use crate::{
    config::{Config, EmbeddedEngine, StorageBackend},
    dlr::{mo::MoRouter, Correlator, CorrelatorSettings, DlrCounters, OutboxSink},
    esme::{
        auth::Authenticator,
        listener::{self, Transport},
        outbox::{DeliverySettings, OutboxDelivery},
        Gateway, SessionSettings,
    },
    ids::MessageIdGenerator,
    queue::{outbox::Outbox, Queue},
    relay::{routing::Router, Relay, RelayCounters, RelaySettings},
    store::{
        embedded::EmbeddedStorage,
        journal::{JournalSettings, JournalStorage},
        Store,
    },
    upstream::UpstreamPool,
};

/// A running gateway: its bound addresses and the handle that stops it.
pub struct Running {
    pub smpp_addr: std::net::SocketAddr,
    pub smpp_tls_addr: Option<std::net::SocketAddr>,
    /// The clients' outbox in storage (what the receipt correlator pushes to).
    pub outbox: Arc<dyn Outbox>,
    /// Delivers the outbox to bound receivers; `notify` it after a push.
    pub deliveries: Arc<OutboxDelivery>,
    stop: watch::Sender<bool>,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
    receipts: Option<Arc<DlrCounters>>,
    relay: Option<Arc<RelayCounters>>,
}

impl Running {
    /// The receipt correlator's counters (`None` without upstreams).
    pub fn receipt_counters(&self) -> Option<Arc<DlrCounters>> {
        self.receipts.clone()
    }

    /// The relay's receipt counters (`None` without upstreams).
    pub fn relay_counters(&self) -> Option<Arc<RelayCounters>> {
        self.relay.clone()
    }

    /// Begins the graceful shutdown and waits for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.done.await.context("gateway task")?
    }
}

/// The storage the configuration names, as the three traits.
async fn open_storage(
    storage: &crate::config::StorageConfig,
) -> anyhow::Result<(Arc<dyn Queue>, Arc<dyn Store>, Arc<dyn Outbox>)> {
    let dir = &storage.data_dir;
    let opened: (Arc<dyn Queue>, Arc<dyn Store>, Arc<dyn Outbox>) = match (storage.backend, storage.engine) {
        (StorageBackend::Embedded, EmbeddedEngine::Journal) => {
            let journal = JournalStorage::open(dir, journal_settings(storage))
                .await
                .with_context(|| format!("opening the journal storage in {}", dir.display()))?;
            (journal.clone(), journal.clone(), journal)
        }
        (StorageBackend::Embedded, EmbeddedEngine::Redb) => {
            let redb =
                EmbeddedStorage::open_with_cache(dir, storage.max_batch, storage.cache_mb.saturating_mul(1 << 20))
                    .await
                    .with_context(|| format!("opening the redb storage in {}", dir.display()))?;
            (redb.clone(), redb.clone(), redb)
        }
    };
    Ok(opened)
}

/// The journal engine's settings from `[storage]`.
pub fn journal_settings(storage: &crate::config::StorageConfig) -> JournalSettings {
    JournalSettings {
        max_batch: storage.max_batch,
        max_messages: storage.max_messages,
        retain_final: Duration::from_secs(storage.retain_final_secs),
        retain_enroute: Duration::from_secs(storage.retain_enroute_secs),
        segment_bytes: storage.segment_mb.saturating_mul(1 << 20),
        snapshot_bytes: storage.snapshot_mb.saturating_mul(1 << 20),
    }
}

/// Starts the gateway and returns once it listens.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let (queue, store, outbox) = open_storage(&config.storage).await?;
    let storage_timeout = Duration::from_secs(30);
    let smpp = &config.smpp;
    let settings = SessionSettings {
        system_id: smpp.system_id.clone(),
        bind_timeout: Duration::from_secs(smpp.bind_timeout_secs),
        enquire_link_interval: Duration::from_secs(smpp.enquire_link_interval_secs),
        response_timeout: Duration::from_secs(smpp.response_timeout_secs),
        max_command_length: smpp.max_command_length,
        storage_timeout,
    };
    let (stop, stopped) = watch::channel(false);
    let deliveries = OutboxDelivery::start(
        outbox.clone(),
        DeliverySettings::new(&config.outbox, settings.response_timeout, storage_timeout),
        stopped.clone(),
    );
    let gateway = Arc::new(Gateway {
        settings,
        auth: Authenticator::new(&config.clients, &config.security),
        queue: queue.clone(),
        store: store.clone(),
        ids: MessageIdGenerator::new(config.node.id),
        deliveries: Some(deliveries.clone()),
    });
    let connections = Arc::new(Semaphore::new(smpp.max_connections));
    let sessions = TaskTracker::new();

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
    let mut pools: Vec<Arc<UpstreamPool>> = Vec::new();
    let mut correlator = None;
    let relay = if config.upstreams.is_empty() {
        tracing::warn!("no [[upstreams]] configured: the relay does not run and accepted messages stay queued");
        None
    } else {
        let router = match Router::new(config.routes.clone()) {
            Ok(router) => router,
            Err(e) => {
                let _ = stop.send(true);
                return Err(anyhow::Error::new(e).context("routes"));
            }
        };
        let mut by_name = std::collections::HashMap::new();
        let mut inbound = Vec::new();
        for upstream in &config.upstreams {
            let pool = match UpstreamPool::start(upstream.clone()) {
                Ok(pool) => pool,
                Err(e) => {
                    for pool in &pools {
                        pool.stop().await;
                    }
                    let _ = stop.send(true);
                    return Err(e.context(format!("starting upstream {:?}", upstream.name)));
                }
            };
            if let Some(rx) = pool.inbound() {
                inbound.push(rx);
            }
            pools.push(pool.clone());
            by_name.insert(upstream.name.clone(), pool);
        }
        let styles = config
            .upstreams
            .iter()
            .map(|u| (u.name.clone(), u.receipt_id_style))
            .collect();
        let receipts = &config.receipts;
        let notify = deliveries.clone();
        let sink = OutboxSink::new(outbox.clone()).with_notifier(Arc::new(move |client: &str| notify.notify(client)));
        correlator = Some(Correlator::start(
            inbound,
            styles,
            MoRouter::new(&config.mo_routes),
            store.clone(),
            sink.clone(),
            CorrelatorSettings {
                hold: Duration::from_secs(receipts.hold_secs),
                hold_max: receipts.hold_max,
                outbox_max_age: Duration::from_secs(config.outbox.max_age_secs),
                part_policy: receipts.part_policy,
                long_messages: config
                    .upstreams
                    .iter()
                    .map(|u| (u.name.clone(), u.long_messages))
                    .collect(),
                ..CorrelatorSettings::default()
            },
        ));
        let relay = &config.relay;
        Some(Relay::start(
            queue.clone(),
            store.clone(),
            sink,
            Arc::new(router),
            by_name,
            config.retry.clone(),
            RelaySettings {
                batch: relay.batch,
                lease: Duration::from_secs(relay.lease_secs),
                concurrency: relay.concurrency,
                idle_poll: Duration::from_millis(relay.idle_poll_ms),
                storage_timeout,
                receipt_max_age: Duration::from_secs(config.outbox.max_age_secs),
            },
        ))
    };
    let receipt_counters = correlator.as_ref().map(|c| c.counters());
    let relay_counters = relay.as_ref().map(|r| r.counters());
    tracing::info!(%smpp_addr, ?smpp_tls_addr, clients = config.clients.len(), "SMSMax listening");

    let drain_timeout = gateway.settings.response_timeout * 2 + gateway.settings.storage_timeout;
    let delivery = deliveries.clone();
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
        delivery.finish(drain_timeout).await;
        if let Some(relay) = relay {
            relay.stop().await;
        }
        for pool in pools {
            pool.stop().await;
        }
        if let Some(correlator) = correlator {
            correlator.stop().await;
        }
        queue.close().await.context("closing storage")?;
        tracing::info!("storage closed; bye");
        Ok(())
    });
    Ok(Running {
        smpp_addr,
        smpp_tls_addr,
        outbox,
        deliveries,
        stop,
        done,
        receipts: receipt_counters,
        relay: relay_counters,
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
