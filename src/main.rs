//! The `smsmax` command line.

/// jemalloc: the gateway allocates and frees small objects per message on
/// several threads; see Cargo.toml for what it measured.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::{
    io::{BufRead, IsTerminal, Write},
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Parser, Subcommand};
use smsmax::config::{Config, ConfigError, LogFormat};

/// Exit status for an unusable configuration (the same as for bad command-line usage).
const EXIT_CONFIG: u8 = 2;
/// Exit status after SIGINT (128 + 2, as shells report it).
const EXIT_INTERRUPTED: u8 = 130;

/// SMSMax: a native SMPP 3.4 gateway.
#[derive(Debug, Parser)]
#[command(name = "smsmax", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway with the given configuration file.
    ///
    /// Every key of the file can be overridden by an environment variable:
    /// SMSMAX_ followed by the key path in capitals with `__` between levels,
    /// e.g. SMSMAX_SMPP__LISTEN=0.0.0.0:2775 or SMSMAX_NODE__ID=3.
    /// An unusable configuration exits with status 2.
    Serve {
        /// The TOML configuration file.
        #[arg(short, long, value_name = "FILE", env = "SMSMAX_CONFIG")]
        config: PathBuf,
    },
    /// Print the argon2id hash of a password, for `password_hash` in the configuration.
    ///
    /// Reads the password from the terminal without echoing it (asking twice),
    /// or, when standard input is not a terminal, as the first line of
    /// standard input. Prints one PHC string with a fresh random salt.
    Passwd,
    /// Check a configuration file (with environment overrides) and exit.
    ///
    /// Prints "FILE: ok" and exits with status 0 when the configuration is
    /// usable; otherwise prints one message naming the key at fault and exits
    /// with status 2.
    CheckConfig {
        /// The TOML configuration file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Run an SMSC simulator to relay to, test against or benchmark with.
    ///
    /// Accepts binds, answers submit_sm with message ids, sends a delivery
    /// receipt per submit that asks for one (after --receipt-delay-ms, with
    /// the --mix of outcomes) and injects faults on demand. Logs
    /// `sim listening addr=...` on standard error; on SIGINT, SIGTERM or
    /// after --duration prints a summary of what it counted (--json for JSON).
    Sim(Box<smsmax::sim::SimArgs>),
    /// Load an SMSC (this gateway, `smsmax sim`) with submit_sm and report what happened.
    ///
    /// Binds --binds sessions with --window outstanding submit_sm each, sends
    /// --count messages (or for --duration) at --rate per second or as fast as
    /// the windows allow, in a --mix of GSM 7-bit, UCS-2 and 3-part long texts,
    /// with --receipts counts delivery receipts, then prints submitted,
    /// acknowledged, throttled, rejected by status, throughput, submit latency
    /// percentiles and receipts by state (--json for JSON). Exits 1 when a bind
    /// fails, a request times out, a session is lost or, with --receipts, an
    /// acknowledged message gets no receipt (or a duplicate) within --receipt-timeout.
    Bench(Box<smsmax::bench::BenchArgs>),
    /// See every receipt come back: simulator, gateway and load generator in one process.
    ///
    /// Starts, on 127.0.0.1 with free ports, an SMSC simulator (its own
    /// message ids; a receipt per message after --receipt-delay-ms plus up to
    /// --receipt-jitter-ms, mostly DELIVRD with a few UNDELIV, EXPIRED and
    /// REJECTD: --outcomes) and a gateway on embedded storage in a fresh
    /// temporary directory (removed at the end unless --keep; the gateway's
    /// log goes to gateway.log there), relaying everything to the simulator.
    /// Then sends --messages submit_sm asking for receipts over --binds
    /// transceiver sessions (--bind-mode) with --window outstanding each, shows progress,
    /// and prints the bench report: acknowledged, throughput, submit latency,
    /// receipts by state, duplicates and "never receipted" (--json for JSON).
    /// Exits 0 only when every message was acknowledged and every
    /// acknowledged message got exactly one receipt (carrying the gateway's
    /// own message id) within --receipt-timeout after the last submit;
    /// otherwise says what was missing and exits 1.
    Demo(Box<smsmax::demo::DemoArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Passwd => passwd(),
        Command::Sim(args) => sim(&args),
        Command::Bench(args) => bench(*args),
        Command::Demo(args) => demo(&args),
        Command::CheckConfig { file } => match load(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
    }
}

/// Loads and validates; on failure prints the one message and returns exit status 2.
fn load(path: &Path) -> Result<Config, ExitCode> {
    let result = Config::load(path).and_then(|c| c.validate().map(|()| c));
    result.map_err(|e| {
        match &e {
            // Validation errors name the key but not the file.
            ConfigError::Invalid { .. } => eprintln!("smsmax: {}: {e}", path.display()),
            _ => eprintln!("smsmax: {e}"),
        }
        ExitCode::from(EXIT_CONFIG)
    })
}

fn serve(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(e) = smsmax::logging::init(&config.log) {
        eprintln!("smsmax: {}: {e}", path.display());
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("smsmax: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json_logs = config.log.format == LogFormat::Json;
    match runtime.block_on(smsmax::serve::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json_logs {
                // Also in the log stream, for log shippers.
                tracing::error!(error = format!("{e:#}"), "gateway stopped");
            }
            eprintln!("smsmax: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn passwd() -> ExitCode {
    let password = match read_password() {
        Ok(p) => p,
        Err(message) => {
            eprintln!("smsmax passwd: {message}");
            return ExitCode::FAILURE;
        }
    };
    match smsmax::password::hash_password(&password) {
        Ok(phc) => {
            println!("{phc}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("smsmax passwd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read_password() -> Result<String, String> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").map_err(|e| format!("cannot read the password: {e}"))?;
        let again =
            rpassword::prompt_password("Repeat password: ").map_err(|e| format!("cannot read the password: {e}"))?;
        if first != again {
            return Err("the passwords do not match".to_string());
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        let line = line.strip_suffix('\n').unwrap_or(&line);
        line.strip_suffix('\r').unwrap_or(line).to_string()
    };
    if password.is_empty() {
        return Err("the password is empty".to_string());
    }
    // SMPP 3.4 carries the bind password in 9 octets with its NUL: a longer
    // one could never be sent (smpplib silently cuts it; we refuse the bind).
    if password.len() > 8 {
        return Err(format!(
            "the password is {} octets; an SMPP bind password has at most 8",
            password.len()
        ));
    }
    std::io::stderr().flush().ok();
    Ok(password)
}

fn sim(args: &smsmax::sim::SimArgs) -> ExitCode {
    let settings = args.config().and_then(|config| Ok((config, args.duration()?)));
    let (config, duration) = match settings {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("smsmax sim: {e:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let log = smsmax::config::LogConfig {
        level: args.log_level.clone(),
        format: LogFormat::Text,
    };
    if let Err(e) = smsmax::logging::init(&log) {
        eprintln!("smsmax sim: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("smsmax sim: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(smsmax::sim::run(config, duration)) {
        Ok(stats) if args.json => match serde_json::to_string_pretty(&stats) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("smsmax sim: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(stats) => {
            println!("{stats}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("smsmax sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: smsmax::bench::BenchArgs) -> ExitCode {
    let json = args.json;
    let log = smsmax::config::LogConfig {
        level: args.log_level.clone(),
        format: LogFormat::Text,
    };
    if let Err(e) = smsmax::logging::init(&log) {
        eprintln!("smsmax bench: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("smsmax bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match runtime.block_on(smsmax::bench::run(args.into())) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("smsmax bench: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("smsmax bench: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{report}");
    }
    if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn demo(args: &smsmax::demo::DemoArgs) -> ExitCode {
    let workspace = match smsmax::demo::Workspace::create() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("smsmax demo: cannot create a temporary directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = smsmax::logging::init_file(&args.log_level, &workspace.log_path()) {
        eprintln!("smsmax demo: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let config = smsmax::demo::DemoConfig::from(args);
    let outcome = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => {
            // Ctrl-C abandons the run (the gateway and the simulator go with
            // the runtime) but still removes the temporary directory.
            let outcome = runtime.block_on(async {
                tokio::select! {
                    outcome = workspace.run(&config) => Some(outcome),
                    _ = tokio::signal::ctrl_c() => None,
                }
            });
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
            match outcome {
                Some(outcome) => outcome,
                None => {
                    eprintln!("smsmax demo: interrupted");
                    finish_workspace(workspace, args.keep);
                    return ExitCode::from(EXIT_INTERRUPTED);
                }
            }
        }
        Err(e) => Err(anyhow::Error::new(e).context("cannot start the async runtime")),
    };
    let mut ok = false;
    match &outcome {
        Ok(outcome) => {
            if args.json {
                match serde_json::to_string_pretty(&outcome.report) {
                    Ok(text) => println!("{text}"),
                    Err(e) => eprintln!("smsmax demo: {e}"),
                }
            } else {
                print!("{}", outcome.report);
            }
            let sim = &outcome.sim;
            if !args.quiet {
                eprintln!(
                    "simulator: {} submit_sm accepted, {} receipts sent, {} acknowledged by the gateway",
                    sim.submits_accepted,
                    sim.receipts_sent.total(),
                    sim.receipts_acked
                );
            }
            ok = outcome.is_ok();
            if ok {
                let r = &outcome.report;
                let line = format!(
                    "demo: ok: all {} acknowledged messages got exactly one receipt with the gateway's id ({})",
                    r.acknowledged,
                    smsmax::demo::states_line(r)
                );
                if args.json {
                    eprintln!("{line}");
                } else {
                    println!("{line}");
                }
            } else {
                for problem in &outcome.problems {
                    eprintln!("smsmax demo: FAILED: {problem}");
                }
            }
        }
        Err(e) => eprintln!("smsmax demo: {e:#}"),
    }
    if !ok {
        let warnings = workspace.log_warnings(20);
        if !warnings.is_empty() {
            eprintln!("last warnings of the gateway log:");
            for line in warnings {
                eprintln!("  {line}");
            }
        }
    }
    finish_workspace(workspace, args.keep);
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Removes the demo's temporary directory, or keeps it and says where.
fn finish_workspace(workspace: smsmax::demo::Workspace, keep: bool) {
    match workspace.finish(keep) {
        Ok(Some(path)) => eprintln!(
            "smsmax demo: kept {} (storage in data/, log in gateway.log)",
            path.display()
        ),
        Ok(None) => {}
        Err(e) => eprintln!("smsmax demo: could not remove the temporary directory: {e}"),
    }
}
