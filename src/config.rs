//! The gateway's configuration: TOML, every key overridable by environment.
//!
//! The types below are the schema (unknown keys are refused); loading,
//! environment overrides and validation are in this module too.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub node: NodeConfig,
    #[serde(default)]
    pub smpp: SmppConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub security: SecurityConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// The ESMEs allowed to bind.
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    /// Carrier SMSCs messages are relayed to; none: the relay does not run.
    #[serde(default)]
    pub upstreams: Vec<crate::upstream::UpstreamConfig>,
    /// Routing rules from destinations to upstreams.
    #[serde(default)]
    pub routes: Vec<crate::relay::routing::RouteConfig>,
    /// When failed submits are retried.
    #[serde(default)]
    pub retry: crate::relay::retry::RetryPolicy,
    /// The relay workers.
    #[serde(default)]
    pub relay: RelayConfig,
    /// Receipts from upstreams: matching them to our messages.
    #[serde(default)]
    pub receipts: ReceiptsConfig,
    /// Each client's outbox: receipts and MO messages waiting for it.
    #[serde(default)]
    pub outbox: OutboxConfig,
    /// Which client gets a mobile-originated message, by its destination address.
    #[serde(default)]
    pub mo_routes: Vec<MoRouteConfig>,
}

/// The `[receipts]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiptsConfig {
    /// How long a receipt that arrived before its submit_sm_resp was
    /// recorded keeps being retried against new upstream ids, in seconds.
    /// After that it stays stored as unmatched (and counted).
    pub hold_secs: u64,
    /// Most early receipts held in memory for matching; beyond, new ones are
    /// only stored as unmatched (and retried at the next start).
    pub hold_max: usize,
    /// What a client whose message went out in several parts receives:
    /// `per_part` (one receipt per part, each with our id) or `final` (one
    /// receipt once every part is final; DELIVRD only if all were delivered).
    pub part_policy: PartPolicy,
}

impl Default for ReceiptsConfig {
    fn default() -> Self {
        ReceiptsConfig {
            hold_secs: 300,
            hold_max: 100_000,
            part_policy: PartPolicy::Final,
        }
    }
}

/// See [`ReceiptsConfig::part_policy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartPolicy {
    PerPart,
    Final,
}

/// The `[outbox]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// How long a receipt or MO message waits for its client to bind, in
    /// seconds; older entries are dropped, logged and counted.
    pub max_age_secs: u64,
    /// Most deliver_sm awaiting a response per client session.
    pub window: usize,
    /// Most entries taken from a client's outbox at once.
    pub batch: usize,
    /// How long a taken entry is leased before it returns (crash safety), in seconds.
    pub lease_secs: u64,
    /// First pause before resending a deliver_sm the client did not accept, in milliseconds.
    pub retry_min_ms: u64,
    /// Longest pause between resends, in milliseconds.
    pub retry_max_ms: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            max_age_secs: 72 * 3600,
            window: 64,
            batch: 256,
            lease_secs: 60,
            retry_min_ms: 1_000,
            retry_max_ms: 60_000,
        }
    }
}

/// One `[[mo_routes]]` rule: MO messages whose destination address starts
/// with `prefix` go to client `system_id` (longest prefix wins; `""` matches all).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoRouteConfig {
    pub prefix: String,
    pub system_id: String,
}

/// The `[relay]` section: how queued messages are taken and submitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Most messages reserved from the queue at once.
    pub batch: usize,
    /// How long a reserved message stays leased (a crashed relay's messages come back after it).
    pub lease_secs: u64,
    /// Most messages being submitted at once.
    pub concurrency: usize,
    /// Pause before looking again when nothing is due, in milliseconds.
    pub idle_poll_ms: u64,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch: 256,
            lease_secs: 60,
            concurrency: 512,
            idle_poll_ms: 50,
        }
    }
}

/// This gateway node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// 0..=65535, part of every message id so that nodes never collide.
    pub id: u16,
}

/// The ESME-facing SMPP server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmppConfig {
    /// Plain TCP listener.
    pub listen: SocketAddr,
    /// SMPP over TLS; off unless configured.
    pub tls: Option<TlsConfig>,
    /// Connections accepted at once (TCP and TLS together).
    pub max_connections: usize,
    /// A connection that has not bound within this time is closed.
    pub bind_timeout_secs: u64,
    /// enquire_link is sent after this much silence from the client.
    pub enquire_link_interval_secs: u64,
    /// A request we send (enquire_link, deliver_sm) unanswered for this long fails.
    pub response_timeout_secs: u64,
    /// Largest command_length accepted; a larger frame closes the connection.
    pub max_command_length: u32,
    /// Our system_id in bind responses.
    pub system_id: String,
}

impl Default for SmppConfig {
    fn default() -> Self {
        SmppConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 2775)),
            tls: None,
            max_connections: 10_000,
            bind_timeout_secs: 10,
            enquire_link_interval_secs: 30,
            response_timeout_secs: 10,
            max_command_length: 64 * 1024,
            system_id: "SMSMax".to_string(),
        }
    }
}

/// SMPP over TLS.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub listen: SocketAddr,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Where messages are kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Only `embedded` in this version.
    pub backend: StorageBackend,
    /// Data directory of the embedded engine.
    pub data_dir: PathBuf,
    /// Most messages in one group commit.
    pub max_batch: usize,
    /// Which embedded engine: `journal` (in memory + append-only journal,
    /// the default: fastest, memory grows with `max_messages`) or `redb`
    /// (on-disk B-tree: memory bounded by `cache_mb`, ~4x slower).
    pub engine: EmbeddedEngine,
    /// Page cache of the redb engine, in MiB (most of the gateway's
    /// memory under load with that engine).
    pub cache_mb: usize,
    /// Journal engine: records kept in memory at most (in flight and
    /// final). Final ones are dropped oldest first to make room; when all
    /// are in flight, submits get ESME_RMSGQFUL.
    pub max_messages: u64,
    /// Journal engine: how long a final record (and its receipts) stays
    /// queryable, in seconds.
    pub retain_final_secs: u64,
    /// Journal engine: how long a message with every part with an upstream
    /// waits for its receipt before its record is dropped (carriers lose
    /// some receipts; a later one is kept as unmatched), in seconds.
    pub retain_enroute_secs: u64,
    /// Journal engine: size of a journal segment file, in MiB. Segments are
    /// zero-filled to this size before use, and the next one is prepared
    /// ahead: the journal occupies up to two of them beyond its data.
    pub segment_mb: u64,
    /// Journal engine: journal written since the last snapshot that starts
    /// a new one, in MiB (bounds the replay at start).
    pub snapshot_mb: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: StorageBackend::Embedded,
            data_dir: PathBuf::from("data"),
            max_batch: 4096,
            engine: EmbeddedEngine::Journal,
            cache_mb: 256,
            max_messages: 2_000_000,
            retain_final_secs: 86_400,
            retain_enroute_secs: 259_200,
            segment_mb: 64,
            snapshot_mb: 512,
        }
    }
}

