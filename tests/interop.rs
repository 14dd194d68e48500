//! Interoperability with two independent SMPP client implementations: the
//! Python `smpplib` package and the node `smpp` package. Each test starts a
//! gateway in-process, runs the peer's scenario script
//! (`conformance/interop/`) as a child process and checks that every
//! expected check was reported as passed; then our own ESME queries every
//! message id the peer was given, to see the messages really were stored.
//!
//! The peers are installed by `.ci/run`. Without them these tests fail with
//! the command that installs them, unless `SMSMAX_SKIP_INTEROP=1`.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use common::{connect, start, PASSWORD};
use smsmax_protocol::{pdu::QuerySm, Body, CommandStatus};
use tokio::{io::AsyncReadExt, process::Command};

/// How long one peer's whole scenario may take before it is killed.
const PEER_TIMEOUT: Duration = Duration::from_secs(60);

/// The throttled second client (5 message parts per second).
const THROTTLED: &str = r#"
[[clients]]
system_id = "slow"
password_hash = "HASH"
allowed_networks = ["127.0.0.0/8"]
throughput = 5
"#;

/// Checks both scripts must report as passed.
const COMMON_CHECKS: &[&str] = &[
    "bind_transmitter",
    "unbind_transmitter",
    "bind_receiver",
    "unbind_receiver",
    "bind_transceiver",
    "unbind_transceiver",
    "submit_gsm7",
    "submit_ucs2",
    "submit_long_udh",
    "submit_long_sar",
    "query_sm",
    "enquire_link",
    "unbind",
    "wrong_password",
    "submit_on_receiver",
    "throttling",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn skip_requested() -> bool {
    std::env::var("SMSMAX_SKIP_INTEROP").is_ok_and(|v| v == "1")
}

/// `Ok(())` if the peer can run; otherwise why not.
async fn preflight(program: &str, args: &[&str]) -> Result<(), String> {
    let outcome = Command::new(program)
        .args(args)
        .current_dir(root())
        .stdin(Stdio::null())
        .output()
        .await;
    match outcome {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            // The interesting line of a Python or node traceback.
            let cause = stderr
                .lines()
                .rev()
                .find(|l| l.contains("Error"))
                .unwrap_or_else(|| stderr.trim());
            Err(format!("`{program}` {}: {cause}", out.status))
        }
        Err(e) => Err(format!("cannot run `{program}`: {e}")),
    }
}

/// Returns `false` (after saying so) when the test must be skipped; panics
/// when the peer is missing and skipping was not asked for.
fn peer_available(name: &str, install: &str, check: Result<(), String>) -> bool {
    match check {
        Ok(()) => true,
        Err(why) if skip_requested() => {
            eprintln!("SKIPPED interop with {name} (SMSMAX_SKIP_INTEROP=1): {why}");
            false
        }
        Err(why) => panic!(
            "the {name} interop peer is not installed. Install it with:\n    {install}\n\
             (.ci/run does this; set SMSMAX_SKIP_INTEROP=1 to skip these tests)\ncause: {why}"
        ),
    }
}

struct PeerRun {
    status: Option<std::process::ExitStatus>,
    stdout: String,
    stderr: String,
}

/// Runs a peer script against the gateway, killing it after [`PEER_TIMEOUT`].
async fn run_peer(program: &str, script: &Path, addr: std::net::SocketAddr) -> PeerRun {
    let mut child = Command::new(program)
        .arg(script)
        .args([
            addr.ip().to_string(),
            addr.port().to_string(),
            "alice".to_string(),
            PASSWORD.to_string(),
            "--throttled-system-id".to_string(),
            "slow".to_string(),
            "--throttled-password".to_string(),
            PASSWORD.to_string(),
            "--server-system-id".to_string(),
            "SMSMax".to_string(),
        ])
        .current_dir(root())
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    let mut out = child.stdout.take().expect("stdout piped");
    let mut err = child.stderr.take().expect("stderr piped");
    let stdout = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf).await;
        String::from_utf8_lossy(&buf).into_owned()
    });
    let stderr = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf).await;
        String::from_utf8_lossy(&buf).into_owned()
    });
    let status = match tokio::time::timeout(PEER_TIMEOUT, child.wait()).await {
        Ok(status) => Some(status.expect("wait for the peer")),
        Err(_) => {
            let _ = child.kill().await;
            None
        }
    };
    PeerRun {
        status,
        stdout: stdout.await.unwrap_or_default(),
        stderr: stderr.await.unwrap_or_default(),
    }
}

