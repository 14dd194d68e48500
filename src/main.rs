//! The `smsmax` command line.

use std::{
    io::{BufRead, IsTerminal, Write},
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Parser, Subcommand};
use smsmax::config::{Config, ConfigError, LogFormat};

/// Exit status for an unusable configuration (the same as for bad command-line usage).
const EXIT_CONFIG: u8 = 2;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Passwd => passwd(),
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
