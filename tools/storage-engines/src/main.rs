//! Group-commit throughput of redb and fjall on SMSMax's access pattern.
//!
//! * write: batches of 1, 64, 1024, 4096 postcard-serialised `MessageRecord`s
//!   (160-octet short_message), each with a queue entry (`due_at_ms`
//!   big-endian, then the id) and an index entry (id -> due), in one
//!   transaction, synced (fsync) once per batch;
//! * relay: reserve = range scan of the first due entries plus a read of their
//!   records, ack = delete the queue and index entries, one synced transaction
//!   per 1024 acks, until a queue of 100 000 entries is empty (an LSM engine
//!   pays for the tombstones it scans past here).
//!
//! The results are in the module docs of `src/store/embedded.rs`.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;

// A copy of `smsmax::store::{MessageRecord, AddressRecord, MessageState}` (same
// fields, same types, so the same postcard encoding), so that this program
// builds on its own whatever state the gateway crate is in.
#[derive(Serialize)]
#[allow(dead_code)]
enum MessageState {
    Accepted,
}

#[derive(Serialize)]
struct AddressRecord {
    ton: u8,
    npi: u8,
    addr: String,
}

#[derive(Serialize)]
struct MessageRecord {
    id: String,
    system_id: String,
    service_type: String,
    source: AddressRecord,
    dest: AddressRecord,
    esm_class: u8,
    protocol_id: u8,
    priority_flag: u8,
    registered_delivery: u8,
    data_coding: u8,
    short_message: Bytes,
    tlvs: Bytes,
    parts: u16,
    state: MessageState,
    submitted_at_ms: u64,
    updated_at_ms: u64,
    schedule_at_ms: Option<u64>,
    expires_at_ms: Option<u64>,
    upstream_id: Option<String>,
    error_code: Option<u32>,
    attempts: u32,
}

const BATCHES: [usize; 4] = [1, 64, 1024, 4096];
const ACK_BATCH: usize = 1024;
const QUEUE_LEN: usize = 100_000;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

struct Ids {
    prefix: String,
    n: u64,
}

impl Ids {
    fn next(&mut self) -> String {
        self.n += 1;
        format!("{}{:08x}", self.prefix, self.n)
    }
}

fn record(id: String, now: u64) -> MessageRecord {
    MessageRecord {
        id,
        system_id: "smppclient1".into(),
        service_type: String::new(),
        source: AddressRecord {
            ton: 5,
            npi: 0,
            addr: "SMSMax".into(),
        },
        dest: AddressRecord {
            ton: 1,
            npi: 1,
            addr: "447700900123".into(),
        },
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
        expires_at_ms: Some(now + 86_400_000),
        upstream_id: None,
        error_code: None,
        attempts: 0,
    }
}

/// One record as the committer writes it: (id, value, queue key, due).
type Row = (String, Vec<u8>, Vec<u8>, [u8; 8]);

/// One batch of fresh records.
fn batch(ids: &mut Ids, n: usize) -> Vec<Row> {
    let now = now_ms();
    (0..n)
        .map(|_| {
            let id = ids.next();
            let value = postcard::to_stdvec(&record(id.clone(), now)).unwrap();
            let due = now.to_be_bytes();
            let mut qkey = due.to_vec();
            qkey.extend_from_slice(id.as_bytes());
            (id, value, qkey, due)
        })
        .collect()
}

trait Engine {
    fn name(&self) -> &'static str;
    fn write(&self, batch: &[Row]);
    /// Reserves up to `max` due entries (scan + record reads) and acks them
    /// durably; returns how many.
    fn reserve_ack(&self, max: usize) -> usize;
}

mod redb_engine {
    use redb::{Database, Durability, ReadableDatabase, TableDefinition};

    const MESSAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("messages");
    const QUEUE: TableDefinition<&[u8], ()> = TableDefinition::new("queue");
    const INDEX: TableDefinition<&str, u64> = TableDefinition::new("queue_index");

    pub struct Redb(Database);

    impl Redb {
        pub fn open(dir: &std::path::Path) -> Self {
            Redb(Database::create(dir.join("smsmax.redb")).unwrap())
        }
    }

    use super::Row;

    impl super::Engine for Redb {
        fn name(&self) -> &'static str {
            "redb 4"
        }
        fn write(&self, batch: &[Row]) {
            let mut tx = self.0.begin_write().unwrap();
            tx.set_durability(Durability::Immediate).unwrap();
            {
                let mut m = tx.open_table(MESSAGES).unwrap();
                let mut q = tx.open_table(QUEUE).unwrap();
                let mut ix = tx.open_table(INDEX).unwrap();
                for (id, value, qkey, due) in batch {
                    m.insert(id.as_str(), value.as_slice()).unwrap();
                    q.insert(qkey.as_slice(), ()).unwrap();
                    ix.insert(id.as_str(), u64::from_be_bytes(*due)).unwrap();
                }
            }
            tx.commit().unwrap();
        }
        fn reserve_ack(&self, max: usize) -> usize {
            let rx = self.0.begin_read().unwrap();
            let q = rx.open_table(QUEUE).unwrap();
            let m = rx.open_table(MESSAGES).unwrap();
            let mut keys = Vec::new();
            for e in q.range::<&[u8]>(..).unwrap().take(max) {
                let (k, _) = e.unwrap();
                let k = k.value().to_vec();
                let id = std::str::from_utf8(&k[8..]).unwrap();
                let v = m.get(id).unwrap().unwrap();
                std::hint::black_box(v.value().len());
                keys.push(k);
            }
            drop((q, m, rx));
            let n = keys.len();
            let mut tx = self.0.begin_write().unwrap();
            tx.set_durability(Durability::Immediate).unwrap();
            {
                let mut q = tx.open_table(QUEUE).unwrap();
                let mut ix = tx.open_table(INDEX).unwrap();
                for k in &keys {
                    q.remove(k.as_slice()).unwrap();
                    ix.remove(std::str::from_utf8(&k[8..]).unwrap()).unwrap();
                }
            }
            tx.commit().unwrap();
            n
        }
    }
}