/// The engine behind the embedded profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddedEngine {
    Journal,
    Redb,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    Embedded,
}

/// Protection against abuse of the bind path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Failed binds allowed per source address per minute; beyond, binds fail at once.
    pub failed_binds_per_address_per_minute: u32,
    /// Failed binds allowed per system_id per minute.
    pub failed_binds_per_system_id_per_minute: u32,
    /// Threads that verify argon2 password hashes (a bounded pool, so a flood
    /// of binds cannot starve bound sessions).
    pub password_workers: usize,
    /// Password checks waiting for a worker; beyond, binds fail with ESME_RBINDFAIL.
    pub password_queue: usize,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            failed_binds_per_address_per_minute: 20,
            failed_binds_per_system_id_per_minute: 20,
            password_workers: 1,
            password_queue: 64,
        }
    }
}

/// Logging.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// tracing filter, e.g. `info` or `smsmax=debug`.
    pub level: String,
    /// `text` for people, `json` for log shippers.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_string(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The kinds of bind a client may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BindType {
    Transmitter,
    Receiver,
    Transceiver,
}

/// One ESME account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// At most 15 characters (SMPP system_id).
    pub system_id: String,
    /// argon2id PHC string from `smsmax passwd`; never a plaintext password.
    pub password_hash: String,
    /// Source networks allowed to bind (CIDR), e.g. `["10.0.0.0/8"]`.
    #[serde(default = "default_networks")]
    pub allowed_networks: Vec<ipnet::IpNet>,
    /// Binds of this system_id at once, over all connections.
    #[serde(default = "default_max_binds")]
    pub max_binds: usize,
    #[serde(default = "default_bind_types")]
    pub bind_types: Vec<BindType>,
    /// Message parts per second (GCRA); over it the answer is ESME_RTHROTTLED.
    #[serde(default = "default_throughput")]
    pub throughput: u32,
    /// Requests outstanding per session; beyond, ESME_RTHROTTLED.
    #[serde(default = "default_window")]
    pub window: usize,
}

fn default_networks() -> Vec<ipnet::IpNet> {
    vec!["0.0.0.0/0".parse().expect("literal"), "::/0".parse().expect("literal")]
}
fn default_max_binds() -> usize {
    4
}
fn default_bind_types() -> Vec<BindType> {
    vec![BindType::Transmitter, BindType::Receiver, BindType::Transceiver]
}
fn default_throughput() -> u32 {
    1000
}
fn default_window() -> usize {
    256
}

// ---------------------------------------------------------------------------
// Loading: TOML file + `SMSMAX_*` environment overrides.
// ---------------------------------------------------------------------------

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "SMSMAX_";
/// Separator of nested keys in those variables: `SMSMAX_SMPP__LISTEN` is `smpp.listen`.
pub const ENV_SEPARATOR: &str = "__";
/// Names the configuration file for `smsmax serve`; not a configuration key,
/// so it is not treated as an override.
pub const ENV_CONFIG_FILE: &str = "SMSMAX_CONFIG";

/// Largest `smpp.max_command_length` accepted (16 MiB).
pub const MAX_COMMAND_LENGTH_LIMIT: u32 = 16 * 1024 * 1024;
/// Smallest `smpp.max_command_length` accepted.
pub const MIN_COMMAND_LENGTH_LIMIT: u32 = 64;
/// Longest SMPP system_id (a 16-octet C-string, NUL included).
pub const MAX_SYSTEM_ID_LEN: usize = 15;

/// Where a rejected value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The configuration file.
    File(PathBuf),
    /// An environment variable, by name.
    Env(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Env(var) => write!(f, "environment variable {var}"),
        }
    }
}

/// A configuration that cannot be used. Every variant displays as one line
/// that names the file or environment variable and the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file does not exist.
    #[error("config file {} not found", path.display())]
    NotFound { path: PathBuf },
    /// The configuration file exists but cannot be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{}:{line}:{column}: TOML syntax error: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A key the schema does not know (often a typo).
    #[error("{origin}: unknown key `{key}`{}", one_of(expected))]
    UnknownKey {
        origin: Origin,
        key: String,
        expected: Vec<&'static str>,
    },
    /// A required key is absent.
    #[error("{origin}: missing key `{key}`")]
    MissingKey { origin: Origin, key: String },
    /// A value of the wrong TOML type (e.g. a string where a number belongs).
    #[error("{origin}: `{key}` has the wrong type: expected {expected}, found {found}")]
    WrongType {
        origin: Origin,
        key: String,
        expected: String,
        found: String,
    },
    /// A value of the right type that cannot be parsed or is out of range
    /// (e.g. a malformed socket address, an unknown enum value).
    #[error("{origin}: `{key}`: {message}")]
    BadValue {
        origin: Origin,
        key: String,
        message: String,
    },
    /// A value that failed [`Config::validate`].
    #[error("`{key}`: {message}")]
    Invalid { key: String, message: String },
}

fn one_of(expected: &[&str]) -> String {
    match expected {
        [] => String::new(),
        [one] => format!(" (the only key allowed here is `{one}`)"),
        many => format!(
            " (expected one of {})",
            many.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
        ),
    }
}

impl ConfigError {
    /// The offending key path (e.g. `clients[0].window`), when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. }
            | ConfigError::MissingKey { key, .. }
            | ConfigError::WrongType { key, .. }
            | ConfigError::BadValue { key, .. }
            | ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::NotFound { .. } | ConfigError::Read { .. } | ConfigError::Syntax { .. } => None,
        }
    }

    fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The top-level keys of [`Config`] (checked by a test against the schema).
