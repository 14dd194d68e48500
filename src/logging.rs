//! Process-wide logging through `tracing`, configured by the `[log]` table.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// `log.level` is not a valid tracing filter directive.
    #[error("`log.level`: invalid filter {level:?}: {source}")]
    Filter {
        level: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// The log file cannot be opened.
    #[error("cannot open the log file {path}: {source}")]
    File {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A global subscriber was installed already (e.g. `init` called twice).
    #[error("logging is already initialised")]
    AlreadyInitialised,
}

/// Parses `log.level` (e.g. `info`, `smsmax=debug,warn`) as an `EnvFilter`.
pub fn filter(level: &str) -> Result<EnvFilter, LoggingError> {
    EnvFilter::try_new(level).map_err(|source| LoggingError::Filter {
        level: level.to_string(),
        source,
    })
}

/// Installs the global tracing subscriber: `log.level` as the filter, output
/// to standard error as human-readable text or as one JSON object per line
/// (`log.format = "json"`, for log shippers). Call once, early in `main`.
pub fn init(config: &LogConfig) -> Result<(), LoggingError> {
    let filter = filter(&config.level)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    result.map_err(|_| LoggingError::AlreadyInitialised)
}

/// Like [`init`], but appends text lines (no colours) to the file at
/// `path` instead of standard error: `smsmax demo` keeps the gateway's log
/// out of the terminal its progress bar and report are on.
pub fn init_file(level: &str, path: &std::path::Path) -> Result<(), LoggingError> {
    let filter = filter(level)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| LoggingError::File {
            path: path.to_path_buf(),
            source,
        })?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .try_init()
        .map_err(|_| LoggingError::AlreadyInitialised)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse() {
        assert!(filter("info").is_ok());
        assert!(filter("smsmax=debug,warn").is_ok());
        let err = filter("smsmax=loud").unwrap_err();
        assert!(err.to_string().starts_with("`log.level`: invalid filter"));
    }
}
