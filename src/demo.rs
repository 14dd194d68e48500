//! `smsmax demo`: the whole receipt path on one machine, in one process, in
//! one command.
//!
//! ```text
//! bench (ESME, transceivers) --submit_sm--> gateway (serve::start, embedded storage in a temp dir)
//!                                              | relay, catch-all route
//!                                              v
//!                                           simulator (sim::start) --deliver_sm receipts--> gateway
//! bench <--deliver_sm receipts with OUR ids-- gateway (receipt matching, outbox)
//! ```
//!
//! The simulator answers with its own ids and sends a receipt per message
//! after a short delay, mostly DELIVRD with a few UNDELIV, EXPIRED and
//! REJECTD; the gateway must match each one to the id it gave the bench and
//! hand it to the bench's sessions exactly once. The demo succeeds when every
//! message was acknowledged and every acknowledged message got exactly one
//! receipt, whatever its state: the point is that no receipt is lost, not
//! that every handset was reachable.
//!
//! Everything lives in a fresh temporary directory (storage and the
//! gateway's log), removed at the end unless `--keep` is given; the log is
//! kept out of the terminal so that the progress bar and the report stay
//! readable, and its warnings are shown when the run fails.

use std::{
    io::{BufRead, IsTerminal},
    num::NonZeroU32,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use serde::Serialize;

use crate::{
    bench::{self, BenchConfig, BenchReport, BindMode, Mix},
    config::Config,
    sim::{self, OutcomeMix, SimConfig, SimStats},
};

/// The client the bench binds as (the same as in `config/smsmax.toml`).
const CLIENT_SYSTEM_ID: &str = "demo";
const CLIENT_PASSWORD: &str = "demopass";
/// What the gateway binds to the simulator as.
const UPSTREAM_SYSTEM_ID: &str = "smsmax";
const UPSTREAM_PASSWORD: &str = "upstream";

/// Command-line arguments of `smsmax demo`.
#[derive(Clone, Debug, clap::Args)]
pub struct DemoArgs {
    /// Messages to send.
    #[arg(short = 'n', long, default_value_t = 200_000)]
    pub messages: u64,
    /// Client sessions (transceivers: they submit and receive the receipts).
    #[arg(short, long, default_value_t = 4)]
    pub binds: usize,
    /// Outstanding submit_sm per client session.
    #[arg(short, long, default_value_t = 256)]
    pub window: usize,
    /// Transceiver binds, or a transmitter + receiver pair per bind.
    #[arg(long, value_enum, default_value_t = BindMode::Transceiver)]
    pub bind_mode: BindMode,
    /// Sessions from the gateway to the simulator.
    #[arg(long, default_value_t = 4)]
    pub upstream_binds: usize,
    /// The simulator's receipt outcomes and weights.
    #[arg(long, default_value = "delivrd=95,undeliv=3,expired=1,rejectd=1", value_name = "MIX")]
    pub outcomes: OutcomeMix,
    /// Shortest delay between a submit and its receipt at the simulator, in milliseconds.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    pub receipt_delay_ms: u64,
    /// Up to this many milliseconds added to each receipt's delay.
    #[arg(long, default_value_t = 400, value_name = "MS")]
    pub receipt_jitter_ms: u64,
    /// After the last submit, wait at most this long for outstanding receipts.
    #[arg(long, value_parser = bench::parse_duration, default_value = "120s")]
    pub receipt_timeout: Duration,
    /// Keep the temporary directory (storage and gateway.log) and print where it is.
    #[arg(long)]
    pub keep: bool,
    /// The gateway's log filter (written to gateway.log in the temporary directory).
    #[arg(long, default_value = "info", value_name = "FILTER")]
    pub log_level: String,
    /// Print the bench report as JSON on standard output.
    #[arg(long)]
    pub json: bool,
    /// No progress bar (hidden anyway when standard error is not a terminal) and no notes on standard error.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Everything one demo run needs; from [`DemoArgs`] or built directly (tests).
#[derive(Clone, Debug)]
pub struct DemoConfig {
    pub messages: u64,
    pub binds: usize,
    pub window: usize,
    pub bind_mode: BindMode,
    pub upstream_binds: usize,
    pub outcomes: OutcomeMix,
    pub receipt_delay: Duration,
    pub receipt_jitter: Duration,
    pub receipt_timeout: Duration,
    /// Show the bench's progress bar on standard error.
    pub progress: bool,
    /// Say on standard error what was started where.
    pub announce: bool,
}

impl From<&DemoArgs> for DemoConfig {
    fn from(args: &DemoArgs) -> Self {
        DemoConfig {
            messages: args.messages,
            binds: args.binds,
            window: args.window,
            bind_mode: args.bind_mode,
            upstream_binds: args.upstream_binds,
            outcomes: args.outcomes.clone(),
            receipt_delay: Duration::from_millis(args.receipt_delay_ms),
            receipt_jitter: Duration::from_millis(args.receipt_jitter_ms),
            receipt_timeout: args.receipt_timeout,
            progress: !args.quiet && std::io::stderr().is_terminal(),
            announce: !args.quiet,
        }
    }
}

/// What a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct DemoOutcome {
    /// The bench's report (what the client saw).
    pub report: BenchReport,
    /// The simulator's counters (what the carrier saw).
    pub sim: SimStats,
    /// Why the run failed; empty when every acknowledged message got exactly one receipt.
    pub problems: Vec<String>,
}

impl DemoOutcome {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The temporary directory of one demo run: the gateway's storage in
/// `data/`, its log in `gateway.log`.
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    /// A fresh directory under the system's temporary directory.
    pub fn create() -> std::io::Result<Workspace> {
        let dir = tempfile::Builder::new().prefix("smsmax-demo-").tempdir()?;
        Ok(Workspace { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("gateway.log")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Up to `max` of the last WARN and ERROR lines of the log.
    pub fn log_warnings(&self, max: usize) -> Vec<String> {
        let Ok(file) = std::fs::File::open(self.log_path()) else {
            return Vec::new();
        };
        let mut lines: std::collections::VecDeque<String> = std::collections::VecDeque::with_capacity(max);
        for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
            if line.contains(" WARN ") || line.contains(" ERROR ") || line.contains("\"level\":\"WARN\"") {
                if lines.len() == max {
                    lines.pop_front();
                }
                lines.push_back(line);
            }
        }
        lines.into()
    }

    /// Removes the directory, or keeps it (`keep`) and returns its path.
    pub fn finish(self, keep: bool) -> std::io::Result<Option<PathBuf>> {
        if keep {
            Ok(Some(self.dir.keep()))
        } else {
            self.dir.close().map(|()| None)
        }
    }

    /// The gateway's configuration: one client (`demo`), one upstream (the
    /// simulator at `sim_port`) and a catch-all route, no throughput cap
    /// worth the name, storage in this workspace.
    pub fn gateway_config(&self, config: &DemoConfig, sim_port: u16) -> anyhow::Result<Config> {
        let hash = crate::password::hash_password(CLIENT_PASSWORD).context("hashing the demo password")?;
        let sessions = match config.bind_mode {
            BindMode::Transceiver => config.binds,
            BindMode::TxRx => config.binds * 2,
        };
        let text = format!(
            r#"
[smpp]
listen = "127.0.0.1:0"
response_timeout_secs = 10

[storage]
data_dir = {data_dir}

[[clients]]
system_id = "{CLIENT_SYSTEM_ID}"
password_hash = "{hash}"
allowed_networks = ["127.0.0.0/8"]
max_binds = {sessions}
throughput = 10000000
window = {window}

[[upstreams]]
name = "sim"
host = "127.0.0.1"
port = {sim_port}
system_id = "{UPSTREAM_SYSTEM_ID}"
password = "{UPSTREAM_PASSWORD}"
binds = {upstream_binds}
window = 256
response_timeout_ms = 10000
reconnect_min_ms = 100
reconnect_max_ms = 2000

[[routes]]
prefix = ""
upstreams = [{{ name = "sim" }}]

[relay]
idle_poll_ms = 10

[outbox]
window = 256
retry_min_ms = 200
retry_max_ms = 5000
"#,
            // A TOML string: the temporary path may hold anything.
            data_dir = toml::Value::String(self.data_dir().display().to_string()),
            window = config.window.clamp(1, 65_535),
            upstream_binds = config.upstream_binds.max(1),
        );
        let gateway: Config = toml::from_str(&text).context("the demo's gateway configuration")?;
        gateway.validate().context("the demo's gateway configuration")?;
        Ok(gateway)
    }

    /// Starts the simulator and the gateway, runs the bench against the
    /// gateway, stops both and judges the result. Fails only when something
    /// cannot start; what went wrong during the run is in
    /// [`DemoOutcome::problems`].
    pub async fn run(&self, config: &DemoConfig) -> anyhow::Result<DemoOutcome> {
        anyhow::ensure!(config.messages >= 1, "--messages must be at least 1");
        let sim = sim::start(SimConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            system_id: Some(UPSTREAM_SYSTEM_ID.to_string()),
            password: Some(UPSTREAM_PASSWORD.to_string()),
            receipt_delay: config.receipt_delay,
            receipt_jitter: config.receipt_jitter,
            mix: config.outcomes.clone(),
            window: 256,
            ..SimConfig::default()
        })
        .await
        .context("starting the simulator")?;
        let gateway_config = match self.gateway_config(config, sim.addr.port()) {
            Ok(c) => c,
            Err(e) => {
                sim.stop().await;
                return Err(e);
            }
        };
        let gateway = match crate::serve::start(gateway_config).await {
            Ok(g) => g,
            Err(e) => {
                sim.stop().await;
                return Err(e.context("starting the gateway"));
            }
        };
        if config.announce {
            eprintln!(
                "smsmax demo: simulator on {}, gateway on {} (storage in {}), {} messages over {} x window {}",
                sim.addr,
                gateway.smpp_addr,
                self.path().display(),
                config.messages,
                config.binds,
                config.window
            );
        }
        let bench_config = BenchConfig {
            binds: config.binds,
            window: config.window,
            bind_mode: config.bind_mode,
            rate: None::<NonZeroU32>,
            count: Some(config.messages),
            duration: None,
            mix: Mix::default(),
            receipts: true,
            receipt_timeout: config.receipt_timeout,
            progress: config.progress,
            ..BenchConfig::new(gateway.smpp_addr.to_string(), CLIENT_SYSTEM_ID, CLIENT_PASSWORD)
        };
        let report = bench::run(bench_config).await;
        let stopped = gateway.stop().await;
        let sim = sim.stop().await;
        let report = report.context("running the bench against the gateway")?;
        let mut problems = judge(&report, config.receipt_timeout);
        if let Err(e) = stopped {
            problems.push(format!("the gateway did not stop cleanly: {e:#}"));
        }
        Ok(DemoOutcome { report, sim, problems })
    }
}

/// Why a run does not show the promise kept: every message acknowledged,
/// every acknowledged message receipted exactly once. Empty when it does.
pub fn judge(report: &BenchReport, receipt_timeout: Duration) -> Vec<String> {
    let mut problems = Vec::new();
    let r = &report.receipts;
    if report.acknowledged == 0 {
        problems.push("no message was acknowledged".to_string());
    }
    let refused = report.throttled + report.rejected + report.timeouts + report.errors;
    if refused > 0 {
        problems.push(format!(
            "{refused} of {} submit_sm were not acknowledged ({} throttled, {} rejected, {} timed out, {} lost with their session)",
            report.submitted, report.throttled, report.rejected, report.timeouts, report.errors
        ));
    }
    for lost in &report.sessions_lost {
        problems.push(format!("a client session was lost: {lost}"));
    }
    if r.never_receipted > 0 {
        let sample: Vec<String> = r.never_receipted_sample.iter().map(|n| format!("#{n}")).collect();
        problems.push(format!(
            "{} of {} acknowledged messages got no receipt within {:?} after the last submit (messages {}{})",
            r.never_receipted,
            report.acknowledged,
            receipt_timeout,
            sample.join(", "),
            if r.never_receipted > sample.len() as u64 {
                ", ..."
            } else {
                ""
            }
        ));
    }
    if r.duplicates > 0 {
        problems.push(format!("{} receipts arrived more than once", r.duplicates));
    }
    if r.unmatched > 0 {
        problems.push(format!(
            "{} receipts name a message id the gateway never gave",
            r.unmatched
        ));
    }
    if r.unparseable > 0 {
        problems.push(format!("{} receipts could not be read", r.unparseable));
    }
    problems
}

/// One line per receipt state, e.g. `DELIVRD 190012, UNDELIV 6011, ...`.
pub fn states_line(report: &BenchReport) -> String {
    let states: Vec<String> = report
        .receipts
        .by_state
        .iter()
        .map(|(state, n)| format!("{state} {n}"))
        .collect();
    states.join(", ")
}
