//! Memory of idle sessions: starts the real `smsmax` binary, binds 1,000
//! transceiver sessions to it, leaves them idle and reads the server's
//! resident memory from /proc. Not run by CI.
//!
//! ```sh
//! cargo build --release && cargo run --release --example idle_sessions -- [--sessions 1000]
//! ```
//!
//! The binary is looked for next to this example's own target directory
//! (`<target>/release/smsmax`), or given with `--bin`. The server gets a
//! temporary configuration (127.0.0.1 port 0, one client allowed enough
//! binds and connections) and data directory; its bound address is read
//! from its `smpp_addr=` log line. Every wait has a timeout.

use std::{
    io::BufRead,
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc as std_mpsc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::Parser;
use futures::{SinkExt, StreamExt};
use smsmax_protocol::{pdu::Bind, Body, CommandId, CommandStatus, Pdu, SmppCodec};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

const SYSTEM_ID: &str = "idle";
const PASSWORD: &str = "idle-pw";
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Parser)]
#[command(about = "Measures the gateway's resident memory with many idle bound sessions")]
struct Args {
    /// Sessions to open and bind.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Binds in flight at once.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Seconds to stay idle before reading the memory.
    #[arg(long, default_value_t = 5)]
    idle_secs: u64,
    /// The smsmax binary (default: `release/smsmax` of this example's target directory).
    #[arg(long)]
    bin: Option<PathBuf>,
}

/// Kills the server when dropped, so no error path leaves it running.
struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Every session is a socket here and in the server (which inherits this limit).
    let wanted = (args.sessions as u64) * 2 + 256;
    let limit = rlimit::increase_nofile_limit(wanted).context("raising the open-file limit")?;
    if limit < wanted {
        bail!("open-file limit is {limit}, {wanted} needed: raise `ulimit -n`");
    }
    let bin = match &args.bin {
        Some(b) => b.clone(),
        None => default_binary()?,
    };
    if !bin.is_file() {
        bail!(
            "{} not found: run `cargo build --release` first or pass --bin",
            bin.display()
        );
    }

    let dir = tempfile::tempdir()?;
    let config_path = dir.path().join("smsmax.toml");
    std::fs::write(&config_path, config(dir.path(), args.sessions)?)?;
    let mut child = Command::new(&bin)
        .args(["serve", "--config"])
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG")
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stderr = child.stderr.take().context("server stderr")?;
    let server = Server { child };
    let pid = server.child.id();

    // Read stderr on a thread for good: the address first, then drain the
    // per-bind log lines so the server never blocks on a full pipe.
    let (addr_tx, addr_rx) = std_mpsc::channel::<SocketAddr>();
    std::thread::spawn(move || {
        let mut addr_tx = Some(addr_tx);
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(tx) = &addr_tx {
                if let Some(addr) = parse_addr(&line) {
                    let _ = tx.send(addr);
                    addr_tx = None;
                }
            }
        }
    });
    let addr = addr_rx
        .recv_timeout(TIMEOUT)
        .context("the server logged no smpp_addr= line in time")?;
    println!("smsmax pid {pid} listening on {addr} ({})", bin.display());

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (rss0, hwm0) = memory(pid)?;
        println!("before any session: VmRSS {} VmHWM {}", mib(rss0), mib(hwm0));

        let started = Instant::now();
        let mut sessions = Vec::with_capacity(args.sessions);
        // The first bind alone: it pays the one argon2 check, which the
        // server then remembers; concurrent first binds would overflow its
        // bounded password-check queue.
        if args.sessions > 0 {
            sessions.push(bind(addr).await?);
        }
        let mut next = sessions.len();
        while next < args.sessions {
            let n = args.batch.max(1).min(args.sessions - next);
            let binds: Vec<_> = (0..n).map(|_| tokio::spawn(bind(addr))).collect();
            for b in binds {
                sessions.push(b.await??);
            }
            next += n;
        }
        println!(
            "{} sessions bound (transceiver) in {:.2} s",
            sessions.len(),
            started.elapsed().as_secs_f64()
        );
        let (rss1, hwm1) = memory(pid)?;
        println!("right after binding: VmRSS {} VmHWM {}", mib(rss1), mib(hwm1));
        tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
        let (rss, hwm) = memory(pid)?;
        println!(
            "after {} s idle with {} sessions: VmRSS {} VmHWM {} ({:.1} KiB per session over the empty server)",
            args.idle_secs,
            sessions.len(),
            mib(rss),
            mib(hwm),
            (rss.saturating_sub(rss0)) as f64 / 1024.0 / sessions.len().max(1) as f64,
        );
        let goal = 64 * 1024 * 1024;
        println!("goal VmRSS <= 64 MiB: {}", if rss <= goal { "met" } else { "NOT met" });
        // The sessions still answer: one enquire_link round trip on the first.
        if let Some(first) = sessions.first_mut() {
            first.send(Pdu::new(2, Body::EnquireLink)).await?;
            let resp = tokio::time::timeout(TIMEOUT, first.next())
                .await
                .context("no enquire_link_resp in time")?;
            if !matches!(resp, Some(Ok(Ok(ref p))) if p.command_id() == CommandId::EnquireLinkResp) {
                bail!("unexpected answer to enquire_link: {resp:?}");
            }
        }
        drop(sessions);
        anyhow::Ok(())
    })?;
    stop(server)?;
    Ok(())
}

