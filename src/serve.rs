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

use std::{future::Future, sync::Arc, time::Duration};

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
    /// Watched for a failure that needs a restart ([`Queue::failure`]).
    queue: Arc<dyn Queue>,
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

    /// Resolves with the reason once the storage can take no more writes
    /// until the gateway restarts ([`Queue::failure`]); checked every
    /// [`STORAGE_CHECK`].
    pub async fn storage_failure(&self) -> String {
        loop {
            if let Some(reason) = self.queue.failure() {
                return reason;
            }
            tokio::time::sleep(STORAGE_CHECK).await;
        }
    }

    /// Begins the graceful shutdown and waits for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.done.await.context("gateway task")?
    }
}

/// How often a running gateway checks its storage for a failure that needs
/// a restart. Until it notices, submits are refused (ESME_RSYSERR), not
/// lost.
pub const STORAGE_CHECK: Duration = Duration::from_millis(500);

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
    let storage = open_storage(&config.storage).await?;
    start_on(config, storage).await
}

/// [`start`] on storage already open (`config.storage` is not used to open
/// it): the tests give it a journal whose faults they inject.
async fn start_on(
    config: Config,
    (queue, store, outbox): (Arc<dyn Queue>, Arc<dyn Store>, Arc<dyn Outbox>),
) -> anyhow::Result<Running> {
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
    let watched = queue.clone();
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
        queue: watched,
        receipts: receipt_counters,
        relay: relay_counters,
    })
}

/// Runs the gateway until SIGTERM or SIGINT, then shuts down gracefully.
/// A storage failure that needs a restart shuts it down too, and is
/// returned as the error (`smsmax serve` exits 1 for it, so a supervisor
/// restarts the gateway; the journal's replay then restores every
/// acknowledged message).
pub async fn run(config: Config) -> anyhow::Result<()> {
    let running = start(config).await?;
    run_until(running, wait_for_signal()).await
}

/// Runs `running` until `signal` completes (then stops it gracefully and
/// returns what the shutdown returned) or its storage fails.
async fn run_until(running: Running, signal: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    enum Stop {
        Signal(anyhow::Result<()>),
        StorageFailed(String),
    }
    let why = tokio::select! {
        signalled = signal => Stop::Signal(signalled),
        reason = running.storage_failure() => Stop::StorageFailed(reason),
    };
    match why {
        Stop::Signal(signalled) => {
            signalled?;
            running.stop().await
        }
        Stop::StorageFailed(reason) => {
            tracing::error!(%reason, "storage failed: shutting down; restart the gateway (what was acknowledged is on disk)");
            if let Err(e) = running.stop().await {
                tracing::warn!(error = %e, "shutdown after the storage failure");
            }
            anyhow::bail!("storage failed: {reason}")
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MessageRecord;

    fn config(dir: &std::path::Path) -> Config {
        let text = format!(
            "[smpp]\nlisten = \"127.0.0.1:0\"\n\n[storage]\ndata_dir = \"{}\"\n",
            dir.display()
        );
        let config: Config = toml::from_str(&text).unwrap();
        config.validate().unwrap();
        config
    }

    /// A gateway whose journal cannot sync any more stops by itself, with
    /// the reason as its error (`smsmax serve` then exits 1), instead of
    /// refusing every submit until someone notices.
    #[tokio::test]
    async fn a_failed_journal_sync_shuts_the_gateway_down_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let journal = JournalStorage::open(dir.path(), JournalSettings::default())
            .await
            .unwrap();
        let storage: (Arc<dyn Queue>, Arc<dyn Store>, Arc<dyn Outbox>) =
            (journal.clone(), journal.clone(), journal.clone());
        let running = start_on(config(dir.path()), storage).await.unwrap();
        let smpp = running.smpp_addr;
        tokio::net::TcpStream::connect(smpp).await.expect("listening");

        // No signal comes: only the storage can stop it.
        let serving = tokio::spawn(run_until(running, std::future::pending()));
        // Healthy: it keeps running.
        tokio::time::sleep(STORAGE_CHECK * 2).await;
        assert!(!serving.is_finished(), "a healthy gateway does not stop");

        journal.fail_syncs();
        assert!(journal
            .enqueue(crate::queue::shared([MessageRecord::example("0b01")]))
            .await
            .is_err());
        let stopped = tokio::time::timeout(Duration::from_secs(10), serving)
            .await
            .expect("the gateway stops after the storage failed")
            .unwrap();
        let error = stopped.expect_err("stopped with an error").to_string();
        assert!(
            error.contains("storage failed") && error.contains("injected fault"),
            "{error}"
        );
        assert!(
            tokio::net::TcpStream::connect(smpp).await.is_err(),
            "no longer accepting clients"
        );
    }
}
