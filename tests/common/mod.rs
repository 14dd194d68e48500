//! Shared helpers of the gateway's integration tests: a gateway on port 0
//! with embedded storage in a temporary directory, and a minimal ESME built
//! on our codec.
#![allow(dead_code)]

use std::{net::SocketAddr, time::Duration};

use futures::{SinkExt, StreamExt};
use smsmax::{config::Config, serve::Running};
use smsmax_protocol::{
    pdu::{Bind, SubmitSm},
    types::Address,
    Body, CommandStatus, Pdu, SmppCodec,
};
use tokio::{io::AsyncRead, io::AsyncWrite, net::TcpStream};
use tokio_util::codec::Framed;

pub const PASSWORD: &str = "s3cret";

/// A hash of [`PASSWORD`], made once per test binary.
pub fn password_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| smsmax::password::hash_password(PASSWORD).expect("hash"))
}

/// A configuration with clients `alice` (everything allowed) and the given extra TOML.
pub fn config(data_dir: &std::path::Path, extra: &str) -> Config {
    let text = format!(
        r#"
[smpp]
listen = "127.0.0.1:0"
bind_timeout_secs = 2
enquire_link_interval_secs = 30
response_timeout_secs = 2

[storage]
data_dir = "{dir}"

[[clients]]
system_id = "alice"
password_hash = "{hash}"
allowed_networks = ["127.0.0.0/8"]
max_binds = 3
window = 64
throughput = 100000

{extra}
"#,
        dir = data_dir.display(),
        hash = password_hash(),
    );
    toml::from_str(&text).expect("test config")
}

pub struct Gateway {
    pub running: Running,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

pub async fn start(extra: &str) -> Gateway {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), extra);
    let running = smsmax::serve::start(config).await.expect("gateway starts");
    let addr = running.smpp_addr;
    Gateway { running, addr, dir }
}

/// A test ESME on any stream.
pub struct Esme<S> {
    pub framed: Framed<S, SmppCodec>,
    sequence: u32,
}

pub async fn connect(addr: SocketAddr) -> Esme<TcpStream> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    Esme::new(stream)
}

/// A new session of `system_id` (password [`PASSWORD`]) bound as `kind`; the bind must succeed.
pub async fn bound(addr: SocketAddr, kind: &str, system_id: &str) -> Esme<TcpStream> {
    let mut esme = connect(addr).await;
    assert_eq!(
        esme.bind(kind, system_id, PASSWORD).await,
        CommandStatus::ESME_ROK,
        "{kind} bind of {system_id}"
    );
    esme
}

impl<S: AsyncRead + AsyncWrite + Unpin> Esme<S> {
    pub fn new(stream: S) -> Self {
        Esme {
            framed: Framed::new(stream, SmppCodec::default()),
            sequence: 0,
        }
    }

    pub async fn send(&mut self, body: impl Into<Body>) -> u32 {
        self.sequence += 1;
        let pdu = Pdu::new(self.sequence, body);
        self.framed.send(pdu).await.expect("send");
        self.sequence
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.framed.get_mut().write_all(bytes).await.expect("send raw");
    }

    /// The next PDU, or `None` if the gateway closed the connection.
    pub async fn recv(&mut self) -> Option<Pdu> {
        match tokio::time::timeout(Duration::from_secs(10), self.framed.next()).await {
            Ok(Some(Ok(Ok(pdu)))) => Some(pdu),
            Ok(Some(Ok(Err(e)))) => panic!("gateway sent a malformed PDU: {e}"),
            Ok(Some(Err(_))) | Ok(None) => None,
            Err(_) => panic!("no PDU from the gateway within 10 s"),
        }
    }

    /// Sends a request and returns its response (skipping nothing: the
    /// next PDU must be the answer).
    pub async fn call(&mut self, body: impl Into<Body>) -> Pdu {
        let sequence = self.send(body).await;
        let pdu = self.recv().await.expect("connection open");
        assert_eq!(pdu.sequence_number, sequence, "response matches the request: {pdu:?}");
        pdu
    }

    pub async fn bind(&mut self, kind: &str, system_id: &str, password: &str) -> CommandStatus {
        let bind = Bind {
            system_id: system_id.try_into().unwrap(),
            password: password.try_into().unwrap(),
            interface_version: 0x34,
            ..Bind::default()
        };
        let body = match kind {
            "transmitter" => Body::BindTransmitter(bind),
            "receiver" => Body::BindReceiver(bind),
            _ => Body::BindTransceiver(bind),
        };
        self.call(body).await.command_status
    }
}

pub fn submit_sm(dest: &str, text: &str) -> SubmitSm {
    SubmitSm {
        source: Address::new(1, 1, "447700900001").unwrap(),
        dest: Address::new(1, 1, dest).unwrap(),
        registered_delivery: 1,
        short_message: bytes::Bytes::copy_from_slice(text.as_bytes()),
        ..SubmitSm::default()
    }
}