fn default_binary() -> anyhow::Result<PathBuf> {
    // <target>/release/examples/idle_sessions -> <target>/release/smsmax
    let exe = std::env::current_exe()?;
    let release = exe
        .parent()
        .and_then(|examples| examples.parent())
        .context("cannot find the target directory")?;
    Ok(release.join(format!("smsmax{}", std::env::consts::EXE_SUFFIX)))
}

fn config(dir: &std::path::Path, sessions: usize) -> anyhow::Result<String> {
    let hash = smsmax::password::hash_password(PASSWORD)?;
    Ok(format!(
        r#"
[smpp]
listen = "127.0.0.1:0"
max_connections = {connections}
enquire_link_interval_secs = 300

[storage]
data_dir = "{data}"

[log]
level = "info"

[[clients]]
system_id = "{SYSTEM_ID}"
password_hash = "{hash}"
allowed_networks = ["127.0.0.0/8"]
max_binds = {sessions}
bind_types = ["transceiver"]
window = 256
"#,
        connections = sessions + 16,
        data = dir.join("data").display(),
    ))
}

/// The address in a log line like `... SMSMax listening smpp_addr=127.0.0.1:40123 ...`.
fn parse_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("smpp_addr=")? + "smpp_addr=".len()..];
    let value = rest.split(|c: char| c.is_whitespace() || c == ',').next()?;
    value.trim_matches('"').parse().ok()
}

async fn bind(addr: SocketAddr) -> anyhow::Result<Framed<TcpStream, SmppCodec>> {
    let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
        .await
        .context("connect timed out")??;
    let mut framed = Framed::new(stream, SmppCodec::default());
    let bind = Bind {
        system_id: SYSTEM_ID.try_into()?,
        password: PASSWORD.try_into()?,
        interface_version: 0x34,
        ..Bind::default()
    };
    tokio::time::timeout(TIMEOUT, framed.send(Pdu::new(1, Body::BindTransceiver(bind))))
        .await
        .context("bind send timed out")??;
    match tokio::time::timeout(TIMEOUT, framed.next())
        .await
        .context("no bind response in time")?
    {
        Some(Ok(Ok(pdu)))
            if pdu.command_id() == CommandId::BindTransceiverResp && pdu.command_status == CommandStatus::ESME_ROK =>
        {
            Ok(framed)
        }
        other => bail!("bind failed: {other:?}"),
    }
}

/// VmRSS and VmHWM of a process, in octets.
fn memory(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading /proc/<pid>/status")?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("{name} missing"))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("parsing {line:?}"))?;
        Ok(kib * 1024)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

fn mib(octets: u64) -> String {
    format!("{:.1} MiB", octets as f64 / (1024.0 * 1024.0))
}

/// SIGTERM (graceful shutdown), then SIGKILL if it has not exited in time.
fn stop(mut server: Server) -> anyhow::Result<()> {
    let pid = server.child.id();
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        if let Some(status) = server.child.try_wait()? {
            println!("smsmax exited: {status}");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("smsmax did not exit within {TIMEOUT:?} of SIGTERM; killing it");
    Ok(())
}