mod fjall_engine {
    use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

    pub struct Fjall {
        db: Database,
        messages: Keyspace,
        queue: Keyspace,
        index: Keyspace,
    }

    impl Fjall {
        pub fn open(dir: &std::path::Path) -> Self {
            let db = Database::builder(dir.join("fjall")).open().unwrap();
            let messages = db.keyspace("messages", KeyspaceCreateOptions::default).unwrap();
            let queue = db.keyspace("queue", KeyspaceCreateOptions::default).unwrap();
            let index = db.keyspace("queue_index", KeyspaceCreateOptions::default).unwrap();
            Fjall {
                db,
                messages,
                queue,
                index,
            }
        }
    }

    use super::Row;

    impl super::Engine for Fjall {
        fn name(&self) -> &'static str {
            "fjall 3"
        }
        fn write(&self, batch: &[Row]) {
            let mut b = self.db.batch().durability(Some(PersistMode::SyncAll));
            for (id, value, qkey, due) in batch {
                b.insert(&self.messages, id.as_str(), value.as_slice());
                b.insert(&self.queue, qkey.as_slice(), []);
                b.insert(&self.index, id.as_str(), due.as_slice());
            }
            b.commit().unwrap();
        }
        fn reserve_ack(&self, max: usize) -> usize {
            let mut keys = Vec::new();
            for g in self.queue.iter().take(max) {
                let k = g.key().unwrap();
                let v = self.messages.get(&k[8..]).unwrap().unwrap();
                std::hint::black_box(v.len());
                keys.push(k);
            }
            let n = keys.len();
            let mut b = self.db.batch().durability(Some(PersistMode::SyncAll));
            for k in keys {
                b.remove(&self.index, &k[8..]);
                b.remove(&self.queue, k);
            }
            b.commit().unwrap();
            n
        }
    }
}

fn measure(engine: &dyn Engine, ids: &mut Ids) {
    for &size in &BATCHES {
        // Enough batches for about 20 000 records, at least 5 and at most 400.
        let rounds = (20_000 / size).clamp(5, 400);
        let batches: Vec<_> = (0..rounds).map(|_| batch(ids, size)).collect();
        let start = Instant::now();
        for b in &batches {
            engine.write(b);
        }
        let el = start.elapsed();
        let recs = (rounds * size) as f64;
        println!(
            "{:8} write batch {size:5}: {:>10.0} records/s ({:.2} ms per synced batch)",
            engine.name(),
            recs / el.as_secs_f64(),
            el.as_secs_f64() * 1000.0 / rounds as f64
        );
    }
    // Fill a queue of QUEUE_LEN (after what the write runs left) and drain it.
    let mut queued: usize = BATCHES.iter().map(|&s| (20_000 / s).clamp(5, 400) * s).sum();
    while queued < QUEUE_LEN {
        engine.write(&batch(ids, 4096));
        queued += 4096;
    }
    let start = Instant::now();
    let mut acked = 0;
    let mut slowest = Duration::ZERO;
    loop {
        let t = Instant::now();
        let n = engine.reserve_ack(ACK_BATCH);
        slowest = slowest.max(t.elapsed());
        if n == 0 {
            break;
        }
        acked += n;
    }
    let el = start.elapsed();
    println!(
        "{:8} reserve+ack {ACK_BATCH} per synced txn: {:>10.0} acks/s ({acked} entries, slowest round {:.1} ms)",
        engine.name(),
        acked as f64 / el.as_secs_f64(),
        slowest.as_secs_f64() * 1000.0
    );
}

fn main() {
    let base = std::env::args().nth(1).map(std::path::PathBuf::from);
    let tmp = match &base {
        Some(p) => tempfile::tempdir_in(p).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let dir: &Path = tmp.path();
    let sample = postcard::to_stdvec(&record("0196a3b2c4d0001a1b2c3d4e".into(), now_ms())).unwrap();
    println!(
        "record size (postcard): {} bytes; directory {}",
        sample.len(),
        dir.display()
    );
    let mut ids = Ids {
        prefix: format!("{:011x}0001", now_ms()),
        n: 0x1234_5678,
    };
    for which in ["redb", "fjall"] {
        let d = dir.join(which);
        std::fs::create_dir_all(&d).unwrap();
        let engine: Box<dyn Engine> = match which {
            "redb" => Box::new(redb_engine::Redb::open(&d)),
            _ => Box::new(fjall_engine::Fjall::open(&d)),
        };
        measure(engine.as_ref(), &mut ids);
    }
}