/// Parses the peer's JSON lines and asserts the run passed every expected check.
/// Returns every message id the peer reported.
fn assert_passed(peer: &str, run: &PeerRun, expected: &[&str]) -> Vec<String> {
    let context = || {
        format!(
            "--- {peer} stdout ---\n{}--- {peer} stderr ---\n{}",
            run.stdout, run.stderr
        )
    };
    let Some(status) = run.status else {
        panic!(
            "{peer} did not finish within {PEER_TIMEOUT:?} and was killed\n{}",
            context()
        );
    };
    let mut checks = std::collections::HashMap::new();
    let mut summary = None;
    for line in run.stdout.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{peer} printed a line that is not JSON ({e}): {line}\n{}", context()));
        if value.get("summary").is_some() {
            summary = Some(value);
        } else if let Some(check) = value.get("check").and_then(|c| c.as_str()) {
            checks.insert(check.to_string(), value);
        } else if let Some(error) = value.get("error") {
            panic!("{peer} could not run: {error}\n{}", context());
        }
    }
    let failed: Vec<_> = checks
        .iter()
        .filter(|(_, v)| v["ok"] != serde_json::Value::Bool(true))
        .map(|(name, v)| format!("{name}: {}", v["detail"]))
        .collect();
    assert!(
        failed.is_empty(),
        "{peer} checks failed:\n{}\n{}",
        failed.join("\n"),
        context()
    );
    let missing: Vec<_> = expected.iter().filter(|c| !checks.contains_key(**c)).collect();
    assert!(missing.is_empty(), "{peer} did not report {missing:?}\n{}", context());
    assert!(status.success(), "{peer} exited with {status}\n{}", context());
    let summary = summary.unwrap_or_else(|| panic!("{peer} printed no summary\n{}", context()));
    assert_eq!(summary["failed"], serde_json::json!([]), "{}", context());
    assert!(
        checks["throttling"]["detail"].get("skipped").is_none(),
        "throttling was skipped\n{}",
        context()
    );
    eprintln!("{peer}: {summary}");

    let mut ids = Vec::new();
    for check in checks.values() {
        if check["check"] == "query_sm" {
            continue;
        }
        let detail = &check["detail"];
        if let Some(id) = detail["message_id"].as_str() {
            ids.push(id.to_string());
        }
        if let Some(list) = detail["message_ids"].as_array() {
            ids.extend(list.iter().filter_map(|v| v.as_str()).map(str::to_string));
        }
    }
    ids
}

/// Our own ESME checks that every id the peer got is alice's, stored and ACCEPTED.
async fn assert_stored(addr: std::net::SocketAddr, ids: &[String]) {
    assert!(!ids.is_empty(), "the peer reported no message ids");
    let mut esme = connect(addr).await;
    assert_eq!(
        esme.bind("transceiver", "alice", PASSWORD).await,
        CommandStatus::ESME_ROK
    );
    for id in ids {
        let query = QuerySm {
            message_id: id.as_str().try_into().expect("an SMPP message id"),
            ..QuerySm::default()
        };
        let resp = esme.call(query).await;
        assert_eq!(resp.command_status, CommandStatus::ESME_ROK, "query_sm {id}: {resp:?}");
        let Body::QuerySmResp(state) = &resp.body else {
            panic!("{resp:?}")
        };
        assert_eq!(state.message_state, 6, "message {id} is ACCEPTED");
    }
}

async fn interop(peer: &str, program: &str, script: &str, expected: &[&str]) {
    let gateway = start(&THROTTLED.replace("HASH", common::password_hash())).await;
    let run = run_peer(program, &root().join(script), gateway.addr).await;
    let ids = assert_passed(peer, &run, expected);
    assert_stored(gateway.addr, &ids).await;
    gateway.running.stop().await.expect("gateway stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_smpplib_peer() {
    let check = preflight("python3", &["-c", "import smpplib.client, smpplib.gsm"]).await;
    if !peer_available("Python smpplib", "python3 -m pip install smpplib==2.2.4", check) {
        return;
    }
    let mut expected = COMMON_CHECKS.to_vec();
    expected.push("submit_long_ucs2_udh");
    interop("smpplib", "python3", "conformance/interop/smpplib_client.py", &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_smpp_peer() {
    let check = preflight(
        "node",
        &["-e", "require.resolve('smpp', { paths: ['conformance/interop/node'] })"],
    )
    .await;
    if !peer_available(
        "node smpp",
        "(cd conformance/interop/node && npm ci --no-audit --no-fund)",
        check,
    ) {
        return;
    }
    let mut expected = COMMON_CHECKS.to_vec();
    expected.extend(["submit_message_payload", "data_sm"]);
    interop("node-smpp", "node", "conformance/interop/node/client.js", &expected).await;
}