const SECTIONS: &[&str] = &[
    "node",
    "smpp",
    "storage",
    "security",
    "log",
    "clients",
    "upstreams",
    "routes",
    "retry",
    "relay",
    "receipts",
    "outbox",
    "mo_routes",
];

/// One `SMSMAX_*` variable, split into its key path.
#[derive(Clone, Debug)]
struct EnvOverride {
    var: String,
    key: Vec<String>,
    value: String,
}

/// The environment overrides as a figment provider.
struct EnvOverrides(Vec<EnvOverride>);

impl EnvOverrides {
    /// Keeps the `SMSMAX_*` variables (prefix matched case-insensitively,
    /// except `SMSMAX_CONFIG`), lower-cases them and splits them on `__`.
    /// Variables with an empty key segment are ignored. A list index in the
    /// key (`SMSMAX_CLIENTS__0__WINDOW`) is refused: lists are replaced whole.
    fn collect<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut out = Vec::new();
        for (var, value) in vars {
            let var: String = var.into();
            let trimmed = var.trim();
            let Some(head) = trimmed.get(..ENV_PREFIX.len()) else {
                continue;
            };
            if !head.eq_ignore_ascii_case(ENV_PREFIX) || trimmed.eq_ignore_ascii_case(ENV_CONFIG_FILE) {
                continue;
            }
            let rest = &trimmed[ENV_PREFIX.len()..];
            let key: Vec<String> = rest
                .split(ENV_SEPARATOR)
                .map(|s| s.trim().to_ascii_lowercase())
                .collect();
            if key.iter().any(|s| s.is_empty()) {
                continue;
            }
            // One segment that names no section (SMSMAX_SCYLLA_URI for the
            // tests, SMSMAX_BIN for scripts) is not configuration; a key
            // path (with `__`) always is, so a misspelt section is refused.
            if key.len() == 1 && !SECTIONS.contains(&key[0].as_str()) {
                continue;
            }
            if let Some(pos) = key.iter().position(|s| is_index(s)) {
                let list_var = format!("{ENV_PREFIX}{}", key[..pos].join(ENV_SEPARATOR).to_ascii_uppercase());
                return Err(ConfigError::BadValue {
                    origin: Origin::Env(var.clone()),
                    key: key_path(&key),
                    message: format!(
                        "list elements cannot be overridden one by one; \
                         set {list_var} to the whole list (an inline TOML array) instead"
                    ),
                });
            }
            out.push(EnvOverride {
                var,
                key,
                value: value.into(),
            });
        }
        // Deterministic when two variables touch the same key.
        out.sort_by(|a, b| a.var.cmp(&b.var));
        Ok(EnvOverrides(out))
    }

    /// The variable that supplied the value at `key` (or a table above it).
    fn origin_of(&self, key: &[String]) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|o| key.starts_with(&o.key))
            .map(|o| o.var.as_str())
    }
}

impl figment::Provider for EnvOverrides {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(format!("`{ENV_PREFIX}` environment variable(s)"))
            .interpolater(|_profile, keys| format!("{ENV_PREFIX}{}", keys.join(ENV_SEPARATOR).to_ascii_uppercase()))
    }

    fn data(&self) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        use figment::value::{Dict, Value};

        fn insert(dict: &mut Dict, key: &[String], value: Value) {
            let Some((first, rest)) = key.split_first() else {
                return;
            };
            if rest.is_empty() {
                dict.insert(first.clone(), value);
                return;
            }
            let entry = dict.entry(first.clone()).or_insert_with(|| Value::from(Dict::new()));
            if entry.as_dict().is_none() {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }

        let mut dict = Dict::new();
        for o in &self.0 {
            let value: Value = o.value.parse().unwrap_or_else(|e| match e {});
            insert(&mut dict, &o.key, value);
        }
        Ok(figment::Profile::Default.collect(dict))
    }
}

fn is_index(segment: &str) -> bool {
    !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit())
}

/// `["clients", "0", "window"]` → `clients[0].window`.
fn key_path<S: AsRef<str>>(segments: &[S]) -> String {
    let mut out = String::new();
    for s in segments {
        let s = s.as_ref();
        if is_index(s) {
            out.push('[');
            out.push_str(s);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(s);
        }
    }
    out
}

/// Friendlier names for what serde expected.
fn describe_expected(expected: &str) -> String {
    let int = |max: u64| format!("an integer from 0 to {max}");
    match expected {
        "u16" => int(u16::MAX.into()),
        "u32" => int(u32::MAX.into()),
        "u64" | "usize" => "a non-negative integer".to_string(),
        "a string" | "a borrowed string" => "a string".to_string(),
        "a sequence" => "an array".to_string(),
        other if other.starts_with("struct ") => "a table".to_string(),
        other => other.to_string(),
    }
}

