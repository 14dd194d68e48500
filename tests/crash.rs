//! Crash safety of the whole server: every message that got a
//! submit_sm_resp survives a SIGKILL, exactly once and still queued.

mod common;

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{submit_sm, PASSWORD};
use smsmax::{queue::Queue, store::journal::JournalStorage, store::Store};
use smsmax_protocol::{Body, CommandStatus};

const MESSAGES: usize = 3000;

fn write_config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("smsmax.toml");
    let text = format!(
        r#"
[smpp]
listen = "127.0.0.1:0"

[storage]
data_dir = "{data}"

[[clients]]
system_id = "alice"
password_hash = "{hash}"
window = 256
throughput = 1000000
"#,
        data = dir.join("data").display(),
        hash = common::password_hash(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts `smsmax serve` and returns it with the address it listens on
/// (read from its "listening" log line on stderr).
fn spawn_gateway(config: &std::path::Path) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_smsmax"))
        .args(["serve", "--config"])
        .arg(config)
        .env("SMSMAX_LOG__FORMAT", "text")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("smsmax serve starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("smpp_addr=").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or_default().to_string();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("gateway reports its address");
    (child, addr.parse().expect("address"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let (mut child, addr) = spawn_gateway(&config);

    let mut esme = common::connect(addr).await;
    assert_eq!(
        esme.bind("transmitter", "alice", PASSWORD).await,
        CommandStatus::ESME_ROK
    );
    // Keep up to 200 submits in flight, as a bulk client does.
    let mut acknowledged = std::collections::HashSet::new();
    let mut sent = 0;
    let mut answered = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while answered < MESSAGES {
        while sent < MESSAGES && sent - answered < 200 {
            esme.send(submit_sm("447700900002", &format!("crash test {sent}")))
                .await;
            sent += 1;
        }
        let pdu = esme.recv().await.expect("answer");
        answered += 1;
        assert_eq!(pdu.command_status, CommandStatus::ESME_ROK);
        let Body::SubmitSmResp(resp) = pdu.body else {
            panic!("{pdu:?}")
        };
        assert!(
            acknowledged.insert(resp.message_id.as_str().unwrap().to_string()),
            "ids are unique"
        );
        assert!(Instant::now() < deadline, "bounded in time");
    }
    // SIGKILL: no chance to flush anything.
    child.kill().unwrap();
    child.wait().unwrap();

    // Restart on the same data directory: the gateway comes up and answers
    // for the acknowledged messages, then stops cleanly (exit 0) on SIGTERM.
    let (mut child, addr) = spawn_gateway(&config);
    let mut esme = common::connect(addr).await;
    assert_eq!(
        esme.bind("transmitter", "alice", PASSWORD).await,
        CommandStatus::ESME_ROK
    );
    for id in acknowledged.iter().take(20) {
        let query = smsmax_protocol::pdu::QuerySm {
            message_id: id.as_str().try_into().unwrap(),
            ..Default::default()
        };
        let resp = esme.call(query).await;
        assert_eq!(resp.command_status, CommandStatus::ESME_ROK, "{id}");
        let Body::QuerySmResp(state) = resp.body else { panic!() };
        assert_eq!(state.message_state, 6, "still ACCEPTED");
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "graceful exit on SIGTERM");

    // Every acknowledged message is stored and queued exactly once.
    let storage = JournalStorage::open(&dir.path().join("data"), Default::default())
        .await
        .unwrap();
    assert_eq!(storage.depth().await.unwrap(), MESSAGES as u64);
    let queued = storage.reserve(MESSAGES + 10, Duration::from_secs(60)).await.unwrap();
    let mut seen = std::collections::HashSet::new();
    for record in &queued {
        assert!(seen.insert(record.id.clone()), "queued once: {}", record.id);
    }
    assert_eq!(seen, acknowledged);
    for id in acknowledged.iter().take(50) {
        assert!(storage.get(id).await.unwrap().is_some());
    }
    storage.close().await.unwrap();
}
