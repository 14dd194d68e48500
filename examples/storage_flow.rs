//! The storage side of the full flow, without the network: how many
//! messages per second an embedded engine takes through every step the
//! gateway asks of it, and what the records cost in memory. Not run by CI.
//!
//! ```sh
//! cargo run --release --example storage_flow -- --messages 200000 --engine journal
//! ```
//!
//! Per message, as the gateway does it: enqueue (in client-sized batches),
//! reserve + settle ENROUTE with an upstream link, find_by_upstream +
//! record_receipt (DELIVERED, with the client's receipt forwarded to the
//! outbox), reserve_for + ack_delivered. `--concurrency` tasks run the
//! steps at once (the gateway's sessions, relay and correlator). Reports
//! messages/s and the process's RSS before and after (the records stay in
//! memory with the journal engine; `retain_final_secs` keeps them).

use std::{sync::Arc, time::Duration, time::Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use smsmax::{
    ids::MessageIdGenerator,
    queue::{outbox::Outbox, outbox::OutboxEntry, Queue},
    smpp_time::now_ms,
    store::{
        embedded::EmbeddedStorage,
        journal::{JournalSettings, JournalStorage},
        AddressRecord, MessageRecord, MessageState, ReceiptRecord, StateUpdate, Store, UpstreamLink,
    },
};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value_t = 200_000)]
    messages: usize,
    /// Tasks running the steps at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// `journal` or `redb`.
    #[arg(long, default_value = "journal")]
    engine: String,
}

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

trait Engine: Store + Queue + Outbox {}
impl<T: Store + Queue + Outbox> Engine for T {}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn address(addr: &str) -> AddressRecord {
    AddressRecord {
        ton: 1,
        npi: 1,
        addr: addr.into(),
    }
}

fn record(id: String) -> MessageRecord {
    let now = now_ms();
    MessageRecord {
        id,
        system_id: "bench".into(),
        service_type: String::new(),
        source: address("447700900001"),
        dest: address("447700900123"),
        esm_class: 0,
        protocol_id: 0,
        priority_flag: 0,
        registered_delivery: 1,
        data_coding: 0,
        short_message: Bytes::from(vec![b'x'; 160]),
        tlvs: Bytes::new(),
        parts: 1,
        state: MessageState::Accepted,
        submitted_at_ms: now,
        updated_at_ms: now,
        schedule_at_ms: None,
        expires_at_ms: None,
        upstream_id: None,
        error_code: None,
        attempts: 0,
        parts_sent: 0,
        upstream: None,
    }
}

fn update(state: MessageState, link: Option<UpstreamLink>) -> StateUpdate {
    StateUpdate {
        state,
        upstream_id: link.as_ref().map(|l| l.key.clone()),
        error_code: None,
        attempts: Some(1),
        link,
        at_ms: now_ms(),
    }
}

/// One task's share: every step for `count` messages, 16 at a time.
async fn run_share(
    storage: Arc<dyn Engine>,
    gen: Arc<MessageIdGenerator>,
    task: usize,
    count: usize,
) -> anyhow::Result<()> {
    let lease = Duration::from_secs(60);
    let mut done = 0;
    while done < count {
        let n = 16.min(count - done);
        let batch: Vec<MessageRecord> = (0..n).map(|_| record(gen.next_id())).collect();
        storage.enqueue(smsmax::queue::shared(batch)).await?;
        let leased = storage.reserve(n, lease).await?;
        for (i, m) in leased.iter().enumerate() {
            let key = format!("{task:x}{done:x}{i:x}");
            let link = UpstreamLink {
                upstream: "sim".into(),
                key: key.clone(),
                part: 0,
            };
            storage.settle(&m.id, update(MessageState::Enroute, Some(link))).await?;
            let found = storage.find_by_upstream("sim", &key).await?.context("link")?;
            let receipt = ReceiptRecord {
                upstream: "sim".into(),
                key: key.clone(),
                matched: Some(found),
                state: MessageState::Delivered,
                error_code: None,
                received_at_ms: now_ms(),
                text: Bytes::from(format!("id:{key} sub:001 dlvrd:001 submit date:2611251200 done date:2611251200 stat:DELIVRD err:000 text:xxxxxxxxxxxxxxxxxxxx")),
            };
            let forward = OutboxEntry {
                id: String::new(),
                system_id: format!("bench{task}").into(),
                created_at_ms: now_ms(),
                expires_at_ms: now_ms() + 86_400_000,
                attempts: 0,
                message_id: Some(m.id.clone()),
                service_type: String::new(),
                source: address("447700900123"),
                dest: address("447700900001"),
                esm_class: 4,
                protocol_id: 0,
                data_coding: 0,
                short_message: receipt.text.clone(),
                tlvs: Bytes::new(),
            };
            storage
                .record_receipt(receipt, Some(update(MessageState::Delivered, None)), vec![forward])
                .await?;
        }
        let entries = storage.reserve_for(&format!("bench{task}"), 64, lease).await?;
        let ids: Vec<String> = entries.into_iter().map(|e| e.id).collect();
        storage.ack_delivered(&format!("bench{task}"), &ids).await?;
        done += n;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let storage: Arc<dyn Engine> = match args.engine.as_str() {
        "redb" => EmbeddedStorage::open(dir.path(), 4096).await?,
        _ => JournalStorage::open(dir.path(), JournalSettings::default()).await?,
    };
    let gen = Arc::new(MessageIdGenerator::new(1));
    let before = rss_mib();
    let started = Instant::now();
    let per_task = args.messages / args.concurrency.max(1);
    let mut tasks = Vec::new();
    for task in 0..args.concurrency.max(1) {
        tasks.push(tokio::spawn(run_share(storage.clone(), gen.clone(), task, per_task)));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = per_task * args.concurrency.max(1);
    let after = rss_mib();
    println!(
        "{}: {total} messages through every storage step in {elapsed:.2} s = {:.0} msg/s; RSS {before:.0} MiB before, {after:.0} MiB after ({:.0} octets per message)",
        args.engine,
        total as f64 / elapsed,
        (after - before) * 1024.0 * 1024.0 / total as f64
    );
    storage.close().await?;
    Ok(())
}