/// Turns figment's error into ours, attributing it to the file or to the
/// environment variable that supplied the value.
fn convert_figment_error(err: figment::Error, file: &Path, env: &EnvOverrides) -> ConfigError {
    use figment::error::Kind;

    let path = err.path.clone();
    let origin_for = |key: &[String]| match env.origin_of(key) {
        Some(var) => Origin::Env(var.to_string()),
        None => Origin::File(file.to_path_buf()),
    };
    match err.kind {
        Kind::UnknownField(field, expected) => {
            // figment has usually put the field at the end of the path already.
            let mut full = path.clone();
            if full.last() != Some(&field) {
                full.push(field);
            }
            ConfigError::UnknownKey {
                origin: origin_for(&full),
                key: key_path(&full),
                expected: expected.to_vec(),
            }
        }
        Kind::MissingField(field) => {
            let origin = origin_for(&path);
            let mut full = path;
            full.push(field.into_owned());
            ConfigError::MissingKey {
                origin,
                key: key_path(&full),
            }
        }
        Kind::InvalidType(found, expected) => ConfigError::WrongType {
            origin: origin_for(&path),
            key: key_path(&path),
            expected: describe_expected(&expected),
            found: found.to_string(),
        },
        Kind::InvalidValue(found, expected) => ConfigError::BadValue {
            origin: origin_for(&path),
            key: key_path(&path),
            message: format!("invalid value {found}, expected {}", describe_expected(&expected)),
        },
        Kind::UnknownVariant(found, expected) => ConfigError::BadValue {
            origin: origin_for(&path),
            key: key_path(&path),
            message: format!(
                "unknown value `{found}`, expected {}",
                expected
                    .iter()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        },
        kind => ConfigError::BadValue {
            origin: origin_for(&path),
            key: if path.is_empty() {
                "(top level)".to_string()
            } else {
                key_path(&path)
            },
            message: kind.to_string(),
        },
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl Config {
    /// Reads the TOML file at `path`, then applies the `SMSMAX_*` environment
    /// variables of this process on top (`SMSMAX_SMPP__LISTEN` sets
    /// `smpp.listen`). Does not call [`Config::validate`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let vars = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v)));
        let vars = vars.map(|(k, v)| (k, v.to_string_lossy().into_owned()));
        Config::load_with_env(path, vars)
    }

    /// As [`Config::load`], with the environment given explicitly as
    /// `(name, value)` pairs (variables without the `SMSMAX_` prefix are
    /// ignored). Tests use this so that they never touch the process environment.
    pub fn load_with_env<I, K, V>(path: &Path, vars: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ConfigError::NotFound {
                    path: path.to_path_buf(),
                }
            } else {
                ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        // Parse once with `toml` for a precise syntax-error position; figment
        // reports those as a multi-line message.
        if let Err(e) = text.parse::<toml::Table>() {
            let (line, column) = line_column(&text, e.span().map_or(0, |s| s.start));
            return Err(ConfigError::Syntax {
                path: path.to_path_buf(),
                line,
                column,
                message: e
                    .message()
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
        use figment::providers::Format as _;
        let env = EnvOverrides::collect(vars)?;
        let figment = figment::Figment::new()
            .merge(figment::providers::Toml::string(&text))
            .merge(&env);
        figment
            .extract::<Config>()
            .map_err(|e| convert_figment_error(e, path, &env))
    }

    /// Checks the values that the types alone do not constrain. Returns the
    /// first problem found, naming its key (e.g. `clients[0].window`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn at_least_1<T: PartialOrd + From<u8> + std::fmt::Display>(key: &str, value: T) -> Result<(), ConfigError> {
            if value < T::from(1) {
                return Err(ConfigError::invalid(key, format!("must be at least 1, got {value}")));
            }
            Ok(())
        }
        fn system_id(key: &str, id: &str) -> Result<(), ConfigError> {
            if id.is_empty() {
                return Err(ConfigError::invalid(key, "must not be empty"));
            }
            if !id.is_ascii() || id.bytes().any(|b| b.is_ascii_control()) {
                return Err(ConfigError::invalid(key, format!("{id:?} must be printable ASCII")));
            }
            if id.len() > MAX_SYSTEM_ID_LEN {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "{id:?} is {} characters long, at most {MAX_SYSTEM_ID_LEN} are allowed",
                        id.len()
                    ),
                ));
            }
            Ok(())
        }

        // [smpp]
        let smpp = &self.smpp;
        system_id("smpp.system_id", &smpp.system_id)?;
        at_least_1("smpp.max_connections", smpp.max_connections)?;
        at_least_1("smpp.bind_timeout_secs", smpp.bind_timeout_secs)?;
        at_least_1("smpp.enquire_link_interval_secs", smpp.enquire_link_interval_secs)?;
        at_least_1("smpp.response_timeout_secs", smpp.response_timeout_secs)?;
        if !(MIN_COMMAND_LENGTH_LIMIT..=MAX_COMMAND_LENGTH_LIMIT).contains(&smpp.max_command_length) {
            return Err(ConfigError::invalid(
                "smpp.max_command_length",
                format!(
                    "must be between {MIN_COMMAND_LENGTH_LIMIT} and {MAX_COMMAND_LENGTH_LIMIT} (16 MiB), got {}",
                    smpp.max_command_length
                ),
            ));
        }
        if let Some(tls) = &smpp.tls {
            if tls.listen == smpp.listen {
                return Err(ConfigError::invalid(
                    "smpp.tls.listen",
                    format!("{} is also `smpp.listen`", tls.listen),
                ));
            }
            for (key, file) in [("smpp.tls.cert", &tls.cert), ("smpp.tls.key", &tls.key)] {
                match std::fs::metadata(file) {
                    Ok(m) if m.is_file() => {}
                    Ok(_) => return Err(ConfigError::invalid(key, format!("{} is not a file", file.display()))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(ConfigError::invalid(key, format!("file {} not found", file.display())))
                    }
                    Err(e) => {
                        return Err(ConfigError::invalid(
                            key,
                            format!("cannot access {}: {e}", file.display()),
                        ))
                    }
                }
            }
        }

        // [storage]
        if self.storage.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("storage.data_dir", "must not be empty"));
        }
        at_least_1("storage.max_batch", self.storage.max_batch)?;
        at_least_1("storage.cache_mb", self.storage.cache_mb)?;
        at_least_1("storage.max_messages", self.storage.max_messages)?;
        at_least_1("storage.segment_mb", self.storage.segment_mb)?;
        at_least_1("storage.snapshot_mb", self.storage.snapshot_mb)?;

        // [security]
        let sec = &self.security;
        at_least_1(
            "security.failed_binds_per_address_per_minute",
            sec.failed_binds_per_address_per_minute,
        )?;
        at_least_1(
            "security.failed_binds_per_system_id_per_minute",
            sec.failed_binds_per_system_id_per_minute,
        )?;
        at_least_1("security.password_workers", sec.password_workers)?;
        at_least_1("security.password_queue", sec.password_queue)?;

        // [log]
        if let Err(e) = crate::logging::filter(&self.log.level) {
            let message = match e {
                crate::logging::LoggingError::Filter { level, source } => {
                    format!("{level:?} is not a valid tracing filter: {source}")
                }
                other => other.to_string(),
            };
            return Err(ConfigError::invalid("log.level", message));
        }

        // [[clients]]
        let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for (i, c) in self.clients.iter().enumerate() {
            let key = |field: &str| format!("clients[{i}].{field}");
            system_id(&key("system_id"), &c.system_id)?;
            if let Some(first) = seen.insert(c.system_id.as_str(), i) {
                return Err(ConfigError::invalid(
                    key("system_id"),
                    format!(
                        "{:?} is already used by clients[{first}]; system_ids must be unique",
                        c.system_id
                    ),
                ));
            }
            if let Err(e) = crate::password::check_phc(&c.password_hash) {
                return Err(ConfigError::invalid(
                    key("password_hash"),
                    format!("must be an argon2id PHC string from `smsmax passwd`: {e}"),
                ));
            }
            if c.allowed_networks.is_empty() {
                return Err(ConfigError::invalid(
                    key("allowed_networks"),
                    "must list at least one network (e.g. \"0.0.0.0/0\" for any IPv4 address)",
                ));
            }
            at_least_1(&key("max_binds"), c.max_binds)?;
            if c.bind_types.is_empty() {
                return Err(ConfigError::invalid(
                    key("bind_types"),
                    "must list at least one of \"transmitter\", \"receiver\", \"transceiver\"",
                ));
            }
            at_least_1(&key("throughput"), c.throughput)?;
            if !(1..=65_535).contains(&c.window) {
                return Err(ConfigError::invalid(
                    key("window"),
                    format!("must be between 1 and 65535, got {}", c.window),
                ));
            }
        }

        // [[upstreams]]
        let mut names: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for (i, u) in self.upstreams.iter().enumerate() {
            if let Some(first) = names.insert(u.name.as_str(), i) {
                return Err(ConfigError::invalid(
                    format!("upstreams[{i}].name"),
                    format!(
                        "{:?} is already used by upstreams[{first}]; names must be unique",
                        u.name
                    ),
                ));
            }
            if let Err(e) = u.validate() {
                return Err(ConfigError::invalid(format!("upstreams[{i}]"), format!("{e:#}")));
            }
        }

        // [[routes]]
        let route_error = |e: crate::relay::routing::RouteError| {
            use crate::relay::routing::RouteError as E;
            let (route, field) = match &e {
                E::NoUpstreams { route }
                | E::AllWeightsZero { route }
                | E::DuplicateUpstream { route, .. }
                | E::EmptyUpstreamName { route }
                | E::UnknownUpstream { route, .. } => (*route, "upstreams"),
                E::EmptySystemIds { route } => (*route, "system_ids"),
                E::EmptySourcePrefixes { route } => (*route, "source_prefixes"),
                E::DuplicateMatcher { route, .. } => (*route, "prefix"),
            };
            let prefix = format!("routes[{route}]: ");
            let text = e.to_string();
            let message = text.strip_prefix(&prefix).unwrap_or(&text).to_string();
            ConfigError::invalid(format!("routes[{route}].{field}"), message)
        };
        let router = crate::relay::routing::Router::new(self.routes.clone()).map_err(route_error)?;
        router
            .check_upstreams(|name| names.contains_key(name))
            .map_err(route_error)?;

        // [retry]
        if let Err(e) = self.retry.validate() {
            return Err(ConfigError::invalid("retry", e.to_string()));
        }

        // [relay]
        at_least_1("relay.batch", self.relay.batch)?;
        at_least_1("relay.lease_secs", self.relay.lease_secs)?;
        at_least_1("relay.concurrency", self.relay.concurrency)?;
        at_least_1("relay.idle_poll_ms", self.relay.idle_poll_ms)?;

        // [receipts], [outbox]
        at_least_1("receipts.hold_max", self.receipts.hold_max)?;
        at_least_1("outbox.max_age_secs", self.outbox.max_age_secs)?;
        at_least_1("outbox.window", self.outbox.window)?;
        at_least_1("outbox.batch", self.outbox.batch)?;
        at_least_1("outbox.lease_secs", self.outbox.lease_secs)?;
        at_least_1("outbox.retry_min_ms", self.outbox.retry_min_ms)?;
        if self.outbox.retry_max_ms < self.outbox.retry_min_ms {
            return Err(ConfigError::invalid(
                "outbox.retry_max_ms",
                "must be at least outbox.retry_min_ms",
            ));
        }

        // [[mo_routes]]
        let mut prefixes = std::collections::HashSet::new();
        for (i, route) in self.mo_routes.iter().enumerate() {
            if !route.prefix.bytes().all(|b| b.is_ascii_digit() || b == b'+') {
                return Err(ConfigError::invalid(
                    format!("mo_routes[{i}].prefix"),
                    "must be digits (an optional leading +)",
                ));
            }
            if !prefixes.insert(route.prefix.as_str()) {
                return Err(ConfigError::invalid(
                    format!("mo_routes[{i}].prefix"),
                    format!("{:?} is already routed by an earlier rule", route.prefix),
                ));
            }
            if !self.clients.iter().any(|c| c.system_id == route.system_id) {
                return Err(ConfigError::invalid(
                    format!("mo_routes[{i}].system_id"),
                    format!("{:?} is not a configured client", route.system_id),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An argon2id hash made by `smsmax passwd` (validation only parses it).
    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$\
                        ONj2yzNjOFYT9KzANevmuA$+yqXvVXK0ZLhSPXYpETrdKwtkDOPnJPxiCj/TIXVFWE";

    const NO_ENV: [(&str, &str); 0] = [];

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("smsmax.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        let (_dir, path) = file(text);
        Config::load_with_env(&path, NO_ENV)
    }

    fn load_env(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let (_dir, path) = file(text);
        Config::load_with_env(&path, env.iter().copied())
    }

    fn client(extra: &str) -> String {
        format!("[[clients]]\nsystem_id = \"demo\"\npassword_hash = \"{HASH}\"\n{extra}\n")
    }

    /// Loads, validates and returns the validation error.
    fn invalid(text: &str) -> ConfigError {
        let config = load(text).expect("loads");
        config.validate().expect_err("must fail validation")
    }

    fn assert_invalid(text: &str, key: &str, fragment: &str) {
        let err = invalid(text);
        assert!(
            matches!(&err, ConfigError::Invalid { key: k, .. } if k == key),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(key) && msg.contains(fragment), "{msg}");
    }

    #[test]
    fn relay_sections_are_validated() {
        let upstream = "[[upstreams]]\nname = \"carrier\"\nhost = \"127.0.0.1\"\nport = 2776\nsystem_id = \"smsmax\"\npassword = \"pw\"\n";
        let ok = load(&format!("{upstream}[[routes]]\nupstreams = [{{ name = \"carrier\" }}]\n[retry]\nmax_attempts = 3\n[relay]\nbatch = 10\n")).unwrap();
        ok.validate().unwrap();
        assert_eq!(ok.upstreams.len(), 1);
        assert_eq!(ok.routes.len(), 1);
        assert_eq!(ok.retry.max_attempts, 3);
        assert_eq!(
            (ok.relay.batch, ok.relay.concurrency),
            (10, RelayConfig::default().concurrency)
        );
        assert_invalid(
            &format!("{upstream}[[routes]]\nprefix = \"44\"\nupstreams = [{{ name = \"nobody\" }}]\n"),
            "routes[0].upstreams",
            "unknown upstream \"nobody\"",
        );
        assert_invalid(&format!("{upstream}{upstream}"), "upstreams[1].name", "already used");
        assert_invalid("[retry]\nmax_attempts = 0", "retry", "");
        assert_invalid("[relay]\nconcurrency = 0", "relay.concurrency", "at least 1");
        assert_invalid("[outbox]\nwindow = 0", "outbox.window", "at least 1");
        assert_invalid(
            "[outbox]\nretry_min_ms = 5000\nretry_max_ms = 10",
            "outbox.retry_max_ms",
            "at least outbox.retry_min_ms",
        );
        assert!(
            matches!(load("[receipts]\npart_policy = \"some\"\n"), Err(ConfigError::BadValue { ref key, .. }) if key == "receipts.part_policy")
        );
        assert_invalid(
            "[[mo_routes]]\nprefix = \"44x\"\nsystem_id = \"x\"",
            "mo_routes[0].prefix",
            "digits",
        );
        assert_invalid(
            "[[mo_routes]]\nprefix = \"44\"\nsystem_id = \"nobody\"",
            "mo_routes[0].system_id",
            "not a configured client",
        );
        assert_invalid("[[routes]]\nupstreams = []", "routes[0].upstreams", "no upstreams");
    }

    // --- loading -----------------------------------------------------------

    #[test]
    fn empty_file_gives_defaults() {
        let config = load("").unwrap();
        assert_eq!(config.smpp, SmppConfig::default());
        assert_eq!(config.storage, StorageConfig::default());
        assert!(config.clients.is_empty());
        config.validate().unwrap();
    }

    #[test]
    fn full_client_with_defaults() {
        let config = load(&client("")).unwrap();
        let c = &config.clients[0];
        assert_eq!(c.system_id, "demo");
        assert_eq!(c.window, 256);
        assert_eq!(c.max_binds, 4);
        assert_eq!(c.throughput, 1000);
        assert_eq!(c.bind_types.len(), 3);
        assert_eq!(c.allowed_networks.len(), 2);
        config.validate().unwrap();
    }

    #[test]
    fn missing_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.toml");
        let err = Config::load_with_env(&path, NO_ENV).unwrap_err();
        assert!(matches!(err, ConfigError::NotFound { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("not found"), "{msg}");
    }

    #[test]
    fn directory_is_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Config::load_with_env(dir.path(), NO_ENV).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
        assert!(err.to_string().starts_with("cannot read config file"));
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let err = load("[smpp]\nlisten = \"127.0.0.1:2775\"\nsystem_id = \n").unwrap_err();
        match &err {
            ConfigError::Syntax { line, column, .. } => {
                assert_eq!(*line, 3, "{err}");
                assert!(*column >= 12, "{err}");
            }
            other => panic!("{other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(":3:") && msg.contains("TOML syntax error"), "{msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
    }

    #[test]
    fn duplicate_table_is_a_syntax_error() {
        let err = load("[smpp]\n[smpp]\n").unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { line: 2, .. }), "{err:?}");
    }

    #[test]
    fn unknown_top_level_key() {
        let err = load("[smtp]\nlisten = \"127.0.0.1:25\"\n").unwrap_err();
        assert_eq!(err.key(), Some("smtp"), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("unknown key `smtp`"), "{msg}");
        assert!(msg.contains("`smpp`"), "lists the allowed keys: {msg}");
    }

    #[test]
    fn unknown_nested_key() {
        let err = load("[smpp]\nlisen = \"127.0.0.1:2775\"\n").unwrap_err();
        assert!(
            matches!(&err, ConfigError::UnknownKey { key, origin: Origin::File(_), .. } if key == "smpp.lisen"),
            "{err:?}"
        );
        assert!(err.to_string().contains("smsmax.toml: unknown key `smpp.lisen`"));
    }

    #[test]
    fn unknown_key_in_a_client() {
        let err = load(&client("windw = 10")).unwrap_err();
        assert_eq!(err.key(), Some("clients[0].windw"), "{err:?}");
    }

    #[test]
    fn unknown_key_in_tls() {
        let err = load("[smpp.tls]\nlisten = \"127.0.0.1:3550\"\ncert = \"c\"\nkey = \"k\"\nca = \"x\"\n").unwrap_err();
        assert_eq!(err.key(), Some("smpp.tls.ca"), "{err:?}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = load(&client("window = \"many\"")).unwrap_err();
        assert!(
            matches!(&err, ConfigError::WrongType { key, .. } if key == "clients[0].window"),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("`clients[0].window` has the wrong type"), "{msg}");
        assert!(msg.contains("integer") && msg.contains("\"many\""), "{msg}");

        let err = load("clients = 3\n").unwrap_err();
        assert!(
            matches!(&err, ConfigError::WrongType { key, .. } if key == "clients"),
            "{err:?}"
        );
        let err = load("[node]\nid = true\n").unwrap_err();
        assert_eq!(err.key(), Some("node.id"), "{err:?}");
        let err = load("[storage]\nmax_batch = -1\n").unwrap_err();
        assert_eq!(err.key(), Some("storage.max_batch"), "{err:?}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = load("[smpp]\nlisten = \"localhost\"\n").unwrap_err();
        assert!(
            matches!(&err, ConfigError::BadValue { key, .. } if key == "smpp.listen"),
            "{err:?}"
        );
        let err = load("[log]\nformat = \"xml\"\n").unwrap_err();
        assert_eq!(err.key(), Some("log.format"), "{err:?}");
        assert!(err.to_string().contains("`text` or `json`"), "{err}");
        let err = load("[storage]\nbackend = \"scylla\"\n").unwrap_err();
        assert_eq!(err.key(), Some("storage.backend"), "{err:?}");
        let err = load(&client("allowed_networks = [\"10.0.0.0/33\"]")).unwrap_err();
        assert_eq!(err.key(), Some("clients[0].allowed_networks[0]"), "{err:?}");
        let err = load(&client("bind_types = [\"sender\"]")).unwrap_err();
        assert_eq!(err.key(), Some("clients[0].bind_types[0]"), "{err:?}");
        let err = load("[node]\nid = 70000\n").unwrap_err();
        assert_eq!(err.key(), Some("node.id"), "{err:?}");
        assert!(err.to_string().contains("65535"), "{err}");
    }

    #[test]
    fn missing_required_key() {
        let err = load("[[clients]]\nsystem_id = \"demo\"\n").unwrap_err();
        assert!(
            matches!(&err, ConfigError::MissingKey { key, .. } if key == "clients[0].password_hash"),
            "{err:?}"
        );
        let err = load("[smpp.tls]\nlisten = \"127.0.0.1:3550\"\ncert = \"c\"\n").unwrap_err();
        assert_eq!(err.key(), Some("smpp.tls.key"), "{err:?}");
    }

    // --- environment -------------------------------------------------------

    #[test]
    fn env_overrides_file_values() {
        let config = load_env(
            "[smpp]\nlisten = \"127.0.0.1:2775\"\n[node]\nid = 1\n",
            &[
                ("SMSMAX_SMPP__LISTEN", "0.0.0.0:2775"),
                ("SMSMAX_STORAGE__DATA_DIR", "/var/lib/smsmax"),
                ("SMSMAX_NODE__ID", "3"),
                ("SMSMAX_LOG__FORMAT", "json"),
                ("SMSMAX_SMPP__MAX_CONNECTIONS", "50"),
                ("SMSMAX_CONFIG", "/etc/smsmax.toml"),
                ("PATH", "/usr/bin"),
                ("SMSMAXIMUM", "1"),
            ],
        )
        .unwrap();
        assert_eq!(config.smpp.listen, "0.0.0.0:2775".parse().unwrap());
        assert_eq!(config.storage.data_dir, PathBuf::from("/var/lib/smsmax"));
        assert_eq!(config.node.id, 3);
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.smpp.max_connections, 50);
        // Untouched keys keep their file or default values.
        assert_eq!(config.smpp.system_id, "SMSMax");
    }

    #[test]
    fn env_names_are_case_insensitive() {
        let config = load_env("", &[("smsmax_node__id", "7")]).unwrap();
        assert_eq!(config.node.id, 7);
    }

    #[test]
    fn env_can_add_a_table() {
        let config = load_env(
            "",
            &[
                ("SMSMAX_SMPP__TLS__LISTEN", "127.0.0.1:3550"),
                ("SMSMAX_SMPP__TLS__CERT", "/etc/smsmax/cert.pem"),
                ("SMSMAX_SMPP__TLS__KEY", "/etc/smsmax/key.pem"),
            ],
        )
        .unwrap();
        let tls = config.smpp.tls.unwrap();
        assert_eq!(tls.listen, "127.0.0.1:3550".parse().unwrap());
        assert_eq!(tls.key, PathBuf::from("/etc/smsmax/key.pem"));
    }

    #[test]
    fn env_numeric_string_needs_quotes() {
        let err = load_env("", &[("SMSMAX_SMPP__SYSTEM_ID", "12345")]).unwrap_err();
        assert_eq!(err.key(), Some("smpp.system_id"), "{err:?}");
        let config = load_env("", &[("SMSMAX_SMPP__SYSTEM_ID", "\"12345\"")]).unwrap();
        assert_eq!(config.smpp.system_id, "12345");
    }

    #[test]
    fn env_replaces_the_client_list_whole() {
        let list = format!("[{{system_id = \"envclient\", password_hash = \"{HASH}\", window = 8}}]");
        let config = load_env(&client(""), &[("SMSMAX_CLIENTS", list.as_str())]).unwrap();
        assert_eq!(config.clients.len(), 1);
        assert_eq!(config.clients[0].system_id, "envclient");
        assert_eq!(config.clients[0].window, 8);
        config.validate().unwrap();
    }

    #[test]
    fn env_list_index_is_refused() {
        let err = load_env(&client(""), &[("SMSMAX_CLIENTS__0__WINDOW", "8")]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::BadValue { origin: Origin::Env(v), key, .. }
                if v == "SMSMAX_CLIENTS__0__WINDOW" && key == "clients[0].window"),
            "{err:?}"
        );
        assert!(err.to_string().contains("set SMSMAX_CLIENTS to the whole list"));
    }

    #[test]
    fn env_errors_name_the_variable() {
        let err = load_env("", &[("SMSMAX_SMPP__LISEN", "0.0.0.0:2775")]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::UnknownKey { origin: Origin::Env(v), key, .. }
                if v == "SMSMAX_SMPP__LISEN" && key == "smpp.lisen"),
            "{err:?}"
        );
        assert!(err
            .to_string()
            .starts_with("environment variable SMSMAX_SMPP__LISEN: unknown key `smpp.lisen`"));

        let err = load_env("[node]\nid = 1\n", &[("SMSMAX_NODE__ID", "three")]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::WrongType { origin: Origin::Env(v), key, .. }
                if v == "SMSMAX_NODE__ID" && key == "node.id"),
            "{err:?}"
        );

        let err = load_env("", &[("SMSMAX_SMPP__LISTEN", "nowhere")]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::BadValue { origin: Origin::Env(v), .. } if v == "SMSMAX_SMPP__LISTEN"),
            "{err:?}"
        );

        // A key path naming no section is refused (a misspelt section)...
        let err = load_env("", &[("SMSMAX_SMTP__LISTEN", "0.0.0.0:1")]).unwrap_err();
        assert_eq!(err.key(), Some("smtp"), "{err:?}");
        // ...one segment naming no section is another program's variable.
        let config = load_env("", &[("SMSMAX_SCYLLA_URI", "127.0.0.1:9042"), ("SMSMAX_BIN", "x")]).unwrap();
        assert_eq!(config, load_env("", &[]).unwrap());
    }

    #[test]
    fn the_sections_list_is_the_schema() {
        let text = toml::to_string(&load_env("", &[]).unwrap()).unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap();
        for key in table.keys() {
            assert!(SECTIONS.contains(&key.as_str()), "{key} missing from SECTIONS");
        }
        for section in SECTIONS {
            let err = load_env(
                "",
                &[(format!("SMSMAX_{}__NOPE", section.to_uppercase()).as_str(), "1")],
            )
            .unwrap_err();
            assert!(
                !err.to_string().contains(&format!("unknown key `{section}`")),
                "{section}: {err}"
            );
        }
    }

    #[test]
    fn file_errors_are_not_blamed_on_env() {
        let err = load_env("[node]\nid = \"x\"\n", &[("SMSMAX_SMPP__LISTEN", "0.0.0.0:1")]).unwrap_err();
        assert!(
            matches!(
                &err,
                ConfigError::WrongType {
                    origin: Origin::File(_),
                    ..
                }
            ),
            "{err:?}"
        );
    }

    // --- validation --------------------------------------------------------

    #[test]
    fn client_window_range() {
        assert_invalid(&client("window = 0"), "clients[0].window", "between 1 and 65535");
        assert_invalid(&client("window = 65536"), "clients[0].window", "got 65536");
        load(&client("window = 65535")).unwrap().validate().unwrap();
    }

    #[test]
    fn client_limits_at_least_one() {
        assert_invalid(&client("throughput = 0"), "clients[0].throughput", "at least 1");
        assert_invalid(&client("max_binds = 0"), "clients[0].max_binds", "at least 1");
    }

    #[test]
    fn client_lists_non_empty() {
        assert_invalid(&client("bind_types = []"), "clients[0].bind_types", "at least one");
        assert_invalid(
            &client("allowed_networks = []"),
            "clients[0].allowed_networks",
            "at least one",
        );
    }

    #[test]
    fn client_system_id_length_and_uniqueness() {
        let long = format!("[[clients]]\nsystem_id = \"sixteen-chars-xx\"\npassword_hash = \"{HASH}\"\n");
        assert_invalid(&long, "clients[0].system_id", "at most 15");
        let fifteen = format!("[[clients]]\nsystem_id = \"fifteen-chars-x\"\npassword_hash = \"{HASH}\"\n");
        load(&fifteen).unwrap().validate().unwrap();
        let empty = format!("[[clients]]\nsystem_id = \"\"\npassword_hash = \"{HASH}\"\n");
        assert_invalid(&empty, "clients[0].system_id", "empty");
        let dup = format!("{}{}", client(""), client(""));
        assert_invalid(&dup, "clients[1].system_id", "clients[0]");
    }

    #[test]
    fn client_password_hash_must_be_argon2id() {
        let plain = "[[clients]]\nsystem_id = \"demo\"\npassword_hash = \"demo-pass\"\n";
        assert_invalid(plain, "clients[0].password_hash", "argon2id PHC");
        let argon2i = "[[clients]]\nsystem_id = \"demo\"\npassword_hash = \
            \"$argon2i$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g\"\n";
        assert_invalid(argon2i, "clients[0].password_hash", "argon2i");
    }

    #[test]
    fn smpp_limits() {
        assert_invalid(
            "[smpp]\nmax_command_length = 63\n",
            "smpp.max_command_length",
            "between 64 and 16777216",
        );
        assert_invalid(
            "[smpp]\nmax_command_length = 16777217\n",
            "smpp.max_command_length",
            "got 16777217",
        );
        load("[smpp]\nmax_command_length = 16777216\n")
            .unwrap()
            .validate()
            .unwrap();
        assert_invalid("[smpp]\nmax_connections = 0\n", "smpp.max_connections", "at least 1");
        for key in [
            "bind_timeout_secs",
            "enquire_link_interval_secs",
            "response_timeout_secs",
        ] {
            assert_invalid(&format!("[smpp]\n{key} = 0\n"), &format!("smpp.{key}"), "at least 1");
        }
        assert_invalid(
            "[smpp]\nsystem_id = \"a-much-too-long-id\"\n",
            "smpp.system_id",
            "at most 15",
        );
    }

    #[test]
    fn storage_security_and_log_limits() {
        assert_invalid("[storage]\nmax_batch = 0\n", "storage.max_batch", "at least 1");
        assert_invalid("[storage]\ndata_dir = \"\"\n", "storage.data_dir", "empty");
        for key in [
            "failed_binds_per_address_per_minute",
            "failed_binds_per_system_id_per_minute",
            "password_workers",
            "password_queue",
        ] {
            assert_invalid(
                &format!("[security]\n{key} = 0\n"),
                &format!("security.{key}"),
                "at least 1",
            );
        }
        assert_invalid("[log]\nlevel = \"smsmax=loud\"\n", "log.level", "filter");
        load("[log]\nlevel = \"smsmax=debug,warn\"\n")
            .unwrap()
            .validate()
            .unwrap();
    }

    #[test]
    fn tls_files_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, "cert").unwrap();
        let tls = |cert: &Path, key: &Path| {
            format!(
                "[smpp.tls]\nlisten = \"127.0.0.1:3550\"\ncert = {:?}\nkey = {:?}\n",
                cert.display().to_string(),
                key.display().to_string()
            )
        };
        let err = invalid(&tls(&cert, &key));
        assert_eq!(err.key(), Some("smpp.tls.key"), "{err:?}");
        assert!(err.to_string().contains("key.pem not found"), "{err}");
        std::fs::write(&key, "key").unwrap();
        load(&tls(&cert, &key)).unwrap().validate().unwrap();
        let err = invalid(&tls(dir.path(), &key));
        assert_eq!(err.key(), Some("smpp.tls.cert"), "{err:?}");
        assert!(err.to_string().contains("not a file"), "{err}");
        let same_port = tls(&cert, &key).replace("3550", "2775");
        assert_invalid(&same_port, "smpp.tls.listen", "also `smpp.listen`");
    }

    #[test]
    fn shipped_configs_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        for name in ["smsmax.toml", "production.toml"] {
            let config = Config::load_with_env(&dir.join(name), NO_ENV).unwrap_or_else(|e| panic!("{name}: {e}"));
            config.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let demo = Config::load_with_env(&dir.join("smsmax.toml"), NO_ENV).unwrap();
        assert_eq!(demo.clients[0].system_id, "demo");
        assert!(crate::password::verify_password(
            &demo.clients[0].password_hash,
            b"demopass"
        ));
        let production = Config::load_with_env(&dir.join("production.toml"), NO_ENV).unwrap();
        assert!(production.clients.is_empty());
        assert_eq!(production.storage.data_dir, PathBuf::from("/var/lib/smsmax"));
    }
}