/// Octets from hex digits; anything else (spaces, newlines) is ignored.
pub fn hex(text: &str) -> Vec<u8> {
    let clean: String = text.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..clean.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).unwrap())
        .collect()
}

// ---- relay / receipt tests: a simulator upstream, submits and states ----

/// `smsmax sim` on port 0 with short test timers, adjusted by `f`.
pub async fn start_sim(f: impl FnOnce(&mut smsmax::sim::SimConfig)) -> smsmax::sim::SimHandle {
    let mut config = smsmax::sim::SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        receipt_delay: Duration::from_millis(20),
        response_timeout: Duration::from_secs(2),
        ..smsmax::sim::SimConfig::default()
    };
    f(&mut config);
    smsmax::sim::start(config).await.expect("sim starts")
}

/// Submits `sm`, asserts ESME_ROK and returns our message id.
pub async fn submit_ok<S: AsyncRead + AsyncWrite + Unpin>(esme: &mut Esme<S>, sm: SubmitSm) -> String {
    let resp = esme.call(Body::SubmitSm(sm)).await;
    assert_eq!(resp.command_status, CommandStatus::ESME_ROK, "{resp:?}");
    match resp.body {
        Body::SubmitSmResp(r) => r.message_id.to_string_lossy().into_owned(),
        other => panic!("{other:?}"),
    }
}

/// The message_state query_sm answers for `id` (source 1/1/447700900001).
pub async fn query_state<S: AsyncRead + AsyncWrite + Unpin>(esme: &mut Esme<S>, id: &str) -> u8 {
    let query = smsmax_protocol::pdu::QuerySm {
        message_id: id.try_into().unwrap(),
        source: Address::new(1, 1, "447700900001").unwrap(),
    };
    let resp = esme.call(Body::QuerySm(query)).await;
    assert_eq!(resp.command_status, CommandStatus::ESME_ROK, "{resp:?}");
    match resp.body {
        Body::QuerySmResp(r) => r.message_state,
        other => panic!("{other:?}"),
    }
}

/// Polls query_sm until `id` is in one of the `want` states or `within`
/// has passed; returns the last state.
pub async fn wait_state<S: AsyncRead + AsyncWrite + Unpin>(
    esme: &mut Esme<S>,
    id: &str,
    want: &[u8],
    within: Duration,
) -> u8 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let s = query_state(esme, id).await;
        if want.contains(&s) || tokio::time::Instant::now() >= deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stops the gateway and reopens its storage for inspection.
pub async fn stopped_storage(
    gateway: Gateway,
) -> (
    std::sync::Arc<smsmax::store::journal::JournalStorage>,
    tempfile::TempDir,
) {
    gateway.running.stop().await.expect("gateway stops");
    let storage = smsmax::store::journal::JournalStorage::open(gateway.dir.path(), Default::default())
        .await
        .expect("reopen storage");
    (storage, gateway.dir)
}

/// A gateway's ESME side (no relay, no outbox delivery) serving `queue`
/// and `store` with the clients of `config`: for tests that wrap the
/// queue to slow it down, count its calls or make it fail.
pub struct QueueGateway {
    pub addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    sessions: tokio_util::task::TaskTracker,
    server: tokio::task::JoinHandle<()>,
}

impl QueueGateway {
    pub async fn start(
        config: &Config,
        queue: std::sync::Arc<dyn smsmax::queue::Queue>,
        store: std::sync::Arc<dyn smsmax::store::Store>,
    ) -> QueueGateway {
        use smsmax::esme::{
            auth::Authenticator,
            listener::{self, Transport},
            Gateway, SessionSettings,
        };
        let gateway = std::sync::Arc::new(Gateway {
            settings: SessionSettings {
                system_id: "SMSMax".into(),
                bind_timeout: Duration::from_secs(5),
                enquire_link_interval: Duration::from_secs(30),
                response_timeout: Duration::from_secs(5),
                max_command_length: 65536,
                storage_timeout: Duration::from_secs(10),
            },
            auth: Authenticator::new(&config.clients, &config.security),
            queue,
            store,
            ids: smsmax::ids::MessageIdGenerator::new(0),
            deliveries: None,
        });
        let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let sessions = tokio_util::task::TaskTracker::new();
        let server = tokio::spawn(listener::serve(
            socket,
            Transport::Tcp,
            gateway,
            std::sync::Arc::new(tokio::sync::Semaphore::new(16)),
            sessions.clone(),
            stopped,
        ));
        QueueGateway {
            addr,
            stop,
            sessions,
            server,
        }
    }

    /// Stops accepting, then waits for every session to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.server.await.unwrap();
        self.sessions.close();
        self.sessions.wait().await;
    }
}
