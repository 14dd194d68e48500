//! Who may bind: client accounts, password checks on a bounded pool, bind
//! counting and the failed-bind limiter.
//!
//! Argon2id is slow on purpose (tens of milliseconds and megabytes per
//! check). The checks run on at most `password_workers` blocking threads
//! behind a bounded queue, so a flood of binds with bad passwords costs a
//! fixed amount of CPU and never delays PDUs of bound sessions. A password
//! that verified once is remembered as a keyed SHA-256 digest, so reconnect
//! storms of good clients do not pay argon2 again.

use std::{
    collections::HashMap,
    net::IpAddr,
    num::NonZeroU32,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use smsmax_protocol::CommandStatus;
use tokio::sync::Semaphore;

use crate::config::{BindType, ClientConfig, SecurityConfig};

/// One configured ESME account and its live state.
pub struct Client {
    pub config: ClientConfig,
    /// Message parts per second over all binds of this system_id (GCRA).
    throughput: DefaultDirectRateLimiter,
    active_binds: AtomicUsize,
    /// Digests of passwords that verified, keyed per process.
    verified: Mutex<Option<[u8; 32]>>,
}

impl Client {
    fn new(config: ClientConfig) -> Self {
        let rate = NonZeroU32::new(config.throughput.max(1)).unwrap_or(NonZeroU32::MIN);
        Client {
            throughput: RateLimiter::direct(Quota::per_second(rate)),
            config,
            active_binds: AtomicUsize::new(0),
            verified: Mutex::new(None),
        }
    }

    /// Takes `parts` from the client's throughput; `false` means ESME_RTHROTTLED.
    pub fn take_throughput(&self, parts: u16) -> bool {
        let Some(n) = NonZeroU32::new(u32::from(parts.max(1))) else {
            return true;
        };
        matches!(self.throughput.check_n(n), Ok(Ok(())))
    }

    pub fn active_binds(&self) -> usize {
        self.active_binds.load(Ordering::Relaxed)
    }
}

/// Held by a bound session; releases the bind slot when dropped.
pub struct BindGuard {
    pub client: Arc<Client>,
}

impl Drop for BindGuard {
    fn drop(&mut self) {
        self.client.active_binds.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts failures per key in one-minute windows; a key over its limit is
/// refused without any password work until its window ends.
struct FailureLimiter<K> {
    limit: u32,
    windows: Mutex<HashMap<K, (Instant, u32)>>,
}

/// Most keys the limiter tracks; beyond, expired windows are swept and, if
/// still full, new keys are not tracked (they are limited by the shared pool).
const MAX_TRACKED: usize = 100_000;
const WINDOW: Duration = Duration::from_secs(60);

impl<K: std::hash::Hash + Eq + Clone> FailureLimiter<K> {
    fn new(limit: u32) -> Self {
        FailureLimiter {
            limit,
            windows: Mutex::new(HashMap::new()),
        }
    }

    fn is_blocked(&self, key: &K) -> bool {
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        matches!(windows.get(key), Some((start, count)) if start.elapsed() < WINDOW && *count >= self.limit)
    }

    fn record_failure(&self, key: &K) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= MAX_TRACKED && !windows.contains_key(key) {
            windows.retain(|_, (start, _)| start.elapsed() < WINDOW);
            if windows.len() >= MAX_TRACKED {
                return;
            }
        }
        let entry = windows.entry(key.clone()).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

/// Decides binds.
pub struct Authenticator {
    clients: HashMap<String, Arc<Client>>,
    by_address: FailureLimiter<IpAddr>,
    by_system_id: FailureLimiter<String>,
    /// Admission to the password pool: checks waiting or running.
    queue: Arc<Semaphore>,
    /// Threads verifying at once.
    workers: Arc<Semaphore>,
    digest_key: [u8; 32],
}

impl Authenticator {
    pub fn new(clients: &[ClientConfig], security: &SecurityConfig) -> Self {
        Authenticator {
            clients: clients
                .iter()
                .map(|c| (c.system_id.clone(), Arc::new(Client::new(c.clone()))))
                .collect(),
            by_address: FailureLimiter::new(security.failed_binds_per_address_per_minute),
            by_system_id: FailureLimiter::new(security.failed_binds_per_system_id_per_minute),
            queue: Arc::new(Semaphore::new(security.password_queue.max(1))),
            workers: Arc::new(Semaphore::new(security.password_workers.max(1))),
            digest_key: rand::random(),
        }
    }

    /// The account of `system_id`, if configured.
    pub fn client(&self, system_id: &str) -> Option<&Arc<Client>> {
        self.clients.get(system_id)
    }

    /// Checks a bind request. On success the returned guard holds one of the
    /// client's bind slots.
    pub async fn bind(
        &self,
        peer: IpAddr,
        bind_type: BindType,
        system_id: &[u8],
        password: &[u8],
    ) -> Result<BindGuard, CommandStatus> {
        let system_id_text = String::from_utf8_lossy(system_id).into_owned();
        if self.by_address.is_blocked(&peer) || self.by_system_id.is_blocked(&system_id_text) {
            tracing::warn!(%peer, system_id = %system_id_text, "bind refused: too many failed binds");
            return Err(CommandStatus::ESME_RBINDFAIL);
        }
        let Some(client) = self.clients.get(&system_id_text).cloned() else {
            self.fail(peer, &system_id_text, "unknown system_id");
            return Err(CommandStatus::ESME_RINVSYSID);
        };
        if !client.config.allowed_networks.iter().any(|net| net.contains(&peer)) {
            self.fail(peer, &system_id_text, "source address not allowed");
            return Err(CommandStatus::ESME_RBINDFAIL);
        }
        if !client.config.bind_types.contains(&bind_type) {
            self.fail(peer, &system_id_text, "bind type not allowed");
            return Err(CommandStatus::ESME_RBINDFAIL);
        }
        if !self.verify(&client, password).await? {
            self.fail(peer, &system_id_text, "wrong password");
            return Err(CommandStatus::ESME_RINVPASWD);
        }
        let max = client.config.max_binds;
        let taken = client
            .active_binds
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1));
        if taken.is_err() {
            tracing::warn!(%peer, system_id = %system_id_text, max, "bind refused: maximum binds reached");
            return Err(CommandStatus::ESME_RBINDFAIL);
        }
        Ok(BindGuard { client })
    }

    fn fail(&self, peer: IpAddr, system_id: &str, reason: &str) {
        tracing::warn!(%peer, %system_id, reason, "bind failed");
        self.by_address.record_failure(&peer);
        self.by_system_id.record_failure(&system_id.to_string());
    }

    fn digest(&self, password: &[u8]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.digest_key);
        hasher.update(password);
        hasher.finalize().into()
    }

    /// argon2id verification on the bounded pool. A full queue refuses the
    /// bind (ESME_RBINDFAIL) rather than letting work pile up.
    async fn verify(&self, client: &Arc<Client>, password: &[u8]) -> Result<bool, CommandStatus> {
        let digest = self.digest(password);
        if *client.verified.lock().unwrap_or_else(|e| e.into_inner()) == Some(digest) {
            return Ok(true);
        }
        let Ok(_queued) = self.queue.clone().try_acquire_owned() else {
            tracing::warn!(system_id = %client.config.system_id, "bind refused: password check queue full");
            return Err(CommandStatus::ESME_RBINDFAIL);
        };
        let Ok(_worker) = self.workers.clone().acquire_owned().await else {
            return Err(CommandStatus::ESME_RSYSERR);
        };
        let phc = client.config.password_hash.clone();
        let password = password.to_vec();
        let ok = tokio::task::spawn_blocking(move || crate::password::verify_password(&phc, &password))
            .await
            .map_err(|_| CommandStatus::ESME_RSYSERR)?;
        if ok {
            *client.verified.lock().unwrap_or_else(|e| e.into_inner()) = Some(digest);
        }
        Ok(ok)
    }
}
